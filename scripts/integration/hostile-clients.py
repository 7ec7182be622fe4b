#!/usr/bin/python3
"""Hostile and misbehaving clients against a release nvme-nbd server.

    scripts/integration/hostile-clients.py [path/to/nvme-nbd]

Each case runs against a fresh server on a private Unix socket and checks that
the misbehaving client gets the right answer (or is cut off) while a
well-behaved client on another connection keeps working and its data stays
intact. Prints PASS/FAIL per case; exits 1 on any failure. Every wait is
bounded.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import nbd  # python3-libnbd (run with /usr/bin/python3)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, ".build/release/nvme-nbd")

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO = 1, 2, 3, 6, 7
REP_ACK, REP_INFO = 1, 3
ERR_UNKNOWN = (1 << 31) + 6
ERR_TOO_BIG = (1 << 31) + 9
ERR_SHUTDOWN = (1 << 31) + 7
ERR_UNSUP = (1 << 31) + 1
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
EINVAL, ENOSPC = 22, 28

results = []


class Server:
    def __init__(self, *args):
        self.dir = tempfile.mkdtemp(prefix="nvme-nbd-hostile.")
        self.sock = os.path.join(self.dir, "s.sock")
        self.log = open(os.path.join(self.dir, "server.log"), "w+")
        self.proc = subprocess.Popen([BIN, "serve", "--unix", self.sock, "--log-level", "warning", *args],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if os.path.exists(self.sock):
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(self.sock)
                    s.close()
                    return
                except OSError:
                    pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("server did not start: " + open(self.log.name).read())

    def rss_kib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return 124
        return self.proc.returncode

    def client(self):
        h = nbd.NBD()
        h.connect_unix(self.sock)
        return h


def raw_connect(server, timeout=10):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(server.sock)
    greeting = recv_exact(s, 18)
    magic, opt, flags = struct.unpack(">QQH", greeting)
    assert magic == NBDMAGIC and opt == IHAVEOPT, greeting
    s.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
    return s


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError(f"connection closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def send_option(s, option, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, option, len(data)) + data)


def read_option_reply(s):
    magic, option, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
    assert magic == REPLY_MAGIC, hex(magic)
    return option, rtype, recv_exact(s, length)


def go(s, name=b""):
    send_option(s, OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
    while True:
        _, rtype, data = read_option_reply(s)
        if rtype == REP_ACK:
            return
        if rtype != REP_INFO:
            raise RuntimeError(f"GO failed: reply type {rtype:#x}")


def request(s, cmd, offset, length, cookie=1, flags=0, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie, offset, length) + payload)


def simple_reply(s, data_len=0):
    magic, err, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
    assert magic == SIMPLE_REPLY_MAGIC, hex(magic)
    data = recv_exact(s, data_len) if err == 0 and data_len else b""
    return err, cookie, data


def closed_by_server(s, timeout=10):
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def case(name):
    def wrap(fn):
        def run():
            try:
                fn()
                results.append((name, True, ""))
                print(f"PASS {name}", flush=True)
            except Exception as e:  # noqa: BLE001 - report every failure
                results.append((name, False, str(e)))
                print(f"FAIL {name}: {e}", flush=True)
                traceback.print_exc()
        return run
    return wrap


def with_bystander(server):
    """A well-behaved client with known data, checked after the hostile case."""
    h = server.client()
    pattern = os.urandom(1 << 20)
    h.pwrite(pattern, 512 << 20)
    h.flush()
    return h, pattern


def check_bystander(server, h, pattern):
    assert server.alive(), "server died"
    assert h.pread(len(pattern), 512 << 20) == pattern, "bystander data changed"
    h2 = server.client()
    assert h2.pread(len(pattern), 512 << 20) == pattern, "bystander data changed (new connection)"
    h2.shutdown()


@case("disconnect-mid-write-payload")
def disconnect_mid_write():
    srv = Server()
    try:
        h, pattern = with_bystander(srv)
        before = h.pread(1 << 20, 0)
        s = raw_connect(srv)
        go(s)
        request(s, CMD_WRITE, 0, 1 << 20, payload=b"\xAB" * (300 << 10))  # 300 KiB of 1 MiB, then vanish
        s.close()
        time.sleep(0.3)
        assert h.pread(1 << 20, 0) == before, "a partial write became visible"
        check_bystander(srv, h, pattern)
    finally:
        srv.stop()


@case("stalled-handshake-times-out-and-frees-slot")
def stalled_handshake():
    srv = Server("--handshake-timeout", "2", "--max-connections", "1")
    try:
        stall = socket.socket(socket.AF_UNIX)
        stall.connect(srv.sock)
        recv_exact(stall, 18)  # greeting, then silence
        t0 = time.time()
        assert closed_by_server(stall, timeout=10), "stalled handshake was not closed"
        assert time.time() - t0 < 8
        h = srv.client()  # the slot is free again
        h.pwrite(b"x" * 4096, 0)
        h.shutdown()
    finally:
        srv.stop()


@case("max-connections-refused-clearly")
def max_connections():
    srv = Server("--max-connections", "2")
    try:
        a, b = srv.client(), srv.client()
        s = raw_connect(srv)
        send_option(s, OPT_GO, struct.pack(">I", 0) + struct.pack(">H", 0))
        _, rtype, data = read_option_reply(s)
        assert rtype == ERR_SHUTDOWN or rtype & (1 << 31), f"expected an error reply, got {rtype:#x}"
        s.close()
        a.pwrite(b"y" * 4096, 4096)
        assert b.pread(4096, 4096) == b"y" * 4096
        a.shutdown()
        b.shutdown()
    finally:
        srv.stop()


@case("huge-option-length-skipped-without-buffering")
def huge_option():
    srv = Server()
    try:
        h, pattern = with_bystander(srv)
        rss0 = srv.rss_kib()
        s = raw_connect(srv)
        s.sendall(struct.pack(">QII", IHAVEOPT, OPT_INFO, 0xFFFFFFFF))
        junk = b"\0" * (1 << 20)
        for _ in range(256):  # 256 MiB of the 4 GiB the header announced
            s.sendall(junk)
        rss1 = srv.rss_kib()
        assert rss1 - rss0 < 64 << 10, f"server grew by {(rss1 - rss0) >> 10} MiB while skipping"
        s.close()
        check_bystander(srv, h, pattern)
    finally:
        srv.stop()


@case("huge-write-length-skipped-connection-survives")
def huge_write():
    srv = Server()
    try:
        h, pattern = with_bystander(srv)
        s = raw_connect(srv)
        go(s)
        size = 40 << 20  # over the 32 MiB maximum payload
        request(s, CMD_WRITE, 0, size, cookie=7)
        chunk = b"\x11" * (1 << 20)
        for _ in range(40):
            s.sendall(chunk)
        err, cookie, _ = simple_reply(s)
        assert (err, cookie) == (EINVAL, 7), (err, cookie)
        request(s, CMD_READ, 0, 4096, cookie=8)
        err, cookie, data = simple_reply(s, 4096)
        assert (err, cookie) == (0, 8) and data != b"\x11" * 4096
        s.close()
        check_bystander(srv, h, pattern)
    finally:
        srv.stop()


@case("invalid-export-names")
def invalid_exports():
    srv = Server("--export", "name=real,size=64M")
    try:
        s = raw_connect(srv)
        send_option(s, OPT_GO, struct.pack(">I", 5) + b"nopes" + struct.pack(">H", 0))
        _, rtype, _ = read_option_reply(s)
        assert rtype == ERR_UNKNOWN, f"{rtype:#x}"
        name = b"\xff\xfe" * 100
        send_option(s, OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
        _, rtype, _ = read_option_reply(s)
        assert rtype == ERR_UNKNOWN, f"{rtype:#x}"
        go(s, b"real")  # the session goes on
        request(s, CMD_READ, 0, 512, cookie=3)
        assert simple_reply(s, 512)[0] == 0
        s.close()
        s = raw_connect(srv)
        send_option(s, OPT_EXPORT_NAME, b"missing")
        assert closed_by_server(s), "EXPORT_NAME of a missing export must close"
    finally:
        srv.stop()


@case("pipelining-far-beyond-queue-depth-bounded-memory")
def pipelining():
    srv = Server("--queue-depth", "16", "--max-in-flight", "64")
    try:
        h, pattern = with_bystander(srv)
        s = raw_connect(srv)
        go(s)
        s.setblocking(True)
        n = 200_000
        rss0 = srv.rss_kib()
        header = b"".join(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, i, (i % 1000) * 4096, 4096)
                          for i in range(1000))
        sender_done = threading.Event()

        def sender():
            try:
                for _ in range(n // 1000):
                    s.sendall(header)
            except OSError:
                pass
            sender_done.set()
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        time.sleep(2)  # we read nothing: the server must stop reading from us
        rss1 = srv.rss_kib()
        assert rss1 - rss0 < 256 << 10, f"server grew {(rss1 - rss0) >> 10} MiB with unread replies"
        check_bystander(srv, h, pattern)  # others are unaffected meanwhile
        got = 0
        s.settimeout(30)
        while got < n:
            err, cookie, _ = simple_reply(s, 4096)
            assert err == 0
            got += 1
        t.join(timeout=30)
        s.close()
        check_bystander(srv, h, pattern)
    finally:
        srv.stop()


@case("bad-magic-closes-only-that-connection")
def bad_magic():
    srv = Server()
    try:
        h, pattern = with_bystander(srv)
        s = raw_connect(srv)
        go(s)
        s.sendall(struct.pack(">IHHQQI", 0xDEADBEEF, 0, CMD_READ, 1, 0, 512))
        assert closed_by_server(s)
        check_bystander(srv, h, pattern)
    finally:
        srv.stop()


@case("garbage-handshakes")
def garbage_handshakes():
    srv = Server()
    try:
        h, pattern = with_bystander(srv)
        for junk in [b"", b"\x00" * 4, b"\xff" * 4 + b"garbage" * 100, os.urandom(4096)]:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            s.connect(srv.sock)
            recv_exact(s, 18)
            s.sendall(junk)
            s.close()
        s = raw_connect(srv)
        send_option(s, 0x7777, b"whatever")
        _, rtype, _ = read_option_reply(s)
        assert rtype == ERR_UNSUP, f"{rtype:#x}"
        go(s)
        s.close()
        check_bystander(srv, h, pattern)
    finally:
        srv.stop()


@case("load-64-connections-qd64-verified")
def load():
    srv = Server("--queues", "2")
    try:
        conns = 64
        region = 4 << 20  # each connection owns 4 MiB
        deadline = time.time() + 12
        errors = []
        peak = [0]

        def worker(i):
            try:
                h = srv.client()
                base = i * region
                blocks = region // 4096
                model = {}
                inflight = {}  # cookie -> (block, data)
                busy = set()
                seq = 0
                while time.time() < deadline or inflight:
                    while time.time() < deadline and len(inflight) < 64:
                        seq += 1
                        block = (seq * 7919 + i * 13) % blocks
                        if block in busy:
                            continue
                        data = struct.pack(">QQ", i, seq) * 256
                        cookie = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), base + block * 4096)
                        inflight[cookie] = (block, data)
                        busy.add(block)
                    if not inflight:
                        break
                    h.poll(-1)
                    for cookie in [c for c in inflight if h.aio_command_completed(c)]:
                        block, data = inflight.pop(cookie)
                        busy.discard(block)
                        model[block] = data
                for block, data in model.items():
                    if h.pread(4096, base + block * 4096) != data:
                        errors.append(f"connection {i}: block {block} lost or torn")
                        break
                h.shutdown()
            except Exception as e:  # noqa: BLE001
                errors.append(f"connection {i}: {e}")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak[0] = max(peak[0], srv.rss_kib())
            time.sleep(0.2)
        for t in threads:
            t.join()
        print(f"  peak server RSS {peak[0] >> 10} MiB with {conns} connections x QD64")
        assert not errors, "; ".join(errors[:5])
        assert peak[0] < 3 << 20, f"peak RSS {peak[0] >> 10} MiB"
        assert srv.alive()
    finally:
        srv.stop()


if __name__ == "__main__":
    if not os.access(BIN, os.X_OK):
        sys.exit(f"hostile-clients: no server binary at {BIN}")
    for name, fn in list(globals().items()):
        if callable(fn) and getattr(fn, "__name__", "") == "run" and fn.__module__ == "__main__":
            fn()
    failed = [r for r in results if not r[1]]
    print(f"hostile-clients: {len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)

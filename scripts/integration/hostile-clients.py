#!/usr/bin/python3
"""Hostile and misbehaving clients against a release nvme-nbd server: the cases
the Swift suites (Tests/NBDServerTests, which run the server in-process) cannot
show, because they need the real binary, its command-line limits or its
resident memory.

    scripts/integration/hostile-clients.py [path/to/nvme-nbd]

Each case runs against a fresh server on a private Unix socket and checks that
the misbehaving client gets the right answer (or is cut off) while a
well-behaved client on another connection keeps working and its data stays
intact. Prints PASS/FAIL per case; exits 1 on any failure. Every wait is
bounded. The wire format is in nbdwire.py next to this file.
"""
import os
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback

import nbd  # python3-libnbd (run with /usr/bin/python3)

import nbdwire as wire

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, ".build/release/nvme-nbd")

results = []


class Server(wire.Server):
    """The server on a private Unix socket (`sock`); ready on READY=1. Every case
    runs its server in `with Server(...) as srv:`, which stops it however the
    case ends (the exit status is not checked)."""

    def __init__(self, *args):
        workdir = tempfile.mkdtemp(prefix="nvme-nbd-hostile.")
        self.sock = os.path.join(workdir, "s.sock")
        super().__init__(BIN, "--unix", self.sock, *args, workdir=workdir, expect_status=None)

    def rss_kib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def assert_grew_less_than(self, rss0_kib, mib, while_what):
        """The check of the cases that measure memory while a client misbehaves:
        resident memory grew by less than `mib` MiB since `rss0_kib` (rss_kib())."""
        grown = self.rss_kib() - rss0_kib
        assert grown < mib << 10, f"server grew by {grown >> 10} MiB {while_what}"

    def client(self):
        h = nbd.NBD()
        h.connect_unix(self.sock)
        return h


def raw_connect(server, timeout=10):
    """A Unix socket past the greeting, client flags sent."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(server.sock)
    wire.read_greeting(s)
    wire.send_client_flags(s)
    return s


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


@case("stalled-handshake-times-out-and-frees-slot")
def stalled_handshake():
    # The Swift suites check the timeout and the slot separately
    # (HandshakeTests.handshakeTimeout, .connectionLimit); here a timed-out
    # handshake must give its slot back, through the command-line flags.
    with Server("--handshake-timeout", "2", "--max-connections", "1") as srv:
        stall = socket.socket(socket.AF_UNIX)
        stall.connect(srv.sock)
        wire.read_greeting(stall)  # then silence
        t0 = time.time()
        assert closed_by_server(stall, timeout=10), "stalled handshake was not closed"
        assert time.time() - t0 < 8
        h = srv.client()  # the slot is free again
        h.pwrite(b"x" * 4096, 0)
        h.shutdown()


@case("huge-option-length-skipped-without-buffering")
def huge_option():
    # The handshake state machine skips over-long option data
    # (HandshakeStreamTests.overLimitDataIsSkippedChunkByChunk); this checks that
    # the whole server does not buffer it either.
    with Server() as srv:
        h, pattern = with_bystander(srv)
        rss0 = srv.rss_kib()
        s = raw_connect(srv)
        s.sendall(wire.option(wire.OPT_INFO, length=0xFFFFFFFF))
        junk = b"\0" * (1 << 20)
        for _ in range(256):  # 256 MiB of the 4 GiB the header announced
            s.sendall(junk)
        srv.assert_grew_less_than(rss0, 64, "while skipping")
        s.close()
        check_bystander(srv, h, pattern)


@case("non-utf8-export-name")
def non_utf8_export_name():
    with Server("--export", "name=real,size=64M") as srv:
        s = raw_connect(srv)
        name = b"\xff\xfe" * 100
        wire.send_option(s, wire.OPT_GO, wire.go_data(name))
        _, rtype, _ = wire.read_option_reply(s)
        assert rtype == wire.REP_ERR_UNKNOWN, f"{rtype:#x}"
        wire.go(s, b"real")  # the session goes on
        s.sendall(wire.request(wire.CMD_READ, 0, 512, cookie=3))
        assert wire.read_simple_reply(s, 512)[0] == 0
        s.close()


@case("pipelining-far-beyond-queue-depth-bounded-memory")
def pipelining():
    # ConcurrencyTests.backPressure shows the server stops reading; this measures
    # the resident memory of 200,000 pipelined reads whose replies go unread.
    with Server("--queue-depth", "16", "--max-in-flight", "64") as srv:
        h, pattern = with_bystander(srv)
        s = raw_connect(srv)
        wire.go(s)
        s.setblocking(True)
        n = 200_000
        rss0 = srv.rss_kib()
        batch = b"".join(wire.request(wire.CMD_READ, (i % 1000) * 4096, 4096, cookie=i) for i in range(1000))

        def sender():
            try:
                for _ in range(n // 1000):
                    s.sendall(batch)
            except OSError:
                pass
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        time.sleep(2)  # we read nothing: the server must stop reading from us
        srv.assert_grew_less_than(rss0, 256, "with unread replies")
        check_bystander(srv, h, pattern)  # others are unaffected meanwhile
        got = 0
        s.settimeout(30)
        while got < n:
            err, cookie, _ = wire.read_simple_reply(s, 4096)
            assert err == 0
            got += 1
        t.join(timeout=30)
        s.close()
        check_bystander(srv, h, pattern)


@case("load-64-connections-qd64-verified")
def load():
    # The Swift suites stop at 8 connections (ConcurrencyTests.parallelConnections)
    # and one connection at QD 64 (.sixtyFourInFlight).
    with Server("--queues", "2") as srv:
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


if __name__ == "__main__":
    if not os.access(BIN, os.X_OK):
        sys.exit(f"hostile-clients: no server binary at {BIN}")
    for name, fn in list(globals().items()):
        if callable(fn) and getattr(fn, "__name__", "") == "run" and fn.__module__ == "__main__":
            fn()
    failed = [r for r in results if not r[1]]
    print(f"hostile-clients: {len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)

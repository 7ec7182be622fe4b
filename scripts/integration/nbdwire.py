"""The NBD wire format, as much of it as the integration scripts speak on raw
sockets: magics, option/reply/command numbers, header layouts and the few
helpers that read and write them (doc/proto.md of the NBD project); and
`Server`, the nvme-nbd process every integration script runs its cases against.

    import nbdwire as wire
"""
import os
import select
import signal
import socket
import struct
import subprocess
import tempfile
import time

# Magics.
NBDMAGIC = 0x4E42444D41474943           # "NBDMAGIC": the greeting's first 8 bytes
IHAVEOPT = 0x49484156454F5054           # "IHAVEOPT": newstyle greeting, option requests
OPTION_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

# Handshake flags the client sends.
CLIENT_FIXED_NEWSTYLE = 1 << 0
CLIENT_NO_ZEROES = 1 << 1

# Options.
OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_INFO = 6
OPT_GO = 7

# Option reply types.
REP_ACK = 1
REP_INFO = 3
REP_FLAG_ERROR = 1 << 31
REP_ERR_UNSUP = REP_FLAG_ERROR + 1
REP_ERR_TLS_REQD = REP_FLAG_ERROR + 5
REP_ERR_UNKNOWN = REP_FLAG_ERROR + 6
REP_ERR_SHUTDOWN = REP_FLAG_ERROR + 7
REP_ERR_TOO_BIG = REP_FLAG_ERROR + 9

# Commands.
CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3

# Error values in replies.
EINVAL = 22
ENOSPC = 28

# Layouts (big-endian).
GREETING = struct.Struct(">QQH")        # NBDMAGIC, IHAVEOPT, handshake flags
CLIENT_FLAGS = struct.Struct(">I")
OPTION_HEADER = struct.Struct(">QII")   # IHAVEOPT, option, data length
OPTION_REPLY_HEADER = struct.Struct(">QIII")  # magic, option, reply type, data length
REQUEST = struct.Struct(">IHHQQI")      # magic, command flags, type, cookie, offset, length
SIMPLE_REPLY = struct.Struct(">IIQ")    # magic, error, cookie


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError(f"connection closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def read_greeting(s):
    magic, opt, flags = GREETING.unpack(recv_exact(s, GREETING.size))
    assert magic == NBDMAGIC and opt == IHAVEOPT, (hex(magic), hex(opt))
    return flags


def send_client_flags(s, flags=CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES):
    s.sendall(CLIENT_FLAGS.pack(flags))


def option(option, data=b"", length=None):
    """An option request; `length` overrides the announced data length."""
    return OPTION_HEADER.pack(IHAVEOPT, option, len(data) if length is None else length) + data


def send_option(s, opt, data=b""):
    s.sendall(option(opt, data))


def read_option_reply(s):
    """(option, reply type, data)."""
    magic, opt, rtype, length = OPTION_REPLY_HEADER.unpack(recv_exact(s, OPTION_REPLY_HEADER.size))
    assert magic == OPTION_REPLY_MAGIC, hex(magic)
    return opt, rtype, recv_exact(s, length)


def go_data(name=b"", info_requests=()):
    """The data of NBD_OPT_GO / NBD_OPT_INFO."""
    return (struct.pack(">I", len(name)) + name + struct.pack(">H", len(info_requests))
            + b"".join(struct.pack(">H", r) for r in info_requests))


def go(s, name=b""):
    """NBD_OPT_GO; returns once acknowledged, raises on an error reply."""
    send_option(s, OPT_GO, go_data(name))
    while True:
        _, rtype, _ = read_option_reply(s)
        if rtype == REP_ACK:
            return
        if rtype != REP_INFO:
            raise RuntimeError(f"GO failed: reply type {rtype:#x}")


def request(cmd, offset, length, cookie=1, flags=0):
    return REQUEST.pack(REQUEST_MAGIC, flags, cmd, cookie, offset, length)


def read_simple_reply(s, data_len=0):
    """(error, cookie, data); data is read only for a successful reply."""
    magic, err, cookie = SIMPLE_REPLY.unpack(recv_exact(s, SIMPLE_REPLY.size))
    assert magic == SIMPLE_REPLY_MAGIC, hex(magic)
    return err, cookie, recv_exact(s, data_len) if err == 0 and data_len else b""


class Server:
    """nvme-nbd started with NOTIFY_SOCKET set to a datagram socket of its own:
    ready when READY=1 arrives (sd_notify(3)), so nothing polls for sockets.
    Its output (stdout too, unless `stdout` says otherwise) goes to a log file,
    `output()`; every wait is bounded by `timeout` seconds.

    A context manager: when the block ends the server is stopped (SIGTERM, then
    SIGKILL past the bound); when the block ended without an exception, the
    exit status must be `expect_status` (None: not checked).
    """

    def __init__(self, binary, *args, workdir, serve=True, log_level="warning", env=None, wait_ready=True,
                 stdout=None, timeout=20, expect_status=0):
        self.timeout = timeout
        self.expect_status = expect_status
        self.dir = tempfile.mkdtemp(prefix="srv.", dir=workdir)
        self.notify_path = os.path.join(self.dir, "notify")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.log_path = os.path.join(self.dir, "server.log")
        self.log = open(self.log_path, "w+")
        e = dict(os.environ if env is None else env)
        e.setdefault("NOTIFY_SOCKET", self.notify_path)
        argv = [binary] + (["serve"] if serve else []) + ["--log-level", log_level, *args]
        self.proc = subprocess.Popen(argv, stdout=self.log if stdout is None else stdout, stderr=self.log, env=e)
        if wait_ready:
            state = self.next_state()
            if state is None or "READY=1" not in state:
                self.kill()
                raise AssertionError(f"no READY=1 from {argv}: {state!r}; log: {self.output()}")

    def next_state(self, timeout=None):
        """The next notification datagram, or None when the server exits or the bound passes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.notify], [], [], 0.2)
            if r:
                return self.notify.recv(4096).decode()
            if self.proc.poll() is not None:
                r, _, _ = select.select([self.notify], [], [], 0)
                return self.notify.recv(4096).decode() if r else None
        return None

    def output(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def wait(self):
        """The exit status; past the bound the server is killed and the case fails."""
        try:
            return self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server did not exit within {self.timeout} s")

    def stop(self):
        """SIGTERM (a graceful stop: status 0) and the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is not None:  # the case failed already: stop without a second failure
            try:
                self.stop()
            except AssertionError:
                pass
            return False
        status = self.stop()
        assert self.expect_status is None or status == self.expect_status, \
            f"exit status {status}, not {self.expect_status}: {self.output()}"
        return False

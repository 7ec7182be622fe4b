#!/usr/bin/python3
"""The command lines qemu-nbd and nbdkit users type, and the server's life as a
service, against the real binary:

    scripts/integration/service-life.py [path/to/nvme-nbd]

- CLI forms: a positional FILE (with and without `serve`), -r refusing writes,
  -p/-b, -U and -k, -x, -e (connections at once), -t, -V/--version,
  `--listen PORT`, and the errors bad values get;
- a second server on a live Unix socket is refused with a message naming the
  path while the first keeps serving; a stale socket file is replaced;
- --pid-file written once the server is ready and removed on exit;
- NOTIFY_SOCKET: READY=1 (path and abstract '@' names) and STOPPING=1;
- socket activation: libnbd's connect_systemd_socket_activation (Unix), a
  TCP socket passed as descriptor 3 by hand (refused with -p), and
  systemd-socket-activate;
- --run: its exit status (and 128+signal), $uri/$nbd/$unixsocket/$port/
  $exportname for -U -, -U PATH and TCP, data written by the command in the
  file after a clean drain, SIGTERM passed on to the command;
- SIGTERM with 64 writes in flight: every one answered (done or ESHUTDOWN),
  some finishing after the signal, each one done found in the file, exit 0.

Every server tells it is ready through NOTIFY_SOCKET (sd_notify(3)), so there
is no polling for sockets; every wait is bounded. TCP listeners use
127.0.0.1 ports 10931-10939 only. Prints PASS/FAIL per case and
"service-life: N passed, M failed"; exits 1 on any failure.
"""
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import nbd  # python3-libnbd (run with /usr/bin/python3)

import nbdwire as wire

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, ".build/release/nvme-nbd"))
WORK = tempfile.mkdtemp(prefix="nvme-nbd-service.")
PORTS = iter(range(10931, 10940))
WAIT = 20  # seconds: the bound on every wait for a server or a command
SIZE = 64 << 20
results = []


class Server(wire.Server):
    """nvme-nbd (`serve` unless serve=False) in its own folder under WORK; ready on READY=1."""

    def __init__(self, *args, **kw):
        super().__init__(BIN, *args, workdir=WORK, timeout=WAIT, **kw)


def run_cli(*args, timeout=WAIT, env=None):
    """Runs nvme-nbd to completion: (exit status, stdout, stderr)."""
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def served_size(uri):
    """The size a client connecting to `uri` is told (the connection then closed)."""
    h = connect(uri)
    size = h.get_size()
    h.shutdown()
    return size


def write_read_back(uri, fill):
    """A client at `uri` sees SIZE bytes, writes 4 KiB of `fill` at 0 and reads it back."""
    h = connect(uri)
    assert h.get_size() == SIZE, h.get_size()
    h.pwrite(fill * 4096, 0)
    assert h.pread(4096, 0) == fill * 4096
    h.shutdown()


def refused(uri, why):
    """A client connecting to `uri` must be refused; `why` says what it would mean otherwise."""
    try:
        h = connect(uri)
    except nbd.Error:
        return
    h.shutdown()
    raise AssertionError(why)


def unix_uri(path, name=""):
    return f"nbd+unix:///{name}?socket={path}"


def make_image(name, size=SIZE):
    path = os.path.join(WORK, name)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def case(name):
    def wrap(fn):
        try:
            fn()
            print(f"PASS {name}", flush=True)
            results.append((name, True))
        except Exception as e:  # noqa: BLE001 — every failure is reported, the run goes on
            print(f"FAIL {name}: {e}", flush=True)
            traceback.print_exc(limit=3, file=sys.stdout)
            results.append((name, False))
        return fn
    return wrap


# ------------------------------------------------------------------ CLI forms

@case("version: -V and --version print the version, exit 0")
def _():
    for flag in ("-V", "--version"):
        rc, out, err = run_cli(flag)
        assert rc == 0 and re.fullmatch(r"nvme-nbd \d+\.\d+\.\d+\n", out), (flag, rc, out, err)
    rc, out, _ = run_cli("serve", "-V")
    assert rc == 0 and out.startswith("nvme-nbd "), (rc, out)


@case("positional FILE: `serve -U PATH FILE` serves the file, writes land in it")
def _():
    img = make_image("positional.img")
    sock = os.path.join(WORK, "positional.sock")
    with Server("-U", sock, img):
        h = connect(unix_uri(sock))
        assert h.get_size() == SIZE, h.get_size()
        h.pwrite(b"\xa5" * 4096, 1 << 20)
        h.flush()
        h.shutdown()
        with open(img, "rb") as f:
            f.seek(1 << 20)
            assert f.read(4096) == b"\xa5" * 4096


@case("`nvme-nbd -k PATH FILE` (no subcommand, qemu-nbd's -k) serves the file")
def _():
    img = make_image("nosub.img", 2 << 20)
    sock = os.path.join(WORK, "nosub.sock")
    with Server("-k", sock, img, serve=False):
        assert served_size(unix_uri(sock)) == 2 << 20


@case("-r/--read-only: READ_ONLY advertised, writes refused with EPERM, file unchanged")
def _():
    img = make_image("ro.img", 4 << 20)
    sock = os.path.join(WORK, "ro.sock")
    with Server("-r", "-U", sock, img):
        h = connect(unix_uri(sock))
        assert h.is_read_only()
        try:
            h.pwrite(b"x" * 512, 0)
            raise AssertionError("write succeeded on a read-only export")
        except nbd.Error as e:
            assert e.errno == "EPERM", e
        h.shutdown()
        assert open(img, "rb").read(512) == b"\0" * 512


@case("-p PORT -t (and -b ADDR -p PORT): TCP on 127.0.0.1")
def _():
    port = next(PORTS)
    with Server("-p", str(port), "-t", "--export", f"size={SIZE}"):
        assert served_size(f"nbd://127.0.0.1:{port}") == SIZE
    port = next(PORTS)
    with Server("-b", "127.0.0.1", "-p", str(port), "--export", f"size={SIZE}"):
        assert served_size(f"nbd://127.0.0.1:{port}") == SIZE


@case("--listen PORT (digits only): the default host 127.0.0.1 on that port")
def _():
    port = next(PORTS)
    with Server("--listen", str(port), "--export", f"size={SIZE}") as s:
        assert f"127.0.0.1:{port}" in s.output(), s.output()
        assert served_size(f"nbd://127.0.0.1:{port}") == SIZE


@case("-x NAME names the FILE export; the empty name is not served")
def _():
    img = make_image("named.img", 4 << 20)
    sock = os.path.join(WORK, "named.sock")
    with Server("-x", "disk", "-U", sock, img):
        assert served_size(unix_uri(sock, "disk")) == 4 << 20
        refused(unix_uri(sock, ""), "export '' answered although only 'disk' exists")


@case("-e 2 (--shared): two clients served at once, a third refused")
def _():
    sock = os.path.join(WORK, "shared.sock")
    with Server("-e", "2", "-U", sock, "--export", "size=1M"):
        a, b = connect(unix_uri(sock)), connect(unix_uri(sock))
        a.pread(512, 0)
        b.pread(512, 0)
        refused(unix_uri(sock), "a third client was served with -e 2")
        a.shutdown()
        b.shutdown()


@case("CLI errors name the problem")
def _():
    for args, expect in [(["-p", "70000"], "-p/--port 70000"),
                         (["--listen", "host:notaport"], "port 'notaport'"),
                         (["-x", "foo", "--export", "name=a"], "-x/--export-name 'foo'"),
                         (["-U", "-", "-U", "-"], "-U -"),
                         (["--run", " "], "--run needs a command"),
                         (["--pid-file", "/nonexistent-dir/x.pid"], "--pid-file /nonexistent-dir/x.pid"),
                         (["--memory-budget", "512"], "--memory-budget 512"),
                         (["--no-such-option"], "Unknown option '--no-such-option'")]:
        rc, out, err = run_cli("serve", *args)
        assert rc != 0 and expect in err, (args, rc, err)


# ------------------------------------------------------------------ Unix sockets

@case("second server on a live socket: refused naming the path, the first keeps serving")
def _():
    sock = os.path.join(WORK, "live.sock")
    with Server("-U", sock, "--export", "size=1M"):
        h = connect(unix_uri(sock))
        h.pwrite(b"1" * 512, 0)
        second = Server("-U", sock, "--export", "size=1M", wait_ready=False)
        rc = second.wait()
        err = second.output()
        assert rc != 0, "second server started on a live socket"
        assert "another process is listening" in err and sock in err, err
        assert second.next_state(timeout=0.1) is None, "the refused server sent a notification"
        assert os.path.exists(sock), "the first server's socket was removed"
        h2 = connect(unix_uri(sock))  # new clients still reach the first server
        assert h2.pread(512, 0) == b"1" * 512
        h2.shutdown()
        h.shutdown()


@case("stale socket (nobody listening) is replaced")
def _():
    sock = os.path.join(WORK, "stale.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(sock)
    dead.close()  # the socket file stays, nobody accepts on it
    with Server("-U", sock, "--export", "size=1M"):
        assert served_size(unix_uri(sock)) == 1 << 20
    assert not os.path.exists(sock), "socket not removed at exit"


# ------------------------------------------------------------------ pid file, notifications

@case("--pid-file written once ready, removed on exit")
def _():
    pid_path = os.path.join(WORK, "server.pid")
    sock = os.path.join(WORK, "pid.sock")
    with Server("-U", sock, "--pid-file", pid_path, "--export", "size=1M") as s:
        assert open(pid_path).read() == f"{s.proc.pid}\n", open(pid_path).read()
    assert not os.path.exists(pid_path), "pid file left behind"


@case("NOTIFY_SOCKET abstract '@name': READY=1, then STOPPING=1 on SIGTERM")
def _():
    name = f"nvme-nbd-service-test-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    sock = os.path.join(WORK, "notify.sock")
    with Server("-U", sock, "--export", "size=1M", env=dict(os.environ, NOTIFY_SOCKET="@" + name), wait_ready=False) as s:
        r, _, _ = select.select([listener], [], [], WAIT)
        assert r, "no notification within the bound"
        ready = listener.recv(4096).decode()
        assert ready.split("\n")[0] == "READY=1" and sock in ready, ready
        # READY=1 means served: a client connects at once.
        h = connect(unix_uri(sock))
        h.shutdown()
        s.proc.send_signal(signal.SIGTERM)
        r, _, _ = select.select([listener], [], [], WAIT)
        assert r and listener.recv(4096) == b"STOPPING=1"


# ------------------------------------------------------------------ socket activation

@case("socket activation through libnbd connect_systemd_socket_activation")
def _():
    h = nbd.NBD()
    h.connect_systemd_socket_activation([BIN, "serve", "--export", f"size={SIZE}", "--log-level", "warning"])
    assert h.get_size() == SIZE
    h.pwrite(b"\x5a" * 65536, 3 << 20)
    assert h.pread(65536, 3 << 20) == b"\x5a" * 65536
    h.shutdown()
    del h  # libnbd ends the server it started


def activated(listener, *args):
    """nvme-nbd with `listener` as descriptor 3 and LISTEN_PID/LISTEN_FDS set (sd_listen_fds(3))."""
    def to_fd3():
        if listener.fileno() != 3:
            os.dup2(listener.fileno(), 3)  # the copy is inheritable
        else:
            os.set_inheritable(3, True)
    # $$ is the shell's pid, which exec hands on to nvme-nbd.
    script = 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=nbd exec "$0" "$@"'
    return subprocess.Popen(["/bin/sh", "-c", script, BIN, "serve", "--log-level", "warning", *args],
                            preexec_fn=to_fd3, close_fds=False,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@case("socket activation with an inherited TCP socket; -p alongside it is refused")
def _():
    port = next(PORTS)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    try:
        p = activated(listener, "-p", str(port), "--export", "size=1M")
        _, err = p.communicate(timeout=WAIT)
        assert p.returncode != 0 and "cannot be combined with -p/--port" in err, (p.returncode, err)
        p = activated(listener, "--export", f"size={SIZE}")
        try:
            # The socket already listens: a client may connect before the server runs.
            write_read_back(f"nbd://127.0.0.1:{port}", b"t")
        finally:
            p.send_signal(signal.SIGTERM)
            _, err = p.communicate(timeout=WAIT)
            assert p.returncode == 0, (p.returncode, err)
            assert "fd 3 (tcp, nbd)" in err, err
    finally:
        listener.close()


@case("socket activation by systemd's own launcher (systemd-socket-activate), TCP")
def _():
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        print("SKIP systemd-socket-activate: not installed (package systemd)")
        return
    port = next(PORTS)
    p = subprocess.Popen([tool, "-l", f"127.0.0.1:{port}", "--fdname=nbd", BIN, "serve", "--log-level", "warning",
                          "--export", f"size={SIZE}"], stderr=subprocess.PIPE, text=True)
    try:
        # "Listening on 127.0.0.1:PORT as 3." once the socket listens; nvme-nbd
        # is exec'd (same pid) when the first client connects.
        r, _, _ = select.select([p.stderr], [], [], WAIT)
        assert r and "Listening on" in p.stderr.readline(), "systemd-socket-activate did not listen"
        write_read_back(f"nbd://127.0.0.1:{port}", b"s")
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=WAIT)
    assert p.returncode == 0, (p.returncode, err)


# ------------------------------------------------------------------ --run

def captive(*args, timeout=WAIT):
    return run_cli("serve", "--log-level", "warning", *args, timeout=timeout)


SHOW = 'echo "uri=$uri"; echo "nbd=$nbd"; echo "unixsocket=$unixsocket"; echo "port=$port"; ' \
       'echo "exportname=$exportname"; echo "size=$(nbdinfo --size "$uri")"; ' \
       '/usr/bin/python3 -c "import os; print(\'env-uri=\' + os.environ[\'uri\']); ' \
       'print(\'fds=\' + \' \'.join(sorted(os.listdir(\'/proc/%d/fd\' % os.getppid()))))"'


def variables(out):
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@case("--run with -U -: $uri/$nbd/$unixsocket/$exportname, exit status passed through, private socket removed")
def _():
    rc, out, err = captive("-U", "-", "--export", f"size={SIZE}", "--run", SHOW + "; exit 7")
    v = variables(out)
    assert rc == 7, (rc, out, err)
    assert v["uri"] == f"nbd+unix:///?socket={v['unixsocket']}" and v["nbd"] == v["uri"], v
    assert v["port"] == "" and v["exportname"] == "" and v["size"] == str(SIZE), v
    assert v["env-uri"] == v["uri"], "uri is not in the command's environment"
    assert v["fds"] == "0 1 2", f"the command inherited the server's descriptors: {v['fds']}"
    assert not os.path.exists(os.path.dirname(v["unixsocket"])), "private socket directory left behind"


@case("--run with -U PATH -x NAME: the URI names the export")
def _():
    sock = os.path.join(WORK, "run.sock")
    img = make_image("run-named.img", 8 << 20)
    rc, out, err = captive("-U", sock, "-x", "disk", img, "--run", SHOW)
    v = variables(out)
    assert rc == 0, (rc, out, err)
    assert v["uri"] == f"nbd+unix:///disk?socket={sock}" and v["unixsocket"] == sock, v
    assert v["exportname"] == "disk" and v["size"] == str(8 << 20), v


@case("--run over TCP (-p PORT): $uri is nbd://127.0.0.1:PORT, $port set")
def _():
    port = next(PORTS)
    rc, out, err = captive("-p", str(port), "--export", f"size={SIZE}", "--run", SHOW)
    v = variables(out)
    assert rc == 0, (rc, out, err)
    assert v["uri"] == f"nbd://127.0.0.1:{port}" and v["port"] == str(port) and v["unixsocket"] == "", v
    assert v["size"] == str(SIZE), v


@case("--run killed by a signal: exit status 128+signal")
def _():
    rc, out, err = captive("-U", "-", "--export", "size=1M", "--run", "kill -TERM $$")
    assert rc == 128 + signal.SIGTERM, (rc, err)


@case("--run writes a file export: drained and flushed before exit, --stats-json written")
def _():
    img = make_image("run-copy.img", 16 << 20)
    src = os.path.join(WORK, "run-src.img")
    with open(src, "wb") as f:
        f.write(os.urandom(16 << 20))
    stats = os.path.join(WORK, "run-stats.json")
    rc, out, err = captive("-U", "-", "--stats-json", stats, img, "--run", f'nbdcopy "{src}" "$uri"')
    assert rc == 0, (rc, err)
    assert open(src, "rb").read() == open(img, "rb").read(), "the file does not hold what the command wrote"
    assert os.path.exists(stats), "no --stats-json: the shutdown path did not run"


@case("SIGTERM to a --run server goes to the command, whose exit status the server returns")
def _():
    cmd = 'trap "exit 3" TERM; echo started; while :; do sleep 0.05; done'
    with Server("-U", "-", "--export", "size=1M", "--run", cmd, stdout=subprocess.PIPE, expect_status=3) as s:
        r, _, _ = select.select([s.proc.stdout], [], [], WAIT)
        assert r and s.proc.stdout.readline() == b"started\n", "the command did not start"
        s.proc.send_signal(signal.SIGTERM)
        assert s.wait() == 3, s.output()


@case("SIGTERM with requests in flight: each one answered, the writes that succeeded flushed to the file, exit 0")
def _():
    img = make_image("drain.img", 64 << 20)
    sock = os.path.join(WORK, "drain.sock")
    s = Server("-U", sock, img)
    try:
        h = connect(unix_uri(sock))
        n, size = 64, 1 << 20
        blocks = [nbd.Buffer.from_bytearray(bytearray([i + 1]) * size) for i in range(n)]
        pending = {h.aio_pwrite(blocks[i], i * size): i for i in range(n)}
        written, refused = [], []
        signalled = False
        deadline = time.monotonic() + WAIT
        while pending and time.monotonic() < deadline:
            if written and not signalled:
                # The server is taking the writes in: the next ones are on their way.
                s.proc.send_signal(signal.SIGTERM)
                signalled, before = True, len(written)
            for cookie in list(pending):
                try:
                    if h.aio_command_completed(cookie):
                        written.append(pending.pop(cookie))
                except nbd.Error:
                    refused.append(pending.pop(cookie))  # ESHUTDOWN, or the connection closed after the drain
            if pending:
                try:
                    h.poll(200)
                except nbd.Error:
                    pass
        assert signalled and not pending, f"{len(pending)} writes never answered"
        # Whether any write was still in flight at SIGTERM depends on how much of
        # the 64 MiB the server had read by then (it was racing the client's
        # sends): the count is reported, not required. Every write answered, each
        # success in the file and exit 0 are the checks.
        assert s.wait() == 0, s.output()
        with open(img, "rb") as f:
            for i in written:
                f.seek(i * size)
                assert f.read(size) == bytes([i + 1]) * size, f"write {i} answered but not in the file"
        print(f"  {before} writes done before SIGTERM, {len(written) - before} after it (drained), "
              f"{len(refused)} refused once the shutdown began")
    finally:
        s.kill()


def main():
    failed = [n for n, ok in results if not ok]
    shutil.rmtree(WORK, ignore_errors=True)
    print(f"service-life: {len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

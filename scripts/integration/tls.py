#!/usr/bin/python3
"""TLS (NBD_OPT_STARTTLS) against the real binary, with libnbd (GnuTLS) as
the client:

    scripts/integration/tls.py [path/to/nvme-nbd]

Makes a CA, a server certificate and a client certificate with certtool (and
a client certificate from another CA), two psktool key files, then checks:

- --tls require: a TLS client reads and writes; a plain client gets
  NBD_REP_ERR_TLS_REQD (libnbd: "server requires TLS"); nbdinfo nbds:// works;
- --tls on: plain and TLS clients are both served;
- --tls off: a client that would like TLS (TLS_ALLOW) falls back to plain text
  after NBD_REP_ERR_POLICY, one that requires it is refused;
- --tls-verify-peer: no client certificate, or one from another CA, is
  refused and logged; a CA-signed one is served; the server carries on;
- --tls-psk: the right key works (also through nbdinfo's URI), a wrong key
  and an unknown username are refused, the server carries on;
- missing certificate files and bad PSK files are named at start-up.

TCP on 127.0.0.1 ports 10950-10969 only; every wait is bounded. Prints
PASS/FAIL per case and "tls: N passed, M failed"; exits 1 on any failure.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import traceback

import nbd  # python3-libnbd (run with /usr/bin/python3)

import nbdwire as wire

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, ".build/release/nvme-nbd"))
WORK = tempfile.mkdtemp(prefix="nvme-nbd-tls.")
PORTS = iter(range(10950, 10970))
WAIT = 20
SIZE = 64 << 20
results = []


def run(*argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=WAIT, **kw)


def certtool(*args, template=None):
    argv = ["certtool", *args]
    if template is not None:
        path = os.path.join(WORK, "template.info")
        with open(path, "w") as f:
            f.write(template)
        argv += ["--template", path]
    run(*argv)


CLIENT = "cn = client\ntls_www_client\n"  # the certificate template of a client


def self_signed_ca(key, cert, name):
    """A CA: a new private key and its self-signed certificate."""
    certtool("--generate-privkey", "--outfile", key)
    certtool("--generate-self-signed", "--load-privkey", key, "--outfile", cert,
             template=f"cn = {name}\nca\ncert_signing_key\nexpiration_days = 2\n")


def signed(ca_key, ca_cert, prefix, template):
    """prefix-key.pem and prefix-cert.pem, a certificate for a new key signed by the CA;
    `template` names the subject and its use (certtool(1) template lines)."""
    key = prefix + "-key.pem"
    certtool("--generate-privkey", "--outfile", key)
    certtool("--generate-certificate", "--load-ca-certificate", ca_cert, "--load-ca-privkey", ca_key,
             "--load-privkey", key, "--outfile", prefix + "-cert.pem",
             template=template + "encryption_key\nsigning_key\nexpiration_days = 2\n")


def make_credentials():
    """pki/ (server: ca-cert.pem, server-cert.pem, server-key.pem), client/
    (ca-cert.pem, client-cert.pem, client-key.pem), anon/ (ca-cert.pem only),
    rogue/ (a client certificate from another CA) and the PSK files."""
    dirs = {name: os.path.join(WORK, name) for name in ("pki", "client", "anon", "rogue")}
    for d in dirs.values():
        os.makedirs(d)
    ca_key, ca_cert = os.path.join(WORK, "ca-key.pem"), os.path.join(dirs["pki"], "ca-cert.pem")
    self_signed_ca(ca_key, ca_cert, "nvme-nbd test CA")
    signed(ca_key, ca_cert, os.path.join(dirs["pki"], "server"),
           "organization = nvme-nbd test\ncn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\n"
           "tls_www_server\n")
    signed(ca_key, ca_cert, os.path.join(dirs["client"], "client"), CLIENT)
    for d in ("client", "anon", "rogue"):
        shutil.copy(ca_cert, os.path.join(dirs[d], "ca-cert.pem"))
    # A client certificate signed by a CA the server does not trust.
    rogue_ca_key, rogue_ca = os.path.join(WORK, "rogue-ca-key.pem"), os.path.join(WORK, "rogue-ca.pem")
    self_signed_ca(rogue_ca_key, rogue_ca, "rogue CA")
    signed(rogue_ca_key, rogue_ca, os.path.join(dirs["rogue"], "client"), CLIENT)
    psk, wrong = os.path.join(WORK, "keys.psk"), os.path.join(WORK, "wrong.psk")
    run("psktool", "-u", "alice", "-p", psk)
    run("psktool", "-u", "alice", "-p", wrong)
    assert open(psk).read() != open(wrong).read()
    return dirs, psk, wrong


class Server(wire.Server):
    """nvme-nbd on one 127.0.0.1 port, logging at info level; ready on READY=1.
    expect_start=False: for a server that must refuse to start (wait() for its status)."""

    def __init__(self, *args, expect_start=True):
        self.port = next(PORTS)
        super().__init__(BIN, "--listen", f"127.0.0.1:{self.port}", "--export", f"size={SIZE}", *args,
                         workdir=WORK, log_level="info", wait_ready=expect_start, timeout=WAIT)


def client(server, tls=nbd.TLS_REQUIRE, certificates=None, psk=None, username=None):
    """A connected libnbd handle (raises nbd.Error when refused)."""
    h = nbd.NBD()
    h.set_tls(tls)
    if certificates:
        h.set_tls_certificates(certificates)
    if psk:
        h.set_tls_psk_file(psk)
        h.set_tls_username(username)
    # The server certificate names localhost (libnbd checks it against the host).
    h.connect_tcp("localhost", str(server.port))
    return h


def read_write(h, offset=1 << 20):
    data = os.urandom(256 << 10)
    h.pwrite(data, offset)
    h.flush()
    assert h.pread(len(data), offset) == data
    assert h.get_size() == SIZE


def raw_option_reply(port, option):
    """Sends one option with no data in plain text; the reply type, or None
    when the server closes the connection instead."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as c:
        wire.read_greeting(c)
        wire.send_client_flags(c, wire.CLIENT_FIXED_NEWSTYLE)
        wire.send_option(c, option)
        try:
            opt, reply, _ = wire.read_option_reply(c)
        except EOFError:
            return None
        assert opt == option, (opt, option)
        return reply


def refused(fn, *needles):
    """fn() must raise nbd.Error whose message holds one of needles."""
    try:
        h = fn()
    except nbd.Error as e:
        assert not needles or any(n.lower() in str(e).lower() for n in needles), f"unexpected error: {e}"
        return str(e)
    h.shutdown()
    raise AssertionError("the connection was not refused")


def case(name):
    def wrap(fn):
        try:
            fn()
            results.append((name, None))
            print(f"PASS {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            results.append((name, e))
            print(f"FAIL {name}: {e}", flush=True)
            traceback.print_exc()
        return fn
    return wrap


def main():
    dirs, psk, wrong_psk = make_credentials()
    pki = ["--tls-certificates", dirs["pki"]]

    @case("require: TLS client reads and writes; plain client refused with TLS_REQD")
    def _():
        with Server("--tls", "require", *pki) as s:
            h = client(s, certificates=dirs["anon"])
            assert h.get_tls_negotiated() == 1
            read_write(h)
            h.shutdown()
            refused(lambda: client(s, tls=nbd.TLS_DISABLE), "requires TLS")
            # The bytes themselves: NBD_OPT_LIST gets NBD_REP_ERR_TLS_REQD, and
            # NBD_OPT_EXPORT_NAME before STARTTLS closes the connection.
            assert raw_option_reply(s.port, wire.OPT_LIST) == wire.REP_ERR_TLS_REQD
            assert raw_option_reply(s.port, wire.OPT_EXPORT_NAME) is None
            # nbdinfo with an nbds:// URI (TLS required by the scheme).
            out = run("nbdinfo", "--size", f"nbds://localhost:{s.port}/?tls-certificates={dirs['anon']}").stdout
            assert out.strip() == str(SIZE), out
            # The server carried on: another TLS client.
            h = client(s, certificates=dirs["anon"])
            read_write(h, 4 << 20)
            h.shutdown()

    @case("on: plain and TLS clients are both served, and see the same data")
    def _():
        with Server("--tls", "on", *pki) as s:
            plain = client(s, tls=nbd.TLS_DISABLE)
            assert plain.get_tls_negotiated() == 0
            read_write(plain)
            secure = client(s, certificates=dirs["anon"])
            assert secure.get_tls_negotiated() == 1
            data = os.urandom(4096)
            plain.pwrite(data, 0)
            plain.flush()
            assert secure.pread(4096, 0) == data
            plain.shutdown()
            secure.shutdown()

    @case("off: STARTTLS refused with ERR_POLICY, TLS_ALLOW falls back, TLS_REQUIRE refused")
    def _():
        with Server() as s:
            h = client(s, tls=nbd.TLS_ALLOW, certificates=dirs["anon"])
            assert h.get_tls_negotiated() == 0
            read_write(h)
            h.shutdown()
            refused(lambda: client(s, certificates=dirs["anon"]), "TLS", "policy")

    @case("verify-peer: no certificate and another CA's refused and logged; a CA-signed one served")
    def _():
        with Server("--tls", "require", "--tls-verify-peer", *pki) as s:
            refused(lambda: client(s, certificates=dirs["anon"]))
            refused(lambda: client(s, certificates=dirs["rogue"]))
            h = client(s, certificates=dirs["client"])
            read_write(h)
            h.shutdown()
            assert s.stop() == 0, s.output()
            log = s.output()
            assert log.count("TLS handshake failed") + log.count("during the TLS handshake") >= 2, log
            assert "peer=127.0.0.1" in log or "127.0.0.1" in log, log

    @case("psk: the right key works (libnbd and nbdinfo URI), a wrong key and an unknown user are refused")
    def _():
        with Server("--tls", "require", "--tls-psk", psk) as s:
            h = client(s, psk=psk, username="alice")
            assert h.get_tls_negotiated() == 1
            read_write(h)
            h.shutdown()
            refused(lambda: client(s, psk=wrong_psk, username="alice"))
            refused(lambda: client(s, psk=psk, username="mallory"))
            out = run("nbdinfo", "--size", f"nbds://alice@127.0.0.1:{s.port}/?tls-psk-file={psk}").stdout
            assert out.strip() == str(SIZE), out
            h = client(s, psk=psk, username="alice")
            read_write(h, 8 << 20)
            h.shutdown()
            assert s.stop() == 0, s.output()
            assert "TLS handshake failed" in s.output(), s.output()

    @case("start-up errors name the missing file or the bad PSK line")
    def _():
        empty = os.path.join(WORK, "empty-pki")
        os.makedirs(empty)
        s = Server("--tls", "require", "--tls-certificates", empty, expect_start=False)
        assert s.wait() != 0
        assert "server-cert.pem" in s.output(), s.output()
        s = Server("--tls", "on", "--tls-verify-peer", "--tls-certificates", dirs["client"], expect_start=False)
        assert s.wait() != 0
        assert "server-cert.pem" in s.output(), s.output()
        bad = os.path.join(WORK, "bad.psk")
        with open(bad, "w") as f:
            f.write("alice:00ff\nbob:xyz1\n")
        s = Server("--tls", "require", "--tls-psk", bad, expect_start=False)
        assert s.wait() != 0
        assert "line 2" in s.output(), s.output()
        s = Server("--tls-psk", psk, expect_start=False)
        assert s.wait() != 0
        assert "--tls on or --tls require" in s.output(), s.output()

    passed = sum(1 for _, e in results if e is None)
    failed = len(results) - passed
    print(f"tls: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(rc)

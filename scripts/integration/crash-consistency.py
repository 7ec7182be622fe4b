#!/usr/bin/python3
"""Crash consistency of the file backend: kill -9 of the server during a write
load, then check that every write acknowledged before a completed FLUSH (or
acknowledged with FUA) is intact after a restart. Every round runs once per
storage configuration: page cache or O_DIRECT (cache=), io_uring or worker
threads (aio=).

    scripts/integration/crash-consistency.py [path/to/nvme-nbd] [rounds]

Each 4 KiB block written carries (block, sequence number, CRC32) in its first
bytes and a payload derived from the sequence number, so the verifier can tell
which write a block holds and whether it is torn. Exit status 1 on any lost or
torn write.
"""
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import nbd

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, ".build/release/nvme-nbd")
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
BLOCKS = 4096            # 16 MiB of 4 KiB blocks, rewritten many times
BLOCK = 4096
QD = 32
STORAGE = ["cache=writeback,aio=io_uring", "cache=none,aio=io_uring",
           "cache=writeback,aio=threads", "cache=none,aio=threads"]


def content(block, seq):
    rnd = random.Random(seq * 1_000_003 + block)
    payload = rnd.randbytes(BLOCK - 24)
    header = struct.pack(">QQ", block, seq)
    return header + struct.pack(">Q", zlib.crc32(header + payload)) + payload


def parse(data):
    block, seq, crc = struct.unpack(">QQQ", data[:24])
    if block == 0 and seq == 0 and crc == 0 and data == bytes(BLOCK):
        return None  # never written
    if zlib.crc32(data[:16] + data[24:]) != crc:
        return "torn"
    return block, seq


def start(image, sock, log, storage):
    p = subprocess.Popen([BIN, "serve", "--unix", sock, "--export", f"file={image},size=64M,lba=4096,{storage}",
                          "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            h = nbd.NBD()
            h.connect_unix(sock)
            return p, h
        except nbd.Error:
            if p.poll() is not None:
                raise RuntimeError("server exited at start")
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def one_round(workdir, round_no, rng, storage):
    tag = storage.replace("=", "-").replace(",", "-")
    image = os.path.join(workdir, f"crash-{tag}.img")
    sock = os.path.join(workdir, f"crash{round_no}-{tag}.sock")
    log = open(os.path.join(workdir, "server.log"), "a")
    server, h = start(image, sock, log, storage)
    issued = {}          # seq -> block
    acked_order = []     # seqs in ack order
    durable = set()      # seqs that must survive
    inflight = {}        # cookie -> ("w", seq, fua, block) | ("f", acked count at issue)
    # Blocks with a write in flight get no second one until it is answered: NBD
    # does not order requests in flight, so of two overlapping writes either may
    # land last (as with any block device; a filesystem waits too).
    busy = set()
    seq = round_no * 10_000_000
    kill_at = time.time() + rng.uniform(1.5, 3.0)
    killed = False
    while not killed:
        while len(inflight) < QD:
            if rng.random() < 0.02:
                cookie = h.aio_flush()
                inflight[cookie] = ("f", len(acked_order))
                continue
            seq += 1
            block = rng.randrange(BLOCKS)
            while block in busy:
                block = rng.randrange(BLOCKS)
            busy.add(block)
            fua = rng.random() < 0.1
            buf = nbd.Buffer.from_bytearray(bytearray(content(block, seq)))
            cookie = h.aio_pwrite(buf, block * BLOCK, flags=nbd.CMD_FLAG_FUA if fua else 0)
            inflight[cookie] = ("w", seq, fua, block)
            issued[seq] = block
        h.poll(-1)
        for cookie in [c for c in inflight if h.aio_command_completed(c)]:
            kind = inflight.pop(cookie)
            if kind[0] == "w":
                busy.discard(kind[3])
                acked_order.append(kind[1])
                if kind[2]:
                    durable.add(kind[1])
            else:
                durable.update(acked_order[:kind[1]])
        if time.time() >= kill_at:
            server.send_signal(signal.SIGKILL)  # mid-load: writes and flushes in flight
            server.wait()
            killed = True
    try:
        h.close()
    except Exception:  # noqa: BLE001 - the server is gone
        pass
    server, h = start(image, sock, log, storage)
    required = {}
    for s in durable:
        b = issued[s]
        required[b] = max(required.get(b, 0), s)
    problems = []
    latest_issued = {}
    for s, b in issued.items():
        latest_issued.setdefault(b, []).append(s)
    for b in range(BLOCKS):
        got = parse(h.pread(BLOCK, b * BLOCK))
        need = required.get(b, 0)
        if got == "torn":
            problems.append(f"block {b}: torn")
        elif got is None:
            if need:
                problems.append(f"block {b}: lost write {need} (reads as never written)")
        else:
            gb, gs = got
            if gb != b:
                problems.append(f"block {b}: holds block {gb}'s data")
            elif gs < need:
                problems.append(f"block {b}: holds write {gs}, older than durable write {need}")
            elif gs in issued and issued[gs] != b:
                problems.append(f"block {b}: holds a write issued to block {issued[gs]}")
            elif gs not in issued and gs > round_no * 10_000_000:
                problems.append(f"block {b}: holds write {gs} that was never issued")
    h.shutdown()
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=20)
    print(f"  round {round_no} ({storage}): {len(issued)} writes issued, {len(acked_order)} acknowledged, "
          f"{len(durable)} durable (FLUSH/FUA), {len(required)} blocks checked against a durable write")
    return problems


def main():
    if not os.access(BIN, os.X_OK):
        sys.exit(f"crash-consistency: no server binary at {BIN}")
    rng = random.Random(20261125)
    failed = False
    with tempfile.TemporaryDirectory(prefix="nvme-nbd-crash.") as workdir:
        for r in range(1, ROUNDS + 1):
            for storage in STORAGE:
                problems = one_round(workdir, r, rng, storage)
                if problems:
                    failed = True
                    print(f"FAIL crash-consistency round {r} ({storage}): {len(problems)} problems, e.g. {problems[:5]}")
                else:
                    print(f"PASS crash-consistency round {r} ({storage})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

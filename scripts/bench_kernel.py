"""scripts/bench --kernel — the seed's fio job through the Linux NBD client, in the VM of the
kernel-client suite.

Boots the guest of scripts/vm/ (a Debian 6.1 kernel under QEMU TCG, never KVM; the host root
shared read-only over 9p) and runs scripts/vm/guest-kernel-bench.sh in it: nvme-nbd with shadow
doorbells on and off and nbdkit memory, side by side on Unix sockets inside the guest, each
export pre-filled once with random data; then per round, per connection count (nbd-client
-unix SOCK /dev/nbd0 -C N) and per server in turn (start server rotating)

  fio --ioengine=libaio --direct=1 --rw=randread --bs=4k --iodepth=32 --numjobs=1 --randrepeat=0
      --time_based --runtime=R --ramp_time=1 --norandommap   on /dev/nbd0

with nvme-nbd's counters written (SIGUSR1) after the attach and after fio. This module reads the
run directory on the host and writes bench-results/kernel-latest.{md,json}. Helpers shared with
the userspace bench (build, counters, formatting) come from the scripts/bench module passed in.
"""
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import time
from pathlib import Path

SERVERS = ["nvme-on", "nvme-off", "nbdkit"]
FIO_JOB = ("fio --ioengine=libaio --direct=1 --rw=randread --bs=4k --iodepth=32 --numjobs=1 --randrepeat=0 "
           "--time_based --norandommap --filename=/dev/nbd0")
NOTES = (
    "Everything runs inside one QEMU guest (TCG software emulation, no KVM): the servers, nbd-client, the "
    "kernel's nbd driver and fio, all over Unix sockets in the guest's /run; the host only boots it and reads "
    "the results. Absolute numbers are those of an emulated CPU on a shared 2-core host and mean little; the "
    "ratios between servers within one run are the result. The three servers stay up for the whole run, each "
    "export filled once with random data (fio, sequential 1 MiB writes with refilled buffers), so no server "
    "answers holes; every fio run attaches /dev/nbd0 afresh (`nbd-client -unix SOCK /dev/nbd0 -C N`) and "
    "detaches it afterwards. With `-C 2` the kernel opens two connections and two hardware queues; one fio "
    "job submits from whichever vCPU it runs on, so its requests use that CPU's queue. --norandommap is "
    "added to the seed's job (fio's bookkeeping, the same as the userspace bench). nvme-nbd: --queues 2 "
    "(two event loops, one NVMe queue pair each) and default polling; nbdkit: -t 16 memory allocator=malloc. "
    "MMIO/IO and IRQ/IO come from nvme-nbd's counters written with SIGUSR1 after the attach and after fio "
    "(ramp included), summed over the rounds.")


def plan(args):
    """Kernel-mode defaults: 3 rounds of 10 s (+1 s ramp) on 128 MiB exports; --quick: 1 round of 3 s on 64 MiB."""
    q = args.quick
    args.reps = args.reps or (1 if q else 3)
    args.runtime = args.runtime or (3.0 if q else 10.0)
    args.ramp = args.ramp if args.ramp is not None else 1.0
    args.size = args.size or ((64 << 20) if q else (128 << 20))
    names = [s for s in (args.servers or "").split(",") if s] or list(SERVERS)
    unknown = [s for s in names if s not in SERVERS]
    if unknown:
        raise SystemExit(f"bench: --kernel serves {', '.join(SERVERS)}, not {', '.join(unknown)}")
    conns = [int(c) for c in args.conns.split(",") if c]
    return names, conns


def guest_timeout(args, servers, conns):
    """A bound for the whole guest run: boot, start and fill every server, every fio run with its attach,
    detach and counter snapshots, each with generous slack for TCG on a loaded host."""
    runs = args.reps * len(conns) * len(servers)
    fill = len(servers) * (60 + (args.size >> 20) * 0.5)
    return int(240 + fill + runs * (args.runtime + args.ramp + 45))


def run_guest(bench, args, rundir, binary, servers, conns):
    """scripts/vm/run-guest.sh with guest-kernel-bench.sh; returns (status, seconds)."""
    vm = bench.REPO / "scripts" / "vm"
    env = dict(os.environ)
    env.update({
        "VMB_BIN": str(binary), "VMB_SERVERS": " ".join(servers), "VMB_CONNS": " ".join(map(str, conns)),
        "VMB_ROUNDS": str(args.reps), "VMB_RUNTIME": f"{args.runtime:g}", "VMB_RAMP": f"{args.ramp:g}",
        "VMB_SIZE": bench.size_arg(args.size), "VMB_QUEUES": str(args.nvme_queues),
        "VMB_NBDKIT_THREADS": str(args.nbdkit_threads), "VMB_LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH", ""),
        "VM_PASS_ENV": "VMB_BIN VMB_SERVERS VMB_CONNS VMB_ROUNDS VMB_RUNTIME VMB_RAMP VMB_SIZE VMB_QUEUES "
                       "VMB_NBDKIT_THREADS VMB_LD_LIBRARY_PATH",
        "VM_RUN_DIR": str(rundir), "VM_SMP": str(args.vm_smp), "VM_QUIET": "1",
    })
    timeout = guest_timeout(args, servers, conns)
    bench.log(f"== booting the guest (QEMU TCG, {args.vm_smp} vCPUs; bound {timeout} s): "
              f"{len(servers)} servers × {len(conns)} connection counts × {args.reps} rounds of "
              f"{args.runtime:g} s (+{args.ramp:g} s ramp) on {bench.size_arg(args.size)} exports")
    t0 = time.monotonic()
    with open(rundir / "host.log", "w") as f:
        proc = subprocess.Popen([str(vm / "run-guest.sh"), str(vm / "guest-kernel-bench.sh"), str(timeout)],
                                env=env, stdout=f, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout + 120)  # run-guest.sh kills QEMU itself at its timeout
        except BaseException:
            # SIGTERM lets run-guest.sh kill QEMU (its own process group) before it exits
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    return rc, time.monotonic() - t0


def read_json(path):
    try:
        text = path.read_text()
        return json.loads(text[text.index("{"):])
    except (OSError, ValueError):
        return None


def fio_record(path):
    d = read_json(path)
    if not d or not d.get("jobs") or d["jobs"][0].get("error"):
        return None
    s = d["jobs"][0]["read"]
    if not s["total_ios"]:
        return None
    pct = s["lat_ns"]["percentile"]
    return {"iops": s["iops"], "mib_s": s["bw"] / 1024.0, "p50_us": pct["50.000000"] / 1000.0,
            "p99_us": pct["99.000000"] / 1000.0}


def collect(bench, rundir, servers, conns, rounds):
    """The raw record of every run the guest reported, and incidents for those it did not."""
    raw, incidents = [], []
    status = {}
    for line in (rundir / "runs.txt").read_text().splitlines() if (rundir / "runs.txt").exists() else []:
        f = line.split()
        if len(f) >= 5:
            status[(int(f[0]), int(f[1]), f[2])] = {"status": f[3], "seconds": float(f[4]),
                                                   "attach_s": float(f[5]) if len(f) > 5 else None,
                                                   "fio_s": float(f[6]) if len(f) > 6 else None,
                                                   "guest_busy_pct": float(f[7]) if len(f) > 7 else None}
    for r in range(1, rounds + 1):
        for c in conns:
            for k in servers:
                tag = f"r{r}-c{c}-{k}"
                st = status.get((r, c, k))
                rec = {"round": r, "conns": c, "server": k, **(st or {})}
                fio = fio_record(rundir / f"{tag}.fio.json") if st and st["status"] == "ok" else None
                if fio is None:
                    incidents.append(f"{tag}: " + (st["status"] if st else "not run (guest stopped early?)"))
                else:
                    rec.update(fio)
                    if k.startswith("nvme"):
                        before = read_json(rundir / f"{tag}.before.json")
                        after = read_json(rundir / f"{tag}.after.json")
                        rec["counters"] = bench.counter_delta(before and before["exports"][0],
                                                              after and after["exports"][0])
                        if rec["counters"] is None:
                            incidents.append(f"{tag}: no counters")
                raw.append(rec)
    return raw, incidents


def aggregate(bench, raw, servers, conns):
    results = []
    for c in conns:
        for k in servers:
            ok = [r for r in raw if r["conns"] == c and r["server"] == k and "iops" in r]
            entry = {"conns": c, "server": k,
                     "repetitions": [{x: r[x] for x in ("round", "iops", "mib_s", "p50_us", "p99_us")} for r in ok],
                     "failed_repetitions": sum(r["conns"] == c and r["server"] == k for r in raw) - len(ok),
                     "median": {x: bench.med([r[x] for r in ok]) for x in ("iops", "mib_s", "p50_us", "p99_us")}}
            entry["guest_cpu_busy_pct"] = bench.med([r.get("guest_busy_pct") for r in ok])
            iops = [r["iops"] for r in ok]
            entry["iops_spread"] = (max(iops) - min(iops)) / statistics.median(iops) if len(iops) > 1 else None
            if k.startswith("nvme"):
                entry.update(bench.nvme_counter_summary(ok))
            results.append(entry)
    by = {(r["conns"], r["server"]): r["median"]["iops"] for r in results}
    for r in results:
        base, mine = by.get((r["conns"], "nbdkit")), r["median"]["iops"]
        r["ratio_to_nbdkit"] = mine / base if base and mine else None
    shadow = {}
    for c in conns:
        on, off = by.get((c, "nvme-on")), by.get((c, "nvme-off"))
        if on and off:
            shadow[str(c)] = on / off
    return results, shadow


def guest_info(rundir):
    info = {}
    path = rundir / "guest-info.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        k, _, v = line.partition("=")
        info[k] = v
    return info


def render(bench, doc):
    m, c, g = doc["machine"], doc["config"], doc["guest"]
    fmt = bench.fmt
    L = [f"# nvme-nbd through the kernel NBD client — {doc['started']}", ""]
    L.append(f"**Host:** {m['cpu_model']}, {m['cpus_usable']} usable CPUs, {m['memory']} RAM, kernel {m['kernel']}, "
             f"{m['os']}; load average at start {' '.join(m['loadavg_start'])}, at end "
             f"{' '.join(m.get('loadavg_end', []))} (the machine is shared: other builds ran meanwhile). "
             f"{m['swift']}; nvme-nbd at {m['git_commit']}.")
    L.append(f"**Guest:** QEMU {c['qemu']} TCG (software emulation, no KVM), VM_SMP={c['vm_smp']} vCPUs, "
             f"{c['vm_mem_mib']} MiB; kernel {g.get('uname', '?')} ({g.get('nproc', '?')} CPUs seen), booted in "
             f"{g.get('boot_s', '?')} s; {g.get('fio', '?')}, {g.get('nbd_client', '?')}, {g.get('nbdkit', '?')}, "
             f"{g.get('nvme_nbd', '?')}.")
    L.append(f"**Method:** `{FIO_JOB}`, {c['runtime_s']:g} s (+{c['ramp_s']:g} s ramp) per run, on "
             f"{bench.size_arg(c['size_bytes'])} memory exports pre-filled with random data; {c['rounds']} round(s), "
             "in each the connection counts in turn and the servers in turn (start server rotating), medians "
             f"reported. Run took {doc['duration_s'] / 60:.1f} min (guest {doc['guest_s'] / 60:.1f} min)"
             f"{' (--quick)' if c['quick'] else ''}.")
    L += ["", "Columns: ×nbdkit = IOPS ÷ nbdkit's with the same connection count in this run; spread = "
          "(max−min)/median of IOPS over the rounds; MMIO/IO and IRQ/IO = nvme-nbd's MMIO doorbell writes "
          "(SQ tail + CQ head traps) and interrupts per NVMe I/O command over the fio runs; guest CPU = share of "
          "all vCPUs busy while fio ran (its start-up included), median.", "",
          "| workload | nbd-client | server | IOPS | MiB/s | p50 µs | p99 µs | ×nbdkit | spread | MMIO/IO | IRQ/IO "
          "| guest CPU |",
          "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["results"]:
        md = r["median"]
        L.append("| " + " | ".join([
            "4K rand read QD32", f"-C {r['conns']}", bench.LABEL[r["server"]], fmt(md["iops"]), fmt(md["mib_s"], 1),
            fmt(md["p50_us"]), fmt(md["p99_us"]), fmt(r["ratio_to_nbdkit"], 2),
            "–" if r["iops_spread"] is None else f"{100 * r['iops_spread']:.0f}%",
            fmt(r.get("mmio_doorbell_writes_per_io"), 3), fmt(r.get("interrupts_per_io"), 3),
            "–" if r["guest_cpu_busy_pct"] is None else f"{r['guest_cpu_busy_pct']:.0f}%"]) + " |")
    L += ["", "Shadow doorbells, IOPS on ÷ off: " + ", ".join(
        f"-C {k} {fmt(v, 2)}" for k, v in doc["shadow_on_off_iops_ratio"].items()) + "."]
    L += ["", "## Servers (inside the guest)", ""]
    for k, cmd in c["server_commands"].items():
        L.append(f"- **{bench.LABEL[k]}**: `{cmd}`")
    L += ["", "Notes: " + c["notes"]]
    if doc["incidents"]:
        L += ["", "## Incidents", ""] + [f"- {i}" for i in doc["incidents"]]
    return "\n".join(L) + "\n"


def server_commands(bench, args, servers):
    size = bench.size_arg(args.size)
    cmd = {"nvme-on": f"nvme-nbd serve --unix SOCKET --export size={size} --shadow-doorbells on --queues "
                      f"{args.nvme_queues} --stats-json STATS.json --pid-file PID --log-level warning",
           "nvme-off": f"nvme-nbd serve --unix SOCKET --export size={size} --shadow-doorbells off --queues "
                       f"{args.nvme_queues} --stats-json STATS.json --pid-file PID --log-level warning",
           "nbdkit": f"nbdkit -f --exit-with-parent -U SOCKET -P PID -t {args.nbdkit_threads} memory size={size} "
                     "allocator=malloc"}
    return {k: cmd[k] for k in servers}


def prepare_rundir(bench):
    tmp = bench.REPO / "bench-results" / "tmp"
    started = datetime.datetime.now().astimezone()
    rundir = tmp / f"kernel-run-{started:%Y%m%d-%H%M%S}"
    rundir.mkdir(parents=True)
    for old in sorted(tmp.glob("kernel-run-*"))[:-3]:  # keep the last three runs' raw output
        shutil.rmtree(old, ignore_errors=True)
    return started, rundir


def main(bench, args, out):
    """scripts/bench --kernel: returns the exit status (0: every run measured)."""
    servers, conns = plan(args)
    t_start = time.monotonic()
    started, rundir = prepare_rundir(bench)
    vm = bench.REPO / "scripts" / "vm"
    if subprocess.run([str(vm / "build-guest.sh")], stdout=subprocess.DEVNULL).returncode != 0:
        raise SystemExit("bench: scripts/vm/build-guest.sh failed (QEMU, kernel package or initramfs)")
    binary = bench.build(args) if any(k.startswith("nvme") for k in servers) else None
    machine = bench.machine_info(args)
    def on_signal(signum, _frame):
        raise bench.Aborted(f"signal {signal.Signals(signum).name}")
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        status, guest_s = run_guest(bench, args, rundir, binary, servers, conns)
    except (bench.Aborted, subprocess.TimeoutExpired) as e:
        bench.log(f"\nbench: interrupted ({e}); the guest was stopped, its files are in {bench.display_path(rundir)}")
        return 130
    raw, incidents = collect(bench, rundir, servers, conns, args.reps)
    if status != 0:
        incidents.insert(0, f"guest run ended with status {status} (124 = timeout, 125 = no exit status); "
                            f"see {bench.display_path(rundir)}/console.log")
    for k in servers:
        ex = rundir / f"{k}.exit"
        if ex.exists() and ex.read_text().strip() != "0":
            incidents.append(f"{k} exit status after SIGTERM: {ex.read_text().strip()}")
    results, shadow = aggregate(bench, raw, servers, conns)
    machine["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    qemu = bench.run_capture(["qemu-system-x86_64", "--version"]).splitlines()[0].replace("QEMU emulator version ", "")
    doc = {
        "version": 1, "started": started.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - t_start, 1), "guest_s": round(guest_s, 1),
        "machine": machine, "guest": guest_info(rundir),
        "config": {"quick": args.quick, "servers": servers, "conns": conns, "rounds": args.reps,
                   "runtime_s": args.runtime, "ramp_s": args.ramp, "size_bytes": args.size,
                   "vm_smp": args.vm_smp, "vm_mem_mib": int(os.environ.get("VM_MEM", "2048")), "qemu": qemu,
                   "fio": FIO_JOB, "server_commands": server_commands(bench, args, servers),
                   "prefill": (rundir / "prefill.txt").read_text().splitlines()
                   if (rundir / "prefill.txt").exists() else [],
                   "notes": NOTES, "raw": bench.display_path(rundir)},
        "results": results, "shadow_on_off_iops_ratio": shadow, "runs": raw, "incidents": incidents,
    }
    (out / "kernel-latest.json").write_text(json.dumps(doc, indent=1) + "\n")
    md = render(bench, doc)
    (out / "kernel-latest.md").write_text(md)
    bench.log("")
    bench.log(md)
    bench.log(f"== wrote {out / 'kernel-latest.md'}, {out / 'kernel-latest.json'} in {doc['duration_s'] / 60:.1f} min")
    return 0 if status == 0 and all(r["median"]["iops"] is not None for r in results) else 1

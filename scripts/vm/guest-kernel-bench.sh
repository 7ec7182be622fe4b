#!/bin/sh
# guest-kernel-bench.sh — runs INSIDE the test guest (POSIX sh, chroot of the
# host root; see run-guest.sh). Started by `scripts/bench --kernel`, not by hand.
#
# The seed's experiment through the Linux NBD client: the servers of
# $VMB_SERVERS run side by side on Unix sockets in /run, each export is filled
# once with random data (fio sequential 1 MiB writes over /dev/nbd0), then for
# every round and every connection count of $VMB_CONNS each server in turn
# (the start server rotating) gets
#   nbd-client -unix SOCK /dev/nbd0 -C N
#   fio --ioengine=libaio --direct=1 --rw=randread --bs=4k --iodepth=32
#       --numjobs=1 --randrepeat=0   (time-based, whole device)
#   nbd-client -d /dev/nbd0
# For nvme-nbd the --stats-json counters are written with SIGUSR1 after the
# attach and after fio, so the host can diff them (MMIO doorbell writes and
# interrupts per NVMe I/O of that run alone). Every wait is bounded.
#
# Output, in the share ($VM_SHARE):
#   guest-info.txt                     kernel, CPUs, tool versions
#   runs.txt                           per run: "round conns server status seconds
#                                      attach_seconds fio_seconds guest_cpu_busy_%" (status
#                                      ok or why not; busy = all vCPUs, during fio)
#   prefill.txt                        "server seconds status" per export
#   rR-cN-SERVER.fio.json              fio's JSON of the run
#   rR-cN-SERVER.before.json/.after.json  nvme-nbd counters around the run
#   SERVER.server.log, SERVER.final.json  server output, counters at exit
#   SERVER.exit                        the server's exit status after SIGTERM
# and one "RESULT kbench.rR.cN.SERVER PASS|FAIL <detail>" line per run.
#
# Inputs (environment, from env.sh):
#   VMB_BIN       nvme-nbd binary (host path, visible through 9p)
#   VMB_SERVERS   subset of "nvme-on nvme-off nbdkit" (default all three)
#   VMB_CONNS     connection counts (default "1 2")
#   VMB_ROUNDS    rounds (default 3)
#   VMB_RUNTIME   seconds measured per fio run (default 10)
#   VMB_RAMP      fio ramp_time seconds (default 1)
#   VMB_SIZE      export size, K/M/G suffix (default 128M)
#   VMB_QUEUES    nvme-nbd --queues (default 2)
#   VMB_NBDKIT_THREADS  nbdkit -t (default 16)
#   VMB_LD_LIBRARY_PATH prepended to LD_LIBRARY_PATH for the server, if set
set -u

S="${VM_SHARE:?VM_SHARE not set}"
: "${VMB_BIN:=}" "${VMB_SERVERS:=nvme-on nvme-off nbdkit}" "${VMB_CONNS:=1 2}" "${VMB_ROUNDS:=3}"
: "${VMB_RUNTIME:=10}" "${VMB_RAMP:=1}" "${VMB_SIZE:=128M}" "${VMB_QUEUES:=2}" "${VMB_NBDKIT_THREADS:=16}"
BIN="$VMB_BIN" SERVERS="$VMB_SERVERS" CONNS="$VMB_CONNS" ROUNDS="$VMB_ROUNDS" RUNTIME="$VMB_RUNTIME"
RAMP="$VMB_RAMP" SIZE="$VMB_SIZE" QUEUES="$VMB_QUEUES" NBDKIT_THREADS="$VMB_NBDKIT_THREADS"
DEV=/dev/nbd0 NBDSYS=/sys/block/nbd0

# Bounds (seconds); the host's timeout bounds the whole run.
T_READY=60 T_CONNECT=30 T_DISC=30 T_STATS=15 T_STOP=20 T_PREFILL=300
T_FIO=$((RUNTIME + RAMP + 60))

if [ -n "${VMB_LD_LIBRARY_PATH:-}" ]; then
    LD_LIBRARY_PATH="$VMB_LD_LIBRARY_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
fi

now() { date +%s.%N; }
since() { echo "$1 $(now)" | awk '{ printf "%.1f", $2 - $1 }'; } # seconds since a now() stamp
last_lines() { tail -n "${2:-3}" "$1" 2>/dev/null | tr -s '\n\t ' '   ' | cut -c1-300; }
# running and not a zombie (field 3 of /proc/PID/stat; our commands have no space in their names)
alive() { awk '{ exit ($3 == "Z") }' "/proc/$1/stat" 2>/dev/null; }
nbd_connected() { [ -e "$NBDSYS/pid" ]; }
cpu_ticks() { sed -n 's/^cpu  *//p' /proc/stat; } # user nice system idle iowait irq softirq steal ...
busy_pct() { # busy_pct "TICKS_BEFORE" "TICKS_AFTER": share of all guest CPUs not idle (idle + iowait) in between
    echo "$1 $2" | awk '{ n = NF / 2; for (i = 1; i <= n; i++) { d = $(i + n) - $i; t += d; if (i == 4 || i == 5) idle += d } }
        END { printf "%.0f", t ? 100 * (t - idle) / t : 0 }'
}
is_nvme() { case "$1" in nvme-*) return 0 ;; esac; return 1; }
sock_of() { echo "/run/kbench-$1.sock"; }
pid_of() { cat "/run/kbench-$1.pid" 2>/dev/null; }
stats_of() { echo "/run/kbench-$1.stats.json"; }

# ----------------------------------------------------------------- servers
start_server() { # start_server KIND: spawns it; readiness is its pid file
    _k="$1" _sock="$(sock_of "$1")"
    rm -f "$_sock" "/run/kbench-$_k.pid"
    case "$_k" in
        nvme-on|nvme-off)
            set -- "$BIN" serve --unix "$_sock" --export "size=$SIZE" \
                --shadow-doorbells "${_k#nvme-}" --queues "$QUEUES" \
                --stats-json "$(stats_of "$_k")" --pid-file "/run/kbench-$_k.pid" --log-level warning ;;
        nbdkit)
            set -- nbdkit -f --exit-with-parent -U "$_sock" -P "/run/kbench-$_k.pid" \
                -t "$NBDKIT_THREADS" memory "size=$SIZE" allocator=malloc ;;
        *) echo "unknown server $_k"; return 1 ;;
    esac
    echo "+ $*" > "$S/$_k.server.log"
    "$@" >> "$S/$_k.server.log" 2>&1 &
    eval "SPAWNED_$(echo "$_k" | tr - _)=$!"
}
spawned() { eval echo "\${SPAWNED_$(echo "$1" | tr - _):-}"; } # pid of start_server KIND


wait_ready() { # wait_ready KIND
    _k="$1" _end=$(( $(date +%s) + T_READY ))
    _spawned="$(spawned "$_k")"
    while :; do
        alive "$_spawned" || { echo "exited before it was ready: $(last_lines "$S/$_k.server.log")"; return 1; }
        [ -s "/run/kbench-$_k.pid" ] && [ -S "$(sock_of "$_k")" ] && return 0
        [ "$(date +%s)" -ge "$_end" ] && { echo "not ready after ${T_READY}s"; return 1; }
        sleep 0.1
    done
}

snapshot() { # snapshot KIND DEST: SIGUSR1, wait for the fresh (atomically written) stats file, copy it
    is_nvme "$1" || return 0
    _st="$(stats_of "$1")"
    rm -f "$_st"
    kill -USR1 "$(pid_of "$1")" 2>/dev/null || return 1
    _end=$(( $(date +%s) + T_STATS ))
    while [ ! -s "$_st" ]; do
        [ "$(date +%s)" -ge "$_end" ] && return 1
        sleep 0.05
    done
    cp "$_st" "$2"
}

stop_servers() { # SIGTERM to every server, one bounded wait for all; SERVER.exit: exit status or "killed"
    for _k in $SERVERS; do [ -n "$(spawned "$_k")" ] && kill -TERM "$(spawned "$_k")" 2>/dev/null; done
    _end=$(( $(date +%s) + T_STOP ))
    for _k in $SERVERS; do
        _p="$(spawned "$_k")"
        [ -n "$_p" ] || continue
        until ! alive "$_p" || [ "$(date +%s)" -ge "$_end" ]; do sleep 0.1; done
        if alive "$_p"; then kill -KILL "$_p" 2>/dev/null; wait "$_p" 2>/dev/null; _st=killed
        else wait "$_p"; _st=$?; fi
        echo "$_st" > "$S/$_k.exit"
        is_nvme "$_k" && cp "$(stats_of "$_k")" "$S/$_k.final.json" 2>/dev/null
    done
}

# ----------------------------------------------------------------- client
attach() { # attach KIND CONNS: nbd-client, then wait until the device has the export's size
    if nbd_connected; then echo "$DEV already connected"; return 1; fi
    timeout -k 5 "$T_CONNECT" nbd-client -unix "$(sock_of "$1")" "$DEV" -C "$2" > /tmp/attach.log 2>&1 ||
        { echo "nbd-client rc=$?: $(last_lines /tmp/attach.log)"; return 1; }
    _end=$(( $(date +%s) + T_CONNECT ))
    until nbd_connected && [ "$(blockdev --getsize64 "$DEV" 2>/dev/null)" = "$SIZE_BYTES" ]; do
        [ "$(date +%s)" -ge "$_end" ] && { echo "$DEV not ready (size $(blockdev --getsize64 "$DEV" 2>&1))"; return 1; }
        sleep 0.1
    done
}

detach() {
    nbd_connected || return 0
    timeout -k 5 "$T_DISC" nbd-client -d "$DEV" > /tmp/detach.log 2>&1
    _end=$(( $(date +%s) + T_DISC ))
    while nbd_connected && [ "$(date +%s)" -lt "$_end" ]; do sleep 0.1; done
    ! nbd_connected
}

prefill() { # prefill KIND: random data over the whole export (fio refills its buffers with random bytes)
    _t0="$(now)"
    if ! err="$(attach "$1" 1)"; then
        echo "$1 $(since "$_t0") FAIL attach: $err" >> "$S/prefill.txt"; return 1
    fi
    timeout -k 5 "$T_PREFILL" fio --name=prefill --filename="$DEV" --ioengine=libaio --direct=1 \
        --rw=write --bs=1M --iodepth=8 --refill_buffers=1 --output="$S/$1.prefill.log" > /dev/null 2>&1
    _rc=$?
    detach
    if [ "$_rc" = 0 ]; then st=ok; else st="FAIL fio rc=$_rc"; fi
    echo "$1 $(since "$_t0") $st" >> "$S/prefill.txt"
    [ "$_rc" = 0 ]
}

measure() { # measure ROUND CONNS KIND
    _tag="r$1-c$2-$3" _t0="$(now)"
    rm -f "$S/$_tag".*
    if ! err="$(attach "$3" "$2")"; then
        detach; echo "$1 $2 $3 attach_failed $(since "$_t0")" >> "$S/runs.txt"
        echo "RESULT kbench.$_tag FAIL attach: $err"; return 1
    fi
    _ta="$(since "$_t0")"
    snapshot "$3" "$S/$_tag.before.json" || echo "note: no counters before $_tag"
    _t1="$(now)" _c0="$(cpu_ticks)"
    timeout -k 5 "$T_FIO" fio --name=randread --filename="$DEV" \
        --ioengine=libaio --direct=1 --rw=randread --bs=4k --iodepth=32 --numjobs=1 --randrepeat=0 \
        --time_based=1 --runtime="$RUNTIME" --ramp_time="$RAMP" --norandommap=1 \
        --lat_percentiles=1 --percentile_list=50:99 \
        --output-format=json --output="$S/$_tag.fio.json" > "$S/$_tag.fio.log" 2>&1
    _rc=$? _tf="$(since "$_t1")" _busy="$(busy_pct "$_c0" "$(cpu_ticks)")"
    snapshot "$3" "$S/$_tag.after.json" || echo "note: no counters after $_tag"
    detach || echo "note: $DEV still connected after $_tag"
    if [ "$_rc" = 0 ]; then
        echo "$1 $2 $3 ok $(since "$_t0") $_ta $_tf $_busy" >> "$S/runs.txt"
        echo "RESULT kbench.$_tag PASS fio ${_tf}s, guest CPU ${_busy}% busy"
    else
        echo "$1 $2 $3 fio_rc_$_rc $(since "$_t0") $_ta $_tf $_busy" >> "$S/runs.txt"
        echo "RESULT kbench.$_tag FAIL fio rc=$_rc: $(last_lines "$S/$_tag.fio.log")"
    fi
}

# ----------------------------------------------------------------- main
SIZE_BYTES="$(awk -v v="$SIZE" 'BEGIN {
    n = v + 0; u = toupper(substr(v, length(v)))
    m = (u == "K") ? 2^10 : (u == "M") ? 2^20 : (u == "G") ? 2^30 : 1
    printf "%.0f", n * m }')"
{
    echo "uname=$(uname -r)"
    echo "nproc=$(nproc)"
    echo "boot_s=$(cut -d' ' -f1 /proc/uptime)"
    echo "fio=$(fio --version)"
    echo "nbd_client=$(nbd-client -V 2>&1 | head -n 1)"
    echo "nbdkit=$(nbdkit --version 2>&1 | head -n 1)"
    echo "nvme_nbd=$("$BIN" --version 2>&1 | head -n 1)"
} > "$S/guest-info.txt"
: > "$S/runs.txt"; : > "$S/prefill.txt"
echo "guest: kernel $(uname -r), $(nproc) CPUs; servers: $SERVERS; conns: $CONNS; $ROUNDS rounds of ${RUNTIME}s"

ready=""
for k in $SERVERS; do start_server "$k"; done
for k in $SERVERS; do
    if err="$(wait_ready "$k")"; then
        prefill "$k" && ready="$ready $k"
    else
        echo "RESULT kbench.$k.start FAIL $err"
    fi
done
echo "TIMING kbench.setup $(cut -d' ' -f1 /proc/uptime)"

set -- $ready
n=$#
r=1
while [ "$r" -le "$ROUNDS" ]; do
    ci=0
    for c in $CONNS; do
        # rotate the start server by round and connection count
        i=0
        while [ "$i" -lt "$n" ]; do
            j=$(( (i + r - 1 + ci) % n + 1 ))
            eval "k=\${$j}"
            measure "$r" "$c" "$k"
            i=$((i + 1))
        done
        ci=$((ci + 1))
    done
    r=$((r + 1))
done

stop_servers
echo "TIMING kbench.total $(cut -d' ' -f1 /proc/uptime)"
exit 0

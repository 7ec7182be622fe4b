#!/bin/sh
# guest-kernel-client.sh — runs INSIDE the test guest (POSIX sh, chroot of the
# host root; see run-guest.sh). Started by kernel-client-test.sh, not by hand.
#
# For each configuration in $VMT_CONFIGS, sequentially, on /dev/nbd0:
#   start the server on a Unix socket in /run, wait for it, connect the kernel
#   client with two connections (nbd-client -C 2), check size and connection
#   count, fio random-write + crc32c verify (libaio, O_DIRECT), mkfs.ext4,
#   write a tree of files with known SHA-256 sums, umount, fsck -fn, mount,
#   verify every sum, umount, disconnect, stop the server with SIGTERM and
#   check that it exits 0 (and, for the real server, wrote --stats-json).
# The tls configuration serves memory with --tls require --tls-verify-peer
# (certificates the host made in $VM_SHARE/tls), checks that a plain
# nbd-client is refused, connects with nbd-client's TLS options and runs only
# the steps in TLS_STEPS (no file system).
#
# Output: one "RESULT <name> PASS|FAIL <detail>" line per check and
# "TIMING <name> <seconds>" lines. Every wait is bounded. Once a step of a
# configuration fails, its remaining steps report FAIL "skipped: ..." and
# the configuration is torn down so the next one still runs.
#
# Inputs (environment, from env.sh):
#   VM_SHARE          per-run read-write share (logs, fio JSON, stats)
#   VMT_SERVER        nvme-nbd (default) | nbdkit (stand-in)
#   VMT_BIN           the nvme-nbd binary (host path, visible through 9p)
#   VMT_CONFIGS       subset of: mem_sdb_on mem_sdb_off file tls
#   VMT_MEM_SIZE      memory export size (K/M/G/T suffixes), default 512M
#   VMT_FILE_IMG      file-backend image (created by the host in VM_SHARE)
#   VMT_FILE_LBA      512 | 4096 (default 4096; also nbd-client -b)
#   VMT_FILE_NAME     export name of the file export (default "disk")
#   VMT_FIO_SIZE      total fio region (default 64M, split over 2 jobs)
#   VMT_TLS_FIO_SIZE  the same for the tls configuration (default 8M: every
#                     byte is encrypted twice in emulated code, ~0.5 MB/s)
#   VMT_LOG_LEVEL     server --log-level (default notice)
#   VMT_LD_LIBRARY_PATH  prepended to LD_LIBRARY_PATH for the server, if set
set -u

S="${VM_SHARE:?VM_SHARE not set}"
SERVER="${VMT_SERVER:-nvme-nbd}"
BIN="${VMT_BIN:-}"
CONFIGS="${VMT_CONFIGS:-mem_sdb_on mem_sdb_off file tls}"
MEM_SIZE="${VMT_MEM_SIZE:-512M}"
FILE_IMG="${VMT_FILE_IMG:-}"
FILE_LBA="${VMT_FILE_LBA:-4096}"
FILE_NAME="${VMT_FILE_NAME:-disk}"
FIO_SIZE="${VMT_FIO_SIZE:-64M}"
TLS_FIO_SIZE="${VMT_TLS_FIO_SIZE:-8M}"
LOG_LEVEL="${VMT_LOG_LEVEL:-notice}"
DEV=/dev/nbd0
NBDSYS=/sys/block/nbd0
MNT=/run/nbdmnt
TREE=/tmp/tree
SUMS="$S/tree.sha256"
TLS_DIR="$S/tls"
TLS_STEPS="server_start plain_refused connect size multiconn fio_verify disconnect server_stop stats_json"

# Bounds (seconds). TCG is slow; these are generous per step, the host's
# VM_TIMEOUT bounds the whole run.
T_READY=60 T_CONNECT=30 T_FIO=150 T_MKFS=120 T_COPY=120 T_FSCK=90
T_VERIFY=120 T_DISC=30 T_STOP=20 T_NBD_IO=30

if [ -n "${VMT_LD_LIBRARY_PATH:-}" ]; then
    LD_LIBRARY_PATH="$VMT_LD_LIBRARY_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
fi

now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }
to_bytes() { # 512M -> 536870912
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = toupper(substr(v, length(v)))
        m = (u == "K") ? 2^10 : (u == "M") ? 2^20 : (u == "G") ? 2^30 : (u == "T") ? 2^40 : 1
        printf "%.0f", n * m }'
}
one_line() { tr '\n\t' '  ' | sed -e 's/  */ /g' -e 's/^ //' -e 's/ $//' | cut -c1-300; }

CFG=""         # current configuration
CFG_FAILED=""  # name of the first failed step of $CFG, if any
result() { # result STEP PASS|FAIL DETAIL...
    _n="$1" _s="$2"; shift 2
    echo "RESULT $CFG.$_n $_s $*"
    [ "$_s" = PASS ] || [ -n "$CFG_FAILED" ] || CFG_FAILED="$_n"
}
timing() { echo "TIMING $CFG.$1 $2"; }
wants() { # true if configuration $CFG runs STEP: tls runs TLS_STEPS, the others all but plain_refused
    if [ "$CFG" = tls ]; then
        case " $TLS_STEPS " in *" $1 "*) return 0 ;; esac
        return 1
    fi
    [ "$1" != plain_refused ]
}
skipped() { # true (and reports FAIL) if an earlier step of $CFG failed
    [ -z "$CFG_FAILED" ] && return 1
    echo "RESULT $CFG.$1 FAIL skipped: $CFG_FAILED failed"
    return 0
}
# run STEP TIMEOUT CMD... : runs CMD bounded, logs to $S/$CFG.STEP.log
# sets RUN_RC and RUN_T (seconds); returns the status
run() {
    _step="$1" _to="$2"; shift 2
    _t0="$(now)"
    timeout -k 5 "$_to" "$@" > "$S/$CFG.$_step.log" 2>&1
    RUN_RC=$?
    RUN_T="$(since "$_t0")"
    timing "$_step" "$RUN_T"
    [ "$RUN_RC" = 124 ] && echo "(timed out after ${_to}s)" >> "$S/$CFG.$_step.log"
    return "$RUN_RC"
}
tail_log() { tail -n "${2:-3}" "$S/$CFG.$1.log" 2>/dev/null | one_line; }

proc_alive() { # running and not a zombie
    [ -r "/proc/$1/stat" ] || return 1
    _st="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
    [ -n "$_st" ] && [ "$_st" != Z ]
}

nbd_connected() { [ -e "$NBDSYS/pid" ]; }

# ----------------------------------------------------------------- tree
# The host generated the tree (random data, deterministic layout) and its
# sums: $S/tree.tar and $S/tree.sha256 (/dev/urandom is slow under TCG, and
# one tarball crosses 9p much faster than hundreds of files). Unpack it into
# tmpfs once, so the copy onto the NBD file system reads from memory.
make_tree() {
    [ -s "$S/tree.tar" ] && [ -s "$SUMS" ] || { TREE_ERR="no tree.tar/tree.sha256 in the share"; return 1; }
    rm -rf "$TREE"; mkdir -p "$TREE"
    # big reads: with cache=none every read(2) on the share is a 9p round trip
    dd if="$S/tree.tar" bs=4M 2>/dev/null | tar -C "$TREE" -xf - 2> /tmp/tree.err ||
        { TREE_ERR="untar: $(one_line < /tmp/tree.err)"; return 1; }
    _n="$(find "$TREE" -type f | wc -l)"
    [ "$_n" = "$(wc -l < "$SUMS")" ] || { TREE_ERR="$_n files unpacked, $(wc -l < "$SUMS") in tree.sha256"; return 1; }
    TREE_BYTES="$(du -sb "$TREE" | cut -f1)"
}

# ----------------------------------------------------------------- server
SRV_PID="" SOCK=""
start_server() { # uses CFG; sets SRV_PID SOCK EXPORT_BYTES CLIENT_ARGS
    SOCK="/run/nbd-$CFG.sock"
    rm -f "$SOCK"
    SRV_LOG="$S/$CFG.server.log"
    CLIENT_ARGS=""
    case "$CFG" in
        mem_sdb_on|mem_sdb_off)
            EXPORT_BYTES="$(to_bytes "$MEM_SIZE")"
            sdb=on; [ "$CFG" = mem_sdb_off ] && sdb=off
            if [ "$SERVER" = nbdkit ]; then
                set -- nbdkit --unix "$SOCK" --foreground --exit-with-parent memory "$MEM_SIZE"
            else
                set -- "$BIN" serve --unix "$SOCK" --export "size=$MEM_SIZE" \
                    --shadow-doorbells "$sdb" --stats-json "$S/$CFG.stats.json" \
                    --log-level "$LOG_LEVEL"
            fi ;;
        tls)
            EXPORT_BYTES="$(to_bytes "$MEM_SIZE")"
            CLIENT_ARGS="-enable-tls -cacertfile $TLS_DIR/ca-cert.pem -certfile $TLS_DIR/client-cert.pem"
            CLIENT_ARGS="$CLIENT_ARGS -keyfile $TLS_DIR/client-key.pem -tlshostname localhost"
            set -- "$BIN" serve --unix "$SOCK" --export "size=$MEM_SIZE" \
                --tls require --tls-certificates "$TLS_DIR" --tls-verify-peer \
                --stats-json "$S/$CFG.stats.json" --log-level "$LOG_LEVEL" ;;
        file)
            [ -n "$FILE_IMG" ] && [ -f "$FILE_IMG" ] || { SRV_ERR="no file image '$FILE_IMG'"; return 1; }
            EXPORT_BYTES="$(stat -c %s "$FILE_IMG")"
            CLIENT_ARGS="-N $FILE_NAME -b $FILE_LBA"
            if [ "$SERVER" = nbdkit ]; then
                set -- nbdkit --unix "$SOCK" --foreground --exit-with-parent file "$FILE_IMG"
            else
                set -- "$BIN" serve --unix "$SOCK" \
                    --export "name=$FILE_NAME,file=$FILE_IMG,lba=$FILE_LBA,description=kernel-client VM test" \
                    --stats-json "$S/$CFG.stats.json" --log-level "$LOG_LEVEL"
            fi ;;
        *) SRV_ERR="unknown configuration $CFG"; return 1 ;;
    esac
    echo "+ $*" > "$SRV_LOG"
    "$@" >> "$SRV_LOG" 2>&1 &
    SRV_PID=$!
    _t0="$(now)"; _end=$(( $(date +%s) + T_READY ))
    while :; do
        if ! proc_alive "$SRV_PID"; then
            wait "$SRV_PID"; SRV_ERR="server exited with status $? before it was ready: $(tail -n 3 "$SRV_LOG" | one_line)"
            SRV_PID=""; return 1
        fi
        if [ -S "$SOCK" ]; then
            [ "$SERVER" = nbdkit ] && break
            grep -q listening "$SRV_LOG" && break
        fi
        if [ "$(date +%s)" -ge "$_end" ]; then
            SRV_ERR="not ready after ${T_READY}s (socket $( [ -S "$SOCK" ] && echo present || echo absent)): $(tail -n 3 "$SRV_LOG" | one_line)"
            return 1
        fi
        sleep 0.1
    done
    SRV_READY_T="$(since "$_t0")"
    return 0
}

stop_server() { # SIGTERM, bounded wait; sets SRV_RC (or empty if it had to be killed)
    SRV_RC=""
    [ -n "$SRV_PID" ] || return 1
    kill -TERM "$SRV_PID" 2>/dev/null
    _end=$(( $(date +%s) + T_STOP ))
    while proc_alive "$SRV_PID" && [ "$(date +%s)" -lt "$_end" ]; do sleep 0.1; done
    if proc_alive "$SRV_PID"; then
        kill -KILL "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null
        SRV_PID=""; return 1
    fi
    wait "$SRV_PID"; SRV_RC=$?
    SRV_PID=""
    return 0
}

# Best-effort teardown after a failure, so the next configuration can run.
teardown() {
    mountpoint -q "$MNT" 2>/dev/null && { timeout 30 umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null; }
    if nbd_connected; then
        timeout "$T_DISC" nbd-client -d "$DEV" >/dev/null 2>&1
        wait_disconnected
    fi
    if [ -n "$SRV_PID" ]; then
        kill -KILL "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; SRV_PID=""
    fi
}

wait_disconnected() { # bounded wait until the kernel released nbd0
    _end=$(( $(date +%s) + T_DISC ))
    while nbd_connected && [ "$(date +%s)" -lt "$_end" ]; do sleep 0.1; done
    ! nbd_connected
}

# ----------------------------------------------------------------- steps
run_config() {
    CFG="$1" CFG_FAILED=""
    cfg_t0="$(now)"
    echo "=== $CFG ($SERVER) ==="

    # server
    if start_server; then
        result server_start PASS "ready after ${SRV_READY_T}s (pid $SRV_PID, $SOCK)"
    else
        result server_start FAIL "$SRV_ERR"
    fi
    timing server_start "$(since "$cfg_t0")"

    # --tls require: a client without TLS gets NBD_REP_ERR_TLS_REQD, and nbd0 stays free
    if wants plain_refused && ! skipped plain_refused; then
        if run plain_refused "$T_CONNECT" nbd-client -unix "$SOCK" "$DEV" -t "$T_NBD_IO"; then
            result plain_refused FAIL "plain nbd-client connected: $(tail_log plain_refused)"
            timeout "$T_DISC" nbd-client -d "$DEV" >/dev/null 2>&1; wait_disconnected
        elif [ "$RUN_RC" = 124 ] || nbd_connected; then
            result plain_refused FAIL "rc=$RUN_RC, $(nbd_connected && echo "$DEV connected"): $(tail_log plain_refused)"
        else
            result plain_refused PASS "refused (rc=$RUN_RC): $(tail_log plain_refused 1)"
        fi
    fi

    # connect, two connections
    # shellcheck disable=SC2086  # CLIENT_ARGS is split on purpose
    if ! skipped connect; then
        if nbd_connected; then
            result connect FAIL "$DEV already connected before the test"
        elif run connect "$T_CONNECT" nbd-client -unix "$SOCK" "$DEV" -C 2 -t "$T_NBD_IO" $CLIENT_ARGS &&
             nbd_connected; then
            result connect PASS "nbd-client -C 2 in ${RUN_T}s ($(tail_log connect 1))"
        else
            result connect FAIL "rc=$RUN_RC: $(tail_log connect)"
        fi
    fi

    # size, logical block size, number of server-side connections
    if ! skipped size; then
        got="$(blockdev --getsize64 "$DEV" 2>&1)"
        lbs="$(cat "$NBDSYS/queue/logical_block_size" 2>/dev/null)"
        if [ "$got" = "$EXPORT_BYTES" ]; then
            result size PASS "$got bytes, logical block size $lbs"
        else
            result size FAIL "blockdev --getsize64 says '$got', export is $EXPORT_BYTES"
        fi
    fi
    if ! skipped multiconn; then
        # server side of each accepted connection: a connected (St 03) Unix
        # stream socket bound to $SOCK (/proc/net/unix; ss needs unix_diag)
        grep -F "$SOCK" /proc/net/unix > "$S/$CFG.multiconn.log" 2>&1
        nconn="$(awk -v p="$SOCK" '$8 == p && $6 == "03"' /proc/net/unix | wc -l)"
        nhw="$(ls "$NBDSYS/mq" 2>/dev/null | wc -l)"
        if [ "$nconn" = 2 ]; then
            result multiconn PASS "2 connections established, $nhw hw queues"
        else
            result multiconn FAIL "$nconn connections to $SOCK (expected 2), $nhw hw queues"
        fi
    fi

    # fio random write + verify: two jobs on disjoint halves (one per CPU,
    # so both connections carry I/O)
    if ! skipped fio_verify; then
        fio_size="$FIO_SIZE"; [ "$CFG" = tls ] && fio_size="$TLS_FIO_SIZE"
        half="$(( $(to_bytes "$fio_size") / 2 ))"
        if run fio_verify "$T_FIO" fio --name=randwrite-verify --filename="$DEV" \
                --ioengine=libaio --direct=1 --rw=randwrite --bssplit=4k/50:16k/30:64k/20 \
                --iodepth=16 --numjobs=2 --size="$half" --offset_increment="$half" \
                --verify=crc32c --do_verify=1 --verify_fatal=1 \
                --group_reporting --output-format=json --output="$S/$CFG.fio.json"; then
            # fio may print warnings before the JSON document
            sed -i -n '/^{/,$p' "$S/$CFG.fio.json"
            fio_sum="$(jq -r '.jobs[0] | "write \(.write.io_bytes/1048576|floor)MiB @ \(.write.bw_bytes/1048576*10|floor/10)MiB/s \(.write.iops|floor) IOPS, verify-read \(.read.io_bytes/1048576|floor)MiB @ \(.read.bw_bytes/1048576*10|floor/10)MiB/s, errors \(.error)"' \
                        "$S/$CFG.fio.json" 2>/dev/null)"
            result fio_verify PASS "${fio_sum:-ok} in ${RUN_T}s"
        else
            result fio_verify FAIL "rc=$RUN_RC after ${RUN_T}s: $(grep -ihE 'verify|error|bad' "$S/$CFG.fio.json" "$S/$CFG.fio_verify.log" 2>/dev/null | tail -n 3 | one_line)"
        fi
    fi

    # filesystem
    if wants mkfs && ! skipped mkfs; then
        if run mkfs "$T_MKFS" mkfs.ext4 -F -L nvmenbd -E lazy_itable_init=0,lazy_journal_init=0 "$DEV"; then
            result mkfs PASS "mkfs.ext4 in ${RUN_T}s"
        else
            result mkfs FAIL "rc=$RUN_RC after ${RUN_T}s: $(tail_log mkfs)"
        fi
    fi
    if wants write_tree && ! skipped write_tree; then
        mkdir -p "$MNT"; RUN_RC=mount
        if timeout 30 mount -t ext4 "$DEV" "$MNT" > "$S/$CFG.mount1.log" 2>&1 &&
           run write_tree "$T_COPY" sh -c 'cp -a "$1/." "$2/" && sync -f "$2"' sh "$TREE" "$MNT" &&
           timeout 60 umount "$MNT" >> "$S/$CFG.mount1.log" 2>&1; then
            result write_tree PASS "$(wc -l < "$SUMS") files, $TREE_BYTES bytes copied+synced in ${RUN_T}s, unmounted"
        else
            result write_tree FAIL "rc=$RUN_RC: $(cat "$S/$CFG.mount1.log" "$S/$CFG.write_tree.log" 2>/dev/null | tail -n 3 | one_line)"
        fi
    fi
    if wants fsck && ! skipped fsck; then
        if run fsck "$T_FSCK" fsck.ext4 -fn "$DEV"; then
            result fsck PASS "fsck.ext4 -fn clean in ${RUN_T}s ($(tail_log fsck 1))"
        else
            result fsck FAIL "rc=$RUN_RC: $(tail_log fsck 4)"
        fi
    fi
    if wants verify_tree && ! skipped verify_tree; then
        blockdev --flushbufs "$DEV" 2>/dev/null; sync; echo 3 > /proc/sys/vm/drop_caches
        if timeout 30 mount -t ext4 -o ro "$DEV" "$MNT" > "$S/$CFG.mount2.log" 2>&1; then
            if run verify_tree "$T_VERIFY" sh -c 'cd "$1" && sha256sum -c --quiet --strict "$2"' sh "$MNT" "$SUMS"; then
                nfound="$(find "$MNT" -type f | grep -vc '/lost+found/')"
                result verify_tree PASS "$nfound files, all sha256 match after remount in ${RUN_T}s"
            else
                result verify_tree FAIL "rc=$RUN_RC: $(grep -c FAILED "$S/$CFG.verify_tree.log") mismatches: $(tail_log verify_tree)"
            fi
            timeout 60 umount "$MNT" >> "$S/$CFG.mount2.log" 2>&1 || result umount FAIL "$(tail -n 2 "$S/$CFG.mount2.log" | one_line)"
        else
            result verify_tree FAIL "remount failed: $(tail -n 2 "$S/$CFG.mount2.log" | one_line)"
        fi
    fi

    # disconnect (even after failures when connected: the device is shared)
    if ! nbd_connected; then
        result disconnect FAIL "skipped: $DEV not connected${CFG_FAILED:+ ($CFG_FAILED failed)}"
    else
        mountpoint -q "$MNT" 2>/dev/null && { timeout 30 umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null; }
        if run disconnect "$T_DISC" nbd-client -d "$DEV" && wait_disconnected; then
            result disconnect PASS "nbd-client -d in ${RUN_T}s"
        else
            result disconnect FAIL "rc=$RUN_RC, $(nbd_connected && echo still connected): $(tail_log disconnect)"
        fi
    fi

    # graceful stop: attempted whenever a server is running
    if [ -n "$SRV_PID" ]; then
        _t0="$(now)"
        if stop_server; then
            if [ "$SRV_RC" = 0 ]; then
                result server_stop PASS "SIGTERM -> exit 0 in $(since "$_t0")s"
            else
                result server_stop FAIL "SIGTERM -> exit status $SRV_RC: $(tail -n 3 "$SRV_LOG" | one_line)"
            fi
        else
            result server_stop FAIL "still running ${T_STOP}s after SIGTERM (killed)"
        fi
        timing server_stop "$(since "$_t0")"
    else
        result server_stop FAIL "skipped: no server running"
    fi
    if [ "$SERVER" != nbdkit ]; then
        st="$S/$CFG.stats.json"
        # expected shadow-doorbell mode; fields missing from the document
        # are not held against it (the schema belongs to the server)
        want=true; [ "$CFG" = mem_sdb_off ] && want=false
        if [ ! -s "$st" ]; then
            result stats_json FAIL "not written"
        elif ! jq -e 'type == "object"' "$st" >/dev/null 2>&1; then
            result stats_json FAIL "not a JSON object: $(head -c 100 "$st" | one_line)"
        else
            summary="$(jq -r --argjson want "$want" '
                (.exports // [])[0] // {} | . as $e |
                [ (if ($e.shadowDoorbells // $want) != $want then "shadowDoorbells is \($e.shadowDoorbells), expected \($want)" else empty end),
                  (if (($e.nbd.errors // 0) + ($e.controller.commandErrors // 0)) != 0 then "errors: nbd \($e.nbd.errors // 0), NVMe \($e.controller.commandErrors // 0)" else empty end),
                  (if ($e.nbd.connections // 2) < 2 then "only \($e.nbd.connections) connections counted" else empty end)
                ] as $bad |
                (if ($bad | length) > 0 then "BAD " + ($bad | join("; ")) + " | " else "" end) +
                "shadowDoorbells=\($e.shadowDoorbells) connections=\($e.nbd.connections) active=\($e.nbd.activeConnections) nbd reads=\($e.nbd.reads) writes=\($e.nbd.writes) flushes=\($e.nbd.flushes) trims=\($e.nbd.trims) writeZeroes=\($e.nbd.writeZeroes) unaligned=\($e.nbd.unalignedRequests) NVMe io=\(($e.controller.reads // 0) + ($e.controller.writes // 0)) mmioDoorbellWritesPerIO=\($e.mmioDoorbellWritesPerIO) interruptsPerIO=\($e.interruptsPerIO)"
                ' "$st" 2>&1 | one_line)"
            case "$summary" in
                BAD*) result stats_json FAIL "${summary#BAD }" ;;
                *jq:*|"") result stats_json FAIL "cannot read: $summary" ;;
                *) result stats_json PASS "$summary" ;;
            esac
        fi
    fi

    teardown
    timing total "$(since "$cfg_t0")"
}

# ----------------------------------------------------------------- main
echo "TIMING guest.boot $(cut -d' ' -f1 /proc/uptime)"
echo "guest: kernel $(uname -r), $(nproc) CPUs, server $SERVER ${BIN:+($BIN)}, configs: $CONFIGS"
[ "$SERVER" = nbdkit ] || [ -x "$BIN" ] || echo "guest: WARNING server binary '$BIN' not executable"

CFG=setup
t0="$(now)"
if make_tree; then
    result tree PASS "$(wc -l < "$SUMS") files, $TREE_BYTES bytes unpacked into tmpfs"
else
    result tree FAIL "$TREE_ERR"
fi
timing tree "$(since "$t0")"

for c in $CONFIGS; do
    run_config "$c"
done
echo "TIMING guest.total $(cut -d' ' -f1 /proc/uptime)"
exit 0

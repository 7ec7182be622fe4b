#!/usr/bin/env bash
# host-suite.sh — real clients against a release build of nvme-nbd, no VM.
#
#   scripts/integration/host-suite.sh [path/to/nvme-nbd]
#
# Every check prints "PASS <name>" or "FAIL <name>: <why>"; the script exits 1
# if any check failed. Servers listen on Unix sockets (and one TCP port on
# 127.0.0.1) in a private temporary directory; every wait is bounded.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="${1:-$REPO/.build/release/nvme-nbd}"
[[ -x "$BIN" ]] || { echo "host-suite: no server binary at $BIN (swift build -c release --product nvme-nbd)" >&2; exit 2; }
for tool in fio nbdinfo nbdcopy qemu-img qemu-io certtool psktool /usr/bin/python3; do
    command -v "$tool" >/dev/null || { echo "host-suite: $tool is missing (scripts/test installs it)" >&2; exit 2; }
done

WORK="$(mktemp -d /tmp/nvme-nbd-host.XXXXXX)"
SERVER_PID=""
FAILED=0
PASSED=0
cleanup() {
    [[ -n "$SERVER_PID" ]] && kill -KILL "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1: $2"; FAILED=$((FAILED + 1)); }
# check NAME COMMAND... : PASS when the command exits 0 within its own bounds.
check() {
    local name="$1"; shift
    local log="$WORK/$name.log"
    if "$@" >"$log" 2>&1; then pass "$name"; else fail "$name" "exit $? ($(tail -n 3 "$log" | tr '\n' ' '))"; fi
}

# start_server NAME ARGS... — starts nvme-nbd on $WORK/NAME.sock and waits for it.
start_server() {
    local name="$1"; shift
    SOCK="$WORK/$name.sock"
    STATS="$WORK/$name.stats.json"
    "$BIN" serve --unix "$SOCK" --stats-json "$STATS" --log-level warning "$@" >"$WORK/$name.server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 200); do
        [[ -S "$SOCK" ]] && grep -q listening "$WORK/$name.server.log" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "server $name did not start: $(cat "$WORK/$name.server.log")" >&2
    return 1
}

stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null
    local rc=0
    for _ in $(seq 1 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID"; rc=124
    else
        wait "$SERVER_PID"; rc=$?
    fi
    SERVER_PID=""
    return $rc
}

URI() { echo "nbd+unix:///${1:-}?socket=$SOCK"; }

fio_nbd() { # fio_nbd NAME EXTRA-ARGS... — engine and URI are global options (before
    # the first --name), so every job of a multi-job command line uses the server;
    # fio runs in $WORK so its verify state files never land in the checkout.
    (cd "$WORK" && timeout 300 fio --ioengine=nbd --uri="$(URI "${EXPORT:-}")" --output-format=normal --name="$1" "${@:2}")
}

for mode in on off; do
    start_server "mem-$mode" --shadow-doorbells "$mode" --export size=1G || { fail "start-$mode" "server did not start"; continue; }
    check "fio-randwrite-verify-$mode" fio_nbd rw --rw=randwrite --bs=4k --iodepth=32 --size=128m --verify=crc32c --verify_fatal=1
    # fio 3.33 crashes with trim_percentage on the nbd engine (nbdkit too), so the
    # trims come from a randtrimwrite job running beside the verified randrw job.
    check "fio-randrw-verify-trim-$mode" fio_nbd rtw --rw=randtrimwrite --bs=8k --iodepth=16 --size=64m --offset=256m \
        --verify=crc32c --verify_fatal=1 --name=rrw --rw=randrw --bs=4k --iodepth=16 --size=64m --offset=384m \
        --verify=crc32c --verify_fatal=1
    check "fio-seq-1m-$mode" bash -c "$(declare -f fio_nbd URI); SOCK='$SOCK'; WORK='$WORK'; \
        fio_nbd seqw --rw=write --bs=1m --iodepth=8 --size=256m --offset=512m --verify=crc32c --do_verify=0 && \
        fio_nbd seqr --rw=read --bs=1m --iodepth=8 --size=256m --offset=512m --verify=crc32c --verify_only=1"
    check "fio-multiconn-4jobs-$mode" fio_nbd mc --rw=randwrite --bs=4k --iodepth=16 --numjobs=4 --size=32m \
        --offset=768m --offset_increment=32m --verify=crc32c --verify_fatal=1 --group_reporting
    stop_server; rc=$?
    [[ $rc -eq 0 ]] && pass "graceful-stop-$mode" || fail "graceful-stop-$mode" "exit status $rc"
    if [[ -f "$STATS" ]] && /usr/bin/python3 - "$STATS" "$mode" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["exports"][0]
c = d["controller"]
io = c["reads"] + c["writes"] + c["flushes"] + c["writeZeroes"] + c["datasetManagement"] + c["allocationMaps"]
mmio = c["mmioSQTailDoorbellWrites"] + c["mmioCQHeadDoorbellWrites"]
print(f"  {sys.argv[2]}: {io} NVMe I/O commands, {mmio} MMIO doorbell writes ({mmio/io:.4f}/IO), "
      f"{c['interruptsRaised']} interrupts, {c['eventIndexWrites']} EventIdx writes")
assert io > 0 and d["shadowDoorbells"] == (sys.argv[2] == "on")
if sys.argv[2] == "off":
    assert c["mmioSQTailDoorbellWrites"] > 0 and c["eventIndexWrites"] == 0
PY
    then pass "stats-json-$mode"; else fail "stats-json-$mode" "missing or inconsistent $STATS"; fi
done

# nbdcopy, nbdinfo --map, qemu tools on one memory export.
start_server tools --export size=1G || fail tools-start "server did not start"
head -c 256M /dev/urandom > "$WORK/rand.img"
check nbdcopy-roundtrip bash -c "nbdcopy '$WORK/rand.img' '$(URI)' && nbdcopy '$(URI)' '$WORK/back.img' && \
    cmp -n $((256 << 20)) '$WORK/rand.img' '$WORK/back.img'"
check nbdinfo-map-after-trim-and-zero bash -c "
    /usr/bin/python3 -c \"
import nbd
h = nbd.NBD(); h.connect_uri('$(URI)')
h.trim(1 << 20, 4 << 20)
h.zero(1 << 20, 8 << 20)
h.zero(1 << 20, 16 << 20, nbd.CMD_FLAG_NO_HOLE)
h.flush(); h.shutdown()
\" && nbdinfo --map '$(URI)' > '$WORK/map.txt' && cat '$WORK/map.txt' && \
    grep -E '^ +4194304 +1048576 +3 +hole,zero' '$WORK/map.txt' && \
    grep -E '^ +8388608 +1048576 +3 +hole,zero' '$WORK/map.txt' && \
    awk '\$1 == 0 && \$3 == 0' '$WORK/map.txt' | grep -q ."
head -c 64M /dev/urandom > "$WORK/q.img"
check qemu-img-convert-roundtrip bash -c "qemu-img convert -n -f raw -O raw '$WORK/q.img' '$(URI)' && \
    qemu-img convert -f raw -O raw '$(URI)' '$WORK/q-back.img' && cmp -n $((64 << 20)) '$WORK/q.img' '$WORK/q-back.img'"
# The export now holds rand.img (256 MiB, nbdcopy) overwritten by q.img (64 MiB).
check qemu-img-compare bash -c "truncate -s 1G '$WORK/q-full.img' && dd if='$WORK/rand.img' of='$WORK/q-full.img' conv=notrunc status=none && \
    dd if='$WORK/q.img' of='$WORK/q-full.img' conv=notrunc status=none && \
    qemu-img compare -f raw -F raw '$WORK/q-full.img' '$(URI)' && \
    ! qemu-img compare -f raw -F raw '$WORK/rand.img' '$(URI)' >/dev/null 2>&1"
check qemu-io-pattern bash -c "out=\$(qemu-io -f raw -c 'write -P 0xa5 900M 3M' -c 'read -P 0xa5 900M 3M' -c 'write -z 901M 64k' \
    -c 'read -P 0 901M 64k' -c 'read -P 0xa5 902M 1M' -c 'read -P 0xa5 901M 64k' '$(URI)' 2>&1); echo \"\$out\"; \
    test \$(echo \"\$out\" | grep -c 'read .* bytes at offset') -eq 4 && \
    echo \"\$out\" | grep -q 'Pattern verification failed at offset 944766976'"
check tcp-nbdinfo bash -c "'$BIN' serve --listen 127.0.0.1:10819 --export size=64M --log-level warning & p=\$!; \
    for i in \$(seq 1 100); do nbdinfo --size nbd://127.0.0.1:10819 2>/dev/null && break; sleep 0.05; done; \
    s=\$(nbdinfo --size nbd://127.0.0.1:10819); kill -TERM \$p; wait \$p; test \"\$s\" = 67108864"
stop_server || fail tools-stop "server did not stop gracefully"

# File backend: written data is in the file after FLUSH; a restart reads it back.
IMG="$WORK/disk.img"
start_server file1 --export "file=$IMG,size=256M,lba=4096" || fail file-start "server did not start"
head -c 8M /dev/urandom > "$WORK/chunk"
check file-write-flush-in-file bash -c "/usr/bin/python3 -c \"
import nbd
h = nbd.NBD(); h.connect_uri('$(URI)')
h.pwrite(open('$WORK/chunk','rb').read(), 100 << 20)
h.flush(); h.shutdown()
\" && cmp -n $((8 << 20)) -i 0:$((100 << 20)) '$WORK/chunk' '$IMG'"
stop_server; rc=$?; [[ $rc -eq 0 ]] && pass file-graceful-stop || fail file-graceful-stop "exit $rc"
start_server file2 --export "file=$IMG" || fail file-restart "server did not start"
check file-restart-readback bash -c "/usr/bin/python3 -c \"
import nbd
h = nbd.NBD(); h.connect_uri('$(URI)')
assert h.get_size() == 256 << 20, h.get_size()
assert h.pread(8 << 20, 100 << 20) == open('$WORK/chunk','rb').read()
h.shutdown()
\""
stop_server

# Storage engines and caching: fio with verification on file exports in each
# configuration, and on a loop block device when this runs as root.
for storage in "cache=writeback,aio=io_uring" "cache=none,aio=io_uring" "cache=writeback,aio=threads" "cache=none,aio=threads"; do
    name="file-${storage//[=,]/-}"
    start_server "$name" --export "file=$WORK/$name.img,size=512M,$storage" || { fail "$name-start" "server did not start"; continue; }
    check "$name-fio-randrw-verify" fio_nbd rw --rw=randrw --bs=4k --iodepth=32 --size=96m --verify=crc32c --verify_fatal=1 \
        --name=big --rw=write --bs=1m --iodepth=8 --size=64m --offset=256m --verify=crc32c --verify_fatal=1 --fsync=4
    stop_server; rc=$?; [[ $rc -eq 0 ]] && pass "$name-graceful-stop" || fail "$name-graceful-stop" "exit $rc"
done
if [[ $(id -u) -eq 0 ]] && command -v losetup >/dev/null; then
    truncate -s 256M "$WORK/loop-backing.img"
    if LOOP=$(losetup --find --show --sector-size 4096 "$WORK/loop-backing.img" 2>/dev/null); then
        start_server loopdev --export "file=$LOOP,cache=none" || fail loopdev-start "server did not start"
        check loopdev-size-and-lba bash -c "test \$(nbdinfo --size '$(URI)') = $((256 << 20)) && \
            nbdinfo --json '$(URI)' | /usr/bin/python3 -c 'import json,sys; e=json.load(sys.stdin)[\"exports\"][0]; \
assert e[\"block_size_preferred\"] >= 4096, e'"
        check loopdev-fio-verify fio_nbd rw --rw=randrw --bs=4k --iodepth=32 --size=64m --verify=crc32c --verify_fatal=1
        stop_server
        losetup --detach "$LOOP"
    else
        echo "SKIP loopdev: losetup could not attach a loop device"
    fi
else
    echo "SKIP loopdev: needs root and losetup"
fi

# Where io_uring is refused (kernel.io_uring_disabled=2, as seccomp or an old
# kernel would), worker threads take over and the log says so once.
DISABLED=/proc/sys/kernel/io_uring_disabled
if [[ -w "$DISABLED" ]]; then
    old=$(cat "$DISABLED")
    echo 2 > "$DISABLED"
    if start_server uring-refused --export "file=$WORK/refused-a.img,size=64M" --export "name=b,file=$WORK/refused-b.img,size=64M"; then
        check uring-refused-fio-verify fio_nbd rw --rw=randrw --bs=4k --iodepth=16 --size=32m --verify=crc32c --verify_fatal=1
        stop_server
        check uring-refused-logged-once bash -c "cat '$WORK/uring-refused.server.log'; \
            test \$(grep -c 'io_uring unavailable' '$WORK/uring-refused.server.log') -eq 1"
    else
        fail uring-refused-start "server did not start with io_uring disabled"
    fi
    echo "$old" > "$DISABLED"
else
    echo "SKIP uring-refused: $DISABLED is not writable (not root, or a kernel before 6.6)"
fi

# serve --metrics and nvme-nbd top under fio (scripts/integration/metrics.sh).
check metrics-and-top "$HERE/metrics.sh" "$BIN"

# Images of any size are served whole: 1,000,000 bytes, and one of 2048-byte sectors.
head -c 1000000 /dev/urandom > "$WORK/odd.img"
start_server odd --export "file=$WORK/odd.img" || fail odd-start "server did not start"
check odd-size-exact bash -c "test \$(nbdinfo --size '$(URI)') = 1000000 && \
    nbdcopy '$(URI)' '$WORK/odd-back.img' && cmp '$WORK/odd.img' '$WORK/odd-back.img'"
stop_server
truncate -s $((2048 * 1001)) "$WORK/iso.img"
start_server iso --export "file=$WORK/iso.img,readonly" || fail iso-start "server did not start"
check iso-size-exact bash -c "test \$(nbdinfo --size '$(URI)') = $((2048 * 1001))"
stop_server

# Command lines, Unix socket ownership, pid file, sd_notify, socket activation and
# --run (its own PASS/FAIL lines; ports 10931-10939 on 127.0.0.1).
if timeout 300 /usr/bin/python3 "$HERE/service-life.py" "$BIN"; then pass service-life; else fail service-life "see the FAIL lines above"; fi

# TLS: --tls require/on/off, client certificates, PSK, with libnbd and nbdinfo
# (its own PASS/FAIL lines; certificates from certtool/psktool, gnutls-bin;
# ports 10950-10969 on 127.0.0.1).
if timeout 120 /usr/bin/python3 "$HERE/tls.py" "$BIN"; then pass tls; else fail tls "see the FAIL lines above"; fi

echo "host-suite: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]

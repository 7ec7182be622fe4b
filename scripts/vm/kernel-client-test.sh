#!/usr/bin/env bash
# kernel-client-test.sh — the Linux-kernel NBD client test, in a QEMU/TCG VM.
#
# Boots a Debian 6.1 kernel under QEMU (TCG only, never KVM) with the host
# root shared read-only over 9p, and inside the guest, for each configuration
#   mem_sdb_on   memory export, shadow doorbells on
#   mem_sdb_off  memory export, shadow doorbells off
#   file         file backend (sparse image the host creates in the run dir;
#                export "disk", lba=4096, nbd-client -b 4096)
#   tls          memory export behind `--tls require --tls-verify-peer`: the
#                host makes a CA, a server and a client certificate with
#                certtool (run dir tls/); the guest first checks that a plain
#                nbd-client is refused, then connects with -enable-tls
#                -cacertfile -certfile -keyfile -tlshostname localhost (Debian
#                12's nbd-client 3.24 is built with GnuTLS: its TLS proxy
#                hands the kernel the plain side) and runs the connect, size,
#                multiconn, fio_verify, disconnect, server_stop and stats_json
#                steps (no file system: TLS is what it checks)
# starts `nvme-nbd serve --unix /run/...`, connects the kernel client with
# `nbd-client -unix SOCK /dev/nbd0 -C 2`, checks size and connection count,
# runs fio (libaio, O_DIRECT, random write + crc32c verify), mkfs.ext4, writes
# a tree of files with known SHA-256 sums (generated here), fsck -fn, remounts
# and verifies every sum, disconnects and stops the server with SIGTERM (exit
# 0 required; --stats-json must be written, with the expected shadow-doorbell
# mode, >= 2 connections and no errors). After the guest powers off, the host
# runs `fsck.ext4 -fn` on the file-backend image and re-checks every sum from
# the image with debugfs (no mount needed). All network traffic stays inside
# the guest (Unix sockets). One boot, ~1.5-3 min on 2 cores (TCG).
#
# RESULT names: setup.tree; per configuration C: C.server_start C.connect
# C.size C.multiconn C.fio_verify C.mkfs C.write_tree C.fsck C.verify_tree
# C.disconnect C.server_stop C.stats_json (not with the nbdkit stand-in);
# for tls: tls.server_start tls.plain_refused tls.connect tls.size
# tls.multiconn tls.fio_verify tls.disconnect tls.server_stop tls.stats_json;
# host.file_fsck host.file_checksums. A missing line counts as a failure.
#
# Usage (from anywhere):
#   scripts/vm/kernel-client-test.sh
#   VM_SERVER=nbdkit scripts/vm/kernel-client-test.sh     # stand-in server
#   NVME_NBD_BIN=/path/to/nvme-nbd scripts/vm/kernel-client-test.sh
#   VM_CONFIGS="file" VM_KEEP=1 scripts/vm/kernel-client-test.sh
#
# Environment:
#   NVME_NBD_BIN   server binary; default: built here with
#                  `swift build -c release --product nvme-nbd --scratch-path .build-vm`
#   VM_SERVER      nvme-nbd (default) | nbdkit (stand-in, validates the
#                  harness without the real server; no stats_json checks)
#   VM_CONFIGS     subset of "mem_sdb_on mem_sdb_off file tls" (default: all)
#   VM_TIMEOUT     seconds for the whole guest run, boot included (default
#                  360; 280 before the tls configuration, which adds about
#                  40-70 s of guest time to the 1.5-3 min of the others)
#   VM_KEEP=1      keep the run dir (vm/share/run.*) even on success; it is
#                  always kept on failure and its path is printed. It holds
#                  console.log, output.txt, dmesg.txt, <config>.<step>.log,
#                  <config>.server.log, <config>.fio.json, <config>.stats.json,
#                  all-results.txt and the file-backend image.
#   VM_MEM_SIZE    memory export size (default 512M)
#   VM_FILE_SIZE   file-backend image size (default 256M)
#   VM_FILE_LBA    512 | 4096 (default 4096)
#   VM_FIO_SIZE    fio region, split over two jobs (default 64M)
#   VM_TLS_FIO_SIZE  the same for the tls configuration (default 8M)
#   VM_TREE_FILES  files in the checksummed tree (default 240)
#   VM_LOG_LEVEL   server --log-level (default notice)
#   VM_QUIET=0     stream the guest console (default 1: quiet)
#   VM_SHARE_CACHE 9p cache mode of the run share holding the file-backend
#                  image: none (default) or loose (guest page cache: faster
#                  small random I/O, much slower large writes)
#   VM_RESULTS_FILE  also write every RESULT line (guest + host) there
#   VM_DIR, VM_MEM, VM_SMP, KERNEL_PKG: see run-guest.sh / build-guest.sh
#
# Output: the RESULT lines, a TIMING table, and a closing line
#   "kernel-client-vm: N passed, M failed".
# Exit status: 0 all checks passed; 1 a check failed or was missing, the guest
# timed out or crashed; 2 setup error (guest build, server build); 77 QEMU
# cannot be installed or run here (report as SKIP).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VM_DIR="${VM_DIR:-$REPO/vm}"
export VM_DIR
SERVER="${VM_SERVER:-nvme-nbd}"
CONFIGS="${VM_CONFIGS:-mem_sdb_on mem_sdb_off file tls}"
TIMEOUT="${VM_TIMEOUT:-360}"
FILE_SIZE="${VM_FILE_SIZE:-256M}"

say() { echo "kernel-client-test: $*" >&2; }
T_START=$(date +%s.%N)
since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
HOST_TIMINGS=()

case "$SERVER" in nvme-nbd|nbdkit) ;; *) say "VM_SERVER must be nvme-nbd or nbdkit"; exit 2 ;; esac
for c in $CONFIGS; do
    case "$c" in mem_sdb_on|mem_sdb_off|file|tls) ;; *) say "unknown configuration '$c' in VM_CONFIGS"; exit 2 ;; esac
done
if [[ " $CONFIGS " == *" tls "* && "$SERVER" == nbdkit ]]; then
    say "the tls configuration needs the real server (VM_SERVER=nvme-nbd)"; exit 2
fi

# ------------------------------------------------------------------ QEMU
t=$(date +%s.%N)
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    say "qemu-system-x86_64 not found; installing qemu-system-x86"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends qemu-system-x86; } >&2 2>&1 ||
        say "apt-get install qemu-system-x86 failed"
fi
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    say "SKIP: QEMU (qemu-system-x86_64) is not installed and could not be installed"
    exit 77
fi
# Can it run at all (TCG)? Start a machine-less instance and quit it.
if ! probe="$(echo quit | timeout 30 qemu-system-x86_64 -accel tcg -M none -nodefaults \
                -display none -serial none -monitor stdio 2>&1)"; then
    say "SKIP: qemu-system-x86_64 cannot run here: $(echo "$probe" | tail -n 3 | tr '\n' ' ')"
    exit 77
fi
HOST_TIMINGS+=("host.qemu_check $(since "$t")")

# ------------------------------------------------------------------ guest
t=$(date +%s.%N)
if ! "$HERE/build-guest.sh"; then
    say "building the guest failed"; exit 2
fi
HOST_TIMINGS+=("host.build_guest $(since "$t")")

# ------------------------------------------------------------------ server
BIN=""
if [[ "$SERVER" == nvme-nbd ]]; then
    t=$(date +%s.%N)
    if [[ -n "${NVME_NBD_BIN:-}" ]]; then
        BIN="$(readlink -f "$NVME_NBD_BIN")"
    else
        say "building the server: swift build -c release --product nvme-nbd --scratch-path .build-vm"
        if ! (cd "$REPO" && swift build -c release --product nvme-nbd --scratch-path .build-vm >&2); then
            say "building nvme-nbd failed"; exit 2
        fi
        BIN="$REPO/.build-vm/release/nvme-nbd"
    fi
    [[ -x "$BIN" ]] || { say "server binary '$BIN' is not executable"; exit 2; }
    # The guest sees the host root, so the binary and its Swift runtime
    # (RUNPATH /opt/swift/usr/lib/swift/linux) resolve the same way there.
    # If the host needs LD_LIBRARY_PATH for it, pass that along.
    VMT_LD_LIBRARY_PATH=""
    if env -u LD_LIBRARY_PATH ldd "$BIN" 2>/dev/null | grep -q 'not found'; then
        if [[ -n "${LD_LIBRARY_PATH:-}" ]]; then
            VMT_LD_LIBRARY_PATH="$LD_LIBRARY_PATH"
        elif swift_bin="$(command -v swift 2>/dev/null)"; then
            VMT_LD_LIBRARY_PATH="$(dirname "$(readlink -f "$swift_bin")")/../lib/swift/linux"
        fi
        say "binary needs LD_LIBRARY_PATH=$VMT_LD_LIBRARY_PATH"
    fi
    export VMT_LD_LIBRARY_PATH
    HOST_TIMINGS+=("host.build_server $(since "$t")")
fi

# ------------------------------------------------------------------ run dir
mkdir -p "$VM_DIR/share"
# kept run dirs (failures, VM_KEEP) hold a disk image each: keep the last 3
# shellcheck disable=SC2012
ls -dt "$VM_DIR"/share/run.?????? 2>/dev/null | tail -n +3 | while read -r old; do rm -rf "$old"; done
RUN="$(mktemp -d "$VM_DIR/share/run.XXXXXX")"
chmod 777 "$RUN"
IMG="$RUN/file-backend.img"
if [[ " $CONFIGS " == *" file "* ]]; then
    truncate -s "$FILE_SIZE" "$IMG" || { say "cannot create $IMG"; exit 2; }
fi

# tls: a CA, the server's certificate (localhost) and a client certificate,
# in nvme-nbd's --tls-certificates layout (the client's pair beside them).
if [[ " $CONFIGS " == *" tls "* ]]; then
    t=$(date +%s.%N)
    command -v certtool >/dev/null || { say "certtool is missing (package gnutls-bin)"; exit 2; }
    TLS="$RUN/tls"
    mkdir -p "$TLS"
    # certtool NAME TEMPLATE ARGS...: a key NAME-key.pem and a certificate NAME-cert.pem
    cert() {
        local name="$1" template="$2"; shift 2
        printf '%s\nexpiration_days = 2\n' "$template" > "$TLS/$name.info"
        certtool --generate-privkey --outfile "$TLS/$name-key.pem" 2>/dev/null &&
            certtool "$@" --load-privkey "$TLS/$name-key.pem" --template "$TLS/$name.info" \
                --outfile "$TLS/$name-cert.pem" >/dev/null 2>&1
    }
    signed=(--generate-certificate --load-ca-certificate "$TLS/ca-cert.pem" --load-ca-privkey "$TLS/ca-key.pem")
    if ! { cert ca $'cn = nvme-nbd VM test CA\nca\ncert_signing_key' --generate-self-signed &&
           cert server $'cn = localhost\ndns_name = localhost\ntls_www_server\nencryption_key\nsigning_key' "${signed[@]}" &&
           cert client $'cn = vm-client\ntls_www_client\nencryption_key\nsigning_key' "${signed[@]}"; }; then
        say "certtool could not make the tls certificates"; exit 2
    fi
    rm -f "$TLS"/*.info "$TLS/ca-key.pem"
    chmod 644 "$TLS"/*.pem
    HOST_TIMINGS+=("host.make_certs $(since "$t")")
fi

# The tree of files the guest writes onto the NBD file system, with its sums:
# generated here (fast) rather than in the guest (/dev/urandom under TCG is
# slow). Layout and sizes are deterministic, contents random: mostly small
# files (<64 KiB), some up to 512 KiB, a few up to 2 MiB, a few empty, and a
# symlink; about 30 MB with the default 240 files.
t=$(date +%s.%N)
mkdir -p "$RUN/tree"
awk -v n="${VM_TREE_FILES:-240}" 'BEGIN {
    srand(20240611)
    for (i = 0; i < n; i++) {
        r = rand()
        if (r < 0.03) sz = 0
        else if (r < 0.75) sz = int(rand() * 65536) + 1
        else if (r < 0.97) sz = int(rand() * 458752) + 65536
        else sz = int(rand() * 1572864) + 524288
        printf "d%02d/s%d/f%04d.bin %d\n", i % 12, int(i / 12) % 3, i, sz
    }
}' | while read -r p sz; do
    mkdir -p "$RUN/tree/${p%/*}"
    head -c "$sz" /dev/urandom > "$RUN/tree/$p"
done
ln -s d00/s0/f0000.bin "$RUN/tree/link-to-first"
(cd "$RUN/tree" && find . -type f | LC_ALL=C sort | xargs sha256sum) > "$RUN/tree.sha256"
tar -C "$RUN/tree" -cf "$RUN/tree.tar" . && rm -rf "$RUN/tree"
HOST_TIMINGS+=("host.make_tree $(since "$t")")

export VMT_SERVER="$SERVER" VMT_BIN="$BIN" VMT_CONFIGS="$CONFIGS" VMT_FILE_IMG="$IMG"
export VMT_MEM_SIZE="${VM_MEM_SIZE:-512M}" VMT_FILE_LBA="${VM_FILE_LBA:-4096}"
export VMT_FIO_SIZE="${VM_FIO_SIZE:-64M}" VMT_TLS_FIO_SIZE="${VM_TLS_FIO_SIZE:-8M}"
export VMT_LOG_LEVEL="${VM_LOG_LEVEL:-notice}"
export VM_PASS_ENV="VMT_SERVER VMT_BIN VMT_CONFIGS VMT_FILE_IMG VMT_MEM_SIZE VMT_FILE_LBA VMT_FIO_SIZE VMT_TLS_FIO_SIZE VMT_LOG_LEVEL VMT_LD_LIBRARY_PATH"
# cache=none on the run share: each pread/pwrite of the file backend is one
# 9p round trip, straight to the host file. (loose was tried: 9p writes dirty
# pages back one page per round trip, so mkfs' discard — zeroes written where
# 9p has no fallocate — took 15-75 s instead of 4 s.)
export VM_RUN_DIR="$RUN" VM_QUIET="${VM_QUIET:-1}" VM_SHARE_CACHE="${VM_SHARE_CACHE:-none}"

say "server: $SERVER${BIN:+ ($BIN)}; configs: $CONFIGS; timeout ${TIMEOUT}s; run dir $RUN"
t=$(date +%s.%N)
"$HERE/run-guest.sh" "$HERE/guest-kernel-client.sh" "$TIMEOUT"
grc=$?
HOST_TIMINGS+=("host.vm_run $(since "$t")")
case "$grc" in
    0) guest_status="guest script finished" ;;
    124) guest_status="TIMEOUT: guest killed after ${TIMEOUT}s" ;;
    125) guest_status="guest reported no exit status (crash, panic or boot failure)" ;;
    *) guest_status="guest script exited with status $grc" ;;
esac

# ------------------------------------------------------------------ host checks
RES="$RUN/all-results.txt"
cp "$RUN/results.txt" "$RES" 2>/dev/null || : > "$RES"
host_result() { echo "RESULT $1 $2 $3" >> "$RES"; }
if [[ " $CONFIGS " == *" file "* ]] && ! grep -q '^RESULT file\.write_tree PASS' "$RES"; then
    # the image holds no file system worth checking
    host_result host.file_fsck FAIL "skipped: the guest did not write the tree on the file backend"
    host_result host.file_checksums FAIL "skipped: the guest did not write the tree on the file backend"
elif [[ " $CONFIGS " == *" file "* ]]; then
    t=$(date +%s.%N)
    if out="$(timeout 120 fsck.ext4 -fn "$IMG" 2>&1)"; then
        host_result host.file_fsck PASS "fsck.ext4 -fn on the image: clean ($(echo "$out" | tail -n 1))"
    else
        host_result host.file_fsck FAIL "rc=$?: $(echo "$out" | tail -n 4 | tr '\n' ' ' | cut -c1-300)"
    fi
    # every file of the tree, read back from the image without mounting it
    dump="$RUN/host-dump"
    rm -rf "$dump"; mkdir -p "$dump"
    if ! timeout 120 debugfs -R "rdump / $dump" "$IMG" > "$RUN/host-dump.log" 2>&1; then
        host_result host.file_checksums FAIL "debugfs rdump failed: $(tail -n 2 "$RUN/host-dump.log" | tr '\n' ' ')"
    elif out="$(cd "$dump" && sha256sum -c --quiet "$RUN/tree.sha256" 2>&1)"; then
        host_result host.file_checksums PASS "$(wc -l < "$RUN/tree.sha256") files read back from the image on the host, all sha256 match"
    else
        host_result host.file_checksums FAIL "$(echo "$out" | grep -c FAILED) mismatches: $(echo "$out" | head -n 3 | tr '\n' ' ')"
    fi
    rm -rf "$dump"
    HOST_TIMINGS+=("host.file_checks $(since "$t")")
fi

# ------------------------------------------------------------------ verdict
expected=(setup.tree)
steps="server_start connect size multiconn fio_verify mkfs write_tree fsck verify_tree disconnect server_stop"
tls_steps="server_start plain_refused connect size multiconn fio_verify disconnect server_stop stats_json"
[[ "$SERVER" == nvme-nbd ]] && steps="$steps stats_json"
for c in $CONFIGS; do
    cs="$steps"; [[ "$c" == tls ]] && cs="$tls_steps"
    for s in $cs; do expected+=("$c.$s"); done
done
[[ " $CONFIGS " == *" file "* ]] && expected+=(host.file_fsck host.file_checksums)

pass=0 fail=0
echo "== kernel-client VM test: server $SERVER, configs: $CONFIGS =="
while read -r _ name status detail; do
    echo "RESULT $name $status $detail"
    if [[ "$status" == PASS ]]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done < "$RES"
for n in "${expected[@]}"; do
    if ! grep -q "^RESULT $n " "$RES"; then
        echo "RESULT $n FAIL missing (${guest_status})"
        echo "RESULT $n FAIL missing (${guest_status})" >> "$RUN/missing.txt"
        fail=$((fail + 1))
    fi
done
# duplicate lines are a harness bug; count them as failures
dups="$(awk '{print $2}' "$RES" | sort | uniq -d | tr '\n' ' ')"
[[ -n "$dups" ]] && { echo "RESULT harness.duplicates FAIL $dups"; fail=$((fail + 1)); }

echo "== timings (seconds) =="
{
    for h in "${HOST_TIMINGS[@]}"; do echo "$h"; done
    sed -n 's/^TIMING \([^ ]*\) \([0-9.]*\)$/\1 \2/p' "$RUN/output.txt" 2>/dev/null
} | awk '{ printf "  %-28s %7s\n", $1, $2 }'
printf '  %-28s %7s\n' host.total "$(since "$T_START")"
echo "$guest_status (run-guest status $grc)"

if [[ -n "${VM_RESULTS_FILE:-}" ]]; then
    cat "$RES" "$RUN/missing.txt" 2>/dev/null > "$VM_RESULTS_FILE"
fi
ok=0; [[ $fail -eq 0 && $pass -gt 0 && $grc -eq 0 ]] && ok=1
if [[ $ok == 1 && "${VM_KEEP:-0}" != 1 ]]; then
    rm -rf "$RUN"
else
    echo "run dir kept: $RUN (console.log, output.txt, dmesg.txt, <config>.*.log, fio and stats JSON, server logs)"
fi
[[ $grc -ne 0 && $fail -eq 0 ]] && fail=1   # e.g. guest script error with all lines present
echo "kernel-client-vm: $pass passed, $fail failed"
[[ $ok == 1 ]] && exit 0
exit 1

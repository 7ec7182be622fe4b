#!/usr/bin/env bash
# run-guest.sh GUEST_SCRIPT [TIMEOUT_SECONDS]
#
# Boots the test guest (see build-guest.sh) under QEMU/TCG with the host root
# shared read-only (9p tag hostroot) and a fresh per-run directory shared
# read-write (9p tag vmshare) at the SAME path inside the guest, runs
# GUEST_SCRIPT there with /bin/sh in a chroot of the host root, powers off.
#
# The per-run directory ($VM_SHARE; printed, and kept) contains:
#   script.sh   copy of GUEST_SCRIPT       env.sh    exported variables
#   console.log serial console (streamed)  guest.out the script's own stdout/err
#   results.txt the "RESULT <name> PASS|FAIL <detail>" lines
#   output.txt  guest.out, or the console when the guest did not exit cleanly
#   rc          the script's exit status   dmesg.txt guest kernel log
#
# Variables passed into the guest: VM_SHARE, plus every name listed in
# VM_PASS_ENV (space separated) that is set on the host.
#
# Environment:
#   VM_DIR           default <repo>/vm         VM_MEM   guest MiB (2048)
#   VM_SMP           guest CPUs (2)            VM_QUIET=1  don't echo console
#   VM_SHARE_CACHE   9p cache mode of the run share: none (default; every
#                    read/write is a 9p round trip) or loose (guest page cache)
#   VM_SHARE_PARENT  where run dirs are made (default $VM_DIR/share)
#   VM_RUN_DIR_FILE  if set, the run dir path is written to this file
#   VM_RUN_DIR       use this existing directory as the run dir (the caller
#                    may have put files there for the guest)
#
# Exit status: the guest script's status; 124 on timeout (QEMU killed);
# 125 if the guest never reported an exit status (crash, panic, boot failure).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VM_DIR="${VM_DIR:-$REPO/vm}"
GUEST="$VM_DIR/guest"

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 GUEST_SCRIPT [TIMEOUT_SECONDS]" >&2; exit 2
fi
SCRIPT="$(readlink -f "$1")"
TIMEOUT="${2:-300}"
[[ -f "$SCRIPT" ]] || { echo "run-guest: no such script: $1" >&2; exit 2; }
[[ -f "$GUEST/vmlinuz" && -f "$GUEST/initrd.gz" ]] || "$HERE/build-guest.sh" || exit 2
command -v qemu-system-x86_64 >/dev/null || { echo "run-guest: qemu-system-x86_64 not found" >&2; exit 2; }

if [[ -n "${VM_RUN_DIR:-}" ]]; then
    # caller-prepared run dir (e.g. with a disk image the guest will use)
    [[ -d "$VM_RUN_DIR" ]] || { echo "run-guest: VM_RUN_DIR $VM_RUN_DIR is not a directory" >&2; exit 2; }
    RUN="$(cd "$VM_RUN_DIR" && pwd -P)"
else
    SHARE_PARENT="${VM_SHARE_PARENT:-$VM_DIR/share}"
    mkdir -p "$SHARE_PARENT"
    RUN="$(mktemp -d "$SHARE_PARENT/run.XXXXXX")"
fi
chmod 777 "$RUN"
[[ "$RUN" != *[[:space:]]* ]] || { echo "run-guest: run dir path has whitespace" >&2; exit 2; }
[[ -n "${VM_RUN_DIR_FILE:-}" ]] && echo "$RUN" > "$VM_RUN_DIR_FILE"

cp "$SCRIPT" "$RUN/script.sh"
{
    printf 'export VM_SHARE=%q\n' "$RUN"
    printf 'export HOME=/tmp\n'
    printf 'export PATH=%q\n' "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for v in ${VM_PASS_ENV:-}; do
        [[ "$v" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
        if [[ -n "${!v+x}" ]]; then
            # single-quote for POSIX sh (printf %q output is bash-only)
            val="${!v//\'/\'\\\'\'}"
            printf "export %s='%s'\n" "$v" "$val"
        fi
    done
} > "$RUN/env.sh"

LOG="$RUN/console.log"
echo "run-guest: run dir $RUN (timeout ${TIMEOUT}s)" >&2
start=$(date +%s.%N)

# QEMU in its own process group so the timeout kill cannot miss children.
qemu_cmd=(qemu-system-x86_64 -accel tcg -m "${VM_MEM:-2048}" -smp "${VM_SMP:-2}"
    -nographic -no-reboot -nodefaults -serial stdio -monitor none
    -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.gz"
    -append "console=ttyS0 panic=-1 quiet loglevel=4 vmtest_share=$RUN vmtest_share_cache=${VM_SHARE_CACHE:-none}"
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
    -virtfs "local,path=$RUN,mount_tag=vmshare,security_model=none,multidevs=remap")

setsid "${qemu_cmd[@]}" </dev/null >"$LOG" 2>&1 &
QPID=$!
if [[ "${VM_QUIET:-0}" != 1 ]]; then
    # strip CRs and the BIOS' terminal escape sequences
    tail -n +1 -F --pid="$QPID" "$LOG" 2>/dev/null |
        sed -u -e 's/\r$//' -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc/\n/g' >&2 &
    TPID=$!
fi
cleanup() { kill -KILL -- "-$QPID" 2>/dev/null; }
trap cleanup EXIT INT TERM

timed_out=0
deadline=$(( $(date +%s) + TIMEOUT ))
while kill -0 "$QPID" 2>/dev/null; do
    if (( $(date +%s) >= deadline )); then
        timed_out=1
        echo "run-guest: TIMEOUT after ${TIMEOUT}s, killing QEMU" >&2
        kill -TERM -- "-$QPID" 2>/dev/null; sleep 2; kill -KILL -- "-$QPID" 2>/dev/null
        break
    fi
    sleep 0.5
done
wait "$QPID" 2>/dev/null; qrc=$?
# tail notices QEMU's exit within a second (--pid); give it a moment to drain
if [[ -n "${TPID:-}" ]]; then
    for _ in 1 2 3 4 5 6; do kill -0 "$TPID" 2>/dev/null || break; sleep 0.5; done
    kill "$TPID" 2>/dev/null; wait "$TPID" 2>/dev/null
fi
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}')

grc="$(tr -d '\r' < "$LOG" | sed -n 's/^VMTEST-EXIT \([0-9]*\).*/\1/p' | tail -n1)"
# Prefer the script's own output (no kernel messages interleaved) when the
# guest shut down cleanly; otherwise (timeout, crash: the share copy may be
# short, e.g. with VM_SHARE_CACHE=loose) use the console.
src="$RUN/guest.out"
if (( timed_out )) || [[ -z "$grc" || ! -s "$src" ]]; then src="$LOG"; fi
tr -d '\r' < "$src" > "$RUN/output.txt"
grep -E '^RESULT [^ ]+ (PASS|FAIL)( |$)' "$RUN/output.txt" > "$RUN/results.txt" || true

echo "run-guest: qemu exit $qrc after ${elapsed}s; $(wc -l < "$RUN/results.txt") RESULT lines" >&2
if (( timed_out )); then echo "$elapsed" > "$RUN/elapsed"; exit 124; fi
echo "$elapsed" > "$RUN/elapsed"
[[ -n "$grc" ]] || { echo "run-guest: guest reported no exit status" >&2; exit 125; }
exit "$grc"

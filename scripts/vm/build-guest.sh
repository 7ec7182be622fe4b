#!/usr/bin/env bash
# build-guest.sh — prepare the QEMU guest used by the kernel-NBD VM tests.
#
# Idempotent. Produces, under $VM_DIR (default: <repo>/vm, git-ignored):
#   cache/<linux-image>.deb   downloaded Debian kernel package (re-used)
#   kernel/<pkg-version>/     the package unpacked with dpkg -x
#   guest/vmlinuz             the guest kernel
#   guest/initrd.gz           busybox + modules + /init (cpio newc, gzip)
#   guest/info                key=value facts (kernel pkg, missing modules)
#
# Kernel choice is deterministic: $KERNEL_PKG (default pinned below). If that
# package is neither cached nor downloadable, the newest
# linux-image-6.1.0-N-amd64-unsigned known to apt is used; if apt cannot
# download anything, the newest cached .deb is used.
#
# Environment:
#   VM_DIR       output directory (default <repo>/vm)
#   KERNEL_PKG   Debian package name of the guest kernel
#   FORCE=1      rebuild the initramfs even if the stamp matches
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VM_DIR="${VM_DIR:-$REPO/vm}"
KERNEL_PKG="${KERNEL_PKG:-linux-image-6.1.0-47-amd64-unsigned}"
CACHE="$VM_DIR/cache"
GUEST="$VM_DIR/guest"

# Modules, in insmod order. Missing ones are assumed built in (reported).
MODULES="virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
netfs fscache 9pnet 9pnet_virtio 9p nbd crc16 mbcache jbd2 crc32c_generic ext4"

log() { echo "build-guest: $*" >&2; }

# ---------------------------------------------------------------- packages
# command -> Debian package that provides it
need_pkgs=()
check() { # check <path-or-command> <package>
    if [[ "$1" == /* ]]; then [[ -e "$1" ]] || need_pkgs+=("$2")
    else command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); fi
}
check qemu-system-x86_64 qemu-system-x86
check /bin/busybox busybox-static
check nbd-client nbd-client
check fio fio
check mkfs.ext4 e2fsprogs
check nbdkit nbdkit
check cpio cpio
check xz xz-utils
check gzip gzip
check dpkg-deb dpkg
check timeout coreutils
check sha256sum coreutils
check blockdev util-linux
# busybox must be the static one (it runs before any library is reachable)
if [[ -e /bin/busybox ]] && ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
    if ! dpkg -s busybox-static >/dev/null 2>&1; then need_pkgs+=(busybox-static); fi
fi
# nbdkit's plugins live in their own package on some releases
if command -v nbdkit >/dev/null 2>&1 && ! nbdkit memory --dump-plugin >/dev/null 2>&1; then
    need_pkgs+=(nbdkit-plugin-memory)
fi
if ((${#need_pkgs[@]})); then
    mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
    log "installing: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || log "apt-get update failed (continuing)"
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
fi
[[ -x /bin/busybox ]] || { log "no /bin/busybox"; exit 1; }

# ---------------------------------------------------------------- kernel
mkdir -p "$CACHE" "$GUEST"

cached_deb() { # newest cached .deb of package $1 (by version), or nothing
    ls "$CACHE/${1}"_*_amd64.deb 2>/dev/null | sort -V | tail -n1
}

download() { # download <pkg> into the cache; prints path on success
    local pkg="$1" deb
    deb="$(cached_deb "$pkg")"
    if [[ -n "$deb" ]]; then echo "$deb"; return 0; fi
    log "downloading $pkg"
    # _apt cannot write into root-owned dirs: download via a world-writable tmp
    local tmp; tmp="$(mktemp -d /tmp/vm-kdl.XXXXXX)"; chmod 777 "$tmp"
    if (cd "$tmp" && apt-get download "$pkg" >&2 2>/dev/null) ||
       (apt-get update -qq >&2 && cd "$tmp" && apt-get download "$pkg" >&2); then
        mv "$tmp"/*.deb "$CACHE/"; rm -rf "$tmp"
        cached_deb "$pkg"; return 0
    fi
    rm -rf "$tmp"; return 1
}

DEB=""
if ! DEB="$(download "$KERNEL_PKG")"; then
    log "$KERNEL_PKG unavailable; falling back to the newest 6.1 image"
    newest="$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' 2>/dev/null |
              awk '{print $1}' | sort -V | tail -n1 || true)"
    if [[ -n "$newest" ]] && DEB="$(download "$newest")"; then
        KERNEL_PKG="$newest"
    else
        DEB="$(ls "$CACHE"/linux-image-*_amd64.deb 2>/dev/null | sort -V | tail -n1 || true)"
        [[ -n "$DEB" ]] || { log "no kernel package could be obtained"; exit 1; }
        log "using cached $DEB"
    fi
fi
DEB_BASE="$(basename "$DEB" .deb)"
KDIR="$VM_DIR/kernel/$DEB_BASE"
if [[ ! -f "$KDIR/.unpacked" ]]; then
    log "unpacking $DEB_BASE"
    rm -rf "$KDIR"; mkdir -p "$KDIR"
    dpkg -x "$DEB" "$KDIR"
    touch "$KDIR/.unpacked"
fi
VMLINUZ="$(ls "$KDIR"/boot/vmlinuz-* | head -n1)"
KVER="${VMLINUZ##*/vmlinuz-}"
MODDIR="$KDIR/lib/modules/$KVER"
[[ -d "$MODDIR" ]] || { log "no modules in $KDIR"; exit 1; }

# ---------------------------------------------------------------- initramfs
STAMP="$DEB_BASE $(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16) $(sha256sum /bin/busybox | cut -c1-16)"
if [[ "${FORCE:-0}" != 1 && -f "$GUEST/initrd.gz" && -f "$GUEST/vmlinuz" &&
      "$(cat "$GUEST/stamp" 2>/dev/null)" == "$STAMP" ]]; then
    log "up to date ($DEB_BASE)"
    exit 0
fi

log "building initramfs for $KVER"
ROOT="$(mktemp -d /tmp/vm-initramfs.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT"/{bin,sbin,dev,proc,sys,mnt,run,tmp,lib/modules}
cp /bin/busybox "$ROOT/bin/busybox"
for a in sh mount umount insmod mkdir cat echo sleep poweroff sync chroot ls tr cut sed grep dmesg; do
    ln -s busybox "$ROOT/bin/$a"
done

order=""; missing=""
for m in $MODULES; do
    f="$(find "$MODDIR/kernel" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" \) | head -n1)"
    if [[ -z "$f" ]]; then
        if grep -qE "/$m\.ko$" "$MODDIR/modules.builtin" 2>/dev/null; then
            missing="$missing $m(builtin)"
        else
            missing="$missing $m(absent)"
        fi
        continue
    fi
    case "$f" in
        *.xz)  xz -dc "$f" > "$ROOT/lib/modules/$m.ko" ;;
        *.zst) zstd -qdc "$f" > "$ROOT/lib/modules/$m.ko" ;;
        *)     cp "$f" "$ROOT/lib/modules/$m.ko" ;;
    esac
    order="$order $m"
done
echo "$order" > "$ROOT/modules.order"
[[ -n "$missing" ]] && log "modules not packaged as .ko (skipped):$missing"

cat > "$ROOT/init" <<'INIT'
#!/bin/sh
# Guest init: load modules, mount the host root (9p, read-only) on /mnt plus
# the read-write run share, chroot and run the requested script, power off.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "VMTEST-BOOTED"
for m in $(cat /modules.order); do
    insmod /lib/modules/$m.ko 2>/dev/null || echo "VMTEST-NOTE insmod $m failed"
done

arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -n1; }
SHARE="$(arg vmtest_share)"
MSIZE="$(arg vmtest_msize)"; MSIZE="${MSIZE:-512000}"
CACHE="$(arg vmtest_cache)"; CACHE="${CACHE:-loose}"
SHARE_CACHE="$(arg vmtest_share_cache)"; SHARE_CACHE="${SHARE_CACHE:-none}"

die() { echo "VMTEST-ERROR $*"; echo "VMTEST-EXIT 125"; sync; poweroff -f; echo o > /proc/sysrq-trigger; sleep 5; }

mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=$MSIZE,cache=$CACHE hostroot /mnt ||
    die "cannot mount 9p hostroot"
# The guest gets its own /run and /tmp. A checkout that lives under the host's
# /tmp or /run (a clone in /tmp/x: its server binary and the run share) would
# be hidden by them, so its top directory is bound back over the tmpfs.
for d in run tmp; do
    top=""
    case "$SHARE" in /$d/?*) top="${SHARE#/$d/}"; top="${top%%/*}" ;; esac
    if [ -n "$top" ]; then
        mkdir -p "/.host$d" && mount -o bind "/mnt/$d" "/.host$d" || die "cannot keep the host's /$d/$top"
    fi
    mount -t tmpfs -o mode=1777 tmpfs /mnt/$d || die "tmpfs /mnt/$d"
    if [ -n "$top" ]; then
        mkdir -p "/mnt/$d/$top" && mount -o bind "/.host$d/$top" "/mnt/$d/$top" ||
            die "cannot bind the host's /$d/$top into the guest"
    fi
done
mount -t proc proc /mnt/proc
mount -t sysfs sysfs /mnt/sys
mount -t devtmpfs devtmpfs /mnt/dev || mount -o bind /dev /mnt/dev
mkdir -p /mnt/dev/shm /mnt/dev/pts 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /mnt/dev/shm
mount -t devpts devpts /mnt/dev/pts 2>/dev/null
[ -n "$SHARE" ] || die "no vmtest_share= on the kernel command line"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=$MSIZE,cache=$SHARE_CACHE vmshare "/mnt$SHARE" ||
    die "cannot mount 9p vmshare on $SHARE"

echo "VMTEST-START"
# The runner left env.sh and script.sh in the share; results go there too.
chroot /mnt /bin/sh -c '
    S="$1"
    { ( . "$S/env.sh"; cd /tmp; exec /bin/sh "$S/script.sh" ) 2>&1; echo $? > "$S/rc"; } | tee "$S/guest.out"
' sh "$SHARE"
RC="$(cat "/mnt$SHARE/rc" 2>/dev/null)"
dmesg > "/mnt$SHARE/dmesg.txt" 2>/dev/null
sync
echo "VMTEST-EXIT ${RC:-125}"
umount "/mnt$SHARE" 2>/dev/null
poweroff -f
echo o > /proc/sysrq-trigger
sleep 10
INIT
chmod 755 "$ROOT/init"

(cd "$ROOT" && find . -print0 | cpio --null -o -H newc --quiet | gzip -6) > "$GUEST/initrd.gz.tmp"
mv "$GUEST/initrd.gz.tmp" "$GUEST/initrd.gz"
cp "$VMLINUZ" "$GUEST/vmlinuz"
cat > "$GUEST/info" <<INFO
kernel_pkg=$DEB_BASE
kernel_version=$KVER
modules_loaded=${order# }
modules_missing=${missing# }
INFO
echo "$STAMP" > "$GUEST/stamp"
log "done: $GUEST/vmlinuz $GUEST/initrd.gz ($(du -h "$GUEST/initrd.gz" | cut -f1))"

#!/usr/bin/env bash
# Prepare the qemu guest harness (tools/vm): host packages, a Debian kernel, an initramfs.
#
# Idempotent: re-running only does what is missing. Run as root on Debian bookworm.
# Everything is cached under $FIDO_EMU_VM_DIR (default: <repo>/.vm, git-ignored):
#   debs/                      downloaded kernel packages
#   kernel-<ver>/              the unpacked linux-image package (boot/, lib/modules/<ver>/)
#   vmlinux-<ver>              the uncompressed ELF kernel (booted through PVH)
#   initramfs-<ver>.cpio       busybox + virtio/9p/overlay modules + tools/vm/initramfs-init
#   vm.conf                    KVER=..., read by tools/vm/harness.py
#
# Options (environment):
#   FIDO_EMU_VM_DIR       cache directory
#   FIDO_EMU_VM_KERNEL    kernel image package to use (default: what linux-image-amd64 depends on)
#   FIDO_EMU_VM_NO_APT=1  do not apt-get install host packages (they must already be present)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
vm_dir="${FIDO_EMU_VM_DIR:-$repo/.vm}"
t0=$(date +%s)

log() { printf '[vm-setup] %s\n' "$*" >&2; }

# --- host packages ---------------------------------------------------------------------------
# harness: qemu, busybox (initramfs), cpio, kmod (depmod/modprobe), python3 (vmlinux extraction)
# guest suites: fido2-tools, openssh-client, bluez(+test tools), dbus, udev, usbutils, iproute2
packages=(
  qemu-system-x86 busybox-static cpio kmod python3 xz-utils zstd ca-certificates
  fido2-tools openssh-client bluez bluez-test-tools dbus udev usbutils iproute2 procps
)
if [[ "${FIDO_EMU_VM_NO_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    if [[ $(id -u) != 0 ]]; then
      log "not root: cannot apt-get install; run as root or set FIDO_EMU_VM_NO_APT=1"
      exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
for cmd in qemu-system-x86_64 cpio depmod modprobe python3 dpkg-deb apt-get; do
  command -v "$cmd" >/dev/null || { log "missing command: $cmd"; exit 1; }
done
busybox=/bin/busybox
[[ -x $busybox ]] || { log "missing $busybox (busybox-static)"; exit 1; }
if ldd "$busybox" >/dev/null 2>&1; then
  log "$busybox is dynamically linked; install busybox-static"
  exit 1
fi

mkdir -p "$vm_dir/debs"

# --- kernel ----------------------------------------------------------------------------------
resolve_kernel() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
download_kernel() { # $1 = package; prints the .deb path
  local deb
  deb="$(find "$vm_dir/debs" -maxdepth 1 -name "${1}_*.deb" | head -n1)"
  if [[ -z $deb ]]; then
    log "downloading $1"
    (cd "$vm_dir/debs" && apt-get download -q "$1") 2>&1 |
      grep -v "^W: Download is performed unsandboxed" >&2 || true
    deb="$(find "$vm_dir/debs" -maxdepth 1 -name "${1}_*.deb" | head -n1)"
  fi
  echo "$deb"
}

kpkg="${FIDO_EMU_VM_KERNEL:-}"
if [[ -z $kpkg && -f $vm_dir/vm.conf ]]; then
  # keep the kernel we already unpacked (stable across apt index updates)
  kpkg="linux-image-$(sed -n 's/^KVER=//p' "$vm_dir/vm.conf")"
  [[ $kpkg != linux-image- ]] || kpkg=
fi
if [[ -z $kpkg ]]; then
  kpkg="$(resolve_kernel)"
  [[ -n $kpkg ]] || { apt-get update -qq && kpkg="$(resolve_kernel)"; }
fi
[[ -n $kpkg ]] || { log "cannot resolve the linux-image-amd64 dependency"; exit 1; }
kver="${kpkg#linux-image-}"
kdir="$vm_dir/kernel-$kver"

if [[ ! -f $kdir/.unpacked ]]; then
  deb="$(download_kernel "$kpkg")"
  if [[ -z $deb && -z ${FIDO_EMU_VM_KERNEL:-} ]]; then
    # stale package lists: the mirror may have moved on to a newer kernel ABI
    log "download failed; apt-get update and retry"
    apt-get update -qq
    kpkg="$(resolve_kernel)"
    kver="${kpkg#linux-image-}"
    kdir="$vm_dir/kernel-$kver"
    deb="$(download_kernel "$kpkg")"
  fi
  [[ -n $deb ]] || { log "apt-get download $kpkg failed"; exit 1; }
  log "unpacking $(basename "$deb")"
  rm -rf "$kdir"
  mkdir -p "$kdir"
  dpkg-deb -x "$deb" "$kdir"
  # the package ships no modules.dep (postinst runs depmod); build it for the unpacked tree
  depmod -b "$kdir" "$kver"
  touch "$kdir/.unpacked"
fi

vmlinux="$vm_dir/vmlinux-$kver"
if [[ ! -f $vmlinux ]]; then
  log "extracting vmlinux"
  python3 "$here/extract_vmlinux.py" "$kdir/boot/vmlinuz-$kver" "$vmlinux"
fi

# --- initramfs -------------------------------------------------------------------------------
initrd="$vm_dir/initramfs-$kver.cpio"
stamp_src="$(cat "$here/initramfs-init" "$here/setup.sh" | sha256sum | cut -c1-16)"
if [[ ! -f $initrd || "$(cat "$initrd.src" 2>/dev/null)" != "$stamp_src" ]]; then
  log "building initramfs"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work"/{bin,dev,proc,sys,lower,rw,newroot,lib/modules}
  cp "$busybox" "$work/bin/busybox"
  ln -s busybox "$work/bin/sh"
  cp "$here/initramfs-init" "$work/init"
  chmod 755 "$work/init"
  # modules needed to reach the root filesystem, in dependency order
  : >"$work/modules.list"
  for m in virtio_pci virtio_mmio 9pnet_virtio 9p overlay; do
    modprobe -d "$kdir" -S "$kver" --show-depends "$m" | while read -r kind path _; do
      [[ $kind == insmod ]] || continue
      name="$(basename "$path")"
      if ! grep -qx "$name" "$work/modules.list"; then
        cp "$path" "$work/lib/modules/$name"
        echo "$name" >>"$work/modules.list"
      fi
    done
  done
  log "initramfs modules: $(tr '\n' ' ' <"$work/modules.list")"
  (cd "$work" && find . -print0 | cpio --null -o -H newc --quiet) >"$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  echo "$stamp_src" >"$initrd.src"
fi

cat >"$vm_dir/vm.conf.tmp" <<EOF
KVER=$kver
KERNEL=$vmlinux
INITRD=$initrd
MODULES=$kdir/lib/modules/$kver
EOF
mv "$vm_dir/vm.conf.tmp" "$vm_dir/vm.conf"
log "ready: kernel $kver in $vm_dir ($(($(date +%s) - t0)) s)"

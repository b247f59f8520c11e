#!/bin/bash
# Stage 2 of the guest, PID 1 after switch_root into the overlay of the host's /. Stage 1
# (tools/vm/initramfs-init) has mounted everything (/proc, /sys, /dev, /run, /tmp, modules).
# tools/vm/harness.py copies this file into the run directory, shared as /vmout, with:
#   /vmout/config.sh   VM_* settings (cwd, modules, udev, dbus, module dir)
#   /vmout/env.sh      exports for the script
#   /vmout/script.sh   the user's script, run with bash as root
# and reads back /vmout/log (script output), /vmout/rc (its exit status), /vmout/stage
# (how far the guest got) and /vmout/dmesg.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb

stage() {
	local up _
	read -r up _ </proc/uptime 2>/dev/null || up='?'
	echo "$1" >/vmout/stage
	echo "$up $1" >>/vmout/stages
}
finish() {
	dmesg >/vmout/dmesg 2>/dev/null
	sync
	echo b >/proc/sysrq-trigger
	sleep 5
}
trap finish EXIT

stage init
echo 1 >/proc/sys/kernel/sysrq
# shellcheck disable=SC1091
. /vmout/config.sh

stage modules
if [ -n "$VM_MODULES" ]; then
	# shellcheck disable=SC2086
	modprobe -a $VM_MODULES || { echo "fido-emu-vm: modprobe -a $VM_MODULES failed" >&2; exit 1; }
fi

stage services
if [ -d /sys/kernel/config ] && [[ $(</proc/mounts) != *" /sys/kernel/config "* ]]; then
	mount -t configfs configfs /sys/kernel/config
fi

if [ "$VM_DBUS" = 1 ]; then
	stage dbus
	mkdir -p /run/dbus
	dbus-daemon --system --fork --nopidfile || echo "fido-emu-vm: dbus-daemon failed" >&2
fi
if [ "$VM_UDEV" = 1 ]; then
	stage udev
	udevd=/lib/systemd/systemd-udevd
	[ -x $udevd ] || udevd=/usr/lib/systemd/systemd-udevd
	$udevd --daemon || echo "fido-emu-vm: systemd-udevd failed" >&2
	# coldplug only what FIDO clients look at (a full trigger autoloads drivers for every
	# emulated PCI/ACPI device and costs ~10 s under TCG); devices created later are seen live
	# shellcheck disable=SC2046,SC2086
	udevadm trigger --action=add $(printf -- '--subsystem-match=%s ' $VM_UDEV_SUBSYSTEMS)
	udevadm settle --timeout=30 || true
fi

stage script
set -a
# shellcheck disable=SC1091
. /vmout/env.sh
set +a
cd "$VM_CWD" || exit 1
# stdout+stderr go to /vmout/log (and are copied to the serial console); stdin is /dev/null
read -r up _ </proc/uptime
echo "fido-emu-vm: running script (uptime $up s)" >/dev/console
# not a pipe: daemons the script leaves running in the background must not hold it open
bash /vmout/script.sh </dev/null >/vmout/log 2>&1 &
spid=$!
tpid=
if [ "$VM_ECHO" = 1 ]; then
	tail -n +1 -s 0.2 --pid="$spid" -f /vmout/log >/dev/console 2>/dev/null &
	tpid=$!
fi
wait "$spid"
rc=$?
[ -n "$tpid" ] && wait "$tpid"
echo "$rc" >/vmout/rc
stage "done"
exit 0

"""Self-tests of the qemu guest harness (tools/vm): one guest boot runs all the kernel checks."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.vm

# A minimal UHID FIDO device: UHID_CREATE2 with the CTAPHID report descriptor, answering
# CTAPHID INIT (in case the client probes it) and nothing else. Layout from
# include/uapi/linux/uhid.h: struct uhid_event is packed, __u32 type + union; the largest
# member is uhid_create2_req (name[128] phys[64] uniq[64] rd_size bus vendor product version
# country rd_data[4096]).
UHID_FIDO = r"""
import os, struct

UHID_DESTROY, UHID_START, UHID_OPEN, UHID_OUTPUT, UHID_CREATE2, UHID_INPUT2 = 1, 2, 4, 6, 11, 12
EVENT_SIZE = 4 + 128 + 64 + 64 + 2 + 2 + 4 * 4 + 4096
BUS_USB = 0x03
DESCRIPTOR = bytes.fromhex(
    "06d0f1 0901 a101"              # usage page 0xF1D0, usage CTAPHID, collection(application)
    "0920 1500 26ff00 7508 9540 8102"  # usage data-in, 0..255, 8 bits x 64, input
    "0921 1500 26ff00 7508 9540 9102"  # usage data-out, 0..255, 8 bits x 64, output
    "c0"
)

def event(kind, payload=b""):
    return struct.pack("<I", kind) + payload.ljust(EVENT_SIZE - 4, b"\0")

fd = os.open("/dev/uhid", os.O_RDWR)
create = struct.pack(
    "<128s64s64sHHIIII4096s",
    b"fido-emu harness test key", b"fido-emu/vm", b"0001",
    len(DESCRIPTOR), BUS_USB, 0x1209, 0xF1D0, 0x0100, 0, DESCRIPTOR,
)
os.write(fd, event(UHID_CREATE2, create))
next_cid = 1
while True:
    data = os.read(fd, EVENT_SIZE)
    (kind,) = struct.unpack_from("<I", data)
    if kind == UHID_START:
        print("uhid: started", flush=True)
        open("/tmp/uhid-ready", "w").close()
    elif kind == UHID_OUTPUT:
        size = struct.unpack_from("<H", data, 4 + 4096)[0]
        report = data[4:4 + size]
        if report[:1] == b"\0" and len(report) == 65:
            report = report[1:]  # report id 0
        cid, cmd = report[:4], report[4]
        if cmd == 0x86 and cid == b"\xff\xff\xff\xff":  # CTAPHID_INIT on the broadcast CID
            nonce = report[7:15]
            body = nonce + struct.pack(">I", next_cid) + bytes([2, 0, 1, 0, 0x0C])
            next_cid += 1
            reply = (cid + bytes([0x86, 0, len(body)]) + body).ljust(64, b"\0")
            os.write(fd, event(UHID_INPUT2, struct.pack("<H", 64) + reply))
            print("uhid: answered INIT", flush=True)
"""


@pytest.fixture(scope="module")
def guest(vm: ModuleType, tmp_path_factory: pytest.TempPathFactory):
    """Boot one guest for all the checks below; each check's output lands in /vmout/<name>."""
    outdir = tmp_path_factory.mktemp("vm-harness")
    (outdir / "uhid_fido.py").write_text(UHID_FIDO)
    script = textwrap.dedent(
        r"""
        set -u
        check() { name=$1; shift; "$@" >"$FIDO_EMU_VM_OUT/$name" 2>&1; echo $? >"$FIDO_EMU_VM_OUT/$name.rc"; }

        kernel() {
            uname -r
            modprobe -a uhid hid_generic
            ls -l /dev/uhid
            test -c /dev/uhid
        }
        gadget() {
            modprobe -a configfs libcomposite usb_f_hid dummy_hcd
            ls /sys/class/udc/
            test -e /sys/class/udc/dummy_udc.0
        }
        guestenv() {
            echo "cwd=$(pwd) var=$HARNESS_TEST_VAR"
            touch /tmp/writable && echo tmp-writable
            ip -o addr show lo
            python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); c = socket.create_connection(s.getsockname()); print("loopback-ok")'
            nproc
            test -S /run/dbus/system_bus_socket && echo dbus-ok
            pgrep -x systemd-udevd >/dev/null && echo udevd-ok
        }
        uhid_fido() {
            python3 "$FIDO_EMU_VM_OUT/uhid_fido.py" > /tmp/uhid.log 2>&1 &
            pid=$!
            for _ in $(seq 300); do [ -e /tmp/uhid-ready ] && break; sleep 0.1; done
            for _ in $(seq 50); do ls /dev/hidraw* >/dev/null 2>&1 && break; sleep 0.1; done
            grep -H . /sys/class/hidraw/hidraw*/device/uevent
            udevadm settle --timeout=20
            udevadm info /dev/hidraw0 | grep -E "ID_FIDO_TOKEN|DEVNAME"
            fido2-token -L
            rc=$?
            # CTAPHID INIT round trip through hidraw: the nonce must come back
            python3 -c '
        import glob, os
        fd = os.open(glob.glob("/dev/hidraw*")[0], os.O_RDWR)
        nonce = os.urandom(8)
        os.write(fd, bytes(1) + (b"\xff" * 4 + bytes([0x86, 0, 8]) + nonce).ljust(64, bytes(1)))
        reply = os.read(fd, 64)
        assert reply[4] == 0x86 and reply[7:15] == nonce, reply.hex()
        print("ctaphid-init-ok cid=" + reply[15:19].hex())
        ' || rc=1
            kill $pid
            cat /tmp/uhid.log
            return $rc
        }
        check kernel kernel
        check gadget gadget
        check guestenv guestenv
        check uhid_fido uhid_fido
        exit 7
        """
    )
    start = time.monotonic()
    result = vm.run_in_guest(
        script,
        timeout=240,
        modules=[],
        env={"HARNESS_TEST_VAR": "hello world"},
        outdir=outdir,
        udev=True,
        dbus=True,
    )
    print(f"guest: boot {result.boot_time} s, total {time.monotonic() - start:.1f} s")
    return result


def _check(result, name: str) -> str:
    out = Path(result.outdir, name).read_text() if Path(result.outdir, name).exists() else ""
    rc_file = Path(result.outdir, f"{name}.rc")
    assert rc_file.exists(), f"check {name} did not run\n{result.log[-3000:]}"
    assert rc_file.read_text().strip() == "0", f"check {name} failed:\n{out}"
    return out


def test_exit_status_and_environment(guest) -> None:
    assert guest.returncode == 7, guest.log
    assert guest.boot_time is not None and guest.boot_time < guest.elapsed
    out = _check(guest, "guestenv")
    assert f"cwd={Path(__file__).resolve().parents[2]} var=hello world" in out
    assert "tmp-writable" in out
    assert "127.0.0.1" in out
    assert "loopback-ok" in out
    assert "dbus-ok" in out and "udevd-ok" in out, out
    # the script's output reaches both the log and the console
    assert "fido-emu-vm: running script" in guest.console


def test_uhid_module(guest) -> None:
    out = _check(guest, "kernel")
    assert out.splitlines()[0].strip().endswith("-amd64"), out
    assert "/dev/uhid" in out


def test_dummy_udc(guest) -> None:
    assert "dummy_udc.0" in _check(guest, "gadget")


def test_uhid_fido_device_listed_by_libfido2(guest) -> None:
    out = _check(guest, "uhid_fido")
    # kernel side: hid-generic bound the UHID device and made a hidraw node
    assert "HID_NAME=fido-emu harness test key" in out, out
    # udev processed the new hidraw node (systemd's fido_id builtin recognised it)
    assert "ID_FIDO_TOKEN=1" in out, out
    # libfido2 side: it enumerated the hidraw node and recognised the FIDO usage page
    listed = [line for line in out.splitlines() if line.startswith("/dev/hidraw")]
    assert any("vendor=0x1209, product=0xf1d0" in line for line in listed), out
    assert "ctaphid-init-ok cid=00000001" in out, out


# A hang guard, not a measurement: a harness that waits for the guest instead of killing it
# at its timeout would sit out the guest's 600 s sleep and trip this.
@pytest.mark.timeout(240)
def test_hung_guest_is_killed_at_timeout(vm: ModuleType) -> None:
    with pytest.raises(vm.GuestTimeout) as excinfo:
        vm.run_in_guest("echo script-started; sleep 600", timeout=15)
    assert "timeout" in str(excinfo.value)
    partial = excinfo.value.result
    assert partial.returncode == -1  # cut off: the script never reported an exit status
    # the output written before the hang is not lost (unless the guest was slow to boot)
    if partial.stage == "script":
        assert "script-started" in partial.log

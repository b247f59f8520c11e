"""UHID and USB-gadget transports proven in a real kernel (qemu guest): libfido2 + OpenSSH."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]
SCRIPT = Path(__file__).with_name("vm_usb_guest.sh")


def test_libfido2_and_openssh_against_uhid_and_gadget(vm):
    result = vm.run_in_guest(
        f"FIDO_EMU_PYTHON={sys.executable} bash {SCRIPT}\n",
        timeout=1500,
        modules=["uhid", "hid_generic", "configfs", "libcomposite", "usb_f_hid", "dummy_hcd", "usbhid"],
        udev=True,
    )
    checks = [line for line in result.log.splitlines() if line.startswith("CHECK")]
    print("\n".join(checks))
    assert result.returncode == 0, "\n".join(result.log.splitlines()[-60:])
    assert "ALL CHECKS PASSED" in result.log

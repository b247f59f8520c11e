"""Roaming scenario: headless Chromium in a qemu guest with the emulator as a UHID security key,
against the demo RP (python-fido2 Fido2Server verifies every ceremony server-side)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.timeout(2400)]


def test_chromium_uses_the_uhid_key(vm):
    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed (apt-get install chromium)", pytrace=False)
    import playwright  # noqa: F401  (a dev dependency: missing is a failure, not a skip)
    script = Path(__file__).with_name("vm_roaming_guest.sh")
    result = vm.run_in_guest(
        f"FIDO_EMU_PYTHON={sys.executable} bash {script}\n",
        timeout=2000,
        modules=["uhid", "hid_generic"],
        udev=True,
        memory_mib=3072,
    )
    report = [line for line in result.log.splitlines() if line.startswith(("CHECK", "EMU", "ROAMING"))]
    print("\n".join(report))
    out = Path("test-artifacts")
    out.mkdir(exist_ok=True)
    (out / "roaming-vm.log").write_text(result.log)
    assert result.returncode == 0, "\n".join(result.log.splitlines()[-60:])

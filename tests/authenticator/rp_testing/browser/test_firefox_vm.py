"""Roaming scenario in Firefox: headless firefox-esr in a qemu guest, driven by puppeteer-core
over WebDriver BiDi, uses the emulator as a UHID security key against the demo RP (python-fido2
Fido2Server verifies every ceremony). Firefox talks to USB keys through authenticator-rs.

Set up with ``tools/browser/setup-firefox.sh`` (firefox-esr; puppeteer-core into
``$FIDO_EMU_NODE_DIR``, default ``.vm/node``). Skipped when something is missing, unless
FIDO_EMU_REQUIRE_BROWSER=1 (then it fails).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[4]


def _node_dir() -> Path:
    return Path(os.environ.get("FIDO_EMU_NODE_DIR") or REPO / ".vm" / "node").resolve()


def _missing() -> list[str]:
    missing = []
    if shutil.which("firefox-esr") is None:
        missing.append("firefox-esr (apt-get install firefox-esr)")
    if shutil.which("node") is None:
        missing.append("node (apt-get install nodejs npm)")
    if not (_node_dir() / "node_modules" / "puppeteer-core" / "package.json").is_file():
        missing.append(f"puppeteer-core in {_node_dir()} (tools/browser/setup-firefox.sh)")
    return missing


def test_firefox_uses_the_uhid_key(vm):
    missing = _missing()
    if missing:
        reason = "Firefox roaming test needs " + "; ".join(missing)
        if os.environ.get("FIDO_EMU_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(f"FIDO_EMU_REQUIRE_BROWSER=1: {reason}", pytrace=False)
        pytest.skip(reason)
    script = Path(__file__).with_name("vm_firefox_guest.sh")
    result = vm.run_in_guest(
        f"bash {script}\n",
        timeout=1100,
        modules=["uhid", "hid_generic"],
        env={"FIDO_EMU_PYTHON": sys.executable, "FIDO_EMU_NODE_DIR": str(_node_dir())},
        cwd=REPO,
        udev=True,
        memory_mib=3072,
    )
    report = [
        line for line in result.log.splitlines() if line.startswith(("CHECK", "EMU", "FIREFOX"))
    ]
    print("\n".join(report))
    out = Path("test-artifacts")
    out.mkdir(exist_ok=True)
    (out / "firefox-vm.log").write_text(result.log)
    assert result.returncode == 0, "\n".join(result.log.splitlines()[-60:])

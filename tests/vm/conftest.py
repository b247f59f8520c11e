"""Fixtures for kernel-level end-to-end tests that run inside a qemu guest (tools/vm).

``vm`` (session scope) gives the harness module (``vm.run_in_guest(...)``,
``vm.GuestResult``, ...). When the VM is not set up (tools/vm/setup.sh not run, qemu missing)
the requesting test is skipped with the reason, unless FIDO_EMU_REQUIRE_VM=1, in which case it
fails. Tests marked ``@pytest.mark.vm`` get the same check even if they do not use the fixture.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

HARNESS_PATH = Path(__file__).resolve().parents[2] / "tools" / "vm" / "harness.py"
_MODULE_NAME = "fido_emu_vm_harness"


def load_harness() -> ModuleType:
    """Import tools/vm/harness.py (tools/ is not a package of the distribution)."""
    if _MODULE_NAME in sys.modules:
        return sys.modules[_MODULE_NAME]
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, HARNESS_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_MODULE_NAME]
        raise
    return module


def vm_required() -> bool:
    return os.environ.get("FIDO_EMU_REQUIRE_VM", "") not in ("", "0")


def require_vm() -> ModuleType:
    """Return the harness module, or skip (fail if FIDO_EMU_REQUIRE_VM=1) without a VM."""
    harness = load_harness()
    ok, reason = harness.vm_available()
    if not ok:
        if vm_required():
            pytest.fail(f"FIDO_EMU_REQUIRE_VM=1 but the VM is unavailable: {reason}", pytrace=False)
        pytest.skip(f"qemu guest harness unavailable: {reason}")
    return harness


@pytest.fixture(scope="session")
def vm() -> ModuleType:
    """The tools/vm harness module; skips (or fails under FIDO_EMU_REQUIRE_VM=1) without a VM."""
    return require_vm()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("vm") is not None:
        require_vm()

"""tools/examples/test_page_bridge_example.py runs as a user would run it: pytest with only
the installed plugin's fixtures (``fido_page``, ``fido_bridge``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]


def test_the_readme_example_passes():
    example = ROOT / "tools/examples/test_page_bridge_example.py"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(example), "-q", "-p", "no:cacheprovider"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=dict(os.environ),
    )
    if "skipped" in run.stdout and os.environ.get("FIDO_EMU_REQUIRE_BROWSER") != "1":
        import pytest

        pytest.skip("no browser here: " + run.stdout.strip().splitlines()[-1])
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout + run.stderr

"""The README's Playwright and Selenium examples run as written, without pytest importable
(the browser helpers live in authenticator.rp_testing.browser), against the demo RP."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from authenticator.rp_testing.pytest_plugin import browser_unavailable, chromium_executable

ROOT = Path(__file__).resolve().parents[3]


def readme_block(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    after = text[text.index(f"**{title}**"):]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


@pytest.fixture(scope="module")
def rp_url():
    spec = importlib.util.spec_from_file_location("readme_rp_demo", ROOT / "tools/rp-demo/server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_rp_demo"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    url, stop = module.start(port=0)
    yield url
    stop()


def run_without_pytest(code: str, cwd: Path, rp_url: str) -> subprocess.CompletedProcess:
    guard = "import sys; sys.modules['pytest'] = None  # 'import pytest' now fails\n"
    return subprocess.run(
        [sys.executable, "-c", guard + code], cwd=cwd, capture_output=True, text=True,
        timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "RP_URL": rp_url},
    )


def test_browser_helpers_import_without_pytest(tmp_path):
    out = run_without_pytest(
        "from authenticator.rp_testing.browser import CHROMIUM_ARGS, attach_passkeys, "
        "attach_passkeys_selenium, attach_passkeys_async\nprint(len(CHROMIUM_ARGS))",
        tmp_path, "",
    )
    assert out.returncode == 0, out.stderr


def test_readme_playwright_example(tmp_path, rp_url):
    chromium_executable()
    try:
        import playwright  # noqa: F401
    except ImportError:
        browser_unavailable("playwright is not installed")
    out = run_without_pytest(readme_block("Playwright"), tmp_path, rp_url)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "passkeys in passkeys.db: 1" in out.stdout


def test_readme_selenium_example(tmp_path, rp_url):
    chromium_executable()
    if not os.access("/usr/bin/chromedriver", os.X_OK) and not shutil.which("chromedriver"):
        browser_unavailable("no chromedriver (apt-get install chromium-driver)")
    out = run_without_pytest(readme_block("Selenium"), tmp_path, rp_url)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "passkeys in passkeys.db: 1" in out.stdout

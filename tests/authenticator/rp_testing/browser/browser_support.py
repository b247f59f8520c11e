"""Helpers of the browser suites: the demo RP loaded by path, ceremonies driven through its
pages, screenshots into test-artifacts/ (gitignored). A module, not conftest.py, so tests
can import it by a name no other conftest shadows."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[4]
ARTIFACTS = ROOT / "test-artifacts"


def load_rp_demo() -> ModuleType:
    """tools/ is not a package: load tools/rp-demo/server.py by path."""
    name = "fido_emu_rp_demo"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools/rp-demo/server.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def post(url: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The RP's JSON API from Python (the CLI / in-process client side of a test)."""
    request = urllib.request.Request(
        url + path, json.dumps(body).encode(), {"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def ceremony(page: Any, url: str, path: str, username: str | None = None,
             timeout_ms: float = 15_000, shot: str | None = None) -> tuple[str, dict[str, Any]]:
    """Open a demo RP page, press its button, wait for the RP's verdict.
    Our own timeout: headless Chromium ignores the WebAuthn one when it wants UI."""
    page.goto(url + path)
    if username is not None:
        page.fill("#username", username)
    page.click("#go")
    page.wait_for_selector("#result[data-state]", timeout=timeout_ms)
    if shot:
        screenshot(page, shot)
    state = page.get_attribute("#result", "data-state")
    return state, json.loads(page.text_content("#result") or "{}")


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


class Stopwatch:
    """Timings the report quotes; printed with -s."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __enter__(self) -> Stopwatch:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.ms = (time.perf_counter() - self.t0) * 1000
        print(f"[timing] {self.label}: {self.ms:.0f} ms")

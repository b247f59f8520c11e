"""Browser helpers for RP tests, importable without pytest (Playwright or Selenium scripts,
your own fixtures): Chromium's headless flags, where Chromium is, and attaching our
authenticator's credentials to a tab through the DevTools virtual authenticator
(:mod:`authenticator.rp_testing.cdp_bridge`). The pytest plugin re-exports all of it.

Never run ``playwright install``: use Debian's ``/usr/bin/chromium`` (``$FIDO_EMU_CHROMIUM``)
and ``/usr/bin/chromedriver`` (``$FIDO_EMU_CHROMEDRIVER``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Any

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class BrowserUnavailable(RuntimeError):
    """No Chromium/chromedriver/driver library here: the message says what to install."""


def find_chromium() -> str:
    """The Chromium binary to drive: ``$FIDO_EMU_CHROMIUM`` or ``/usr/bin/chromium``."""
    path = os.environ.get("FIDO_EMU_CHROMIUM", "/usr/bin/chromium")
    if not os.access(path, os.X_OK):
        raise BrowserUnavailable(
            f"no Chromium at {path} (apt-get install chromium, or set FIDO_EMU_CHROMIUM)"
        )
    return path


def find_chromedriver() -> str:
    """``$FIDO_EMU_CHROMEDRIVER``, else ``chromedriver`` on PATH (Debian's chromium-driver)."""
    path = os.environ.get("FIDO_EMU_CHROMEDRIVER") or shutil.which("chromedriver")
    if not path:
        raise BrowserUnavailable("no chromedriver (apt-get install chromium-driver)")
    return path


def attach_passkeys(page: Any, authenticator: Any, **kw: Any):
    """Put ``authenticator``'s credentials into a Playwright (sync API) page's tab.
    Returns the :class:`~authenticator.rp_testing.cdp_bridge.SyncCdpBridge`; call ``.export()``
    to bring back what the browser created."""
    from authenticator.rp_testing.cdp_bridge import playwright_sync_bridge

    return playwright_sync_bridge(page, authenticator, **kw)


async def attach_passkeys_async(page: Any, authenticator: Any, **kw: Any):
    """:func:`attach_passkeys` for Playwright's async API; returns a ``CdpBridge``."""
    from authenticator.rp_testing.cdp_bridge import playwright_bridge

    return await playwright_bridge(page, authenticator, **kw)


def attach_passkeys_selenium(driver: Any, authenticator: Any, **kw: Any):
    """:func:`attach_passkeys` for a Selenium Chrome/Chromium driver (``execute_cdp_cmd``)."""
    from authenticator.rp_testing.cdp_bridge import selenium_bridge

    return selenium_bridge(driver, authenticator, **kw)


@dataclass
class PasskeySession:
    """One browser tab with our authenticator attached."""

    page: Any
    bridge: Any
    authenticator: Any


__all__ = [
    "CHROMIUM_ARGS",
    "BrowserUnavailable",
    "PasskeySession",
    "attach_passkeys",
    "attach_passkeys_async",
    "attach_passkeys_selenium",
    "find_chromedriver",
    "find_chromium",
]

"""pytest plugin (entry point ``pytest11``): an emulated passkey in any test suite.

Fixtures:

* ``fido_authenticator`` - an :class:`Authenticator` (security-key profile) on a temporary
  SQLite store; parametrize the profile with ``@pytest.mark.fido_profile("synced-passkey")``.
* ``fido_device`` - the same authenticator as a python-fido2 ``CtapDevice``.
* ``webauthn_client`` - a factory ``webauthn_client(origin, pin=None, top_origin=None,
  related_origins=None)`` returning a
  :class:`authenticator.rp_testing.webauthn.WebAuthnClient` that takes and returns WebAuthn L3 JSON.
* ``fido_chromium`` - (module scope) a headless Chromium launched by Playwright's sync API
  from ``$FIDO_EMU_CHROMIUM`` or ``/usr/bin/chromium``. Skips the test when Chromium or
  Playwright is missing, unless ``FIDO_EMU_REQUIRE_BROWSER=1`` (then it fails).
* ``passkeys`` - a :class:`PasskeySession`: a fresh browser context and page whose tab has
  a CDP virtual authenticator carrying ``fido_authenticator``'s credentials; at teardown,
  credentials and counters the browser created are exported back into the store.
* ``passkey_page`` - just ``passkeys.page``.
* ``fido_page`` - a fresh Chromium context and page whose WebAuthn calls (every frame) go to
  ``fido_authenticator`` through the page bridge (:mod:`authenticator.rp_testing.page_bridge`):
  our AAGUID, attestation, counters and faults, no kernel needed.
* ``fido_bridge`` - that page's :class:`~authenticator.rp_testing.page_bridge.PageBridge`
  (``.events``, ``.signals``, ``.faults.arm(...)``, ``.choose(user_name=...)`` for autofill).
* ``fido_page_bridge`` - a factory for your own browsers: ``fido_page_bridge(target)`` bridges
  a Playwright sync page/context, an async one (``await fido_page_bridge(page)``) or a
  Selenium driver started with ``options.enable_bidi = True``, to ``fido_authenticator``;
  closed at teardown. Attach before the first navigation.

Helpers for your own browser fixtures or plain scripts live in
:mod:`authenticator.rp_testing.browser` (importable without pytest) and are re-exported here:
:func:`attach_passkeys` (Playwright sync page, e.g. pytest-playwright's ``page``),
:func:`attach_passkeys_async` (Playwright async page) and
:func:`attach_passkeys_selenium` (Selenium Chrome/Chromium driver). See
:mod:`authenticator.rp_testing.cdp_bridge` for what does and does not carry over to the browser.

A complete test of a third-party RP (here at https://rp.example; any URL works)::

    import pytest

    @pytest.mark.fido_profile("platform")
    def test_passkey_round_trip(passkeys, webauthn_client):
        page = passkeys.page
        page.goto("https://rp.example/signup")
        page.fill("#username", "alice")
        page.click("text=Create a passkey")             # the browser's virtual authenticator
        page.wait_for_selector("text=Welcome, alice")   # answers with our profile's flags
        passkeys.bridge.export()                        # the new passkey is now in our store
        assert passkeys.authenticator.store.count_discoverable() == 1
        # ... and signs in without a browser:
        client = webauthn_client("https://rp.example")
        # client.get(options_json_from_your_server) -> AuthenticationResponseJSON
"""

from __future__ import annotations

import os
from typing import Any, NoReturn

import pytest

# the browser helpers live in a module without pytest; re-exported for existing imports
from authenticator.rp_testing.browser import (  # noqa: F401
    CHROMIUM_ARGS,
    BrowserUnavailable,
    PasskeySession,
    attach_passkeys,
    attach_passkeys_async,
    attach_passkeys_selenium,
    find_chromedriver,
    find_chromium,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fido_profile(name): the fido-emulator profile for fido_authenticator"
    )


@pytest.fixture
def fido_authenticator(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    from authenticator import Authenticator, Config
    from storage.sqlite import SqliteStore

    marker = request.node.get_closest_marker("fido_profile")
    profile = marker.args[0] if marker else "security-key"
    store = SqliteStore(tmp_path_factory.mktemp("fido-emu") / "store.db")
    auth = Authenticator(Config.for_profile(profile), store)
    yield auth
    auth.counters.release()  # a clean shutdown, like the CLI's
    store.close()


@pytest.fixture
def fido_device(fido_authenticator):
    from transports.inprocess import InProcessDevice

    device = InProcessDevice(fido_authenticator, transport=fido_authenticator.config.transports[0])
    yield device
    device.close()


@pytest.fixture
def webauthn_client(fido_device, fido_authenticator):
    from authenticator.rp_testing.webauthn import WebAuthnClient

    def factory(
        origin: str,
        pin: str | None = None,
        *,
        top_origin: str | None = None,
        related_origins: dict | None = None,
    ) -> WebAuthnClient:
        cfg = fido_authenticator.config
        return WebAuthnClient(
            fido_device,
            origin,
            top_origin=top_origin,
            pin=pin,
            transports=list(cfg.transports),
            attachment="platform" if cfg.platform_attachment else "cross-platform",
            related_origins=related_origins,
        )

    return factory


# -- browsers ------------------------------------------------------------------------------


def browser_unavailable(reason: str) -> NoReturn:
    """Skip, or fail when CI promised a browser (``FIDO_EMU_REQUIRE_BROWSER=1``)."""
    if os.environ.get("FIDO_EMU_REQUIRE_BROWSER", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser required (FIDO_EMU_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


def chromium_executable() -> str:
    """The Chromium binary to drive; skips (or fails) when there is none."""
    try:
        return find_chromium()
    except BrowserUnavailable as e:
        browser_unavailable(str(e))


@pytest.fixture(scope="module")
def fido_chromium():
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_unavailable("playwright is not installed (pip install playwright)")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    except Exception as e:
        pw.stop()
        browser_unavailable(f"Chromium did not start: {e}")
    yield browser
    browser.close()
    pw.stop()


@pytest.fixture
def passkeys(fido_chromium, fido_authenticator):
    context = fido_chromium.new_context()
    page = context.new_page()
    bridge = attach_passkeys(page, fido_authenticator)
    yield PasskeySession(page=page, bridge=bridge, authenticator=fido_authenticator)
    try:
        bridge.detach(export=True)
    finally:
        context.close()


@pytest.fixture
def passkey_page(passkeys):
    return passkeys.page


# -- page bridge ---------------------------------------------------------------------------


@pytest.fixture
def _fido_bridged(fido_chromium, fido_authenticator):
    from authenticator.rp_testing.page_bridge import attach_playwright

    context = fido_chromium.new_context()
    bridge = attach_playwright(context, fido_authenticator)
    page = context.new_page()
    yield page, bridge
    try:
        context.close()
    finally:
        bridge.close()


@pytest.fixture
def fido_page(_fido_bridged):
    return _fido_bridged[0]


@pytest.fixture
def fido_bridge(_fido_bridged):
    return _fido_bridged[1]


@pytest.fixture
def fido_page_bridge(fido_authenticator):
    from authenticator.rp_testing.page_bridge import attach

    bridges: list[Any] = []

    def factory(target: Any, **kw: Any):
        out = attach(target, fido_authenticator, **kw)
        if not hasattr(out, "__await__"):
            bridges.append(out)
            return out

        async def attached():
            bridge = await out
            bridges.append(bridge)
            return bridge

        return attached()

    yield factory
    for bridge in bridges:
        bridge.close()

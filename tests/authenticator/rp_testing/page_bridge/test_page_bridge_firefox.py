"""The same SimpleWebAuthn page in Debian's Firefox ESR, bridged over WebDriver BiDi (Firefox's
own Remote Agent: no geckodriver, no browser download)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from swa_rp import cross_origin_servers

from authenticator.rp_testing.page_bridge import FirefoxBidi
from authenticator.rp_testing.pytest_plugin import browser_unavailable


@pytest.fixture(scope="module")
def firefox():
    executable = os.environ.get("FIDO_EMU_FIREFOX") or shutil.which("firefox-esr") or \
        shutil.which("firefox")
    if not executable:
        browser_unavailable("no firefox-esr (apt-get install firefox-esr)")
    try:
        import selenium  # noqa: F401  (its BiDi WebSocket client)
    except ImportError:
        browser_unavailable("selenium is not installed (pip install selenium)")
    try:
        browser = FirefoxBidi(executable)
    except Exception as e:
        browser_unavailable(f"Firefox did not start: {e}")
    yield browser
    browser.close()


@pytest.fixture
def ff_bridge(firefox, fido_authenticator):
    bridge = firefox.attach(fido_authenticator)
    yield bridge
    bridge.close()


def test_firefox_register_sign_in_and_autofill(firefox, ff_bridge, swa_server):
    firefox.navigate(swa_server.url + "/")
    reg = firefox.evaluate("rp.register('alice')")
    assert reg.get("verified") and reg["fmt"] == "packed", reg
    assert reg["aaguid"].replace("-", "") == ff_bridge.authenticator.config.aaguid.hex()
    first = firefox.evaluate("rp.login('alice')")
    assert first.get("verified"), first

    assert firefox.evaluate("rp.autofill()") is True
    pending = ff_bridge.wait_conditional()
    assert [a.user_name for a in pending.accounts] == ["alice"]
    ff_bridge.choose(pending, user_name="alice")
    got = firefox.evaluate("rp.autofillResult()")
    assert got.get("verified") and got["signCount"] > first["signCount"], got

    ff_bridge.faults.arm("bad-signature")
    bad = firefox.evaluate("rp.login('alice')")
    assert not bad.get("verified") and "signature" in bad["error"].lower(), bad


def test_firefox_cross_origin_iframe(firefox, ff_bridge, swa_bundle):
    top, frame = cross_origin_servers(swa_bundle)
    try:
        for path, allowed in (("/deny", False), ("/allow", True)):
            firefox.navigate(top.url + path)
            (child,) = firefox.frames()
            out = json.loads(firefox.evaluate(
                "outcome(navigator.credentials.create({publicKey: pk})).then(JSON.stringify)",
                context=child,
            ))
            if not allowed:
                assert out["error"] == "NotAllowedError", out
                continue
            assert out.get("ok"), out
            assert out["clientData"]["crossOrigin"] is True
            assert out["clientData"]["topOrigin"] == top.url
            assert out["clientData"]["origin"] == frame.url
        # without transient user activation, a cross-origin create() is refused (as Chromium)
        firefox.navigate(top.url + "/allow")
        (child,) = firefox.frames()
        out = json.loads(firefox.evaluate(
            "outcome(navigator.credentials.create({publicKey: pk})).then(JSON.stringify)",
            context=child, user_activation=False,
        ))
        assert out["error"] == "NotAllowedError" and "activation" in out["message"], out
    finally:
        top.close()
        frame.close()

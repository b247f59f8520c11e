"""Headless Chromium (Playwright, sync API) + CDP virtual authenticator carrying our
credentials, against the demo RP whose Fido2Server verifies every ceremony."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from browser_support import Stopwatch, ceremony, post, screenshot

from authenticator import Authenticator, Config
from authenticator.rp_testing.cdp_bridge import virtual_authenticator_options
from authenticator.rp_testing.pytest_plugin import attach_passkeys
from storage.sqlite import SqliteStore


def _stored_count(auth: Authenticator, cred_id: bytes) -> int:
    cred = auth.credentials.resolve(cred_id, _hash("localhost"))
    assert cred is not None, "credential not in our store"
    return auth.counters.peek(auth.counter_key(cred))


def _hash(rp_id: str) -> bytes:
    import hashlib

    return hashlib.sha256(rp_id.encode()).digest()


def _raw(b64url: str) -> bytes:
    return base64.urlsafe_b64decode(b64url + "=" * (-len(b64url) % 4))


@pytest.mark.fido_profile("platform")
def test_platform_register_signin_reauth_export(passkeys, rp_url, rp):
    page, auth = passkeys.page, passkeys.authenticator
    opts = virtual_authenticator_options(auth)
    assert opts["transport"] == "internal" and opts["hasUserVerification"]
    with Stopwatch("browser register (platform)"):
        state, reg = ceremony(page, rp_url, "/register", "alice", shot="platform-register")
    assert state == "ok", reg
    assert reg["uv"] is True and reg["be"] is False
    with Stopwatch("browser discoverable sign-in"):
        state, got = ceremony(page, rp_url, "/signin", shot="platform-signin")
    assert state == "ok", got
    assert got["username"] == "alice" and got["uv"] is True
    state, again = ceremony(page, rp_url, "/reauth", "alice", shot="platform-reauth")
    assert state == "ok", again
    assert again["signCount"] > got["signCount"]
    assert rp.credentials[reg["credentialId"]].sign_count == again["signCount"]

    result = passkeys.bridge.export()
    cred_id = _raw(reg["credentialId"])
    assert result.added == [cred_id]
    record = auth.store.get_credential(cred_id)
    assert record is not None and record.discoverable and record.user_name == "alice"
    assert _stored_count(auth, cred_id) == again["signCount"]
    # a second export changes nothing: counters only move forward
    assert passkeys.bridge.export().added == []


def test_security_key_without_pin(passkeys, rp_url):
    """No PIN, no built-in UV: Chromium refuses discoverable credentials on a USB key (a
    real Chrome would ask to set a PIN), non-discoverable ones work."""
    page, auth = passkeys.page, passkeys.authenticator
    opts = virtual_authenticator_options(auth)
    assert opts["transport"] == "usb" and not opts["hasUserVerification"]
    state, err = ceremony(page, rp_url, "/register", "bob")
    assert state == "error" and "NotAllowedError" in err["error"]
    state, reg = ceremony(page, rp_url, "/register?residentKey=discouraged", "bob",
                          shot="security-key-register")
    assert state == "ok", reg
    assert reg["uv"] is False and reg["be"] is False
    state, got = ceremony(page, rp_url, "/reauth", "bob")
    assert state == "ok" and got["username"] == "bob", got
    state, err = ceremony(page, rp_url, "/signin")  # account picker needs UV on a USB key
    assert state == "error" and "NotAllowedError" in err["error"]
    page.goto(rp_url + "/conditional")  # only an internal authenticator offers autofill
    page.wait_for_selector("body[data-conditional=unavailable]", timeout=5_000)
    cred_id = _raw(reg["credentialId"])
    assert passkeys.bridge.export().added == [cred_id]
    record = auth.store.get_credential(cred_id)
    assert record is not None and not record.discoverable


def test_security_key_with_pin(fido_chromium, fido_authenticator, fido_device, rp_url):
    """A PIN makes the virtual authenticator UV-capable: discoverable credentials work."""
    from fido2.ctap2 import Ctap2
    from fido2.ctap2.pin import ClientPin

    ClientPin(Ctap2(fido_device)).set_pin("1234")
    context = fido_chromium.new_context()
    try:
        page = context.new_page()
        bridge = attach_passkeys(page, fido_authenticator)
        state, reg = ceremony(page, rp_url, "/register", "bea")
        assert state == "ok" and reg["uv"] is True, reg
        state, got = ceremony(page, rp_url, "/signin")
        assert state == "ok" and got["username"] == "bea", got
        assert bridge.detach() is not None
        assert fido_authenticator.store.count_discoverable() == 1
    finally:
        context.close()


@pytest.mark.fido_profile("synced-passkey")
def test_synced_passkey_flags(passkeys, rp_url):
    assert virtual_authenticator_options(passkeys.authenticator)["transport"] == "cable"
    state, reg = ceremony(passkeys.page, rp_url, "/register", "carol")
    assert state == "ok", reg
    assert reg["be"] is True and reg["bs"] is True and reg["uv"] is True


@pytest.mark.fido_profile("platform")
def test_browser_register_then_cli_signin(passkeys, rp_url, webauthn_client):
    """Registered in Chromium, exported, then signed in without a browser."""
    state, reg = ceremony(passkeys.page, rp_url, "/register", "dave")
    assert state == "ok", reg
    passkeys.bridge.export()
    client = webauthn_client(rp_url)
    for username in ("", "dave"):  # discoverable, then allowCredentials
        status, begin = post(rp_url, "/authenticate/begin", {"username": username})
        assert status == 200, begin
        with Stopwatch("in-process CLI client sign-in"):
            response = client.get(begin)
        status, done = post(rp_url, "/authenticate/complete",
                            {"flow": begin["flow"], "credential": response})
        assert status == 200, done
        assert done["username"] == "dave" and done["credentialId"] == reg["credentialId"]


@pytest.mark.parametrize(("profile", "path"), [("platform", "/signin"), ("security-key", "/reauth")])
def test_cli_register_then_browser_signin(fido_chromium, rp_url, tmp_path, profile, path):
    """Registered by ``fido-emu webauthn create --store``, imported, signed in by Chromium.
    (A PIN-less USB key gets no discoverable sign-in in Chromium: re-auth instead.)"""
    store_path = tmp_path / "cli.db"
    username = f"erin-{profile}"
    status, begin = post(rp_url, "/register/begin", {"username": username})
    assert status == 200
    with Stopwatch(f"CLI register (subprocess, {profile})"):
        out = subprocess.run(
            [sys.executable, "-m", "authenticator.frontdoor.cli", "webauthn", "create", "--profile", profile,
             "--origin", rp_url, "--store", str(store_path)],
            input=json.dumps(begin), capture_output=True, text=True, timeout=60,
        )
    assert out.returncode == 0, out.stderr
    status, reg = post(rp_url, "/register/complete",
                       {"flow": begin["flow"], "credential": json.loads(out.stdout)})
    assert status == 200, reg

    store = SqliteStore(store_path)
    auth = Authenticator(Config.for_profile(profile), store)
    context = fido_chromium.new_context()
    try:
        page = context.new_page()
        with Stopwatch("bridge attach + import"):
            bridge = attach_passkeys(page, auth)
        assert len(bridge.credentials()) == 1
        with Stopwatch(f"browser sign-in with imported credential ({path})"):
            state, got = ceremony(page, rp_url, path, username if path == "/reauth" else None,
                                  shot=f"cli-to-browser-{profile}")
        assert state == "ok", got
        assert got["credentialId"] == reg["credentialId"] and got["username"] == username
        assert got["signCount"] > reg["signCount"] or profile == "synced-passkey"
        bridge.detach()
        assert _stored_count(auth, _raw(reg["credentialId"])) == got["signCount"]
    finally:
        context.close()
        store.close()


def test_non_discoverable_credential_by_id(passkeys, rp_url, webauthn_client):
    """Self-contained ids are not in the store: import them one by one."""
    status, begin = post(rp_url, "/register/begin",
                         {"username": "frank", "residentKey": "discouraged"})
    assert status == 200
    response = webauthn_client(rp_url).create(begin)
    status, reg = post(rp_url, "/register/complete",
                       {"flow": begin["flow"], "credential": response})
    assert status == 200, reg
    cred_id = _raw(reg["credentialId"])
    assert cred_id[0] == 0x01  # self-contained: nothing stored
    passkeys.bridge.add_credential(cred_id, "localhost")
    state, got = ceremony(passkeys.page, rp_url, "/reauth", "frank")
    assert state == "ok", got
    assert got["credentialId"] == reg["credentialId"]


@pytest.mark.fido_profile("platform")
def test_counter_regression_fault_is_rejected(passkeys, fido_chromium, rp_url):
    page, auth = passkeys.page, passkeys.authenticator
    assert ceremony(page, rp_url, "/register", "grace")[0] == "ok"
    state, got = ceremony(page, rp_url, "/signin")
    assert state == "ok", got
    passkeys.bridge.export()
    auth.faults.arm("counter-regress")
    context = fido_chromium.new_context()
    try:
        page2 = context.new_page()
        attach_passkeys(page2, auth)
        state, bad = ceremony(page2, rp_url, "/signin", shot="counter-regress-rejected")
        assert state == "error"
        assert "counter regressed" in bad["error"]
    finally:
        context.close()


@pytest.mark.fido_profile("platform")
def test_conditional_mediation(passkeys, rp_url):
    page = passkeys.page
    assert ceremony(page, rp_url, "/register", "heidi")[0] == "ok"
    page.goto(rp_url + "/conditional")  # no focus, no click: it completes on its own
    try:  # the README's matrix says "ok" for this cell: a stall is a failure
        page.wait_for_selector("#result[data-state]", timeout=5_000)
    except Exception:
        screenshot(page, "conditional-stalled")
        raise
    screenshot(page, "conditional")
    assert page.get_attribute("body", "data-conditional") == "available"
    data = json.loads(page.text_content("#result") or "{}")
    assert page.get_attribute("#result", "data-state") == "ok", data
    assert data["username"] == "heidi"

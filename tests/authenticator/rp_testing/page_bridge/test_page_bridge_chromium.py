"""@simplewebauthn/browser, unmodified, in headless Chromium (Playwright, sync API) against
py_webauthn, with our authenticator behind the page bridge."""

from __future__ import annotations

import pytest

BE_BS = {"security-key": (False, "single_device"), "synced-passkey": (True, "multi_device"),
         "platform": (False, "single_device")}


def aaguid_str(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@pytest.mark.parametrize("profile", ["security-key", "synced-passkey", "platform"])
def test_register_and_sign_in_verified(profile, fido_page, fido_bridge, swa_server):
    page = fido_page
    page.goto(swa_server.url + "/")
    reg = page.evaluate("rp.register('alice')")
    assert reg.get("verified"), reg
    cfg = fido_bridge.authenticator.config
    assert reg["aaguid"] == aaguid_str(cfg.aaguid)
    backed_up, device_type = BE_BS[cfg.profile]
    assert (reg["backedUp"], reg["deviceType"]) == (backed_up, device_type)
    if cfg.attestation == "packed":
        assert reg["fmt"] == "packed"  # x5c verified against our `attestation init` root

    first = page.evaluate("rp.login('alice')")
    second = page.evaluate("rp.login('')")  # discoverable: the account picker path
    assert first.get("verified") and second.get("verified"), (first, second)
    assert second["username"] == "alice" and second["userHandleMatches"]
    if cfg.counter_mode == "zero":
        assert first["signCount"] == second["signCount"] == 0
    else:
        assert 0 < first["signCount"] < second["signCount"]
    kinds = [(e.kind, e.ok) for e in fido_bridge.events]
    assert kinds == [("create", True), ("get", True), ("get", True)]
    assert fido_bridge.events[0].origin == swa_server.url

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


def test_autofill_waits_for_the_user_to_pick_an_account(fido_page, fido_bridge, swa_server):
    page = fido_page
    page.goto(swa_server.url + "/")
    for name in ("alice", "bob"):
        assert page.evaluate(f"rp.register('{name}')").get("verified")
    assert page.evaluate("rp.autofill()") is True  # browserSupportsWebAuthnAutofill()
    pending = fido_bridge.wait_conditional()
    assert sorted(a.user_name for a in pending.accounts) == ["alice", "bob"]
    assert pending.frame.origin == swa_server.url
    assert not [e for e in fido_bridge.events if e.mediation == "conditional"]  # nothing signed yet
    fido_bridge.choose(pending, user_name="bob")
    got = page.evaluate("rp.autofillResult()")
    assert got.get("verified") and got["username"] == "bob", got
    assert fido_bridge.conditional_requests() == []


def test_aborting_a_conditional_request_rejects_and_unlists_it(fido_page, fido_bridge, swa_server):
    page = fido_page
    page.goto(swa_server.url + "/")
    page.evaluate("""() => {
      window.ac = new AbortController();
      window.outcome = navigator.credentials.get({mediation: 'conditional', signal: ac.signal,
        publicKey: {challenge: new Uint8Array(16), rpId: 'localhost'}}).then(
          () => 'resolved', e => `${e.name}`);
    }""")
    fido_bridge.wait_conditional()
    assert page.evaluate("ac.abort(); outcome") == "AbortError"
    fido_bridge.wait_for_event(lambda e: e.kind == "cancel")
    assert fido_bridge.conditional_requests() == []


def test_untrusted_root_rejects_the_x5c_chain(fido_page, fido_bridge, swa_server):
    """The chain check can fail: a verifier trusting another root refuses our attestation."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from authenticator.frontdoor.attestation_ca import create_root

    swa_server.rp.roots_pem[:] = [create_root().cert.public_bytes(Encoding.PEM)]
    fido_page.goto(swa_server.url + "/")
    reg = fido_page.evaluate("rp.register('mallory')")
    assert not reg.get("verified") and "certificate" in reg["error"].lower(), reg


@pytest.mark.parametrize(
    "profile, fault, login_opts, expected",
    [
        ("security-key", "bad-signature", {}, "signature"),
        ("security-key", "counter-regress", {}, "sign count"),
        ("platform", "uv-0", {"userVerification": "required"}, "user verification"),
    ],
)
def test_faults_armed_through_the_bridge_reach_the_verifier(
    profile, fault, login_opts, expected, fido_page, fido_bridge, swa_server
):
    page = fido_page
    page.goto(swa_server.url + "/")
    assert page.evaluate("rp.register('carol')").get("verified")
    assert page.evaluate("rp.login('carol')").get("verified")
    fido_bridge.faults.arm(fault)
    bad = page.evaluate("([o]) => rp.login('carol', o)", [login_opts])
    assert not bad.get("verified") and expected in bad["error"].lower(), bad
    fido_bridge.faults.clear()
    assert page.evaluate("([o]) => rp.login('carol', o)", [login_opts]).get("verified")


def test_ctap_errors_become_the_browsers_dom_exceptions(fido_page, fido_bridge, swa_server):
    page = fido_page
    page.goto(swa_server.url + "/")
    assert page.evaluate("rp.register('dave')").get("verified")  # the client knows the device
    fido_bridge.faults.arm("error=OPERATION_DENIED")
    failed = page.evaluate("rp.login('dave')")
    assert failed["cause"] == "NotAllowedError", failed
    assert page.evaluate("rp.login('dave')").get("verified")  # error= is for one command
    fido_bridge.faults.arm("error=CREDENTIAL_EXCLUDED")
    again = page.evaluate("rp.register('erin')")
    assert again["cause"] == "InvalidStateError", again
    assert again["code"] == "ERROR_AUTHENTICATOR_PREVIOUSLY_REGISTERED", again
    assert [e.error.split(":")[0] for e in fido_bridge.events if not e.ok] == [
        "NotAllowedError", "InvalidStateError"]

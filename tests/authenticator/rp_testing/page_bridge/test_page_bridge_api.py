"""The WebAuthn surface a page sees through the bridge: statics, returned objects, errors,
signals reaching the store."""

from __future__ import annotations

import base64

import pytest


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


CREATE = """async ([name, userId]) => {
  const c = await navigator.credentials.create({publicKey: {rp: {name: 'api', id: 'localhost'},
    user: {id: new Uint8Array(userId), name, displayName: name.toUpperCase()},
    challenge: new Uint8Array(32), pubKeyCredParams: [{type: 'public-key', alg: -7}],
    authenticatorSelection: {residentKey: 'required'}}});
  return c.id;
}"""


@pytest.fixture
def page(fido_page, swa_server):
    fido_page.goto(swa_server.url + "/")
    return fido_page


def rejection(page, expression: str) -> str:
    return page.evaluate(
        f"(async () => {{ try {{ await ({expression}); return 'resolved'; }}"
        " catch (e) { return `${e.constructor.name}/${e.name}: ${e.message}`; } })()"
    )


def test_returned_objects_behave_like_the_browsers(page, fido_bridge):
    out = page.evaluate("""async () => {
      const c = await navigator.credentials.create({publicKey: {rp: {name: 'api'},
        user: {id: new Uint8Array([1]), name: 'a', displayName: 'A'}, challenge: new Uint8Array(32),
        pubKeyCredParams: [{type: 'public-key', alg: -7}], extensions: {credProps: true}}});
      const r = c.response;
      const spki = await crypto.subtle.importKey('spki', r.getPublicKey(),
        {name: 'ECDSA', namedCurve: 'P-256'}, true, ['verify']);
      const a = await navigator.credentials.get({publicKey: {challenge: new Uint8Array(32),
        allowCredentials: [{type: 'public-key', id: c.rawId}]}});
      return {
        isPKC: c instanceof PublicKeyCredential, type: c.type,
        idMatches: c.id === c.toJSON().rawId && c.rawId instanceof ArrayBuffer,
        attestationResponse: r instanceof AuthenticatorAttestationResponse,
        transports: r.getTransports(), alg: r.getPublicKeyAlgorithm(), spki: spki.type,
        authDataLen: r.getAuthenticatorData().byteLength, attachment: c.authenticatorAttachment,
        ext: c.getClientExtensionResults(), json: Object.keys(c.toJSON()).sort(),
        assertion: a.response instanceof AuthenticatorAssertionResponse,
        buffers: [a.response.authenticatorData, a.response.signature, a.response.clientDataJSON]
          .every(b => b instanceof ArrayBuffer),
        userHandle: a.response.userHandle,
        getJSON: Object.keys(a.toJSON().response).sort(),
      };
    }""")
    assert out["isPKC"] and out["type"] == "public-key" and out["idMatches"]
    assert out["attestationResponse"] and out["assertion"] and out["buffers"]
    assert out["transports"] == ["usb"] and out["alg"] == -7 and out["spki"] == "public"
    assert out["authDataLen"] > 37 and out["attachment"] == "cross-platform"
    assert out["ext"] == {"credProps": {"rk": False}}
    assert out["json"] == ["authenticatorAttachment", "clientExtensionResults", "id", "rawId",
                           "response", "type"]
    assert out["userHandle"] is None  # non-discoverable, allowCredentials given
    assert {"authenticatorData", "clientDataJSON", "signature"} <= set(out["getJSON"])


@pytest.mark.parametrize("profile, uvpaa", [("security-key", False), ("platform", True)])
def test_statics_follow_the_profile(profile, uvpaa, page):
    out = page.evaluate("""async () => ({
      uvpaa: await PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable(),
      conditional: await PublicKeyCredential.isConditionalMediationAvailable(),
      caps: await PublicKeyCredential.getClientCapabilities(),
      parsed: (() => {
        const o = PublicKeyCredential.parseCreationOptionsFromJSON({rp: {name: 'x'},
          user: {id: 'AQID', name: 'u', displayName: 'U'}, challenge: 'AAAA',
          pubKeyCredParams: [{type: 'public-key', alg: -7}],
          excludeCredentials: [{type: 'public-key', id: 'BAU'}]});
        const r = PublicKeyCredential.parseRequestOptionsFromJSON({challenge: 'AAAA',
          allowCredentials: [{type: 'public-key', id: 'BAU'}]});
        return [o.user.id.byteLength, o.challenge.byteLength, o.excludeCredentials[0].id.byteLength,
                r.allowCredentials[0].id instanceof ArrayBuffer];
      })(),
    })""")
    assert out["uvpaa"] is uvpaa and out["conditional"] is True
    assert out["caps"]["userVerifyingPlatformAuthenticator"] is uvpaa
    assert out["caps"]["signalUnknownCredential"] is True
    assert out["caps"]["conditionalGet"] is True
    assert out["parsed"] == [3, 3, 2, True]


def test_bad_calls_get_the_browsers_errors(page, fido_bridge):
    good = ("{rp: {name: 'x'}, user: {id: new Uint8Array([1]), name: 'a', displayName: 'A'},"
            " challenge: new Uint8Array(16), pubKeyCredParams: [{type: 'public-key', alg: -7}]}")
    assert rejection(page, "navigator.credentials.create({})").startswith(
        "DOMException/NotSupportedError")
    no_challenge = good.replace("challenge: new Uint8Array(16),", "")
    assert rejection(page, f"navigator.credentials.create({{publicKey: {no_challenge}}})") == (
        "TypeError/TypeError: publicKey.challenge is required")
    wrong_rp = good.replace("name: 'x'}", "name: 'x', id: 'example.com'}")
    assert rejection(page, f"navigator.credentials.create({{publicKey: {wrong_rp}}})").startswith(
        "DOMException/SecurityError")
    assert rejection(
        page, f"navigator.credentials.create({{publicKey: {good}, signal: AbortSignal.abort()}})"
    ).startswith("DOMException/AbortError")
    assert rejection(page, "PublicKeyCredential.parseRequestOptionsFromJSON({challenge: '*'})") \
        == "TypeError/TypeError: options.challenge is not base64url"
    assert fido_bridge.authenticator.store.count_discoverable() == 0


def test_immediate_mediation_fails_fast_without_a_credential(page, fido_bridge):
    get = ("navigator.credentials.get({mediation: 'immediate',"
           " publicKey: {challenge: new Uint8Array(16), rpId: 'localhost'}})")
    assert rejection(page, get).startswith("DOMException/NotAllowedError")
    page.evaluate(CREATE, ["ivy", [9]])
    assert rejection(page, get) == "resolved"


def test_signals_hide_restore_and_rename_in_the_store(page, fido_bridge):
    store = fido_bridge.authenticator.store
    ivy = page.evaluate(CREATE, ["ivy", [1]])
    jon = page.evaluate(CREATE, ["jon", [2]])
    assert store.count_discoverable() == 2
    count_before = page.evaluate(
        "async () => { const a = await navigator.credentials.get({publicKey: {challenge:"
        " new Uint8Array(16), rpId: 'localhost', allowCredentials: [{type: 'public-key', id:"
        f" PublicKeyCredential.parseRequestOptionsFromJSON({{challenge: 'AA', allowCredentials:"
        f" [{{type: 'public-key', id: '{ivy}'}}]}}).allowCredentials[0].id}}]}}}});"
        " return new DataView(a.response.authenticatorData).getUint32(33); }"
    )

    page.evaluate(f"PublicKeyCredential.signalUnknownCredential({{rpId: 'localhost', credentialId: '{ivy}'}})")
    assert store.count_discoverable() == 1 and store.get_credential(base64.urlsafe_b64decode(ivy + "==")) is None
    assert [a.user_name for a in fido_bridge.accounts("localhost")] == ["jon"]
    assert fido_bridge.signals[-1].hidden == [base64.urlsafe_b64decode(ivy + "==")]

    page.evaluate(
        "PublicKeyCredential.signalAllAcceptedCredentials({rpId: 'localhost', userId: 'AQ',"
        f" allAcceptedCredentialIds: ['{ivy}']}})"
    )
    assert fido_bridge.signals[-1].restored == [base64.urlsafe_b64decode(ivy + "==")]
    assert store.count_discoverable() == 2
    count_after = page.evaluate(
        "async () => { const a = await navigator.credentials.get({publicKey: {challenge:"
        " new Uint8Array(16), rpId: 'localhost', allowCredentials: [{type: 'public-key', id:"
        f" PublicKeyCredential.parseRequestOptionsFromJSON({{challenge: 'AA', allowCredentials:"
        f" [{{type: 'public-key', id: '{ivy}'}}]}}).allowCredentials[0].id}}]}}}});"
        " return new DataView(a.response.authenticatorData).getUint32(33); }"
    )
    assert count_after > count_before  # the hidden credential kept its counter

    page.evaluate(
        "PublicKeyCredential.signalCurrentUserDetails({rpId: 'localhost', userId: 'Ag',"
        " name: 'jon.new', displayName: 'Jon New'})"
    )
    rec = store.get_credential(base64.urlsafe_b64decode(jon + "=="))
    assert (rec.user_name, rec.user_display_name) == ("jon.new", "Jon New")

    fido_bridge.unknown_credential = "delete"
    page.evaluate(f"PublicKeyCredential.signalUnknownCredential({{rpId: 'localhost', credentialId: '{jon}'}})")
    assert store.count_discoverable() == 1 and fido_bridge.hidden().keys() == set()
    assert [s.kind for s in fido_bridge.signals] == [
        "unknownCredential", "allAcceptedCredentials", "currentUserDetails", "unknownCredential"]

    assert rejection(page, "PublicKeyCredential.signalUnknownCredential({rpId: 'example.com',"
                           f" credentialId: '{ivy}'}})").startswith("DOMException/SecurityError")
    assert rejection(page, "PublicKeyCredential.signalUnknownCredential({rpId: 'localhost',"
                           " credentialId: 'not base64!'})").startswith("TypeError/TypeError")
    assert store.count_discoverable() == 1


def test_timeout_rejects_the_page_and_records_a_cancel(fido_chromium, fido_authenticator, swa_server):
    """A slow authenticator (``delay=`` fault) outlasts the RP's timeout: the page gets the
    browser's NotAllowedError, the bridge records the cancel it sent."""
    from authenticator.rp_testing.page_bridge import attach_playwright

    context = fido_chromium.new_context()
    bridge = attach_playwright(context, fido_authenticator, min_timeout_ms=0)  # no 10 s clamp
    try:
        page = context.new_page()
        page.goto(swa_server.url + "/")
        bridge.faults.arm("delay=1")
        out = rejection(page, "navigator.credentials.get({publicKey: {challenge: new Uint8Array(16),"
                              " rpId: 'localhost', timeout: 1}})")
        assert out.startswith("DOMException/NotAllowedError"), out
        cancel = bridge.wait_for_event(lambda e: e.kind == "cancel")
        assert cancel.error == "timeout" and cancel.origin == swa_server.url
    finally:
        context.close()
        bridge.close()

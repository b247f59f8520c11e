"""The L3 JSON client behaves like a browser; responses are checked by python-fido2's
Fido2Server and py_webauthn, requests by decoding the CTAP CBOR independently (cbor2)."""

from __future__ import annotations

import base64
import json

import cbor2
import pytest
from fido2.server import Fido2Server
from fido2.webauthn import (
    AuthenticationResponse,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
)

from authenticator import Authenticator, Config
from authenticator.rp_testing.webauthn import WebAuthnClient, WebAuthnError
from transports.inprocess import InProcessDevice


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Recording(InProcessDevice):
    """Keeps every CTAP request so tests can read the CBOR the client sent."""

    def __init__(self, auth) -> None:
        super().__init__(auth)
        self.requests: list[bytes] = []

    def call(self, cmd, data=b"", event=None, on_keepalive=None):
        self.requests.append(bytes(data))
        return super().call(cmd, data, event, on_keepalive)

    def sent(self, command: int) -> dict:
        return [cbor2.loads(r[1:]) for r in self.requests if r[:1] == bytes([command])][-1]


@pytest.fixture
def device():
    auth = Authenticator(Config.for_profile("synced-passkey"))
    dev = Recording(auth)
    yield dev
    dev.close()


def creation(**over) -> dict:
    opts = {
        "rp": {"name": "Example", "id": "example.com"},
        "user": {"id": b64(b"user-1"), "name": "alice", "displayName": "Alice"},
        "challenge": b64(b"c" * 32),
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
    }
    opts.update(over)
    return opts


def test_empty_strings_reach_cbor_as_empty_text(device):
    """SimpleWebAuthn's default displayName "" used to become [] (CBOR_UNEXPECTED_TYPE)."""
    client = WebAuthnClient(device, "https://example.com")
    client.create(creation(rp={"name": "", "id": "example.com"},
                           user={"id": b64(b"u"), "name": "", "displayName": ""}))
    sent = device.sent(0x01)
    assert sent[2] == {"id": "example.com", "name": ""}
    assert sent[3] == {"id": b"u", "name": "", "displayName": ""}


def test_unknown_and_smart_card_transports_are_ignored(device):
    client = WebAuthnClient(device, "https://example.com")
    reg = client.create(creation())
    desc = {"id": reg["id"], "type": "public-key", "transports": ["smart-card", "warp", "usb"]}
    with pytest.raises(WebAuthnError) as e:
        client.create(creation(excludeCredentials=[desc]))
    assert e.value.name == "InvalidStateError"
    out = client.get({"challenge": b64(b"x" * 16), "allowCredentials": [desc]})
    assert out["id"] == reg["id"]


@pytest.mark.parametrize("challenge", ["!!!", "a", "AA+A", "AA/A", "A===", "AAA=A"])
def test_invalid_base64url_is_an_encoding_error(device, challenge):
    client = WebAuthnClient(device, "https://example.com")
    with pytest.raises(WebAuthnError) as e:
        client.create(creation(challenge=challenge))
    assert e.value.name == "EncodingError"
    assert "challenge" in str(e.value) and "\n" not in str(e.value)
    assert not device.requests  # nothing reached the authenticator


def test_wrong_origin_names_origin_and_rp_id(device):
    client = WebAuthnClient(device, "https://evil.example.net")
    with pytest.raises(WebAuthnError) as e:
        client.create(creation())
    assert e.value.name == "SecurityError"
    assert "example.com" in str(e.value) and "https://evil.example.net" in str(e.value)


def test_rp_id_defaults_to_effective_domain_on_localhost(device):
    server = Fido2Server(PublicKeyCredentialRpEntity(name="Local", id="localhost"))
    client = WebAuthnClient(device, "http://localhost:8080")
    user = PublicKeyCredentialUserEntity(id=b"u1", name="bob", display_name="")
    options, state = server.register_begin(user)
    pk = dict(options)["publicKey"]
    pk["rp"].pop("id")
    reg = client.create({"publicKey": pk})
    assert device.sent(0x01)[2]["id"] == "localhost"
    cred = server.register_complete(state, RegistrationResponse.from_dict(reg))
    options, state = server.authenticate_begin([cred.credential_data])
    pk = dict(options)["publicKey"]
    pk.pop("rpId", None)
    resp = client.get(pk)
    server.authenticate_complete(state, [cred.credential_data], AuthenticationResponse.from_dict(resp))


@pytest.mark.parametrize(
    "origin,rp_id,ok",
    [
        ("https://login.example.com", "example.com", True),
        ("https://example.com", "login.example.com", False),  # not a suffix
        ("https://foo.github.io", "github.io", False),  # a public suffix
        ("https://example.co.uk", "co.uk", False),
        ("https://a.b.localhost", "localhost", True),
        ("http://example.com", "example.com", False),  # not a secure context
        ("https://127.0.0.1", "127.0.0.1", False),  # an IP address
        ("https://EXAMPLE.com:443", "example.com", True),
    ],
)
def test_rp_id_rules(device, origin, rp_id, ok):
    client = WebAuthnClient(device, "https://example.com")
    opts = creation(rp={"name": "x", "id": rp_id})
    if ok:
        client.create(opts, origin=origin)
    else:
        with pytest.raises(WebAuthnError) as e:
            client.create(opts, origin=origin)
        assert e.value.name == "SecurityError"


def test_top_origin_makes_client_data_cross_origin(device):
    client = WebAuthnClient(device, "https://pay.example.com", top_origin="https://shop.test")
    reg = client.create(creation())
    data = json.loads(unb64(reg["response"]["clientDataJSON"]))
    assert data == {
        "type": "webauthn.create", "challenge": b64(b"c" * 32),
        "origin": "https://pay.example.com", "crossOrigin": True, "topOrigin": "https://shop.test",
    }
    # same-origin frame: crossOrigin false, no topOrigin; per-call override
    resp = client.get(
        {"challenge": b64(b"d" * 16), "rpId": "example.com",
         "allowCredentials": [{"type": "public-key", "id": reg["id"]}]},
        top_origin="https://pay.example.com",
    )
    data = json.loads(unb64(resp["response"]["clientDataJSON"]))
    assert data["crossOrigin"] is False and "topOrigin" not in data
    # L3 serialisation order, exactly
    raw = unb64(resp["response"]["clientDataJSON"]).decode()
    assert raw.startswith('{"type":"webauthn.get","challenge":')


def test_related_origins(device, tmp_path):
    doc = {"origins": ["https://example.co.uk", "https://example.de"]}
    client = WebAuthnClient(device, "https://example.de", related_origins={"example.com": doc})
    client.create(creation())
    with pytest.raises(WebAuthnError) as e:
        client.create(creation(), origin="https://example.fr")
    assert e.value.name == "SecurityError" and "related" in str(e.value)


def test_related_origins_label_limit():
    from authenticator.rp_testing.webauthn import check_related_origins, parse_origin

    labels = [f"https://brand{i}.com" for i in range(7)]
    doc = {"origins": [*labels, "https://brand1.de"]}
    assert check_related_origins(parse_origin("https://brand4.com"), "x.com", doc)
    assert not check_related_origins(parse_origin("https://brand5.com"), "x.com", doc)
    assert check_related_origins(parse_origin("https://brand1.de"), "x.com", doc)


def test_prf_results_have_no_empty_second(device):
    client = WebAuthnClient(device, "https://example.com")
    reg = client.create(creation(
        authenticatorSelection={"residentKey": "required"}, extensions={"prf": {}, "credProps": True}
    ))
    assert reg["clientExtensionResults"] == {"credProps": {"rk": True}, "prf": {"enabled": True}}
    one = client.get({"challenge": b64(b"d" * 16), "extensions": {"prf": {"eval": {"first": "AAAA"}}}})
    results = one["clientExtensionResults"]["prf"]["results"]
    assert set(results) == {"first"} and len(unb64(results["first"])) == 32
    two = client.get({"challenge": b64(b"e" * 16),
                      "extensions": {"prf": {"eval": {"first": "AAAA", "second": "AQ"}}}})
    assert two["clientExtensionResults"]["prf"]["results"]["first"] == results["first"]
    assert len(unb64(two["clientExtensionResults"]["prf"]["results"]["second"])) == 32


def test_pin_and_attestation_direct_verified_by_py_webauthn():
    import webauthn
    from fido2.ctap2 import ClientPin, Ctap2

    auth = Authenticator(Config.for_profile("security-key"))
    dev = InProcessDevice(auth)
    try:
        ClientPin(Ctap2(dev)).set_pin("4321")
        client = WebAuthnClient(dev, "https://example.com", pin="4321")
        opts = webauthn.generate_registration_options(
            rp_id="example.com", rp_name="Example", user_name="carol",
            attestation=webauthn.helpers.structs.AttestationConveyancePreference.DIRECT,
        )
        reg = client.create(json.loads(webauthn.options_to_json(opts)))
        verified = webauthn.verify_registration_response(
            credential=reg, expected_challenge=opts.challenge, expected_rp_id="example.com",
            expected_origin="https://example.com", require_user_verification=True,
        )
        assert str(getattr(verified.fmt, "value", verified.fmt)) == "packed"
        from webauthn.helpers.structs import PublicKeyCredentialDescriptor

        req = webauthn.generate_authentication_options(
            rp_id="example.com",
            allow_credentials=[PublicKeyCredentialDescriptor(id=verified.credential_id)],
        )
        resp = client.get(json.loads(webauthn.options_to_json(req)))
        webauthn.verify_authentication_response(
            credential=resp, expected_challenge=req.challenge, expected_rp_id="example.com",
            expected_origin="https://example.com", credential_public_key=verified.credential_public_key,
            credential_current_sign_count=0, require_user_verification=True,
        )
    finally:
        dev.close()


def test_timeout_cancels_the_ceremony(monkeypatch):
    """options.timeout elapses while the authenticator waits for a touch: the client
    cancels (CTAPHID CANCEL) and rejects with NotAllowedError, as browsers do."""
    import asyncio

    from authenticator.core.presence import CallbackPresence
    from authenticator.rp_testing import webauthn as wa

    monkeypatch.setattr(wa, "TIMEOUT_MIN_MS", 0)  # browsers clamp to >= 10 s; not worth waiting

    async def never(request):
        await asyncio.Event().wait()

    auth = Authenticator(Config.for_profile("security-key"), presence=CallbackPresence(never))
    dev = InProcessDevice(auth)
    try:
        with pytest.raises(WebAuthnError) as e:
            WebAuthnClient(dev, "https://example.com").create(creation(timeout=50))
        assert e.value.name == "NotAllowedError" and "timed out" in str(e.value)
    finally:
        dev.close()


def test_uv_preferred_with_a_pin_and_none_given_is_refused():
    from fido2.ctap2 import ClientPin, Ctap2

    auth = Authenticator(Config.for_profile("security-key"))
    dev = InProcessDevice(auth)
    try:
        ClientPin(Ctap2(dev)).set_pin("4321")
        with pytest.raises(WebAuthnError) as e:
            WebAuthnClient(dev, "https://example.com").create(creation())
        assert e.value.name == "NotAllowedError" and "PIN" in str(e.value)
    finally:
        dev.close()


def test_cred_blob_large_blob_and_hmac_secret_round_trip(device):
    client = WebAuthnClient(device, "https://example.com")
    reg = client.create(creation(
        authenticatorSelection={"residentKey": "required"},
        extensions={"credBlob": b64(b"blob!"), "largeBlob": {"support": "required"},
                    "hmacCreateSecret": True, "credentialProtectionPolicy": "userVerificationRequired"},
    ))
    assert reg["clientExtensionResults"] == {
        "credBlob": True, "hmacCreateSecret": True, "largeBlob": {"supported": True}
    }
    allow = [{"type": "public-key", "id": reg["id"]}]
    wrote = client.get({"challenge": b64(b"1" * 16), "allowCredentials": allow,
                        "extensions": {"largeBlob": {"write": b64(b"hello")}}})
    assert wrote["clientExtensionResults"] == {"largeBlob": {"written": True}}
    got = client.get({"challenge": b64(b"2" * 16), "allowCredentials": allow,
                      "extensions": {"largeBlob": {"read": True}, "getCredBlob": True,
                                     "hmacGetSecret": {"salt1": b64(b"s" * 32)}}})
    ext = got["clientExtensionResults"]
    assert unb64(ext["largeBlob"]["blob"]) == b"hello"
    assert unb64(ext["getCredBlob"]) == b"blob!"
    assert len(unb64(ext["hmacGetSecret"]["output1"])) == 32 and "output2" not in ext["hmacGetSecret"]


def test_a_ceremony_starts_no_thread(monkeypatch):
    """The WebAuthn timeout is a deadline the device's cancel polls, not a timer thread per
    ceremony (starting one cost most of a ceremony's time); the timeout test above shows
    it still fires."""
    import threading

    dev = InProcessDevice(Authenticator(Config()))
    client = WebAuthnClient(dev, "https://example.com")

    def refuse(self):
        raise AssertionError(f"a ceremony started thread {self.name}")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    try:
        reg = client.create(creation(timeout=60_000))
        client.get({"challenge": b64(b"x" * 16), "allowCredentials": [
            {"type": "public-key", "id": reg["id"]}]})
    finally:
        dev.close()


def test_deadline_event_wakes_a_blocking_wait():
    """A device that blocks in event.wait() with no timeout still sees the deadline."""
    import time

    from authenticator.rp_testing.webauthn import _Deadline

    ev = _Deadline(time.monotonic() + 0.01)
    assert ev.wait() is True and ev.is_set()
    ev = _Deadline(time.monotonic() + 3600)
    assert not ev.is_set() and ev.wait(0) is False
    ev.set()
    assert ev.is_set() and ev.wait() is True


def test_origin_checks_hold_on_every_call(device):
    """Checked origins are remembered per client; a refusal is not, and a per-call origin
    still wins over the client's."""
    client = WebAuthnClient(device, "https://example.com")
    for _ in range(2):
        with pytest.raises(WebAuthnError) as e:
            client.create(creation(), origin="http://example.com")
        assert e.value.name == "SecurityError" and "secure context" in str(e.value)
        with pytest.raises(WebAuthnError) as e:
            client.create(creation(), origin="https://evil.example.net")
        assert e.value.name == "SecurityError"
    reg = client.create(creation())
    assert json.loads(base64.urlsafe_b64decode(
        reg["response"]["clientDataJSON"] + "=="))["origin"] == "https://example.com"
    reg = client.create(creation(user={"id": b64(b"u2"), "name": "b", "displayName": "B"}),
                        origin="https://login.example.com", top_origin="https://example.com")
    data = json.loads(base64.urlsafe_b64decode(reg["response"]["clientDataJSON"] + "=="))
    assert data["origin"] == "https://login.example.com" and data["crossOrigin"] is True

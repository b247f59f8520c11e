"""CTAP extensions seen through python-fido2: hmac-secret/prf, credProtect, credBlob, minPinLength."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Ctap2
from fido2.ctap2.config import Config as CtapConfig
from fido2.ctap2.extensions import HmacSecretExtension
from fido2.server import Fido2Server
from fido2.utils import websafe_decode, websafe_encode

from authenticator import Authenticator
from tests.authenticator.conftest import reference_cred_random
from transports.inprocess import InProcessDevice

P = ClientPin.PERMISSION
ERR = CtapError.ERR
PIN = "1234"
RP = {"id": "example.com", "name": "Example"}
ES256 = [{"type": "public-key", "alg": -7}]


@pytest.fixture
def ctap(dev: InProcessDevice) -> Ctap2:
    ctap = Ctap2(dev)
    ClientPin(ctap).set_pin(PIN)
    return ctap


class Ui(UserInteraction):
    def request_pin(self, permissions, rp_id):
        return PIN


def cred_random(auth: Authenticator, cred_id: bytes, uv: bool) -> bytes:
    """CredRandom from the device secret by the reference derivation (docs/testing.md)."""
    return reference_cred_random(auth.store.device_secret(), cred_id, uv)


def prf_expected(auth: Authenticator, cred_id: bytes, uv: bool, salt_input: bytes) -> bytes:
    """HMAC-SHA256(CredRandom, salt), salt = SHA-256("WebAuthn PRF" 0x00 input) — computed here."""
    salt = hashlib.sha256(b"WebAuthn PRF\x00" + salt_input).digest()
    return hmac.new(cred_random(auth, cred_id, uv), salt, hashlib.sha256).digest()


def test_prf_and_hmac_get_secret(auth: Authenticator, ctap: Ctap2, dev: InProcessDevice) -> None:
    client = Fido2Client(
        dev,
        DefaultClientDataCollector("https://example.com"),
        Ui(),
        extensions=[HmacSecretExtension(allow_hmac_secret=True)],
    )
    server = Fido2Server(RP)
    options, _ = server.register_begin(
        {"id": b"u1", "name": "alice"}, resident_key_requirement="required"
    )
    reg = client.make_credential({**dict(options.public_key), "extensions": {"prf": {}}})
    assert reg.client_extension_results["prf"]["enabled"] is True
    cred_id = reg.raw_id

    first, second = b"first input", b"second input"
    options, _ = server.authenticate_begin(user_verification="required")
    sel = client.get_assertion(
        {**dict(options.public_key), "extensions": {"prf": {"eval": {"first": first, "second": second}}}}
    )
    results = sel.get_response(0).client_extension_results["prf"]["results"]
    # the client returns WebAuthn JSON (base64url) outputs
    assert websafe_decode(results["first"]) == prf_expected(auth, cred_id, True, first)
    assert websafe_decode(results["second"]) == prf_expected(auth, cred_id, True, second)

    salt = os.urandom(32)
    options, _ = server.authenticate_begin(user_verification="required")
    sel = client.get_assertion(
        {**dict(options.public_key), "extensions": {"hmacGetSecret": {"salt1": salt}}}
    )
    out = sel.get_response(0).client_extension_results["hmacGetSecret"]["output1"]
    expected = hmac.new(cred_random(auth, cred_id, True), salt, hashlib.sha256).digest()
    assert out in (expected, websafe_encode(expected))


def make(ctap: Ctap2, rp_id="example.com", user=b"u1", rk=True, ext=None):
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, rp_id)
    cdh = os.urandom(32)
    return ctap.make_credential(
        cdh, {"id": rp_id}, {"id": user, "name": user.decode()}, ES256,
        options={"rk": rk}, extensions=ext,
        pin_uv_param=cp.protocol.authenticate(token, cdh), pin_uv_protocol=cp.protocol.VERSION,
    )


def get(ctap: Ctap2, allow=None, uv=False, ext=None, rp_id="example.com"):
    cdh = os.urandom(32)
    kwargs = {}
    if uv:
        cp = ClientPin(ctap)
        token = cp.get_pin_token(PIN, P.GET_ASSERTION, rp_id)
        kwargs = dict(pin_uv_param=cp.protocol.authenticate(token, cdh), pin_uv_protocol=cp.protocol.VERSION)
    allow_list = [{"type": "public-key", "id": a} for a in allow] if allow else None
    return ctap.get_assertion(rp_id, cdh, allow_list, extensions=ext, **kwargs)


@pytest.mark.parametrize(
    "level, discover_no_uv, allow_no_uv",
    [(1, True, True), (2, False, True), (3, False, False)],
)
def test_cred_protect(ctap: Ctap2, level: int, discover_no_uv: bool, allow_no_uv: bool) -> None:
    r = make(ctap, ext={"credProtect": level})
    assert r.auth_data.extensions == {"credProtect": level}
    cred_id = r.auth_data.credential_data.credential_id
    for allow, expect in ((None, discover_no_uv), ([cred_id], allow_no_uv)):
        if expect:
            assert get(ctap, allow).credential["id"] == cred_id
        else:
            with pytest.raises(CtapError) as e:
                get(ctap, allow)
            assert e.value.code == ERR.NO_CREDENTIALS
        assert get(ctap, allow, uv=True).credential["id"] == cred_id  # UV always reaches it


def test_cred_protect_non_discoverable(ctap: Ctap2) -> None:
    r = make(ctap, rk=False, ext={"credProtect": 3})
    cred_id = r.auth_data.credential_data.credential_id
    with pytest.raises(CtapError) as e:
        get(ctap, [cred_id])
    assert e.value.code == ERR.NO_CREDENTIALS
    assert get(ctap, [cred_id], uv=True).credential["id"] == cred_id


def test_cred_protect_invalid_level(ctap: Ctap2, auth: Authenticator) -> None:
    with pytest.raises(CtapError) as e:
        make(ctap, ext={"credProtect": 4})
    assert e.value.code == ERR.INVALID_OPTION
    assert auth.store.count_discoverable() == 0


@pytest.mark.parametrize("rk", [True, False])
def test_cred_blob(ctap: Ctap2, rk: bool) -> None:
    r = make(ctap, rk=rk, ext={"credBlob": b"secret blob"})
    assert r.auth_data.extensions == {"credBlob": True}
    cred_id = r.auth_data.credential_data.credential_id
    a = get(ctap, [cred_id], ext={"credBlob": True})
    assert a.auth_data.extensions == {"credBlob": b"secret blob"}
    too_big = make(ctap, user=b"u2", rk=rk, ext={"credBlob": b"x" * 65})
    assert too_big.auth_data.extensions == {"credBlob": False}
    a = get(ctap, [too_big.auth_data.credential_data.credential_id], ext={"credBlob": True})
    assert a.auth_data.extensions == {"credBlob": b""}


def test_min_pin_length_extension(ctap: Ctap2) -> None:
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, P.AUTHENTICATOR_CFG)
    CtapConfig(ctap, cp.protocol, token).set_min_pin_length(min_pin_length=4, rp_ids=["example.com"])
    r = make(ctap, ext={"minPinLength": True})
    assert r.auth_data.extensions == {"minPinLength": 4}
    r = make(ctap, rp_id="other.example", ext={"minPinLength": True})
    assert not r.auth_data.extensions


def test_unknown_extension_ignored(ctap: Ctap2) -> None:
    r = make(ctap, ext={"no-such-extension": 42})
    assert not r.auth_data.extensions


def test_hmac_secret_without_uv_uses_other_cred_random(auth: Authenticator) -> None:
    """No PIN set: hmac-secret works without UV, and with the no-UV CredRandom."""
    dev = InProcessDevice(auth)
    client = Fido2Client(
        dev,
        DefaultClientDataCollector("https://example.com"),
        extensions=[HmacSecretExtension(allow_hmac_secret=True)],
    )
    server = Fido2Server(RP)
    options, _ = server.register_begin({"id": b"u1", "name": "alice"}, user_verification="discouraged")
    reg = client.make_credential(
        {**dict(options.public_key), "extensions": {"hmacCreateSecret": True}}
    )
    assert reg.client_extension_results["hmacCreateSecret"] is True
    options, _ = server.authenticate_begin(
        [reg.response.attestation_object.auth_data.credential_data],
        user_verification="discouraged",
    )
    salt = os.urandom(32)
    sel = client.get_assertion(
        {**dict(options.public_key), "extensions": {"hmacGetSecret": {"salt1": salt}}}
    )
    out = sel.get_response(0).client_extension_results["hmacGetSecret"]["output1"]
    expected = hmac.new(cred_random(auth, reg.raw_id, False), salt, hashlib.sha256).digest()
    assert out in (expected, websafe_encode(expected))
    dev.close()

"""CTAP1/U2F against python-fido2's Ctap1, its U2F client backend and CTAP2 getAssertion."""

from __future__ import annotations

import asyncio
import os
import struct
from hashlib import sha256

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.attestation import FidoU2FAttestation
from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.ctap import CtapError
from fido2.ctap1 import APDU, ApduError, Ctap1
from fido2.ctap2 import Ctap2
from fido2.hid import CAPABILITY, CTAPHID
from fido2.server import Fido2Server

from authenticator import Authenticator, Config
from authenticator.core.commands.ctap1 import parse_apdu
from authenticator.core.presence import CallbackPresence, Deny
from authenticator.frontdoor import attestation_ca
from transports.inprocess import InProcessDevice

APP = sha256(b"https://example.com/app-id.json").digest()
CHAL = os.urandom(32)


@pytest.fixture
def u2f(dev: InProcessDevice) -> Ctap1:
    return Ctap1(dev)


def raw(dev: InProcessDevice, apdu: bytes) -> bytes:
    return dev.call(CTAPHID.MSG, apdu)


def test_version(u2f: Ctap1, dev: InProcessDevice) -> None:
    assert u2f.get_version() == "U2F_V2"
    assert raw(dev, bytes.fromhex("00030000")) == b"U2F_V2\x90\x00"  # case 1
    assert raw(dev, bytes.fromhex("0003000000")) == b"U2F_V2\x90\x00"  # short Le
    assert raw(dev, bytes.fromhex("00030000000000")) == b"U2F_V2\x90\x00"  # extended Le


def test_register_and_authenticate(u2f: Ctap1, auth: Authenticator) -> None:
    reg = u2f.register(CHAL, APP)
    reg.verify(APP, CHAL)  # signature under the attestation certificate
    assert len(reg.public_key) == 65 and reg.public_key[0] == 4
    counters = []
    for _ in range(2):
        sig = u2f.authenticate(CHAL, APP, reg.key_handle)
        sig.verify(APP, CHAL, reg.public_key)
        assert sig.user_presence & 1
        counters.append(sig.counter)
    assert counters[1] > counters[0] > 0


def test_check_only_and_wrong_handles(u2f: Ctap1) -> None:
    reg = u2f.register(CHAL, APP)
    with pytest.raises(ApduError) as e:
        u2f.authenticate(CHAL, APP, reg.key_handle, check_only=True)
    assert e.value.code == APDU.USE_NOT_SATISFIED
    for app, handle in (
        (sha256(b"other").digest(), reg.key_handle),
        (APP, reg.key_handle[:-1] + bytes([reg.key_handle[-1] ^ 1])),
        (APP, os.urandom(64)),
    ):
        for check_only in (True, False):
            with pytest.raises(ApduError) as e:
                u2f.authenticate(CHAL, app, handle, check_only=check_only)
            assert e.value.code == APDU.WRONG_DATA


def test_dont_enforce_presence(u2f: Ctap1, auth: Authenticator) -> None:
    reg = u2f.register(CHAL, APP)
    auth.presence = Deny()
    data = CHAL + APP + bytes([len(reg.key_handle)]) + reg.key_handle
    response = u2f.send_apdu(ins=Ctap1.INS.AUTHENTICATE, p1=0x08, data=data)
    flags, counter = response[0], struct.unpack(">I", response[1:5])[0]
    assert flags == 0 and counter > 0
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), reg.public_key)
    pub.verify(response[5:], APP + response[:5] + CHAL, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(ApduError) as e:  # enforce: no touch -> 6985
        u2f.authenticate(CHAL, APP, reg.key_handle)
    assert e.value.code == APDU.USE_NOT_SATISFIED


def test_presence_pending_then_granted(u2f: Ctap1, auth: Authenticator) -> None:
    gate: dict[str, asyncio.Event] = {}

    async def touch(request) -> bool:
        gate["event"] = asyncio.Event()
        await gate["event"].wait()
        return True

    auth.presence = CallbackPresence(touch)
    with pytest.raises(ApduError) as e:
        u2f.register(CHAL, APP)
    assert e.value.code == APDU.USE_NOT_SATISFIED
    with pytest.raises(ApduError):  # still waiting; no second prompt is started
        u2f.register(CHAL, APP)
    dev = u2f.device
    dev.loop.call_soon_threadsafe(gate["event"].set)
    reg = u2f.register(CHAL, APP)  # the latched touch is consumed
    reg.verify(APP, CHAL)
    with pytest.raises(ApduError) as e:  # and is gone
        u2f.authenticate(CHAL, APP, reg.key_handle)
    assert e.value.code == APDU.USE_NOT_SATISFIED


def test_denied_register(u2f: Ctap1, auth: Authenticator) -> None:
    auth.presence = Deny()
    with pytest.raises(ApduError) as e:
        u2f.register(CHAL, APP)
    assert e.value.code == APDU.USE_NOT_SATISFIED


def test_apdu_errors(dev: InProcessDevice) -> None:
    register = CHAL + APP
    short = bytes([0, 1, 0, 0, 64]) + register + b"\x00"
    assert raw(dev, short)[0] == 0x05  # short-form APDU works too
    assert raw(dev, bytes([0, 1, 0, 0, 63]) + register[:63]) == b"\x67\x00"
    assert raw(dev, bytes([0, 1, 0, 0, 64]) + register[:10]) == b"\x67\x00"
    assert raw(dev, b"\x00\x01") == b"\x67\x00"
    assert raw(dev, bytes([0x80, 1, 0, 0])) == b"\x6e\x00"
    assert raw(dev, bytes([0, 0x55, 0, 0])) == b"\x6d\x00"
    assert raw(dev, bytes([0, 3, 0, 0, 1, 0])) == b"\x67\x00"  # VERSION with data
    assert raw(dev, bytes([0, 2, 0x03, 0, 3, 1, 2, 3])) == b"\x67\x00"


def test_parse_apdu_forms() -> None:
    assert parse_apdu(bytes.fromhex("00010000000003aabbcc0000")).data == bytes.fromhex("aabbcc")
    assert parse_apdu(bytes.fromhex("00010000000003aabbcc")).data == bytes.fromhex("aabbcc")
    assert parse_apdu(bytes.fromhex("0001000003aabbcc00")).data == bytes.fromhex("aabbcc")


def test_u2f_disabled(make_auth) -> None:
    auth = make_auth(Config(u2f=False))
    dev = InProcessDevice(auth)
    assert raw(dev, bytes.fromhex("00030000")) == b"\x6d\x00"
    dev.close()


def test_attestation_certificates(u2f: Ctap1, auth: Authenticator, tmp_path) -> None:
    first = u2f.register(CHAL, APP).certificate
    assert u2f.register(CHAL, APP).certificate == first  # generated once, then stored
    root = attestation_ca.init(auth, tmp_path)
    reg = u2f.register(CHAL, APP)
    reg.verify(APP, CHAL)
    cert = x509.load_der_x509_certificate(reg.certificate)
    assert cert.issuer == root.cert.subject  # the batch certificate wins once installed


def test_key_handle_via_ctap2_appid(u2f: Ctap1, dev: InProcessDevice) -> None:
    """A browser's appid extension: CTAP2 getAssertion with rpId = the AppID string."""
    app_id = "https://example.com/app-id.json"
    reg = u2f.register(CHAL, sha256(app_id.encode()).digest())
    ctap = Ctap2(dev)
    cdh = os.urandom(32)
    assertion = ctap.get_assertion(app_id, cdh, [{"type": "public-key", "id": reg.key_handle}])
    assert assertion.auth_data.rp_id_hash == sha256(app_id.encode()).digest()
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), reg.public_key)
    pub.verify(assertion.signature, bytes(assertion.auth_data) + cdh, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(CtapError) as e:  # the key handle is bound to the AppID's hash
        ctap.get_assertion("example.com", cdh, [{"type": "public-key", "id": reg.key_handle}])
    assert e.value.code == CtapError.ERR.NO_CREDENTIALS


class U2fOnlyDevice(InProcessDevice):
    """The same emulator, advertised without CBOR: python-fido2 falls back to CTAP1."""

    @property
    def capabilities(self) -> int:
        return CAPABILITY.WINK


def test_fido2_client_over_u2f(auth: Authenticator) -> None:
    dev = U2fOnlyDevice(auth)
    client = Fido2Client(dev, DefaultClientDataCollector("https://example.com"))
    server = Fido2Server(
        {"id": "example.com", "name": "Example"},
        attestation="direct",
        verify_attestation=lambda *a: None,
    )
    options, state = server.register_begin({"id": b"u1", "name": "alice"})
    reg = client.make_credential(options.public_key)
    att = reg.response.attestation_object
    assert att.fmt == "fido-u2f"
    FidoU2FAttestation().verify(att.att_stmt, att.auth_data, reg.response.client_data.hash)
    cred = server.register_complete(state, reg)
    options, state = server.authenticate_begin([cred.credential_data])
    response = client.get_assertion(options.public_key).get_response(0)
    server.authenticate_complete(state, [cred.credential_data], response)
    dev.close()

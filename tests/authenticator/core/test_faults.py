"""Each fault changes exactly the field it names, and python-fido2's Fido2Server names that
field when it rejects the assertion. Clean and faulted assertions are compared field by
field; signatures are checked with ``cryptography`` from the COSE key."""

from __future__ import annotations

import os
from hashlib import sha256

import pytest
from cryptography.exceptions import InvalidSignature
from fido2.ctap2 import ClientPin, Ctap2
from fido2.server import Fido2Server
from fido2.webauthn import (
    AuthenticatorAssertionResponse,
    AuthenticatorData,
    CollectedClientData,
)

from authenticator import Authenticator
from tests.conftest import RP, verify_cose_signature

PIN = "1234"
UP, UV = AuthenticatorData.FLAG.UP, AuthenticatorData.FLAG.UV
RP_HASH = sha256(b"example.com").digest()


@pytest.fixture
def setup(auth: Authenticator, ctap: Ctap2):
    ClientPin(ctap).set_pin(PIN)
    server = Fido2Server(RP)
    return server, ctap


def _token(ctap: Ctap2, perm):
    cp = ClientPin(ctap)
    return cp, cp.get_pin_token(PIN, perm, "example.com")


def register(ctap: Ctap2):
    cp, token = _token(ctap, ClientPin.PERMISSION.MAKE_CREDENTIAL)
    cdh = os.urandom(32)
    r = ctap.make_credential(
        cdh, {"id": "example.com"}, {"id": b"u", "name": "u"}, [{"type": "public-key", "alg": -7}],
        pin_uv_param=cp.protocol.authenticate(token, cdh), pin_uv_protocol=cp.protocol.VERSION,
    )
    return r.auth_data.credential_data


def sign_in(server: Fido2Server, ctap: Ctap2, cred):
    """One assertion with UV (PIN token) for a Fido2Server challenge: (raw, server error)."""
    options, state = server.authenticate_begin([cred], user_verification="required")
    client_data = CollectedClientData.create(
        CollectedClientData.TYPE.GET, options.public_key.challenge, "https://example.com"
    )
    cdh = client_data.hash
    cp, token = _token(ctap, ClientPin.PERMISSION.GET_ASSERTION)
    r = ctap.get_assertion(
        "example.com", cdh, [{"type": "public-key", "id": cred.credential_id}],
        pin_uv_param=cp.protocol.authenticate(token, cdh), pin_uv_protocol=cp.protocol.VERSION,
    )
    response = AuthenticatorAssertionResponse(
        client_data=client_data, authenticator_data=r.auth_data, signature=r.signature,
        user_handle=None,
    )
    try:
        server.authenticate_complete(
            state, [cred], {"id": cred.credential_id, "rawId": cred.credential_id,
                            "type": "public-key", "response": response}
        )
        error = None
    except ValueError as e:
        error = str(e)
    return r, cdh, error


def signature_ok(cred, r, cdh) -> bool:
    try:
        verify_cose_signature(dict(cred.public_key), r.auth_data + cdh, r.signature)
    except InvalidSignature:
        return False
    return True


@pytest.mark.parametrize(
    "fault,reason",
    [
        ("bad-signature", "Invalid signature."),
        ("wrong-rpid-hash", "Wrong RP ID hash in response."),
        ("up-0", "User Present flag not set."),
        ("uv-0", "User verification required, but user verified flag not set."),
        ("counter-regress", None),  # python-fido2 leaves counters to the RP
    ],
)
def test_fault_changes_exactly_its_field(setup, auth: Authenticator, fault, reason) -> None:
    server, ctap = setup
    cred = register(ctap)
    clean, clean_cdh, error = sign_in(server, ctap, cred)
    assert error is None and signature_ok(cred, clean, clean_cdh)
    c = clean.auth_data

    auth.faults.arm(fault)
    bad, bad_cdh, error = sign_in(server, ctap, cred)
    auth.faults.clear()
    b = bad.auth_data
    assert error == reason

    expected = {
        "rp_id_hash": RP_HASH,
        "flags": c.flags,
        "counter": c.counter + 1,
        "signature_ok": True,
    }
    if fault == "bad-signature":
        expected["signature_ok"] = False
    elif fault == "wrong-rpid-hash":
        expected["rp_id_hash"] = sha256(b"wrong.example").digest()
    elif fault == "up-0":
        expected["flags"] = c.flags & ~UP
    elif fault == "uv-0":
        expected["flags"] = c.flags & ~UV
    elif fault == "counter-regress":
        expected["counter"] = c.counter - 1
    actual = {
        "rp_id_hash": b.rp_id_hash,
        "flags": b.flags,
        "counter": b.counter,
        "signature_ok": signature_ok(cred, bad, bad_cdh),
    }
    assert actual == expected
    assert c.flags & UP and c.flags & UV  # the clean one had both flags
    assert b.extensions == c.extensions and b.credential_data is None

    after, after_cdh, error = sign_in(server, ctap, cred)  # cleared: healthy again
    assert error is None and signature_ok(cred, after, after_cdh)
    assert after.auth_data.counter > c.counter  # the real counter never went back


def test_bad_signature_only_in_attestation_when_armed(auth: Authenticator, ctap: Ctap2) -> None:
    from fido2.attestation import InvalidSignature as AttInvalidSignature
    from fido2.webauthn import AttestationObject

    from tests.conftest import StrictAttestation

    def make():
        cdh = os.urandom(32)
        r = ctap.make_credential(
            cdh, {"id": "example.com"}, {"id": b"u"}, [{"type": "public-key", "alg": -7}]
        )
        return AttestationObject.create(r.fmt, r.auth_data, r.att_stmt), cdh

    att, cdh = make()
    StrictAttestation().verify_attestation(att, cdh)
    auth.faults.arm("bad-signature")
    att, cdh = make()
    with pytest.raises(AttInvalidSignature):
        StrictAttestation().verify_attestation(att, cdh)

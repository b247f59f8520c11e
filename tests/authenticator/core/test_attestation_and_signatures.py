"""Attestation and assertion signatures judged by independent code: python-fido2's packed
verifier for the statement, ``cryptography`` (fed from the COSE key) for every signature.
Every algorithm is also reloaded from the store by a new Authenticator (a restart)."""

from __future__ import annotations

import os
from hashlib import sha256

import pytest
from cryptography.exceptions import InvalidSignature
from fido2.attestation import AttestationType
from fido2.attestation import InvalidSignature as AttInvalidSignature
from fido2.ctap2 import Ctap2
from fido2.webauthn import AttestationObject, AuthenticatorData

from authenticator import Authenticator, Config
from tests.conftest import StrictAttestation, verify_cose_signature
from transports.inprocess import InProcessDevice

ALGS = [-7, -8, -35, -257]
RP_ID = "example.com"


def make(ctap: Ctap2, alg: int, rk: bool, user: bytes = b"u1"):
    cdh = os.urandom(32)
    r = ctap.make_credential(
        cdh, {"id": RP_ID, "name": "Ex"}, {"id": user, "name": "alice"},
        [{"type": "public-key", "alg": alg}], options={"rk": rk},
    )
    att = AttestationObject.create(r.fmt, r.auth_data, r.att_stmt)
    return att, cdh


def assertion(ctap: Ctap2, cred_id: bytes | None, cdh: bytes | None = None):
    cdh = cdh or os.urandom(32)
    allow = [{"type": "public-key", "id": cred_id}] if cred_id else None
    r = ctap.get_assertion(RP_ID, cdh, allow)
    return r, cdh


@pytest.mark.parametrize("rk", [False, True])
@pytest.mark.parametrize("alg", ALGS)
def test_self_attestation_verified_for_every_algorithm(ctap: Ctap2, alg: int, rk: bool) -> None:
    att, cdh = make(ctap, alg, rk)
    verifier = StrictAttestation()
    verifier.verify_attestation(att, cdh)  # python-fido2's packed verifier
    assert verifier.results == [AttestationType.SELF]
    assert att.fmt == "packed" and att.att_stmt["alg"] == alg and "x5c" not in att.att_stmt
    # the statement signs authData ‖ clientDataHash, checked again with cryptography
    cose = dict(att.auth_data.credential_data.public_key)
    assert cose[3] == alg
    verify_cose_signature(cose, bytes(att.auth_data) + cdh, att.att_stmt["sig"])
    with pytest.raises(AttInvalidSignature):  # another clientDataHash: not what was signed
        StrictAttestation().verify_attestation(att, sha256(cdh).digest())


@pytest.mark.parametrize("alg", ALGS)
def test_every_algorithm_signs_and_reloads_after_restart(
    auth: Authenticator, ctap: Ctap2, restart, alg: int
) -> None:
    made = {}
    for rk in (False, True):
        att, _ = make(ctap, alg, rk, user=b"rk" if rk else b"nrk")
        made[rk] = att.auth_data.credential_data
    counters = {}
    for rk, cred in made.items():
        r, cdh = assertion(ctap, cred.credential_id)
        verify_cose_signature(dict(cred.public_key), r.auth_data + cdh, r.signature)
        counters[rk] = r.auth_data.counter

    again = restart(auth)  # new Authenticator, same store (for SQLite: a new connection)
    dev = InProcessDevice(again)
    try:
        ctap2 = Ctap2(dev)
        for rk, cred in made.items():
            r, cdh = assertion(ctap2, cred.credential_id)
            verify_cose_signature(dict(cred.public_key), r.auth_data + cdh, r.signature)
            assert r.auth_data.counter > counters[rk]  # never backwards across a restart
        # the discoverable one is found without an allowList, with its user
        r, cdh = assertion(ctap2, None)
        assert r.credential["id"] == made[True].credential_id and r.user["id"] == b"rk"
        verify_cose_signature(dict(made[True].public_key), r.auth_data + cdh, r.signature)
    finally:
        dev.close()


def test_signature_is_over_auth_data_and_client_data_hash(ctap: Ctap2) -> None:
    att, _ = make(ctap, -7, False)
    cose = dict(att.auth_data.credential_data.public_key)
    r, cdh = assertion(ctap, att.auth_data.credential_data.credential_id)
    verify_cose_signature(cose, r.auth_data + cdh, r.signature)
    with pytest.raises(InvalidSignature):
        verify_cose_signature(cose, r.auth_data + os.urandom(32), r.signature)


def test_attestation_none_mode(make_auth) -> None:
    auth = make_auth(Config(attestation="none"))
    dev = InProcessDevice(auth)
    try:
        att, cdh = make(Ctap2(dev), -7, False)
        verifier = StrictAttestation()
        verifier.verify_attestation(att, cdh)
        assert att.fmt == "none" and verifier.results == [AttestationType.NONE]
    finally:
        dev.close()


def test_assertion_auth_data_fields(ctap: Ctap2) -> None:
    att, _ = make(ctap, -7, False)
    r, _ = assertion(ctap, att.auth_data.credential_data.credential_id)
    data = AuthenticatorData(r.auth_data)
    assert data.rp_id_hash == sha256(RP_ID.encode()).digest()
    assert data.flags == AuthenticatorData.FLAG.UP
    assert data.credential_data is None and not data.extensions

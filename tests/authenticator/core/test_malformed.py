"""Malformed requests get the spec's CTAP status, never an exception or a hang."""

from __future__ import annotations

import asyncio
from hashlib import sha256

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authenticator import Authenticator
from authenticator.core.errors import ERR

CDH = sha256(b"client data").digest()
RP = {"id": "example.com", "name": "Example"}
USER = {"id": b"user", "name": "alice"}
ES256 = [{"type": "public-key", "alg": -7}]


def call(auth: Authenticator, cmd: int, payload) -> bytes:
    data = payload if isinstance(payload, bytes) else cbor2.dumps(payload, canonical=True)
    return asyncio.run(auth.handle_cbor(bytes([cmd]) + data))


@pytest.mark.parametrize(
    "cmd,payload,status",
    [
        (0x01, b"\xff\xff", ERR.INVALID_CBOR),
        (0x01, [1, 2], ERR.CBOR_UNEXPECTED_TYPE),
        (0x01, {2: RP, 3: USER, 4: ES256}, ERR.MISSING_PARAMETER),
        (0x01, {1: CDH, 3: USER, 4: ES256}, ERR.MISSING_PARAMETER),
        (0x01, {1: CDH, 2: RP, 3: USER}, ERR.MISSING_PARAMETER),
        (0x01, {1: "text", 2: RP, 3: USER, 4: ES256}, ERR.CBOR_UNEXPECTED_TYPE),
        (0x01, {1: CDH[:16], 2: RP, 3: USER, 4: ES256}, ERR.INVALID_LENGTH),
        (0x01, {1: CDH, 2: RP, 3: {"id": b"x" * 65}, 4: ES256}, ERR.INVALID_LENGTH),
        (0x01, {1: CDH, 2: RP, 3: USER, 4: [{"type": "public-key", "alg": -999}]}, ERR.UNSUPPORTED_ALGORITHM),
        (0x01, {1: CDH, 2: RP, 3: USER, 4: [{"type": "public-key"}]}, ERR.MISSING_PARAMETER),
        (0x01, {1: CDH, 2: RP, 3: USER, 4: ["x"]}, ERR.CBOR_UNEXPECTED_TYPE),
        (0x01, {1: CDH, 2: RP, 3: USER, 4: ES256, 7: {"up": False}}, ERR.INVALID_OPTION),
        (0x01, {1: CDH, 2: RP, 3: USER, 4: ES256, 7: {"uv": True}}, ERR.INVALID_OPTION),
        (0x01, {1: CDH, 2: RP, 3: USER, 4: ES256, 7: {"rk": 1}}, ERR.CBOR_UNEXPECTED_TYPE),
        (0x01, {1: CDH, 2: RP, 3: USER, 4: ES256, 8: b"x" * 16}, ERR.MISSING_PARAMETER),
        (0x01, {1: CDH, 2: RP, 3: USER, 4: ES256, 8: b"x" * 16, 9: 7}, ERR.INVALID_PARAMETER),
        (0x01, {1: CDH, 2: RP, 3: USER, 4: ES256, 8: b"x" * 16, 9: 2}, ERR.PIN_AUTH_INVALID),
        (0x01, {1: CDH, 2: RP, 3: USER, 4: ES256, 10: 1}, ERR.INVALID_PARAMETER),
        (0x02, {2: CDH}, ERR.MISSING_PARAMETER),
        (0x02, {1: "example.com"}, ERR.MISSING_PARAMETER),
        (0x02, {1: "example.com", 2: CDH}, ERR.NO_CREDENTIALS),
        (0x02, {1: "example.com", 2: CDH, 3: [{"type": "public-key", "id": b"\x01junk"}]}, ERR.NO_CREDENTIALS),
        (0x02, {1: "example.com", 2: CDH, 3: [{"id": b"x"}]}, ERR.MISSING_PARAMETER),
        (0x02, {1: "example.com", 2: CDH, 5: {"rk": True}}, ERR.UNSUPPORTED_OPTION),
        (0x02, {1: 5, 2: CDH}, ERR.CBOR_UNEXPECTED_TYPE),
        (0x08, b"", ERR.NOT_ALLOWED),
        (0x06, {}, ERR.MISSING_PARAMETER),
        (0x06, {1: 1, 2: 99}, ERR.INVALID_SUBCOMMAND),
        (0x06, {1: 3, 2: 2}, ERR.INVALID_PARAMETER),
        (0x42, b"", ERR.INVALID_COMMAND),
    ],
)
def test_status_codes(make_auth, cmd, payload, status):
    assert call(make_auth(), cmd, payload) == bytes([status])


def test_empty_request_is_invalid_length():
    assert asyncio.run(Authenticator().handle_cbor(b"")) == bytes([ERR.INVALID_LENGTH])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data):
    auth = Authenticator()
    response = asyncio.run(auth.handle_cbor(data or b"\x01"))
    assert isinstance(response, bytes) and len(response) >= 1
    assert response[0] != ERR.OTHER  # OTHER would mean an internal error escaped a command


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.binary(max_size=40) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.integers(0, 12) | st.text(max_size=5), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0x01, 0x02, 0x06, 0x0A, 0x0C, 0x0D]), st.dictionaries(st.integers(0, 12), json_values, max_size=8))
def test_random_maps_never_raise(cmd, params):
    auth = Authenticator()
    response = call(auth, cmd, params)
    assert response[0] != ERR.OTHER, params


@pytest.mark.parametrize("alg", [-7, -8, -35, -257])
def test_responses_are_canonical_cbor(make_auth, alg):
    """Hot paths encode maps built in canonical order; prove the bytes equal canonical CBOR."""
    from fido2.webauthn import AuthenticatorData

    auth = make_auth()
    mc = call(auth, 0x01, {1: CDH, 2: RP, 3: USER, 4: [{"type": "public-key", "alg": alg}], 7: {"rk": True}})
    assert mc[0] == 0
    assert mc[1:] == cbor2.dumps(cbor2.loads(mc[1:]), canonical=True)
    cose = AuthenticatorData(cbor2.loads(mc[1:])[2]).credential_data.public_key
    assert cbor2.dumps(dict(cose)) == cbor2.dumps(dict(cose), canonical=True)
    ga = call(auth, 0x02, {1: "example.com", 2: CDH})
    assert ga[0] == 0
    assert ga[1:] == cbor2.dumps(cbor2.loads(ga[1:]), canonical=True)

"""Divergences the conformance suite exposed (issue 12), each driven through python-fido2 or,
where python-fido2 cannot express the request, raw CTAP bytes."""

from __future__ import annotations

import os

import cbor2
import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, CredentialManagement, Ctap2
from fido2.ctap2.config import Config as CtapConfig

from authenticator import Authenticator
from transports.inprocess import InProcessDevice

P = ClientPin.PERMISSION
ERR = CtapError.ERR
PIN = "1234"
RP = {"id": "example.com", "name": "Example"}


def make_rk(ctap: Ctap2, cp: ClientPin, user_id: bytes, name: str) -> None:
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, RP["id"])
    cdh = os.urandom(32)
    ctap.make_credential(
        cdh, RP, {"id": user_id, "name": name, "displayName": name.title()},
        [{"type": "public-key", "alg": -7}], options={"rk": True},
        pin_uv_param=cp.protocol.authenticate(token, cdh), pin_uv_protocol=cp.protocol.VERSION,
    )


def discover(ctap: Ctap2, cp: ClientPin):
    token = cp.get_pin_token(PIN, P.GET_ASSERTION, RP["id"])
    cdh = os.urandom(32)
    return ctap.get_assertion(
        RP["id"], cdh, pin_uv_param=cp.protocol.authenticate(token, cdh),
        pin_uv_protocol=cp.protocol.VERSION,
    )


# ---------------------------------------------------------------- single account: id only


def test_single_account_discovery_with_uv_returns_user_id_only(ctap: Ctap2) -> None:
    """CTAP 2.1 §6.2.2 (user): one account -> "id" only, even after user verification."""
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    make_rk(ctap, cp, b"u1", "alice")
    got = discover(ctap, cp)
    assert got.user == {"id": b"u1"}
    assert got.number_of_credentials is None


def test_several_accounts_with_uv_carry_names_for_the_platforms_picker(ctap: Ctap2) -> None:
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    make_rk(ctap, cp, b"u1", "alice")
    make_rk(ctap, cp, b"u2", "bob")
    first = discover(ctap, cp)
    assert first.number_of_credentials == 2
    rest = ctap.get_next_assertion()
    users = sorted([first.user, rest.user], key=lambda u: u["id"])
    assert users == [
        {"id": b"u1", "name": "alice", "displayName": "Alice"},
        {"id": b"u2", "name": "bob", "displayName": "Bob"},
    ]


def test_several_accounts_without_uv_get_ids_only(ctap: Ctap2) -> None:
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    make_rk(ctap, cp, b"u1", "alice")
    make_rk(ctap, cp, b"u2", "bob")
    first = ctap.get_assertion(RP["id"], os.urandom(32))
    assert first.number_of_credentials == 2
    assert first.user.keys() == {"id"}
    assert ctap.get_next_assertion().user.keys() == {"id"}


# ------------------------------------------------------------- forcePINChange -> PIN_INVALID


def test_force_pin_change_answers_pin_invalid_and_keeps_retries(ctap: Ctap2) -> None:
    """CTAP 2.1 §6.5.5.7: with forcePINChange set, a token request with the right PIN gets
    PIN_INVALID (python-fido2, OpenSK agree), not PIN_POLICY_VIOLATION; retries stay full."""
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    token = cp.get_pin_token(PIN, P.AUTHENTICATOR_CFG)
    CtapConfig(ctap, cp.protocol, token).set_min_pin_length(force_change_pin=True)
    for permissions in (None, P.MAKE_CREDENTIAL):  # getPinToken and ...WithPermissions
        with pytest.raises(CtapError) as e:
            cp.get_pin_token(PIN, permissions, "example.com" if permissions else None)
        assert e.value.code == ERR.PIN_INVALID
    assert cp.get_pin_retries()[0] == 8
    cp.change_pin(PIN, "4321")
    cp.get_pin_token("4321")


# ------------------------------------------------- legacy getPinToken and credMgmt preview


class PreviewCredentialManagement(CredentialManagement):
    """python-fido2's CredentialManagement on the prototype command (0x41), as a FIDO_2_1_PRE
    client (fido2 0.8-0.9, older libfido2) speaks it."""

    def __init__(self, ctap: Ctap2, protocol, token: bytes) -> None:
        super().__init__(ctap, protocol, token)
        self._ctap = ctap

    def _call(self, sub_cmd, params=None, auth=True):
        kwargs = {}
        if auth:
            msg = bytes([sub_cmd]) + (cbor2.dumps(params, canonical=True) if params else b"")
            kwargs = {3: self.pin_uv.protocol.VERSION,
                      4: self.pin_uv.protocol.authenticate(self.pin_uv.token, msg)}
        request = {1: sub_cmd, **({2: params} if params else {}), **kwargs}
        return self._ctap.send_cbor(0x41, request)


def test_legacy_pin_token_works_with_cred_mgmt_preview_and_2_1(ctap: Ctap2) -> None:
    """CTAP 2.1 §6.5.5.7.1: getPinToken (0x05) tokens keep the permissions CTAP 2.0 / 2.1-PRE
    clients relied on (mc, ga, cm); 0x41 accepts them for every RP."""
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    make_rk(ctap, cp, b"u1", "alice")
    legacy = cp.get_pin_token(PIN)  # no permissions: python-fido2 sends subcommand 0x05
    # the legacy token makes a credential (and so gets bound to example.com under CTAP 2.1)
    cdh = os.urandom(32)
    ctap.make_credential(
        cdh, RP, {"id": b"u2", "name": "bob"}, [{"type": "public-key", "alg": -7}],
        options={"rk": True}, pin_uv_param=cp.protocol.authenticate(legacy, cdh),
        pin_uv_protocol=cp.protocol.VERSION,
    )
    preview = PreviewCredentialManagement(ctap, cp.protocol, legacy)
    assert preview.get_metadata()[1] == 2  # existingResidentCredentialsCount
    assert [rp[3]["id"] for rp in preview.enumerate_rps()] == ["example.com"]
    fresh = cp.get_pin_token(PIN)
    assert CredentialManagement(ctap, cp.protocol, fresh).get_metadata()[1] == 2


def test_get_info_advertises_the_preview_to_2_1_pre_clients(ctap: Ctap2) -> None:
    info = ctap.get_info()
    assert "FIDO_2_1_PRE" in info.versions and "FIDO_2_1" in info.versions
    assert info.options["credentialMgmtPreview"] is True and info.options["credMgmt"] is True


def test_permission_token_bound_to_an_rp_stays_confined_on_preview(ctap: Ctap2) -> None:
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    token = cp.get_pin_token(PIN, P.CREDENTIAL_MGMT, "example.com")
    with pytest.raises(CtapError) as e:
        PreviewCredentialManagement(ctap, cp.protocol, token).get_metadata()
    assert e.value.code == ERR.PIN_AUTH_INVALID


# ------------------------------------------------------------------------ strict CBOR


def _mc_request(cdh_key: bytes = b"\x01") -> bytes:
    """makeCredential with hand-built CBOR: ``cdh_key`` is the encoded key for item 1."""
    rest = cbor2.dumps({
        2: RP, 3: {"id": b"u", "name": "n"}, 4: [{"type": "public-key", "alg": -7}]
    }, canonical=True)
    # rest is a map header 0xa3 + 3 items; build a 4-item map with our own first item
    return bytes([0x01, 0xA4]) + cdh_key + cbor2.dumps(os.urandom(32)) + rest[1:]


async def _status(auth: Authenticator, request: bytes) -> int:
    return (await auth.handle_cbor(request))[0]


@pytest.mark.parametrize(
    ("key", "status"),
    [
        (b"\x01", 0x00),  # the well-formed request
        (bytes.fromhex("f93c00"), 0x11),  # 1.0 (half float) as key: CBOR_UNEXPECTED_TYPE
        (bytes.fromhex("fb3ff0000000000000"), 0x11),  # 1.0 (double)
        (b"\xf5", 0x11),  # true
        (b"\x02", 0x12),  # duplicate of key 2 (rp): INVALID_CBOR, the last must not win
    ],
)
async def test_request_map_keys_are_strict(auth: Authenticator, key: bytes, status: int) -> None:
    assert await _status(auth, _mc_request(key)) == status


async def test_duplicate_keys_in_nested_maps_are_invalid_cbor(auth: Authenticator) -> None:
    options = bytes.fromhex("a2") + cbor2.dumps("rk") + b"\xf4" + cbor2.dumps("rk") + b"\xf5"
    request = bytes([0x01, 0xA5]) + b"\x01" + cbor2.dumps(os.urandom(32)) + cbor2.dumps(
        {2: RP, 3: {"id": b"u", "name": "n"}, 4: [{"type": "public-key", "alg": -7}]},
        canonical=True,
    )[1:] + b"\x07" + options
    assert await _status(auth, request) == 0x12
    assert auth.store.count_discoverable() == 0


def test_strict_decoding_through_a_ctap_device(dev: InProcessDevice) -> None:
    """The same through python-fido2's CtapDevice interface: one CTAP status byte."""
    assert dev.call(0x10, _mc_request(b"\xf5")) == bytes([0x11])
    assert dev.call(0x10, _mc_request(b"\x02")) == bytes([0x12])


# ------------------------------------------------------------- CTAP 2.0 behaviour on demand


@pytest.mark.parametrize("strict_20", [False, True])
def test_up_true_in_make_credential_options(strict_20: bool) -> None:
    """CTAP 2.1 accepts "up": true; --set make_cred_up_option_invalid=true answers as 2.0."""
    from authenticator import Config

    auth = Authenticator(Config(make_cred_up_option_invalid=strict_20))
    dev = InProcessDevice(auth)
    try:
        ctap = Ctap2(dev)
        args = (os.urandom(32), RP, {"id": b"u", "name": "n"}, [{"type": "public-key", "alg": -7}])
        if strict_20:
            with pytest.raises(CtapError) as e:
                ctap.make_credential(*args, options={"up": True})
            assert e.value.code == ERR.INVALID_OPTION
        else:
            ctap.make_credential(*args, options={"up": True})
        with pytest.raises(CtapError) as e:
            ctap.make_credential(*args, options={"up": False})
        assert e.value.code == ERR.INVALID_OPTION
    finally:
        dev.close()

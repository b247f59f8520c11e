"""Edges that mutation testing found untested: type checks that must answer a CTAP status
(not ERR_OTHER), exact limits, per-credential keys, and counters the PIN state keeps."""

from __future__ import annotations

import hashlib
import hmac
import os

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Ctap2
from fido2.ctap2.credman import CredentialManagement
from fido2.hid import CTAPHID

from authenticator import Authenticator
from storage.base import CounterRangeError, check_counter
from tests.authenticator.conftest import Clock
from transports.inprocess import InProcessDevice

ERR = CtapError.ERR
P = ClientPin.PERMISSION
PIN = "1234"
RP_ID = "example.com"
ES256 = [{"type": "public-key", "alg": -7}]


def status_of(fn, *args, **kw) -> int:
    with pytest.raises(CtapError) as e:
        fn(*args, **kw)
    return e.value.code


def make(ctap: Ctap2, user: bytes = b"u", rk: bool = True, ext=None):
    return ctap.make_credential(
        os.urandom(32), {"id": RP_ID}, {"id": user, "name": user.decode(), "displayName": "D"},
        ES256, extensions=ext, options={"rk": rk},
    )


@pytest.mark.parametrize("value", ["1", True, b"\x01"])
def test_cred_protect_must_be_an_integer(ctap: Ctap2, value) -> None:
    assert status_of(make, ctap, ext={"credProtect": value}) == ERR.CBOR_UNEXPECTED_TYPE


@pytest.mark.parametrize("value,status", [(0, ERR.INVALID_OPTION), (4, ERR.INVALID_OPTION)])
def test_cred_protect_level_range(ctap: Ctap2, auth: Authenticator, value, status) -> None:
    assert status_of(make, ctap, ext={"credProtect": value}) == status
    assert auth.store.count_discoverable() == 0


def test_cred_blob_type_and_exact_limit(ctap: Ctap2, auth: Authenticator) -> None:
    assert status_of(make, ctap, ext={"credBlob": "text"}) == ERR.CBOR_UNEXPECTED_TYPE
    limit = auth.config.max_cred_blob_length
    r = make(ctap, ext={"credBlob": b"x" * limit})  # exactly the maximum is stored
    assert r.auth_data.extensions == {"credBlob": True}
    cid = r.auth_data.credential_data.credential_id
    a = ctap.get_assertion(RP_ID, os.urandom(32), [{"type": "public-key", "id": cid}],
                           extensions={"credBlob": True})
    assert a.auth_data.extensions == {"credBlob": b"x" * limit}


def test_large_blob_key_is_per_credential_and_needs_rk(ctap: Ctap2, auth: Authenticator) -> None:
    assert status_of(make, ctap, rk=False, ext={"largeBlobKey": True}) == ERR.INVALID_OPTION
    assert status_of(make, ctap, ext={"largeBlobKey": False}) == ERR.INVALID_OPTION
    key = HKDF(hashes.SHA256(), 32, salt=None, info=b"fido-emu/large-blob-key").derive(
        auth.store.device_secret()
    )
    seen = []
    for user in (b"a", b"b"):
        r = make(ctap, user=user, ext={"largeBlobKey": True})
        cid = r.auth_data.credential_data.credential_id
        expected = hmac.new(key, cid, hashlib.sha256).digest()
        assert r.large_blob_key == expected
        a = ctap.get_assertion(RP_ID, os.urandom(32), [{"type": "public-key", "id": cid}],
                               extensions={"largeBlobKey": True})
        assert a.large_blob_key == expected
        seen.append(expected)
    assert seen[0] != seen[1]


def raw(dev: InProcessDevice, cmd: int, params: dict) -> int:
    return dev.call(CTAPHID.CBOR, bytes([cmd]) + cbor2.dumps(params))[0]


def test_set_min_pin_length_without_force_flag(ctap: Ctap2, dev: InProcessDevice) -> None:
    """forceChangePin is optional (CTAP 2.1 §6.11.4): absent means false."""
    assert raw(dev, 0x0D, {1: 0x03, 2: {1: 6}}) == 0
    info = ctap.get_info()
    assert info.min_pin_length == 6 and info.force_pin_change is False


@pytest.mark.parametrize("value", ["6", True])
def test_set_min_pin_length_type(dev: InProcessDevice, value) -> None:
    assert raw(dev, 0x0D, {1: 0x03, 2: {1: value}}) == ERR.CBOR_UNEXPECTED_TYPE
    assert raw(dev, 0x0D, {1: 0x03, 2: {3: 1}}) == ERR.CBOR_UNEXPECTED_TYPE  # force: a bool


def test_update_user_information_display_name(ctap: Ctap2, auth: Authenticator) -> None:
    ClientPin(ctap).set_pin(PIN)
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, RP_ID)
    cdh = os.urandom(32)
    r = ctap.make_credential(
        cdh, {"id": RP_ID}, {"id": b"u1", "name": "alice"}, ES256, options={"rk": True},
        pin_uv_param=cp.protocol.authenticate(token, cdh), pin_uv_protocol=cp.protocol.VERSION,
    )
    cid = r.auth_data.credential_data.credential_id
    cm = CredentialManagement(ctap, cp.protocol, cp.get_pin_token(PIN, P.CREDENTIAL_MGMT))
    cm.update_user_info({"id": cid, "type": "public-key"},
                        {"id": b"u1", "name": "alice", "displayName": "Alice Liddell"})
    record = auth.store.get_credential(cid)
    assert record.user_name == "alice" and record.user_display_name == "Alice Liddell"


def test_a_right_pin_resets_the_mismatch_run(ctap: Ctap2) -> None:
    """Three wrong PINs *in a row* block until power-cycle; a right one in between resets."""
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    assert status_of(cp.get_pin_token, "0000") == ERR.PIN_INVALID
    cp.get_pin_token(PIN)
    assert status_of(cp.get_pin_token, "0000") == ERR.PIN_INVALID
    assert status_of(cp.get_pin_token, "0000") == ERR.PIN_INVALID
    assert status_of(cp.get_pin_token, "0000") == ERR.PIN_AUTH_BLOCKED


def test_an_expired_token_stays_refused(ctap: Ctap2, auth: Authenticator, clock: Clock) -> None:
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, RP_ID)
    clock.now += auth.config.pin_token_lifetime + 1

    def use():
        cdh = os.urandom(32)
        return ctap.make_credential(
            cdh, {"id": RP_ID}, {"id": b"u"}, ES256,
            pin_uv_param=cp.protocol.authenticate(token, cdh), pin_uv_protocol=cp.protocol.VERSION,
        )

    assert status_of(use) == ERR.PIN_TOKEN_EXPIRED
    assert status_of(use) == ERR.PIN_AUTH_INVALID  # gone, not an internal error


@pytest.mark.parametrize("value", [0, 1, 2**32 - 1])
def test_counter_range_accepts(value: int) -> None:
    assert check_counter(value) == value


@pytest.mark.parametrize("value", [-1, 2**32, True, "1", 1.0])
def test_counter_range_refuses(value) -> None:
    with pytest.raises(CounterRangeError):
        check_counter(value)


def test_a_new_u2f_attestation_when_its_key_is_gone(auth: Authenticator, dev) -> None:
    """A certificate without its sealed key (a damaged store) is replaced, not used."""
    from fido2.ctap1 import Ctap1

    from authenticator.core.commands import ctap1

    first = Ctap1(dev).register(os.urandom(32), os.urandom(32))
    auth.store.set_state(ctap1.STATE_KEY, None)
    app, chal = os.urandom(32), os.urandom(32)
    second = Ctap1(dev).register(chal, app)
    second.verify(app, chal)  # signed by the new certificate's key
    assert second.certificate != first.certificate


@pytest.mark.parametrize("sub", [0x03, 0x05])  # enumerateRPsGetNextRP, ...CredentialsGetNext
def test_get_next_without_an_enumeration_stays_not_allowed(dev: InProcessDevice, sub) -> None:
    for _ in range(2):
        assert raw(dev, 0x0A, {1: sub}) == ERR.NOT_ALLOWED


def test_cap_lease_bounds() -> None:
    from storage.base import COUNTER_MAX, cap_lease

    assert cap_lease(0) == 0 and cap_lease(5) == 5
    assert cap_lease(COUNTER_MAX + 10) == COUNTER_MAX  # a lease past the maximum is the maximum
    for bad in (-1, True, "1"):
        with pytest.raises(CounterRangeError):
            cap_lease(bad)


def test_two_authenticators_on_one_store_never_reuse_a_counter(auth: Authenticator, restart):
    """Another connection (another process in real life) signs in between: each side's next
    counter passes what the other handed out."""
    a = InProcessDevice(auth)
    b = InProcessDevice(restart(auth))
    try:
        ca, cb = Ctap2(a), Ctap2(b)
        cid = make(ca, rk=False).auth_data.credential_data.credential_id
        allow = [{"type": "public-key", "id": cid}]
        seen = []
        for ctap in (ca, cb, ca, cb, ca):
            seen.append(ctap.get_assertion(RP_ID, os.urandom(32), allow).auth_data.counter)
        assert seen == sorted(seen) and len(set(seen)) == len(seen), seen
    finally:
        a.close()
        b.close()


def test_token_using_built_in_uv(make_auth) -> None:
    """getPinUvAuthTokenUsingUvWithPermissions: python-fido2 gets a token by built-in UV
    and makes a credential with it (UV=1)."""
    from authenticator import Config

    auth = make_auth(Config(builtin_uv=True, client_pin=False))
    dev = InProcessDevice(auth)
    try:
        ctap = Ctap2(dev)
        cp = ClientPin(ctap)
        token = cp.get_uv_token(P.MAKE_CREDENTIAL, RP_ID)
        cdh = os.urandom(32)
        r = ctap.make_credential(
            cdh, {"id": RP_ID}, {"id": b"u"}, ES256,
            pin_uv_param=cp.protocol.authenticate(token, cdh), pin_uv_protocol=cp.protocol.VERSION,
        )
        assert r.auth_data.is_user_verified()
    finally:
        dev.close()


def test_always_uv_with_built_in_uv_verifies_every_assertion(make_auth) -> None:
    from authenticator import Config
    from authenticator.core.presence import AutoApprove

    presence = AutoApprove()
    auth = make_auth(Config(builtin_uv=True, client_pin=False), presence)
    dev = InProcessDevice(auth)
    try:
        ctap = Ctap2(dev)
        cid = make(ctap, rk=False).auth_data.credential_data.credential_id
        assert raw(dev, 0x0D, {1: 0x02}) == 0  # toggleAlwaysUv (no PIN: no auth needed)
        assert auth.settings.always_uv
        before = len(presence.requests)
        a = ctap.get_assertion(RP_ID, os.urandom(32), [{"type": "public-key", "id": cid}])
        assert a.auth_data.is_user_verified() and a.auth_data.is_user_present()
        assert len(presence.requests) == before + 1  # one UV prompt, not a plain touch
    finally:
        dev.close()


class Touches:
    """Presence that records touches and answers as told."""

    def __init__(self, answer: bool = True) -> None:
        self.answer, self.count = answer, 0

    async def request_presence(self, request) -> bool:
        self.count += 1
        return self.answer

    async def verify_user(self, request) -> str:
        return "approve" if self.answer else "deny"


def test_reset_wipes_within_the_window_after_a_touch(make_auth, clock: Clock, restart) -> None:
    touches = Touches()
    auth = make_auth(None, touches)
    dev = InProcessDevice(auth)
    try:
        ctap = Ctap2(dev)
        ClientPin(ctap).set_pin(PIN)
        secret = auth.store.device_secret()
        clock.now += auth.config.reset_window + 1  # too late after power-up
        assert status_of(ctap.reset) == ERR.NOT_ALLOWED and touches.count == 0
        assert auth.pin.is_set
        auth.power_cycle()
        touches.answer = False
        assert status_of(ctap.reset) == ERR.OPERATION_DENIED and touches.count == 1
        assert auth.pin.is_set  # a declined touch changes nothing
        touches.answer = True
        ctap.reset()
        assert touches.count == 2
        assert not auth.pin.is_set and auth.store.device_secret() != secret
        assert not restart(auth).pin.is_set  # and it stays reset
    finally:
        dev.close()


def test_selection_is_a_touch(make_auth) -> None:
    touches = Touches()
    auth = make_auth(None, touches)
    dev = InProcessDevice(auth)
    try:
        assert raw(dev, 0x0B, {}) == 0 and touches.count == 1
        touches.answer = False
        assert raw(dev, 0x0B, {}) == ERR.OPERATION_DENIED and touches.count == 2
    finally:
        dev.close()


def test_get_info_fields(make_auth) -> None:
    from authenticator import Config

    auth = make_auth(Config(builtin_uv=True))
    dev = InProcessDevice(auth)
    try:
        info = Ctap2(dev).get_info()
        assert info.versions[0] == "U2F_V2" and "FIDO_2_1" in info.versions
        assert bytes(info.aaguid) == auth.config.aaguid
        assert info.pin_uv_protocols == [2, 1]
        assert info.max_cred_id_length == auth.config.max_cred_id_length
        assert info.options["plat"] is False and info.options["uv"] is True
        assert "ep" in info.options  # enterprise attestation can be enabled
        assert info.uv_modality == 2  # fingerprint
    finally:
        dev.close()


def test_assertion_credential_descriptor_and_unrequested_outputs(ctap: Ctap2) -> None:
    """Outputs appear only for what the credential was made with."""
    r = make(ctap)  # no hmac-secret, no largeBlobKey
    cid = r.auth_data.credential_data.credential_id
    allow = [{"type": "public-key", "id": cid}]
    a = ctap.get_assertion(RP_ID, os.urandom(32), allow,
                           extensions={"largeBlobKey": True, "hmac-secret": {}})
    assert a.credential == {"id": cid, "type": "public-key"}
    assert a.large_blob_key is None and not a.auth_data.extensions
    assert status_of(ctap.get_assertion, RP_ID, os.urandom(32), allow,
                     extensions={"largeBlobKey": False}) == ERR.INVALID_OPTION


def test_replaced_credential_leaves_no_counter(ctap: Ctap2, auth: Authenticator) -> None:
    old = make(ctap, user=b"alice").auth_data.credential_data.credential_id
    ctap.get_assertion(RP_ID, os.urandom(32), [{"type": "public-key", "id": old}])
    assert auth.store.load_counter(old) is not None
    make(ctap, user=b"alice")
    assert auth.store.load_counter(old) is None


def test_enumeration_ends(ctap: Ctap2, dev: InProcessDevice) -> None:
    ClientPin(ctap).set_pin(PIN)
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, RP_ID)
    cdh = os.urandom(32)
    ctap.make_credential(
        cdh, {"id": RP_ID}, {"id": b"u1", "name": "alice"}, ES256, options={"rk": True},
        pin_uv_param=cp.protocol.authenticate(token, cdh), pin_uv_protocol=cp.protocol.VERSION,
    )
    cm = CredentialManagement(ctap, cp.protocol, cp.get_pin_token(PIN, P.CREDENTIAL_MGMT))
    assert len(cm.enumerate_rps()) == 1  # begin says total 1: no getNext
    assert raw(dev, 0x0A, {1: 0x03}) == ERR.NOT_ALLOWED  # past the end


@pytest.mark.parametrize("profile", ["security-key", "synced-passkey", "platform"])
def test_get_info_bytes_are_canonical_cbor(profile):
    """getInfo skips cbor2's canonical mode on its hot path: its bytes must still be exactly
    the canonical encoding (CTAP2 §8), with a PIN set and without."""
    import asyncio

    from authenticator.core import Config
    from authenticator.core.commands.get_info import info_map

    auth = Authenticator(Config.for_profile(profile))
    loop = asyncio.new_event_loop()
    try:
        for _ in range(2):
            raw = loop.run_until_complete(auth.handle_cbor(b"\x04"))
            assert raw[0] == 0
            assert raw[1:] == cbor2.dumps(info_map(auth), canonical=True)
            if auth.config.client_pin and not auth.pin.is_set:
                ClientPin(Ctap2(InProcessDevice(auth))).set_pin("123456")
    finally:
        loop.close()


def test_hmac_secret_only_for_credentials_made_with_it(ctap: Ctap2) -> None:
    for rk in (False, True):
        cid = make(ctap, rk=rk).auth_data.credential_data.credential_id
        a = ctap.get_assertion(RP_ID, os.urandom(32), [{"type": "public-key", "id": cid}],
                               extensions={"hmac-secret": {}})
        assert not a.auth_data.extensions  # ignored, not even validated


def test_enterprise_capability_can_be_switched_off(make_auth) -> None:
    from authenticator import Config

    dev = InProcessDevice(make_auth(Config(extra={"enterprise_capable": False})))
    try:
        assert "ep" not in Ctap2(dev).get_info().options
    finally:
        dev.close()


def test_command_events_name_the_user(auth: Authenticator, ctap: Ctap2) -> None:
    events = []
    auth.listeners.append(events.append)
    cid = make(ctap, user=b"alice").auth_data.credential_data.credential_id
    ctap.get_assertion(RP_ID, os.urandom(32), [{"type": "public-key", "id": cid}])
    assert [e.details.get("user") for e in events[-2:]] == ["alice", "alice"]


def test_exclude_list_touch_names_the_user(make_auth) -> None:
    from authenticator.core.presence import AutoApprove

    presence = AutoApprove()
    dev = InProcessDevice(make_auth(None, presence))
    try:
        ctap = Ctap2(dev)
        cid = make(ctap, user=b"alice", rk=False).auth_data.credential_data.credential_id
        assert presence.requests[-1].user_name == "alice"  # the touch says who for
        with pytest.raises(CtapError) as e:
            ctap.make_credential(os.urandom(32), {"id": RP_ID}, {"id": b"x", "name": "bob"},
                                 ES256, exclude_list=[{"type": "public-key", "id": cid}])
        assert e.value.code == ERR.CREDENTIAL_EXCLUDED
        assert presence.requests[-1].user_name == "bob"
    finally:
        dev.close()

"""authenticatorCredentialManagement against python-fido2's CredentialManagement."""

from __future__ import annotations

import os
import struct
from hashlib import sha256

import pytest
from fido2 import cbor
from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, CredentialManagement, Ctap2
from fido2.ctap2.pin import PinProtocolV1, PinProtocolV2

from authenticator import Authenticator, Config
from authenticator.core.commands import credential_management
from storage.base import CredentialRecord
from storage.memory import MemoryStore
from tests.authenticator.conftest import Clock
from transports.inprocess import InProcessDevice

P = ClientPin.PERMISSION
R = CredentialManagement.RESULT
ERR = CtapError.ERR
PIN = "1234"


@pytest.fixture
def ctap(dev: InProcessDevice) -> Ctap2:
    ctap = Ctap2(dev)
    ClientPin(ctap).set_pin(PIN)
    return ctap


def register(ctap: Ctap2, rp_id: str, user_id: bytes, name: str, **ext):
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, rp_id)
    cdh = os.urandom(32)
    return ctap.make_credential(
        cdh,
        {"id": rp_id, "name": rp_id.upper()},
        {"id": user_id, "name": name, "displayName": name.title()},
        [{"type": "public-key", "alg": -7}],
        options={"rk": True},
        extensions=ext or None,
        pin_uv_param=cp.protocol.authenticate(token, cdh),
        pin_uv_protocol=cp.protocol.VERSION,
    )


def manager(ctap: Ctap2, rp_id: str | None = None, proto=PinProtocolV2) -> CredentialManagement:
    cp = ClientPin(ctap, proto())
    token = cp.get_pin_token(PIN, P.CREDENTIAL_MGMT, rp_id)
    return CredentialManagement(ctap, cp.protocol, token)


def rp_hash(rp_id: str) -> bytes:
    return sha256(rp_id.encode()).digest()


@pytest.fixture
def populated(ctap: Ctap2):
    a1 = register(ctap, "a.example", b"u1", "alice", credProtect=2, largeBlobKey=True)
    a2 = register(ctap, "a.example", b"u2", "bob")
    b1 = register(ctap, "b.example", b"u1", "carol")
    return a1, a2, b1


@pytest.mark.parametrize("proto", [PinProtocolV1, PinProtocolV2])
def test_metadata_and_enumeration(ctap: Ctap2, populated, proto) -> None:
    a1, a2, b1 = populated
    cm = manager(ctap, proto=proto)
    meta = cm.get_metadata()
    assert meta[R.EXISTING_CRED_COUNT] == 3
    assert meta[R.MAX_REMAINING_COUNT] == Config().max_discoverable - 3
    rps = cm.enumerate_rps()
    assert [r[R.RP]["id"] for r in rps] == ["a.example", "b.example"]
    assert rps[0][R.RP]["name"] == "A.EXAMPLE"
    assert rps[0][R.RP_ID_HASH] == rp_hash("a.example")
    assert rps[0][R.TOTAL_RPS] == 2

    creds = cm.enumerate_creds(rp_hash("a.example"))
    assert len(creds) == 2 and creds[0][R.TOTAL_CREDENTIALS] == 2
    by_user = {c[R.USER]["id"]: c for c in creds}
    alice = by_user[b"u1"]
    assert alice[R.USER] == {"id": b"u1", "name": "alice", "displayName": "Alice"}
    data = a1.auth_data.credential_data
    assert alice[R.CREDENTIAL_ID] == {"id": data.credential_id, "type": "public-key"}
    assert CoseKey.parse(alice[R.PUBLIC_KEY]) == data.public_key
    assert alice[R.CRED_PROTECT] == 2
    assert alice[R.LARGE_BLOB_KEY] == a1.large_blob_key
    assert R.LARGE_BLOB_KEY not in by_user[b"u2"]
    assert by_user[b"u2"][R.CRED_PROTECT] == 1


def test_delete_and_update(ctap: Ctap2, auth: Authenticator, populated) -> None:
    a1, a2, _ = populated
    cm = manager(ctap)
    a2_id = a2.auth_data.credential_data.credential_id
    cm.delete_cred({"id": a2_id, "type": "public-key"})
    creds = cm.enumerate_creds(rp_hash("a.example"))
    assert [c[R.USER]["id"] for c in creds] == [b"u1"]
    assert auth.store.get_credential(a2_id) is None
    assert auth.store.load_counter(a2_id) is None
    with pytest.raises(CtapError) as e:
        cm.delete_cred({"id": a2_id, "type": "public-key"})
    assert e.value.code == ERR.NO_CREDENTIALS

    a1_id = a1.auth_data.credential_data.credential_id
    cm.update_user_info({"id": a1_id, "type": "public-key"}, {"id": b"u1", "name": "alice2"})
    user = cm.enumerate_creds(rp_hash("a.example"))[0][R.USER]
    assert user == {"id": b"u1", "name": "alice2"}  # absent displayName is removed

    with pytest.raises(CtapError) as e:  # the user id cannot change
        cm.update_user_info({"id": a1_id, "type": "public-key"}, {"id": b"zz", "name": "x"})
    assert e.value.code == ERR.INVALID_PARAMETER
    assert auth.store.get_credential(a1_id).user_name == "alice2"

    cm.delete_cred({"id": a1_id, "type": "public-key"})
    assert cm.enumerate_rps()[0][R.RP]["id"] == "b.example"
    assert cm.get_metadata()[R.EXISTING_CRED_COUNT] == 1


def test_rp_bound_token(ctap: Ctap2, auth: Authenticator, populated) -> None:
    _, _, b1 = populated
    cm = manager(ctap, rp_id="a.example")
    for op in (cm.get_metadata, cm.enumerate_rps_begin):
        with pytest.raises(CtapError) as e:
            op()
        assert e.value.code == ERR.PIN_AUTH_INVALID
    assert len(cm.enumerate_creds(rp_hash("a.example"))) == 2
    with pytest.raises(CtapError) as e:
        cm.enumerate_creds_begin(rp_hash("b.example"))
    assert e.value.code == ERR.PIN_AUTH_INVALID
    b1_id = b1.auth_data.credential_data.credential_id
    with pytest.raises(CtapError) as e:
        cm.delete_cred({"id": b1_id, "type": "public-key"})
    assert e.value.code == ERR.PIN_AUTH_INVALID
    with pytest.raises(CtapError) as e:
        cm.update_user_info({"id": b1_id, "type": "public-key"}, {"id": b"u1", "name": "evil"})
    assert e.value.code == ERR.PIN_AUTH_INVALID
    record = auth.store.get_credential(b1_id)
    assert record is not None and record.user_name == "carol"


def test_bad_authorization_changes_nothing(ctap: Ctap2, auth: Authenticator, clock: Clock, populated) -> None:
    a1 = populated[0]
    a1_id = a1.auth_data.credential_data.credential_id
    cp = ClientPin(ctap)
    wrong_perm = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, "a.example")
    cm = CredentialManagement(ctap, cp.protocol, wrong_perm)
    with pytest.raises(CtapError) as e:
        cm.delete_cred({"id": a1_id, "type": "public-key"})
    assert e.value.code == ERR.PIN_AUTH_INVALID

    cm = manager(ctap)
    cm.pin_uv.token = os.urandom(32)  # wrong pinUvAuthParam
    with pytest.raises(CtapError) as e:
        cm.delete_cred({"id": a1_id, "type": "public-key"})
    assert e.value.code == ERR.PIN_AUTH_INVALID

    cm = manager(ctap)
    clock.now += auth.config.pin_token_lifetime + 1
    with pytest.raises(CtapError) as e:
        cm.delete_cred({"id": a1_id, "type": "public-key"})
    assert e.value.code == ERR.PIN_TOKEN_EXPIRED

    with pytest.raises(CtapError) as e:  # no pinUvAuthParam at all
        ctap.credential_mgmt(CredentialManagement.CMD.GET_CREDS_METADATA)
    assert e.value.code == ERR.PUAT_REQUIRED
    assert auth.store.count_discoverable() == 3


def test_enumeration_state(ctap: Ctap2, populated) -> None:
    cm = manager(ctap)
    with pytest.raises(CtapError) as e:
        cm.enumerate_rps_next()
    assert e.value.code == ERR.NOT_ALLOWED
    cm.enumerate_rps_begin()
    ctap.get_info()  # any other command ends the enumeration
    with pytest.raises(CtapError) as e:
        cm.enumerate_rps_next()
    assert e.value.code == ERR.NOT_ALLOWED
    cm.enumerate_creds_begin(rp_hash("a.example"))
    with pytest.raises(CtapError) as e:  # wrong kind of next
        cm.enumerate_rps_next()
    assert e.value.code == ERR.NOT_ALLOWED
    first = cm.enumerate_creds_begin(rp_hash("a.example"))
    second = cm.enumerate_creds_next()
    assert first[R.USER]["id"] != second[R.USER]["id"]
    with pytest.raises(CtapError) as e:  # exhausted
        cm.enumerate_creds_next()
    assert e.value.code == ERR.NOT_ALLOWED
    with pytest.raises(CtapError) as e:
        cm.enumerate_creds_begin(rp_hash("nobody.example"))
    assert e.value.code == ERR.NO_CREDENTIALS


def test_empty_store(ctap: Ctap2) -> None:
    cm = manager(ctap)
    assert cm.get_metadata()[R.EXISTING_CRED_COUNT] == 0
    assert cm.enumerate_rps() == []


def test_prototype_command(ctap: Ctap2, populated) -> None:
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, P.CREDENTIAL_MGMT)
    param = cp.protocol.authenticate(token, struct.pack(">B", 1))
    response = ctap.send_cbor(0x41, {1: 1, 3: cp.protocol.VERSION, 4: param})
    assert response[1] == 3


def test_signed_message_covers_params(ctap: Ctap2, populated) -> None:
    """The pinUvAuthParam over subCommand alone does not authorize a call with params."""
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, P.CREDENTIAL_MGMT)
    params = {1: rp_hash("a.example")}
    bad = cp.protocol.authenticate(token, b"\x04")
    with pytest.raises(CtapError) as e:
        ctap.credential_mgmt(4, params, cp.protocol.VERSION, bad)
    assert e.value.code == ERR.PIN_AUTH_INVALID
    good = cp.protocol.authenticate(token, b"\x04" + cbor.encode(params))
    assert ctap.credential_mgmt(4, params, cp.protocol.VERSION, good)[R.TOTAL_CREDENTIALS] == 2


class NoScanStore(MemoryStore):
    """A store whose whole-table reads fail: enumeration must page through it (the memory
    engine's own paging may sort everything; the SQLite one reads an index range)."""

    paging = False

    def list_rps(self):  # type: ignore[no-untyped-def]
        if not self.paging:
            raise AssertionError("enumerateRPs read every RP")
        return super().list_rps()

    def list_rps_page(self, after, limit):  # type: ignore[no-untyped-def]
        self.paging = True
        try:
            return super().list_rps_page(after, limit)
        finally:
            self.paging = False

    def credentials_for_rp(self, rp_id_hash):  # type: ignore[no-untyped-def]
        raise AssertionError("enumerateCredentials read every credential of the RP")


def seed(store: MemoryStore, rp_count: int, creds_of_first: int) -> list[str]:
    """Discoverable credentials through the store's bulk import (a real COSE key each)."""
    cose = cbor.encode({1: 2, 3: -7, -1: 1, -2: bytes(32), -3: bytes(32)})
    rp_ids = [f"rp{i:04d}.example" for i in range(rp_count)]
    records = []
    for i, rp_id in enumerate(rp_ids):
        for j in range(creds_of_first if i == 0 else 1):
            records.append(
                CredentialRecord(
                    credential_id=b"\x02" + os.urandom(32),
                    rp_id=rp_id,
                    rp_id_hash=rp_hash(rp_id),
                    user_id=j.to_bytes(4, "big"),
                    user_name=f"user{j}",
                    algorithm=-7,
                    sealed_key=os.urandom(48),
                    public_key=cose,
                    created=1000.0 + j,
                )
            )
    store.put_credentials(records)
    return rp_ids


def test_enumeration_pages_through_the_store(clock: Clock) -> None:
    """Begin costs a page, not the whole store; every item still comes out once, in order."""
    page = credential_management.PAGE
    store = NoScanStore()
    rp_ids = seed(store, 2 * page + 5, page + 7)
    auth = Authenticator(store=store, clock=clock)
    dev = InProcessDevice(auth)
    try:
        ctap = Ctap2(dev)
        ClientPin(ctap).set_pin(PIN)
        cm = manager(ctap)
        assert cm.get_metadata()[R.EXISTING_CRED_COUNT] == 2 * page + 5 + page + 6
        rps = cm.enumerate_rps()
        assert [r[R.RP]["id"] for r in rps] == rp_ids
        assert rps[0][R.TOTAL_RPS] == len(rp_ids)
        creds = cm.enumerate_creds(rp_hash(rp_ids[0]))
        assert len(creds) == page + 7 == creds[0][R.TOTAL_CREDENTIALS]
        # newest first, each credential once
        users = [int.from_bytes(c[R.USER]["id"], "big") for c in creds]
        assert users == list(range(page + 6, -1, -1))
        with pytest.raises(CtapError) as e:  # exhausted
            cm.enumerate_creds_next()
        assert e.value.code == ERR.NOT_ALLOWED
    finally:
        dev.close()


def test_enumeration_ends_cleanly_when_the_store_shrinks(clock: Clock) -> None:
    """Another process deletes credentials mid-enumeration: getNext says NOT_ALLOWED
    when nothing is left, never a stale or repeated entry."""
    page = credential_management.PAGE
    store = MemoryStore()
    rp_ids = seed(store, page + 3, 1)
    auth = Authenticator(store=store, clock=clock)
    dev = InProcessDevice(auth)
    try:
        ctap = Ctap2(dev)
        ClientPin(ctap).set_pin(PIN)
        cm = manager(ctap)
        first = cm.enumerate_rps_begin()
        assert first[R.RP]["id"] == rp_ids[0] and first[R.TOTAL_RPS] == page + 3
        for rp_id in rp_ids[page:]:  # beyond the first page: gone before it is fetched
            for rec in store.credentials_for_rp(rp_hash(rp_id)):
                store.delete_credential(rec.credential_id)
        seen = [cm.enumerate_rps_next()[R.RP]["id"] for _ in range(page - 1)]
        assert seen == rp_ids[1:page]
        with pytest.raises(CtapError) as e:
            cm.enumerate_rps_next()
        assert e.value.code == ERR.NOT_ALLOWED
    finally:
        dev.close()

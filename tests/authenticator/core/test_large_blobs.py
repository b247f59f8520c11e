"""authenticatorLargeBlobs against python-fido2's LargeBlobs and the largeBlob extension."""

from __future__ import annotations

import os
import struct
from hashlib import sha256

import pytest
from fido2 import cbor
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Ctap2, LargeBlobs
from fido2.server import Fido2Server

from authenticator import Authenticator, Config
from authenticator.core.commands.large_blobs import INITIAL, STATE
from tests.authenticator.conftest import Clock
from transports.inprocess import InProcessDevice

P = ClientPin.PERMISSION
ERR = CtapError.ERR
PIN = "1234"


def serialize(array: list) -> bytes:
    data = cbor.encode(array)
    return data + sha256(data).digest()[:16]


def lbw_param(cp: ClientPin, token: bytes, offset: int, fragment: bytes) -> bytes:
    msg = b"\xff" * 32 + b"\x0c\x00" + struct.pack("<I", offset) + sha256(fragment).digest()
    return cp.protocol.authenticate(token, msg)


def test_initial_array(ctap: Ctap2) -> None:
    assert INITIAL.hex() == "8076be8b528d0075f7aae98d6fa57a6d3c"
    assert ctap.large_blobs(0, get=1024)[1] == INITIAL
    assert LargeBlobs(ctap).read_blob_array() == []
    assert ctap.get_info().max_large_blob == 4096


def test_write_without_pin(ctap: Ctap2, auth: Authenticator) -> None:
    lb = LargeBlobs(ctap)
    lb.write_blob_array([{1: b"x", 2: b"n" * 12, 3: 1}])
    assert lb.read_blob_array() == [{1: b"x", 2: b"n" * 12, 3: 1}]
    assert auth.store.get_state(STATE) == serialize([{1: b"x", 2: b"n" * 12, 3: 1}])


def test_blob_per_credential_with_pin(ctap: Ctap2) -> None:
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, "example.com")
    keys = []
    for user in (b"u1", b"u2"):
        cdh = os.urandom(32)
        r = ctap.make_credential(
            cdh, {"id": "example.com"}, {"id": user}, [{"type": "public-key", "alg": -7}],
            options={"rk": True}, extensions={"largeBlobKey": True},
            pin_uv_param=cp.protocol.authenticate(token, cdh), pin_uv_protocol=2,
        )
        keys.append(r.large_blob_key)
    assert len(keys[0]) == 32 and keys[0] != keys[1]
    token = cp.get_pin_token(PIN, P.LARGE_BLOB_WRITE)
    lb = LargeBlobs(ctap, cp.protocol, token)
    lb.put_blob(keys[0], b"first")
    lb.put_blob(keys[1], b"second")
    assert LargeBlobs(ctap).get_blob(keys[0]) == b"first"  # reading needs no token
    lb.delete_blob(keys[0])
    assert lb.get_blob(keys[0]) is None
    assert lb.get_blob(keys[1]) == b"second"


def test_multi_fragment(make_auth) -> None:
    auth = make_auth(Config(max_msg_size=1024, max_large_blob_array=8192))
    dev = InProcessDevice(auth)
    lb = LargeBlobs(Ctap2(dev))
    assert lb.max_fragment_length == 960
    array = [{1: os.urandom(3000), 2: os.urandom(12), 3: 3000}]
    lb.write_blob_array(array)
    assert lb.read_blob_array() == array
    with pytest.raises(CtapError) as e:
        Ctap2(dev).large_blobs(0, get=961)
    assert e.value.code == ERR.INVALID_LENGTH
    dev.close()


def test_fido2_client_large_blob_extension(dev: InProcessDevice) -> None:
    ClientPin(Ctap2(dev)).set_pin(PIN)

    class Ui(UserInteraction):
        def request_pin(self, permissions, rp_id):
            return PIN

    client = Fido2Client(dev, DefaultClientDataCollector("https://example.com"), Ui())
    server = Fido2Server({"id": "example.com", "name": "Example"})
    options, _ = server.register_begin(
        {"id": b"u1", "name": "alice"}, resident_key_requirement="required"
    )
    reg = client.make_credential(
        {**dict(options.public_key), "extensions": {"largeBlob": {"support": "required"}}}
    )
    assert reg.client_extension_results["largeBlob"]["supported"] is True
    options, _ = server.authenticate_begin()
    sel = client.get_assertion(
        {**dict(options.public_key), "extensions": {"largeBlob": {"write": b"hello blob"}}}
    )
    assert sel.get_response(0).client_extension_results["largeBlob"]["written"] is True
    options, _ = server.authenticate_begin()
    sel = client.get_assertion(
        {**dict(options.public_key), "extensions": {"largeBlob": {"read": True}}}
    )
    blob = sel.get_response(0).client_extension_results["largeBlob"]["blob"]
    assert blob in (b"hello blob", "aGVsbG8gYmxvYg")


def test_bad_writes_change_nothing(ctap: Ctap2, auth: Authenticator, clock: Clock) -> None:
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    token = cp.get_pin_token(PIN, P.LARGE_BLOB_WRITE)
    good = serialize([{1: b"a", 2: b"n" * 12, 3: 1}])
    LargeBlobs(ctap, cp.protocol, token).write_blob_array([{1: b"a", 2: b"n" * 12, 3: 1}])
    before = auth.store.get_state(STATE)
    assert before == good
    new = serialize([{1: b"b" * 40, 2: b"n" * 12, 3: 40}])

    current = {"token": token}

    def write(data=new, offset=0, length=None, param=None, proto=2, tok=b""):
        length = len(data) if offset == 0 and length is None else length
        tok = current["token"] if tok == b"" else tok
        if param is None and tok is not None:
            param = lbw_param(cp, tok, offset, data)
        return ctap.large_blobs(offset, set=data, length=length, pin_uv_param=param, pin_uv_protocol=proto)

    cases = [
        (dict(param=os.urandom(32)), ERR.PIN_AUTH_INVALID),
        (dict(tok=None, proto=None), ERR.PUAT_REQUIRED),
        (dict(length=5000), ERR.LARGE_BLOB_STORAGE_FULL),
        (dict(length=16, data=b"x" * 16), ERR.INVALID_PARAMETER),
        (dict(data=new[:-1] + bytes([new[-1] ^ 1])), ERR.INTEGRITY_FAILURE),
        (dict(offset=10, length=None), ERR.INVALID_SEQ),
        (dict(length=len(new) - 1), ERR.INVALID_PARAMETER),
    ]
    for kwargs, status in cases:
        with pytest.raises(CtapError) as e:
            write(**kwargs)
        assert e.value.code == status, kwargs
        assert auth.store.get_state(STATE) == before

    current["token"] = cp.get_pin_token(PIN, P.CREDENTIAL_MGMT)  # lacks lbw
    with pytest.raises(CtapError) as e:
        write()
    assert e.value.code == ERR.PIN_AUTH_INVALID
    assert auth.store.get_state(STATE) == before
    current["token"] = cp.get_pin_token(PIN, P.LARGE_BLOB_WRITE)

    # a broken sequence: fragment 1 ok, then a wrong offset, then a length at offset != 0
    write(data=new[:20], length=len(new))
    with pytest.raises(CtapError) as e:
        write(data=new[21:], offset=21)
    assert e.value.code == ERR.INVALID_SEQ
    with pytest.raises(CtapError) as e:
        write(data=new[20:], offset=20, length=len(new))
    assert e.value.code == ERR.INVALID_PARAMETER
    write(data=new[20:], offset=20)  # the pending write survived the bad fragments
    assert auth.store.get_state(STATE) == new

    clock.now += auth.config.pin_token_lifetime + 1
    with pytest.raises(CtapError) as e:
        write(data=good)
    assert e.value.code == ERR.PIN_TOKEN_EXPIRED
    assert auth.store.get_state(STATE) == new


def test_bad_reads(ctap: Ctap2) -> None:
    with pytest.raises(CtapError) as e:
        ctap.large_blobs(100, get=10)
    assert e.value.code == ERR.INVALID_PARAMETER
    with pytest.raises(CtapError) as e:
        ctap.large_blobs(0, get=10, set=b"x")
    assert e.value.code == ERR.INVALID_PARAMETER
    with pytest.raises(CtapError) as e:
        ctap.large_blobs(0)
    assert e.value.code == ERR.INVALID_PARAMETER
    with pytest.raises(CtapError) as e:
        ctap.large_blobs(0, get=10, length=10)
    assert e.value.code == ERR.INVALID_PARAMETER
    assert ctap.large_blobs(len(INITIAL), get=10)[1] == b""

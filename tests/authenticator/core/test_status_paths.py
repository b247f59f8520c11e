"""One test per CTAP status path the core can answer, through python-fido2 (``Ctap2``,
``ClientPin``) or raw CTAP where python-fido2 cannot express the request. A presence spy
records every touch and UV prompt; expected values are computed here, never by the code
under test (hmac-secret outputs come from a reference derivation of the device secret)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from hashlib import sha256

import cbor2
import pytest
from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Ctap2
from fido2.ctap2.pin import PinProtocolV1, PinProtocolV2
from fido2.hid import CTAPHID

from authenticator import Authenticator, Config
from authenticator.core.presence import PresenceRequest
from tests.authenticator.conftest import Clock, reference_cred_random
from transports.inprocess import InProcessDevice

ERR = CtapError.ERR
P = ClientPin.PERMISSION
PIN = "1234"
RP_ID = "example.com"
ES256 = [{"type": "public-key", "alg": -7}]
PROTOCOLS = [PinProtocolV1, PinProtocolV2]


class Spy:
    """Presence that records every request and answers as told."""

    def __init__(self, touch: bool = True, uv: str = "approve") -> None:
        self.touch, self.uv = touch, uv
        self.touches: list[PresenceRequest] = []
        self.uvs: list[PresenceRequest] = []

    async def request_presence(self, request: PresenceRequest) -> bool:
        self.touches.append(request)
        return self.touch

    async def verify_user(self, request: PresenceRequest) -> str:
        self.uvs.append(request)
        return self.uv


@pytest.fixture
def spy() -> Spy:
    return Spy()


@pytest.fixture
def device(make_auth, spy: Spy):
    """``device(config)`` -> (auth, Ctap2, InProcessDevice) with the spy as presence."""
    opened = []

    def factory(config: Config | None = None, presence=None):
        auth = make_auth(config, presence or spy)
        dev = InProcessDevice(auth)
        opened.append(dev)
        return auth, Ctap2(dev), dev

    yield factory
    for dev in opened:
        dev.close()


def raw(dev: InProcessDevice, cmd: int, params) -> tuple[int, object]:
    """A CTAP2 command as bytes: (status, decoded body or None)."""
    data = params if isinstance(params, bytes) else cbor2.dumps(params)
    response = dev.call(CTAPHID.CBOR, bytes([cmd]) + data)
    return response[0], (cbor2.loads(response[1:]) if len(response) > 1 else None)


def status_of(fn, *args, **kw) -> int:
    with pytest.raises(CtapError) as e:
        fn(*args, **kw)
    return e.value.code


def make(ctap: Ctap2, user: bytes = b"u1", rk: bool = False, ext=None, **kw):
    return ctap.make_credential(
        os.urandom(32), {"id": RP_ID, "name": "Ex"}, {"id": user, "name": user.decode()},
        ES256, extensions=ext, options={"rk": rk} if rk else None, **kw,
    )


def cred_id(response) -> bytes:
    return response.auth_data.credential_data.credential_id


def platform_key(ctap: Ctap2, proto) -> tuple[dict, bytes]:
    """The platform side of keyAgreement, done by python-fido2: (COSE key, shared secret)."""
    resp = ctap.client_pin(proto.VERSION, ClientPin.CMD.GET_KEY_AGREEMENT)
    ka, secret = proto.encapsulate(CoseKey.parse(resp[ClientPin.RESULT.KEY_AGREEMENT]))
    return dict(ka), secret


# -- hmac-secret -----------------------------------------------------------------------
def hmac_input(ctap: Ctap2, proto, salts: bytes, *, tamper_auth: bool = False, **override):
    ka, secret = platform_key(ctap, proto)
    salt_enc = proto.encrypt(secret, salts)
    salt_auth = proto.authenticate(secret, salt_enc)
    if tamper_auth:
        salt_auth = bytes([salt_auth[0] ^ 1]) + salt_auth[1:]
    value = {1: ka, 2: salt_enc, 3: salt_auth, 4: proto.VERSION}
    value.update(override)
    return {k: v for k, v in value.items() if v is not None}, secret


@pytest.mark.parametrize("proto_cls", PROTOCOLS)
def test_hmac_secret_outputs_match_reference(device, proto_cls) -> None:
    auth, ctap, _ = device()
    proto = proto_cls()
    creds = [cred_id(make(ctap, user=u, ext={"hmac-secret": True})) for u in (b"a", b"b")]
    salt1, salt2 = os.urandom(32), os.urandom(32)
    outputs = []
    for cid in creds:
        value, secret = hmac_input(ctap, proto, salt1 + salt2)
        r = ctap.get_assertion(
            RP_ID, os.urandom(32), [{"type": "public-key", "id": cid}],
            extensions={"hmac-secret": value},
        )
        out = proto.decrypt(secret, r.auth_data.extensions["hmac-secret"])
        cred_random = reference_cred_random(auth.store.device_secret(), cid, uv=False)
        assert out == (
            hmac.new(cred_random, salt1, hashlib.sha256).digest()
            + hmac.new(cred_random, salt2, hashlib.sha256).digest()
        )
        outputs.append(out)
    assert outputs[0] != outputs[1]  # two credentials never share a PRF (unlinkability)


def test_hmac_secret_with_uv_uses_the_uv_cred_random(device) -> None:
    auth, ctap, _ = device()
    ClientPin(ctap).set_pin(PIN)
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL | P.GET_ASSERTION, RP_ID)
    cdh = os.urandom(32)
    r = ctap.make_credential(
        cdh, {"id": RP_ID}, {"id": b"u"}, ES256, extensions={"hmac-secret": True},
        pin_uv_param=cp.protocol.authenticate(token, cdh), pin_uv_protocol=cp.protocol.VERSION,
    )
    cid = cred_id(r)
    salt = os.urandom(32)
    value, secret = hmac_input(ctap, cp.protocol, salt)
    cdh = os.urandom(32)
    a = ctap.get_assertion(
        RP_ID, cdh, [{"type": "public-key", "id": cid}], extensions={"hmac-secret": value},
        pin_uv_param=cp.protocol.authenticate(token, cdh), pin_uv_protocol=cp.protocol.VERSION,
    )
    assert a.auth_data.is_user_verified()
    out = cp.protocol.decrypt(secret, a.auth_data.extensions["hmac-secret"])
    uv_random = reference_cred_random(auth.store.device_secret(), cid, uv=True)
    assert out == hmac.new(uv_random, salt, hashlib.sha256).digest()


@pytest.mark.parametrize("proto_cls", PROTOCOLS)
def test_hmac_secret_salt_auth_checked(device, spy: Spy, proto_cls) -> None:
    auth, ctap, _ = device()
    cid = cred_id(make(ctap, ext={"hmac-secret": True}))
    value, _ = hmac_input(ctap, proto_cls(), os.urandom(32), tamper_auth=True)
    code = status_of(
        ctap.get_assertion, RP_ID, os.urandom(32), [{"type": "public-key", "id": cid}],
        extensions={"hmac-secret": value},
    )
    assert code == ERR.PIN_AUTH_INVALID


@pytest.mark.parametrize(
    "change,status",
    [
        ("not-a-map", ERR.CBOR_UNEXPECTED_TYPE),
        ("no-key-agreement", ERR.MISSING_PARAMETER),
        ("no-salt-auth", ERR.MISSING_PARAMETER),
        ("salt-enc-text", ERR.CBOR_UNEXPECTED_TYPE),
        ("protocol-3", ERR.INVALID_PARAMETER),
        ("salt-16-bytes", ERR.INVALID_LENGTH),
        ("salt-96-bytes", ERR.INVALID_LENGTH),
        ("key-agreement-off-curve", ERR.INVALID_PARAMETER),
    ],
)
def test_hmac_secret_input_validation(device, change: str, status: int) -> None:
    _, ctap, _ = device()
    cid = cred_id(make(ctap, ext={"hmac-secret": True}))
    proto = PinProtocolV2()
    salts = {"salt-16-bytes": os.urandom(16), "salt-96-bytes": os.urandom(96)}.get(
        change, os.urandom(32)
    )
    value, _ = hmac_input(ctap, proto, salts)
    if change == "not-a-map":
        value = [1, 2, 3]
    elif change == "no-key-agreement":
        del value[1]
    elif change == "no-salt-auth":
        del value[3]
    elif change == "salt-enc-text":
        value[2] = "text"
    elif change == "protocol-3":
        value[4] = 3
    elif change == "key-agreement-off-curve":
        value[1] = {**value[1], -3: (int.from_bytes(value[1][-3], "big") ^ 1).to_bytes(32, "big")}
    code = status_of(
        ctap.get_assertion, RP_ID, os.urandom(32), [{"type": "public-key", "id": cid}],
        extensions={"hmac-secret": value},
    )
    assert code == status


def test_hmac_secret_needs_up_and_a_boolean_at_create(device) -> None:
    _, ctap, _ = device()
    code = status_of(make, ctap, ext={"hmac-secret": "yes"})
    assert code == ERR.CBOR_UNEXPECTED_TYPE
    cid = cred_id(make(ctap, ext={"hmac-secret": True}))
    value, _ = hmac_input(ctap, PinProtocolV2(), os.urandom(32))
    code = status_of(
        ctap.get_assertion, RP_ID, os.urandom(32), [{"type": "public-key", "id": cid}],
        extensions={"hmac-secret": value}, options={"up": False},
    )
    assert code == ERR.UNSUPPORTED_OPTION


# -- clientPIN keyAgreement, pinHashEnc, newPinEnc ----------------------------------------
def set_pin_raw(dev, ctap, proto, *, ka=None, new_pin_enc=None, padded_pin=None):
    """setPin with every field under the test's control (python-fido2 pads and checks)."""
    platform_ka, secret = platform_key(ctap, proto)
    if padded_pin is not None:
        new_pin_enc = proto.encrypt(secret, padded_pin)
    assert new_pin_enc is not None
    params = {
        1: proto.VERSION, 2: ClientPin.CMD.SET_PIN, 3: platform_ka if ka is None else ka,
        4: proto.authenticate(secret, new_pin_enc), 5: new_pin_enc,
    }
    return raw(dev, 0x06, params)


@pytest.mark.parametrize(
    "ka,status",
    [
        ("text", ERR.CBOR_UNEXPECTED_TYPE),  # not a map
        ("p384", ERR.INVALID_PARAMETER),  # crv 2: wrong curve
        ("off-curve", ERR.INVALID_PARAMETER),
        ("short-x", ERR.INVALID_PARAMETER),
        ("okp", ERR.INVALID_PARAMETER),  # kty OKP
    ],
)
def test_key_agreement_validation(device, ka: str, status: int) -> None:
    auth, ctap, dev = device()
    proto = PinProtocolV2()
    good, _ = platform_key(ctap, proto)
    bad = {
        "text": "not a key",
        "p384": {**good, -1: 2},
        "off-curve": {**good, -3: (int.from_bytes(good[-3], "big") ^ 1).to_bytes(32, "big")},
        "short-x": {**good, -2: good[-2][:31]},
        "okp": {**good, 1: 1},
    }[ka]
    code, _ = set_pin_raw(dev, ctap, proto, ka=bad, new_pin_enc=os.urandom(64))
    assert code == status
    assert not auth.pin.is_set


@pytest.mark.parametrize("proto_cls", PROTOCOLS)
def test_new_pin_enc_wrong_length(device, proto_cls) -> None:
    auth, ctap, dev = device()
    proto = proto_cls()
    wrong = 32 if proto.VERSION == 1 else 64  # 64 for v1, 80 (IV + 64) for v2
    code, _ = set_pin_raw(dev, ctap, proto, new_pin_enc=os.urandom(wrong))
    assert code == ERR.INVALID_PARAMETER and not auth.pin.is_set


@pytest.mark.parametrize(
    "pin",
    [b"x" * 64, b"\xff\xfe\xfd\xfc" + b"\x00" * 60],
    ids=["64-bytes", "not-utf8"],
)
def test_pin_policy_bytes(device, pin: bytes) -> None:
    auth, ctap, dev = device()
    code, _ = set_pin_raw(dev, ctap, PinProtocolV2(), padded_pin=pin)
    assert code == ERR.PIN_POLICY_VIOLATION and not auth.pin.is_set
    code, _ = set_pin_raw(dev, ctap, PinProtocolV2(), padded_pin=b"x" * 63 + b"\x00")
    assert code == 0 and auth.pin.is_set  # 63 bytes is the maximum, and allowed


@pytest.mark.parametrize("proto_cls", PROTOCOLS)
def test_undecryptable_pin_hash_enc(device, proto_cls) -> None:
    auth, ctap, dev = device()
    ClientPin(ctap).set_pin(PIN)
    proto = proto_cls()
    ka, _ = platform_key(ctap, proto)
    params = {1: proto.VERSION, 2: 0x05, 3: ka, 6: os.urandom(17)}  # getPinToken
    code, _ = raw(dev, 0x06, params)
    assert code == ERR.PIN_INVALID
    assert ClientPin(ctap).get_pin_retries()[0] == 7  # the attempt counted


# -- the touch probe ----------------------------------------------------------------------
@pytest.mark.parametrize("command", ["mc", "ga"])
@pytest.mark.parametrize("pin_set", [False, True])
def test_zero_length_pin_uv_auth_param_waits_for_a_touch(device, spy: Spy, command, pin_set):
    auth, ctap, _ = device()
    if pin_set:
        ClientPin(ctap).set_pin(PIN)
    before = len(spy.touches)
    kw = dict(pin_uv_param=b"", pin_uv_protocol=2)
    if command == "mc":
        code = status_of(make, ctap, **kw)
    else:
        code = status_of(ctap.get_assertion, RP_ID, os.urandom(32), **kw)
    assert code == (ERR.PIN_INVALID if pin_set else ERR.PIN_NOT_SET)
    assert len(spy.touches) == before + 1  # the probe is a touch, nothing else
    assert auth.store.count_discoverable() == 0
    spy.touch = False  # a declined touch is a declined touch
    code = status_of(make, ctap, **kw) if command == "mc" else status_of(
        ctap.get_assertion, RP_ID, os.urandom(32), **kw
    )
    assert code == ERR.OPERATION_DENIED


# -- limits -------------------------------------------------------------------------------
def test_key_store_full(device) -> None:
    auth, ctap, _ = device(Config(max_discoverable=2))
    a = make(ctap, user=b"a", rk=True)
    make(ctap, user=b"b", rk=True)
    assert status_of(make, ctap, user=b"c", rk=True) == ERR.KEY_STORE_FULL
    assert auth.store.count_discoverable() == 2
    replaced = make(ctap, user=b"a", rk=True)  # replacing a user's credential still fits
    assert auth.store.count_discoverable() == 2 and cred_id(replaced) != cred_id(a)
    make(ctap, user=b"c", rk=False)  # non-discoverable credentials need no slot


def test_allow_list_limit_exceeded(device) -> None:
    auth, ctap, _ = device()
    cid = cred_id(make(ctap))
    limit = auth.config.max_cred_count_in_list
    allow = [{"type": "public-key", "id": os.urandom(40)} for _ in range(limit)]
    allow[-1]["id"] = cid
    assert ctap.get_assertion(RP_ID, os.urandom(32), allow).credential["id"] == cid
    allow.append({"type": "public-key", "id": cid})
    assert status_of(ctap.get_assertion, RP_ID, os.urandom(32), allow) == ERR.LIMIT_EXCEEDED


def test_get_next_assertion_times_out(device, clock: Clock) -> None:
    _, ctap, _ = device()
    for user in (b"a", b"b", b"c"):
        make(ctap, user=user, rk=True)
    first = ctap.get_assertion(RP_ID, os.urandom(32))
    assert first.number_of_credentials == 3
    clock.now += 29  # within 30 s of the previous one
    second = ctap.get_next_assertion()
    clock.now += 30.5  # too late
    assert status_of(ctap.get_next_assertion) == ERR.NOT_ALLOWED
    assert status_of(ctap.get_next_assertion) == ERR.NOT_ALLOWED  # and the state is gone
    assert {first.user["id"], second.user["id"]} == {b"c", b"b"}


# -- built-in user verification -----------------------------------------------------------
UV_CONFIG = Config(builtin_uv=True, client_pin=False, max_uv_retries=3)


def test_builtin_uv_approve(device, spy: Spy) -> None:
    _, ctap, _ = device(UV_CONFIG)
    r = ctap.make_credential(
        os.urandom(32), {"id": RP_ID}, {"id": b"u", "name": "u"}, ES256,
        options={"rk": True, "uv": True},
    )
    assert r.auth_data.is_user_verified() and r.auth_data.is_user_present()
    assert len(spy.uvs) == 1 and spy.touches == []  # UV implies presence: one prompt


def uv_make(ctap: Ctap2):
    return ctap.make_credential(
        os.urandom(32), {"id": RP_ID}, {"id": b"u", "name": "u"}, ES256, options={"uv": True},
    )


def test_builtin_uv_deny(device, spy: Spy) -> None:
    auth, ctap, _ = device(UV_CONFIG)
    spy.uv = "deny"
    assert status_of(uv_make, ctap) == ERR.OPERATION_DENIED
    assert auth.pin.uv_retries == 3  # a cancel is not a failed match
    assert status_of(ctap.get_assertion, RP_ID, os.urandom(32), options={"uv": True}) == (
        ERR.OPERATION_DENIED
    )


def test_builtin_uv_fail_then_blocked_and_uv_retries(device, spy: Spy) -> None:
    auth, ctap, dev = device(UV_CONFIG)
    spy.uv = "fail"
    assert ClientPin(ctap).get_uv_retries() == 3
    assert status_of(uv_make, ctap) == ERR.UV_INVALID
    assert ClientPin(ctap).get_uv_retries() == 2
    assert status_of(uv_make, ctap) == ERR.UV_INVALID
    assert status_of(uv_make, ctap) == ERR.UV_BLOCKED  # the last retry
    assert ClientPin(ctap).get_uv_retries() == 0
    prompts = len(spy.uvs)
    spy.uv = "approve"
    assert status_of(uv_make, ctap) == ERR.UV_BLOCKED  # even a match: no prompt at all
    assert len(spy.uvs) == prompts
    assert auth.store.count_discoverable() == 0


def test_builtin_uv_success_resets_retries(device, spy: Spy) -> None:
    _, ctap, _ = device(UV_CONFIG)
    spy.uv = "fail"
    status_of(uv_make, ctap)
    spy.uv = "approve"
    uv_make(ctap)
    assert ClientPin(ctap).get_uv_retries() == 3


def test_uv_retries_without_builtin_uv(device) -> None:
    _, ctap, dev = device()
    code, _ = raw(dev, 0x06, {1: 2, 2: ClientPin.CMD.GET_UV_RETRIES})
    assert code == ERR.INVALID_SUBCOMMAND


# -- timeouts and internal errors ------------------------------------------------------------
class Never:
    """A user who never answers."""

    async def request_presence(self, request: PresenceRequest) -> bool:
        await asyncio.Event().wait()
        return True

    async def verify_user(self, request: PresenceRequest) -> str:
        await asyncio.Event().wait()
        return "approve"


@pytest.mark.parametrize("builtin_uv", [False, True])
def test_user_action_timeout(device, builtin_uv: bool) -> None:
    config = Config(presence_timeout=0.01, builtin_uv=builtin_uv)
    auth, ctap, _ = device(config, Never())
    options = {"uv": True} if builtin_uv else None
    code = status_of(
        ctap.make_credential, os.urandom(32), {"id": RP_ID}, {"id": b"u"}, ES256, options=options
    )
    assert code == ERR.USER_ACTION_TIMEOUT
    assert auth.pin.uv_retries == config.max_uv_retries  # a timeout is not a failed match


class Boom:
    """Presence whose implementation is broken."""

    async def request_presence(self, request: PresenceRequest) -> bool:
        raise RuntimeError("presence exploded")

    async def verify_user(self, request: PresenceRequest) -> str:
        raise RuntimeError("presence exploded")


def test_internal_error_is_err_other_and_the_next_command_works(make_auth) -> None:
    auth = make_auth(None, Boom())
    mc = {1: sha256(b"c").digest(), 2: {"id": RP_ID}, 3: {"id": b"u"}, 4: ES256}

    async def run() -> list[bytes]:
        return [
            await auth.handle_cbor(b"\x01" + cbor2.dumps(mc)),
            await auth.handle_cbor(b"\x04"),  # getInfo: the lock was released
        ]

    first, info = asyncio.run(run())
    assert first == bytes([ERR.OTHER])
    assert info[0] == 0 and cbor2.loads(info[1:])[1]


def test_internal_error_in_a_store_is_err_other(make_auth, monkeypatch) -> None:
    auth = make_auth()

    def broken(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(auth.store, "put_credential", broken)
    mc = {1: sha256(b"c").digest(), 2: {"id": RP_ID}, 3: {"id": b"u"}, 4: ES256, 7: {"rk": True}}
    assert asyncio.run(auth.handle_cbor(b"\x01" + cbor2.dumps(mc))) == bytes([ERR.OTHER])
    monkeypatch.undo()
    assert auth.store.count_discoverable() == 0


def test_internal_error_in_u2f_is_sw_unknown(make_auth, monkeypatch) -> None:
    auth = make_auth()

    def broken(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(auth.store, "get_state", broken)
    apdu = bytes([0, 0x01, 0, 0, 64]) + os.urandom(64) + b"\x00"
    assert asyncio.run(auth.handle_u2f(apdu))[-2:] == b"\x6f\x00"


# -- store behaviour seen through the core ------------------------------------------------------
def test_replacing_a_discoverable_credential_removes_the_old_one(device, restart) -> None:
    auth, ctap, _ = device()
    old = cred_id(make(ctap, user=b"alice", rk=True))
    new = cred_id(make(ctap, user=b"alice", rk=True))
    records = auth.store.credentials_for_rp(sha256(RP_ID.encode()).digest())
    assert [r.credential_id for r in records] == [new]
    r = ctap.get_assertion(RP_ID, os.urandom(32))
    assert r.credential["id"] == new and r.number_of_credentials is None
    allow = [{"type": "public-key", "id": old}]
    assert status_of(ctap.get_assertion, RP_ID, os.urandom(32), allow) == ERR.NO_CREDENTIALS
    again = InProcessDevice(restart(auth))  # and so it stays after a restart
    try:
        assert status_of(Ctap2(again).get_assertion, RP_ID, os.urandom(32), allow) == (
            ERR.NO_CREDENTIALS
        )
    finally:
        again.close()


@pytest.mark.parametrize("mode", ["global", "per-credential", "zero"])
def test_counter_modes(device, restart, mode: str) -> None:
    auth, ctap, _ = device(Config(counter_mode=mode))
    made = [make(ctap, user=u) for u in (b"a", b"b")]
    seen = [m.auth_data.counter for m in made]
    order = [0, 1, 0, 0, 1]
    for i in order:
        r = ctap.get_assertion(RP_ID, os.urandom(32), [{"type": "public-key", "id": cred_id(made[i])}])
        seen.append(r.auth_data.counter)
    per = {0: [seen[0]], 1: [seen[1]]}
    for i, value in zip(order, seen[2:], strict=True):
        per[i].append(value)
    if mode == "zero":
        assert set(seen) == {0}
    elif mode == "global":  # one counter for the device: every signature moves it
        assert seen == sorted(seen) and len(set(seen)) == len(seen)
    else:  # creation says 0, then each credential counts for itself
        assert per[0] == [0, 1, 2, 3] and per[1] == [0, 1, 2]
    dev2 = InProcessDevice(restart(auth))
    try:
        r = Ctap2(dev2).get_assertion(
            RP_ID, os.urandom(32), [{"type": "public-key", "id": cred_id(made[0])}]
        )
        if mode == "zero":
            assert r.auth_data.counter == 0
        else:  # never backwards after a restart
            assert r.auth_data.counter > max(per[0] if mode != "global" else seen)
    finally:
        dev2.close()


# -- fuzz on a lived-in authenticator -------------------------------------------------------
def _lived_in_store():
    """A store with a PIN set and a discoverable credential, made once and copied per example."""
    from storage.memory import MemoryStore

    store = MemoryStore()
    dev = InProcessDevice(Authenticator(Config(builtin_uv=True), store))
    try:
        ctap = Ctap2(dev)
        ClientPin(ctap).set_pin(PIN)
        cp = ClientPin(ctap)
        token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, RP_ID)
        cdh = os.urandom(32)
        ctap.make_credential(
            cdh, {"id": RP_ID}, {"id": b"u", "name": "u"}, ES256, options={"rk": True},
            extensions={"hmac-secret": True, "credBlob": b"blob"},
            pin_uv_param=cp.protocol.authenticate(token, cdh), pin_uv_protocol=cp.protocol.VERSION,
        )
    finally:
        dev.close()
    return store



def _strategies():
    from hypothesis import strategies as st

    leaf = (
        st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.binary(max_size=80)
        | st.text(max_size=12) | st.sampled_from([RP_ID, "public-key", b"", bytes(32)])
    )
    return st.recursive(
        leaf,
        lambda kids: st.lists(kids, max_size=4)
        | st.dictionaries(st.integers(-3, 12) | st.text(max_size=8), kids, max_size=6),
        max_leaves=25,
    )


def test_random_requests_on_a_lived_in_authenticator_never_err_other() -> None:
    """Every command byte, random CBOR maps, a PIN set, a credential stored, built-in UV on:
    whatever comes in, the answer is a CTAP status the spec names, never ERR_OTHER."""
    import copy

    from hypothesis import given, settings
    from hypothesis import strategies as st

    template = _lived_in_store()

    @settings(max_examples=200, deadline=None, database=None)
    @given(
        st.sampled_from([0x01, 0x02, 0x04, 0x06, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x41]),
        st.dictionaries(st.integers(0, 12), _strategies(), max_size=8),
    )
    def check(cmd: int, params: dict) -> None:
        auth = Authenticator(Config(builtin_uv=True, presence_timeout=1), copy.deepcopy(template))
        response = asyncio.run(auth.handle_cbor(bytes([cmd]) + cbor2.dumps(params)))
        assert response[0] != ERR.OTHER, (hex(cmd), params)

    check()

"""authenticatorClientPIN against python-fido2's ClientPin and Fido2Client."""

from __future__ import annotations

import os

import pytest
from fido2.client import ClientError, DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Ctap2
from fido2.ctap2.config import Config as CtapConfig
from fido2.ctap2.pin import PinProtocolV1, PinProtocolV2
from fido2.server import Fido2Server

from authenticator import Authenticator, Config
from tests.authenticator.conftest import Clock
from transports.inprocess import InProcessDevice

P = ClientPin.PERMISSION
ERR = CtapError.ERR
PIN = "1234"
PROTOCOLS = [PinProtocolV1, PinProtocolV2]


def code(excinfo: pytest.ExceptionInfo) -> int:
    return excinfo.value.code


def make_cred(ctap: Ctap2, protocol, token: bytes | None, rp_id: str = "example.com", rk=False):
    cdh = os.urandom(32)
    kwargs = {}
    if token is not None:
        kwargs = dict(pin_uv_param=protocol.authenticate(token, cdh), pin_uv_protocol=protocol.VERSION)
    return ctap.make_credential(
        cdh,
        {"id": rp_id, "name": rp_id},
        {"id": b"user", "name": "alice"},
        [{"type": "public-key", "alg": -7}],
        options={"rk": rk},
        **kwargs,
    )


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_set_change_and_tokens(ctap: Ctap2, auth: Authenticator, proto) -> None:
    cp = ClientPin(ctap, proto())
    assert ctap.get_info().options["clientPin"] is False
    cp.set_pin(PIN)
    assert ctap.get_info().options["clientPin"] is True
    assert cp.get_pin_retries() == (8, False)
    with pytest.raises(CtapError) as e:
        cp.set_pin("5678")
    assert code(e) == ERR.NOT_ALLOWED
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, "example.com")
    make_cred(ctap, cp.protocol, token)
    cp.change_pin(PIN, "98765")
    with pytest.raises(CtapError) as e:  # change invalidates the token
        make_cred(ctap, cp.protocol, token)
    assert code(e) == ERR.PIN_AUTH_INVALID
    with pytest.raises(CtapError) as e:
        cp.get_pin_token(PIN)
    assert code(e) == ERR.PIN_INVALID
    legacy = cp.get_pin_token("98765")  # getPinToken: mc|ga, no rpId
    make_cred(ctap, cp.protocol, legacy)
    assert auth.pin.retries == 8


def test_retries_lockout_and_power_cycle(ctap: Ctap2, auth: Authenticator) -> None:
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    for expected in (7, 6):
        with pytest.raises(CtapError) as e:
            cp.get_pin_token("0000")
        assert code(e) == ERR.PIN_INVALID
        assert cp.get_pin_retries()[0] == expected
    with pytest.raises(CtapError) as e:
        cp.get_pin_token("0000")
    assert code(e) == ERR.PIN_AUTH_BLOCKED
    retries = cp.get_pin_retries()[0]
    with pytest.raises(CtapError) as e:  # even the right PIN, and no retry is spent
        cp.get_pin_token(PIN)
    assert code(e) == ERR.PIN_AUTH_BLOCKED
    assert cp.get_pin_retries()[0] == retries == 5
    auth.power_cycle()
    cp = ClientPin(ctap)
    cp.get_pin_token(PIN)
    assert cp.get_pin_retries()[0] == 8


def test_pin_blocked_at_zero(make_auth) -> None:
    auth = make_auth(Config(max_pin_retries=4))
    dev = InProcessDevice(auth)
    ctap = Ctap2(dev)
    ClientPin(ctap).set_pin(PIN)
    expected = [ERR.PIN_INVALID, ERR.PIN_INVALID, ERR.PIN_AUTH_BLOCKED, ERR.PIN_BLOCKED]
    for attempt, status in enumerate(expected):
        if attempt == 3:
            auth.power_cycle()
        with pytest.raises(CtapError) as e:
            ClientPin(ctap).get_pin_token("0000")
        assert code(e) == status
        assert auth.pin.retries == 3 - attempt
    assert auth.pin.retries == 0
    for pin in ("0000", PIN):
        with pytest.raises(CtapError) as e:
            ClientPin(ctap).get_pin_token(pin)
        assert code(e) == ERR.PIN_BLOCKED
    with pytest.raises(CtapError) as e:
        ClientPin(ctap).change_pin(PIN, "5678")
    assert code(e) == ERR.PIN_BLOCKED
    dev.close()


def test_min_length(make_auth) -> None:
    auth = make_auth(Config(min_pin_length=6))
    dev = InProcessDevice(auth)
    ctap = Ctap2(dev)
    assert ctap.get_info().min_pin_length == 6
    with pytest.raises(CtapError) as e:
        ClientPin(ctap).set_pin("12345")
    assert code(e) == ERR.PIN_POLICY_VIOLATION
    assert not auth.pin.is_set
    ClientPin(ctap).set_pin("123456")
    dev.close()


def test_force_pin_change(ctap: Ctap2, auth: Authenticator) -> None:
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    token = cp.get_pin_token(PIN, P.AUTHENTICATOR_CFG)
    CtapConfig(ctap, cp.protocol, token).set_min_pin_length(force_change_pin=True)
    assert ctap.get_info().force_pin_change is True
    with pytest.raises(CtapError) as e:
        cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, "example.com")
    assert code(e) == ERR.PIN_INVALID  # CTAP 2.1 §6.5.5.7.2
    with pytest.raises(CtapError) as e:  # the new PIN must differ
        cp.change_pin(PIN, PIN)
    assert code(e) == ERR.PIN_POLICY_VIOLATION
    cp.change_pin(PIN, "4321")
    assert ctap.get_info().force_pin_change is False
    cp.get_pin_token("4321", P.MAKE_CREDENTIAL, "example.com")


def test_min_length_raise_forces_change(ctap: Ctap2) -> None:
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    token = cp.get_pin_token(PIN, P.AUTHENTICATOR_CFG)
    CtapConfig(ctap, cp.protocol, token).set_min_pin_length(min_pin_length=6)
    info = ctap.get_info()
    assert info.min_pin_length == 6 and info.force_pin_change is True
    with pytest.raises(CtapError) as e:
        cp.change_pin(PIN, "54321")
    assert code(e) == ERR.PIN_POLICY_VIOLATION
    cp.change_pin(PIN, "654321")


def test_token_wrong_permission_and_rp(ctap: Ctap2, auth: Authenticator) -> None:
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    cm_token = cp.get_pin_token(PIN, P.CREDENTIAL_MGMT)
    with pytest.raises(CtapError) as e:
        make_cred(ctap, cp.protocol, cm_token)
    assert code(e) == ERR.PIN_AUTH_INVALID
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, "a.example")
    with pytest.raises(CtapError) as e:
        make_cred(ctap, cp.protocol, token, rp_id="b.example")
    assert code(e) == ERR.PIN_AUTH_INVALID
    assert auth.store.count_discoverable() == 0
    with pytest.raises(CtapError) as e:  # a corrupted pinUvAuthParam
        ctap.make_credential(
            os.urandom(32), {"id": "a.example"}, {"id": b"u"}, [{"type": "public-key", "alg": -7}],
            pin_uv_param=b"\0" * 32, pin_uv_protocol=2,
        )
    assert code(e) == ERR.PIN_AUTH_INVALID
    make_cred(ctap, cp.protocol, token, rp_id="a.example")


def test_permissions_rules(ctap: Ctap2) -> None:
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    with pytest.raises(CtapError) as e:  # mc/ga permissions need an rpId
        cp.get_pin_token(PIN, P.GET_ASSERTION)
    assert code(e) == ERR.MISSING_PARAMETER
    with pytest.raises(CtapError) as e:  # bio enrollment is not offered
        cp.get_pin_token(PIN, P.BIO_ENROLL)
    assert code(e) == ERR.UNAUTHORIZED_PERMISSION


def test_expired_token(ctap: Ctap2, auth: Authenticator, clock: Clock) -> None:
    cp = ClientPin(ctap)
    cp.set_pin(PIN)
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, "example.com")
    clock.now += auth.config.pin_token_lifetime + 1
    with pytest.raises(CtapError) as e:
        make_cred(ctap, cp.protocol, token)
    assert code(e) == ERR.PIN_TOKEN_EXPIRED
    assert auth.store.count_discoverable() == 0


def test_no_pin_set_errors(ctap: Ctap2) -> None:
    cp = ClientPin(ctap)
    with pytest.raises(CtapError) as e:
        cp.get_pin_token(PIN)
    assert code(e) == ERR.PIN_NOT_SET
    with pytest.raises(CtapError) as e:
        cp.change_pin(PIN, "5678")
    assert code(e) == ERR.PIN_NOT_SET


class PinInteraction(UserInteraction):
    def __init__(self, pin: str) -> None:
        self.pin = pin
        self.asked = 0

    def request_pin(self, permissions, rp_id):
        self.asked += 1
        return self.pin


def client_for(ctap_dev: InProcessDevice, pin: str = PIN) -> tuple[Fido2Client, PinInteraction]:
    ui = PinInteraction(pin)
    collector = DefaultClientDataCollector("https://example.com")
    return Fido2Client(ctap_dev, collector, ui), ui


def test_fido2_client_discoverable_with_pin(auth: Authenticator) -> None:
    dev = InProcessDevice(auth)
    ClientPin(Ctap2(dev)).set_pin(PIN)
    client, ui = client_for(dev)
    server = Fido2Server({"id": "example.com", "name": "Example"})
    options, state = server.register_begin(
        {"id": b"user-1", "name": "alice", "displayName": "Alice"},
        resident_key_requirement="required",
        user_verification="required",
    )
    reg = client.make_credential(options.public_key)
    cred = server.register_complete(state, reg)
    assert ui.asked == 1
    assert reg.response.attestation_object.auth_data.is_user_verified()

    options, state = server.authenticate_begin(user_verification="required")
    selection = client.get_assertion(options.public_key)
    response = selection.get_response(0)
    server.authenticate_complete(state, [cred.credential_data], response)
    # one account: "id" only, even after UV (CTAP 2.1 §6.2.2); names come with several
    assert selection.get_assertions()[0].user == {"id": b"user-1"}
    dev.close()


def test_fido2_client_wrong_pin(auth: Authenticator) -> None:
    dev = InProcessDevice(auth)
    ClientPin(Ctap2(dev)).set_pin(PIN)
    client, _ = client_for(dev, pin="9999")
    server = Fido2Server({"id": "example.com", "name": "Example"})
    options, _ = server.register_begin(
        {"id": b"user-1", "name": "alice"}, resident_key_requirement="required"
    )
    with pytest.raises(ClientError) as e:
        client.make_credential(options.public_key)
    assert e.value.code == ClientError.ERR.BAD_REQUEST
    assert isinstance(e.value.cause, CtapError) and e.value.cause.code == ERR.PIN_INVALID
    assert auth.store.count_discoverable() == 0
    assert auth.pin.retries == 7
    dev.close()

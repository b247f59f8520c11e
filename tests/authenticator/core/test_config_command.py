"""authenticatorConfig against python-fido2's Config."""

from __future__ import annotations

import os

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Ctap2
from fido2.ctap2.config import Config as CtapConfig

from authenticator import Authenticator, Config
from tests.authenticator.conftest import Clock
from transports.inprocess import InProcessDevice

P = ClientPin.PERMISSION
ERR = CtapError.ERR
PIN = "1234"


def configured(ctap: Ctap2) -> CtapConfig:
    cp = ClientPin(ctap)
    return CtapConfig(ctap, cp.protocol, cp.get_pin_token(PIN, P.AUTHENTICATOR_CFG))


def test_without_pin_no_auth_needed(ctap: Ctap2) -> None:
    cfg = CtapConfig(ctap)
    cfg.toggle_always_uv()
    assert ctap.get_info().options["alwaysUv"] is True
    with pytest.raises(CtapError) as e:  # now alwaysUv demands a token
        cfg.toggle_always_uv()
    assert e.value.code == ERR.PUAT_REQUIRED


def test_toggle_always_uv(ctap: Ctap2, auth: Authenticator, restart) -> None:
    ClientPin(ctap).set_pin(PIN)
    configured(ctap).toggle_always_uv()
    assert Ctap2(ctap.device).get_info().options["alwaysUv"] is True
    # getAssertion without a token is refused now
    with pytest.raises(CtapError) as e:
        ctap.get_assertion("example.com", os.urandom(32))
    assert e.value.code == ERR.PUAT_REQUIRED
    configured(ctap).toggle_always_uv()
    assert auth.settings.always_uv is False
    assert restart(auth).settings.always_uv is False  # persisted


def test_set_min_pin_length(ctap: Ctap2, auth: Authenticator) -> None:
    ClientPin(ctap).set_pin(PIN)
    configured(ctap).set_min_pin_length(min_pin_length=6, rp_ids=["example.com"])
    info = Ctap2(ctap.device).get_info()
    assert info.min_pin_length == 6 and info.force_pin_change is True
    assert auth.settings.min_pin_length_rp_ids == ["example.com"]
    ClientPin(ctap).change_pin(PIN, "123456")
    with pytest.raises(CtapError) as e:  # it can only grow
        cp = ClientPin(ctap)
        CtapConfig(ctap, cp.protocol, cp.get_pin_token("123456", P.AUTHENTICATOR_CFG)).set_min_pin_length(5)
    assert e.value.code == ERR.PIN_POLICY_VIOLATION
    assert auth.settings.min_pin_length == 6


def test_enable_enterprise_attestation(ctap: Ctap2, auth: Authenticator, restart) -> None:
    ClientPin(ctap).set_pin(PIN)
    assert ctap.get_info().options["ep"] is False
    configured(ctap).enable_enterprise_attestation()
    assert Ctap2(ctap.device).get_info().options["ep"] is True
    assert restart(auth).settings.enterprise_attestation is True


def test_bad_authorization_changes_nothing(ctap: Ctap2, auth: Authenticator, clock: Clock) -> None:
    ClientPin(ctap).set_pin(PIN)
    before = auth.store.get_state("config.settings")
    with pytest.raises(CtapError) as e:
        CtapConfig(ctap).toggle_always_uv()
    assert e.value.code == ERR.PUAT_REQUIRED
    cp = ClientPin(ctap)
    wrong = CtapConfig(ctap, cp.protocol, cp.get_pin_token(PIN, P.CREDENTIAL_MGMT))
    with pytest.raises(CtapError) as e:
        wrong.toggle_always_uv()
    assert e.value.code == ERR.PIN_AUTH_INVALID
    forged = CtapConfig(ctap, cp.protocol, os.urandom(32))
    with pytest.raises(CtapError) as e:
        forged.enable_enterprise_attestation()
    assert e.value.code == ERR.PIN_AUTH_INVALID
    expired = configured(ctap)
    clock.now += auth.config.pin_token_lifetime + 1
    with pytest.raises(CtapError) as e:
        expired.set_min_pin_length(8)
    assert e.value.code == ERR.PIN_TOKEN_EXPIRED
    assert auth.store.get_state("config.settings") == before
    s = auth.settings
    assert (s.always_uv, s.enterprise_attestation, s.min_pin_length) == (False, False, 4)


def test_unknown_subcommand(ctap: Ctap2) -> None:
    with pytest.raises(CtapError) as e:
        ctap.config(0x42)
    assert e.value.code == ERR.INVALID_SUBCOMMAND


def test_too_many_rp_ids(make_auth) -> None:
    auth = make_auth(Config(max_rpids_for_set_min_pin=2))
    dev = InProcessDevice(auth)
    ctap = Ctap2(dev)
    with pytest.raises(CtapError) as e:
        CtapConfig(ctap).set_min_pin_length(rp_ids=["a", "b", "c"])
    assert e.value.code == ERR.PIN_POLICY_VIOLATION
    dev.close()

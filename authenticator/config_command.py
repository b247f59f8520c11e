"""authenticatorConfig (0x0D) and the persistent settings it changes.

Settings live in the store as one CBOR map: alwaysUv, minimum PIN length and the RP ids
allowed to read it, forcePINChange, enterprise attestation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cbor2

from authenticator.client_pin import PERM_ACFG, PinState
from authenticator.errors import ERR, CtapStatusError
from authenticator.params import encode, opt_bytes, opt_map, req_int

if TYPE_CHECKING:
    from authenticator.core import Authenticator, Call

STATE = "config.settings"
ENABLE_EA, TOGGLE_ALWAYS_UV, SET_MIN_PIN_LENGTH, VENDOR_PROTOTYPE = 0x01, 0x02, 0x03, 0xFF


@dataclass
class Settings:
    auth: Authenticator
    always_uv: bool = False
    min_pin_length: int = 4
    min_pin_length_rp_ids: list[str] = field(default_factory=list)
    force_change_pin: bool = False
    enterprise_attestation: bool = False

    @classmethod
    def load(cls, auth: Authenticator) -> Settings:
        s = cls(
            auth,
            always_uv=auth.config.always_uv,
            min_pin_length=auth.config.min_pin_length,
            enterprise_attestation=auth.config.enterprise_attestation,
        )
        raw = auth.store.get_state(STATE)
        if raw:
            data = cbor2.loads(raw)
            s.always_uv = data.get("alwaysUv", s.always_uv)
            s.min_pin_length = data.get("minPinLength", s.min_pin_length)
            s.min_pin_length_rp_ids = data.get("minPinLengthRPIDs", [])
            s.force_change_pin = data.get("forceChangePin", False)
            s.enterprise_attestation = data.get("ep", s.enterprise_attestation)
        return s

    def save(self) -> None:
        self.auth.store.set_state(
            STATE,
            encode(
                {
                    "alwaysUv": self.always_uv,
                    "minPinLength": self.min_pin_length,
                    "minPinLengthRPIDs": self.min_pin_length_rp_ids,
                    "forceChangePin": self.force_change_pin,
                    "ep": self.enterprise_attestation,
                }
            ),
        )

    def set_force_change(self, value: bool) -> None:
        if self.force_change_pin != value:
            self.force_change_pin = value
            self.save()


async def handle(auth: Authenticator, params: dict, call: Call) -> dict | None:
    sub = req_int(params, 0x01)
    sub_params = opt_map(params, 0x02)
    pin_param = opt_bytes(params, 0x04)
    if sub not in (ENABLE_EA, TOGGLE_ALWAYS_UV, SET_MIN_PIN_LENGTH):
        raise CtapStatusError(ERR.INVALID_SUBCOMMAND)
    if pin_param is not None or auth.pin.is_set or auth.settings.always_uv:
        if pin_param is None:
            raise CtapStatusError(ERR.PUAT_REQUIRED)
        protocol = PinState.protocol(params, 0x03)
        message = b"\xff" * 32 + bytes([0x0D, sub]) + (
            encode(sub_params) if sub_params is not None else b""
        )
        auth.pin.verify(protocol, pin_param, message, PERM_ACFG, None)
    s = auth.settings
    if sub == ENABLE_EA:
        if not auth.config.extra.get("enterprise_capable", True):
            raise CtapStatusError(ERR.INVALID_COMMAND)
        s.enterprise_attestation = True
    elif sub == TOGGLE_ALWAYS_UV:
        s.always_uv = not s.always_uv
    else:
        p = sub_params or {}
        new_len = p.get(0x01)
        rp_ids = p.get(0x02)
        force = p.get(0x03, False)
        if new_len is not None and (not isinstance(new_len, int) or isinstance(new_len, bool)):
            raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE)
        if rp_ids is not None and (
            not isinstance(rp_ids, list) or not all(isinstance(r, str) for r in rp_ids)
        ):
            raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE)
        if not isinstance(force, bool):
            raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE)
        new_len = s.min_pin_length if new_len is None else new_len
        if new_len < s.min_pin_length or new_len > 63:
            raise CtapStatusError(ERR.PIN_POLICY_VIOLATION, "minPINLength can only grow")
        if rp_ids is not None and len(rp_ids) > auth.config.max_rpids_for_set_min_pin:
            raise CtapStatusError(ERR.PIN_POLICY_VIOLATION, "too many RP ids")
        if force and not auth.pin.is_set:
            raise CtapStatusError(ERR.PIN_NOT_SET)
        s.min_pin_length = new_len
        if rp_ids is not None:
            s.min_pin_length_rp_ids = list(rp_ids)
        if force or (auth.pin.is_set and auth.pin.pin_code_points < new_len):
            s.force_change_pin = True
    s.save()
    if sub == TOGGLE_ALWAYS_UV:
        auth.pin.invalidate_tokens()
    return None

"""authenticatorConfig (0x0D): enterprise attestation, alwaysUv, setMinPINLength.

The settings it changes live in :mod:`authenticator.core.settings`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from authenticator.core.errors import ERR, CtapStatusError
from authenticator.core.params import encode, opt_bytes, opt_map, req_int
from authenticator.core.pin_state import PERM_ACFG, PinState

if TYPE_CHECKING:
    from authenticator.core.device import Call, Device

ENABLE_EA, TOGGLE_ALWAYS_UV, SET_MIN_PIN_LENGTH, VENDOR_PROTOTYPE = 0x01, 0x02, 0x03, 0xFF


async def handle(dev: Device, params: dict, call: Call) -> dict | None:
    sub = req_int(params, 0x01)
    sub_params = opt_map(params, 0x02)
    pin_param = opt_bytes(params, 0x04)
    if sub not in (ENABLE_EA, TOGGLE_ALWAYS_UV, SET_MIN_PIN_LENGTH):
        raise CtapStatusError(ERR.INVALID_SUBCOMMAND)
    if pin_param is not None or dev.pin.is_set or dev.settings.always_uv:
        if pin_param is None:
            raise CtapStatusError(ERR.PUAT_REQUIRED)
        protocol = PinState.protocol(params, 0x03)
        message = b"\xff" * 32 + bytes([0x0D, sub]) + (
            encode(sub_params) if sub_params is not None else b""
        )
        dev.pin.verify(protocol, pin_param, message, PERM_ACFG, None)
    s = dev.settings
    if sub == ENABLE_EA:
        if not dev.config.extra.get("enterprise_capable", True):
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
        if rp_ids is not None and len(rp_ids) > dev.config.max_rpids_for_set_min_pin:
            raise CtapStatusError(ERR.PIN_POLICY_VIOLATION, "too many RP ids")
        if force and not dev.pin.is_set:
            raise CtapStatusError(ERR.PIN_NOT_SET)
        s.min_pin_length = new_len
        if rp_ids is not None:
            s.min_pin_length_rp_ids = list(rp_ids)
        if force or (dev.pin.is_set and dev.pin.pin_code_points < new_len):
            s.force_change_pin = True
    s.save()
    if sub == TOGGLE_ALWAYS_UV:
        dev.pin.invalidate_tokens()
    return None

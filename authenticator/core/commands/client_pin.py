"""authenticatorClientPIN (0x06): PIN/UV dev protocols 1 and 2, tokens and lockouts.

The state (PIN hash, retries, token) lives in :mod:`authenticator.core.pin_state`; this
module is the command's sub-command logic only.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from authenticator.core.errors import ERR, CtapStatusError
from authenticator.core.params import opt_bytes, opt_int, opt_map, opt_str, req_int
from authenticator.core.pin_state import (
    LEGACY_PERMISSIONS,
    PERM_GA,
    PERM_LBW,
    PERM_MC,
    PROTOCOLS,
    SUPPORTED_PERMISSIONS,
    PinState,
)

if TYPE_CHECKING:
    from authenticator.core.device import Call, Device

GET_PIN_RETRIES, GET_KEY_AGREEMENT, SET_PIN, CHANGE_PIN = 1, 2, 3, 4
GET_PIN_TOKEN, GET_TOKEN_USING_UV, GET_UV_RETRIES = 5, 6, 7
GET_TOKEN_USING_PIN = 9


async def handle(dev: Device, params: dict, call: Call) -> dict | None:
    if not dev.config.client_pin and not dev.config.builtin_uv:
        raise CtapStatusError(ERR.INVALID_COMMAND, "clientPIN not offered")
    sub = req_int(params, 0x02)
    pin = dev.pin
    if sub == GET_PIN_RETRIES:
        return {0x03: pin.retries, 0x04: pin.consecutive_mismatches >= 3}
    if sub == GET_UV_RETRIES:
        if not dev.config.builtin_uv:
            raise CtapStatusError(ERR.INVALID_SUBCOMMAND)
        return {0x05: pin.uv_retries}
    protocol = PinState.protocol(params, 0x01)
    if sub == GET_KEY_AGREEMENT:
        return {0x01: pin.key_agreement_cose()}
    if sub not in (SET_PIN, CHANGE_PIN, GET_PIN_TOKEN, GET_TOKEN_USING_UV, GET_TOKEN_USING_PIN):
        raise CtapStatusError(ERR.INVALID_SUBCOMMAND)
    if 0x03 not in params:
        raise CtapStatusError(ERR.MISSING_PARAMETER, "keyAgreement missing")
    key_agreement = opt_map(params, 0x03)
    proto = PROTOCOLS[protocol]

    if sub == SET_PIN:
        if not dev.config.client_pin:
            raise CtapStatusError(ERR.INVALID_SUBCOMMAND)
        param, new_pin_enc = opt_bytes(params, 0x04), opt_bytes(params, 0x05)
        if param is None or new_pin_enc is None:
            raise CtapStatusError(ERR.MISSING_PARAMETER)
        if pin.is_set:
            raise CtapStatusError(ERR.NOT_ALLOWED, "PIN already set")
        shared = pin.shared_secret(protocol, key_agreement)
        if not hmac.compare_digest(proto.authenticate(shared, new_pin_enc), param):
            raise CtapStatusError(ERR.PIN_AUTH_INVALID)
        pin_hash, code_points = pin._decrypt_new_pin(
            protocol, shared, new_pin_enc, dev.settings.min_pin_length
        )
        pin._store_pin(pin_hash, code_points)
        dev.settings.set_force_change(False)
        return None

    if sub == CHANGE_PIN:
        if not dev.config.client_pin:
            raise CtapStatusError(ERR.INVALID_SUBCOMMAND)
        param, new_pin_enc = opt_bytes(params, 0x04), opt_bytes(params, 0x05)
        pin_hash_enc = opt_bytes(params, 0x06)
        if param is None or new_pin_enc is None or pin_hash_enc is None:
            raise CtapStatusError(ERR.MISSING_PARAMETER)
        if not pin.is_set:
            raise CtapStatusError(ERR.PIN_NOT_SET)
        if pin.retries <= 0:
            raise CtapStatusError(ERR.PIN_BLOCKED)
        shared = pin.shared_secret(protocol, key_agreement)
        if not hmac.compare_digest(proto.authenticate(shared, new_pin_enc + pin_hash_enc), param):
            raise CtapStatusError(ERR.PIN_AUTH_INVALID)
        pin._check_pin_hash(protocol, shared, pin_hash_enc)
        pin_hash, code_points = pin._decrypt_new_pin(
            protocol, shared, new_pin_enc, dev.settings.min_pin_length
        )
        if dev.settings.force_change_pin and hmac.compare_digest(pin_hash, pin._pin_hash() or b""):
            raise CtapStatusError(ERR.PIN_POLICY_VIOLATION, "new PIN must differ")
        pin._store_pin(pin_hash, code_points)
        dev.settings.set_force_change(False)
        pin.invalidate_tokens()
        return None

    if sub == GET_TOKEN_USING_UV:
        permissions = opt_int(params, 0x09)
        rp_id = opt_str(params, 0x0A)
        if not dev.config.builtin_uv:
            raise CtapStatusError(ERR.NOT_ALLOWED, "no built-in UV")
        _check_permissions(dev, permissions, rp_id)
        shared = pin.shared_secret(protocol, key_agreement)
        call.rp_id = rp_id
        await dev.builtin_uv(call, rp_id)
        token = pin.new_token(permissions or 0, rp_id, user_present=True)
        return {0x02: proto.encrypt(shared, token)}

    # getPinToken / getPinUvAuthTokenUsingPinWithPermissions
    pin_hash_enc = opt_bytes(params, 0x06)
    if pin_hash_enc is None:
        raise CtapStatusError(ERR.MISSING_PARAMETER, "pinHashEnc missing")
    if sub == GET_PIN_TOKEN:
        if 0x09 in params or 0x0A in params:
            raise CtapStatusError(ERR.INVALID_PARAMETER, "getPinToken takes no permissions")
        permissions, rp_id = LEGACY_PERMISSIONS, None
    else:
        permissions = opt_int(params, 0x09)
        rp_id = opt_str(params, 0x0A)
        _check_permissions(dev, permissions, rp_id)
    if not pin.is_set:
        raise CtapStatusError(ERR.PIN_NOT_SET)
    shared = pin.shared_secret(protocol, key_agreement)
    pin._check_pin_hash(protocol, shared, pin_hash_enc)
    if dev.settings.force_change_pin:
        # CTAP 2.1 §6.5.5.7.1 / §6.5.5.7.2: the right PIN, but it must be changed first
        raise CtapStatusError(ERR.PIN_INVALID, "PIN change required (forcePINChange)")
    token = pin.new_token(
        permissions or 0, rp_id, user_present=False, legacy=sub == GET_PIN_TOKEN
    )
    call.rp_id = rp_id
    return {0x02: proto.encrypt(shared, token)}


def _check_permissions(dev: Device, permissions: int | None, rp_id: str | None) -> None:
    if permissions is None:
        raise CtapStatusError(ERR.MISSING_PARAMETER, "permissions missing")
    if permissions == 0:
        raise CtapStatusError(ERR.INVALID_PARAMETER, "no permissions requested")
    if permissions & ~SUPPORTED_PERMISSIONS:
        raise CtapStatusError(ERR.UNAUTHORIZED_PERMISSION)
    if permissions & (PERM_MC | PERM_GA) and rp_id is None:
        raise CtapStatusError(ERR.MISSING_PARAMETER, "rpId required for mc/ga")
    if permissions & PERM_LBW and not dev.config.resident_keys:
        raise CtapStatusError(ERR.UNAUTHORIZED_PERMISSION)

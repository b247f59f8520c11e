"""authenticatorGetAssertion (0x02) and authenticatorGetNextAssertion (0x08)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cbor2

from authenticator.core import auth_data
from authenticator.core.credentials import Credential
from authenticator.core.errors import ERR, CtapStatusError
from authenticator.core.extensions import REGISTRY, GaExt
from authenticator.core.extensions.cred_protect import allowed
from authenticator.core.params import (
    client_data_hash,
    descriptors,
    opt_bytes,
    opt_map,
    options,
    req_str,
    rp_hash,
)
from authenticator.core.pin_state import PERM_GA, PinState

if TYPE_CHECKING:
    from authenticator.core.device import Call, Device

NEXT_ASSERTION_TIMEOUT = 30.0


@dataclass
class NextAssertionState:
    rp_id: str
    client_data_hash: bytes
    remaining: list[Credential]
    up: bool
    uv: bool
    extensions: dict
    started: float


def _user(cred: Credential, identify: bool) -> dict | None:
    """CTAP 2.1 §6.2.2 (response member user): "id" only, unless the authenticator verified
    the user AND several accounts answer a discovery (the platform then shows a picker, so
    it gets name and displayName too); a single account gets "id" only, UV or not."""
    record = cred.record
    if record is None or not record.discoverable:
        return None
    user: dict = {"id": record.user_id}
    if identify:
        if record.user_name is not None:
            user["name"] = record.user_name
        if record.user_display_name is not None:
            user["displayName"] = record.user_display_name
    return user


def _assert(
    dev: Device,
    call: Call,
    cred: Credential,
    rp_id: str,
    cdh: bytes,
    up: bool,
    uv: bool,
    ext_in: dict,
    identify: bool,
) -> dict:
    ext_out = {}
    unsigned = None
    if ext_in:  # extensions act on their inputs only: no inputs, nothing to set up
        x = GaExt(dev=dev, call=call, rp_id=rp_id, uv=uv, up=up, cred=cred)
        for name, value in ext_in.items():
            ext = REGISTRY.get(name) if isinstance(name, str) else None
            if ext is None or name not in dev.config.extensions:
                continue
            out = ext.at_get(x, value)
            if out is not None:
                ext_out[name] = out
        unsigned = x.unsigned
    flags = auth_data.flags(up=up, uv=uv, be=cred.backup_eligible, bs=cred.backup_state)
    data = auth_data.build(
        dev.faults.rp_id_hash(cred.rp_id_hash),
        dev.faults.flags(flags),
        dev.next_counter(cred),
        extensions=ext_out or None,
    )
    signature = dev.faults.signature(dev.credentials.sign(cred, data + cdh))
    call.notes["credential_id"] = cred.id
    call.notes["user"] = cred.record.user_name if cred.record else None
    call.notes["auth_data"] = data  # flags and counter for the log
    response: dict = {0x01: {"id": cred.id, "type": "public-key"}, 0x02: data, 0x03: signature}
    user = _user(cred, identify)
    if user is not None:
        response[0x04] = user
    if unsigned:
        response.update(unsigned)
    return response


async def handle(dev: Device, params: dict, call: Call) -> bytes:
    cfg = dev.config
    rp_id = req_str(params, 0x01)
    call.rp_id = rp_id
    cdh = client_data_hash(params, 0x02)
    allow = descriptors(params, 0x03)
    allow_given = 0x03 in params and bool(params[0x03])
    ext_in = opt_map(params, 0x04) or {}
    opts = options(params, 0x05)
    pin_param = opt_bytes(params, 0x06)

    if pin_param is not None and len(pin_param) == 0:
        await dev.require_presence(call, rp_id)
        raise CtapStatusError(ERR.PIN_INVALID if dev.pin.is_set else ERR.PIN_NOT_SET)
    protocol = PinState.protocol(params, 0x07) if pin_param is not None else None
    if "rk" in opts:
        raise CtapStatusError(ERR.UNSUPPORTED_OPTION, "rk is not a getAssertion option")
    up = opts.get("up", True)
    uv_requested = opts.get("uv", False) and pin_param is None
    if uv_requested and not cfg.builtin_uv:
        raise CtapStatusError(ERR.INVALID_OPTION, "no built-in user verification")
    if dev.settings.always_uv and pin_param is None and not uv_requested and up:
        if cfg.builtin_uv:
            uv_requested = True
        else:
            raise CtapStatusError(ERR.PUAT_REQUIRED)

    uv = False
    token = None
    if pin_param is not None:
        assert protocol is not None
        token = dev.pin.verify(protocol, pin_param, cdh, PERM_GA, rp_id)
        uv = token.user_verified

    rp_id_hash = rp_hash(rp_id)
    if allow_given:
        if len(params[0x03]) > cfg.max_cred_count_in_list:
            raise CtapStatusError(ERR.LIMIT_EXCEEDED)
        creds = []
        for cred_id in allow:
            cred = dev.credentials.resolve(cred_id, rp_id_hash)
            if cred is not None and allowed(cred.cred_protect, uv=uv or uv_requested, via_allow_list=True):
                creds.append(cred)
                break  # with an allowList the authenticator picks one credential
        discovery = False
    else:
        if not cfg.resident_keys:
            creds = []
        else:
            creds = [
                dev.credentials.from_record(r)
                for r in dev.store.credentials_for_rp(rp_id_hash)
                if allowed(r.cred_protect, uv=uv or uv_requested, via_allow_list=False)
            ]
        discovery = True

    # user interaction before answering, also when nothing matches (no silent probing)
    user_present = False
    if uv_requested:
        name = creds[0].record.user_name if creds and creds[0].record else None
        await dev.builtin_uv(call, rp_id, name)
        uv = True
        user_present = True
    if not creds:
        if up and not user_present:
            await dev.require_presence(call, rp_id)
        raise CtapStatusError(ERR.NO_CREDENTIALS)
    if up and not user_present:
        if token is not None and token.user_present:
            token.user_present = False
        else:
            name = creds[0].record.user_name if creds[0].record else None
            await dev.require_presence(call, rp_id, name)
    if token is not None and up:
        dev.pin.token_used()

    identify = uv and discovery and len(creds) > 1
    first = _assert(dev, call, creds[0], rp_id, cdh, up, uv, ext_in, identify)
    if discovery and cfg.select_account_on_device:
        first[0x06] = True  # userSelected: the "user" picked the newest account on the device
    elif discovery and len(creds) > 1:
        first[0x05] = len(creds)
        dev.next_assertion = NextAssertionState(
            rp_id, cdh, creds[1:], up, uv, ext_in, dev.clock()
        )
    return _canonical(first)


def _canonical(response: dict) -> bytes:
    """Top-level keys sorted; nested maps are built in canonical order already, so plain
    CBOR encoding equals canonical encoding here at a third of the cost."""
    return cbor2.dumps(dict(sorted(response.items())))


async def handle_next(dev: Device, params: dict, call: Call) -> bytes:
    state = dev.next_assertion
    if state is None or not state.remaining:
        dev.next_assertion = None
        raise CtapStatusError(ERR.NOT_ALLOWED, "no assertion pending")
    if dev.clock() - state.started > NEXT_ASSERTION_TIMEOUT:
        dev.next_assertion = None
        raise CtapStatusError(ERR.NOT_ALLOWED, "getNextAssertion timed out")
    call.rp_id = state.rp_id
    cred = state.remaining.pop(0)
    state.started = dev.clock()
    return _canonical(
        _assert(
            dev, call, cred, state.rp_id, state.client_data_hash, state.up, state.uv,
            state.extensions, state.uv,  # only pending after a discovery with several accounts
        )
    )

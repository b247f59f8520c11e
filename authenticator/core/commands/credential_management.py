"""authenticatorCredentialManagement (0x0A, prototype 0x41), CTAP 2.1 §6.8.

Every subcommand except the two ``getNext*`` ones carries a pinUvAuthParam over
``subCommand ‖ CBOR(subCommandParams)`` with the cm permission. A token bound to an rpId
only reaches that RP's credentials; RP-wide operations (metadata, enumerateRPs) need an
unbound token, so a per-RP token cannot learn which other RPs exist.

Enumeration is a cursor over the store's paged API: a begin costs one page and an O(1)
count whatever the store holds (a million credentials over ten thousand RPs), and each
getNext fetches the next page when the current one runs out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hashlib import sha256
from typing import TYPE_CHECKING, Any

import cbor2

from authenticator.core.errors import ERR, CtapStatusError
from authenticator.core.params import encode, opt_bytes, opt_map, req_bytes, req_int, req_map
from authenticator.core.pin_state import PERM_CM, PinState
from storage.base import CredentialRecord

if TYPE_CHECKING:
    from authenticator.core.device import Call, Device

GET_METADATA, RPS_BEGIN, RPS_NEXT, CREDS_BEGIN, CREDS_NEXT, DELETE, UPDATE_USER = range(1, 8)
PAGE = 64  # RPs or credentials fetched from the store at a time


@dataclass
class EnumerationState:
    """Where the next getNextRP / getNextCredential continues (core drops it on other
    commands): the page fetched ahead, the store cursor after it, how many are left."""

    kind: str  # "rps" or "creds"
    remaining: int
    rp_id_hash: bytes | None = None
    items: list = field(default_factory=list)
    cursor: Any = None

    def fetch(self, store: Any) -> None:
        if self.kind == "rps":
            page = store.list_rps_page(self.cursor, PAGE)
        else:
            page = store.credentials_for_rp_page(self.rp_id_hash, self.cursor, PAGE)
        if page:
            self.cursor = page[-1]
        self.items.extend(page)


def _authorize(
    dev: Device, params: dict, sub: int, sub_params: dict | None, preview: bool
) -> str | None:
    """Check the token; returns the rpId it is confined to (None: every RP).

    The prototype command (0x41) predates rpId-bound tokens: a legacy getPinToken token that
    a makeCredential/getAssertion bound to an rpId still reaches every RP there, as on the
    CTAP 2.1-PRE keys its clients were written for."""
    pin_param = opt_bytes(params, 0x04)
    if pin_param is None:
        raise CtapStatusError(ERR.PUAT_REQUIRED)
    protocol = PinState.protocol(params, 0x03)
    message = bytes([sub]) + (encode(sub_params) if sub_params is not None else b"")
    token = dev.pin.verify(protocol, pin_param, message, PERM_CM, None)
    return None if preview and token.legacy else token.rp_id


def _require_rp(bound: str | None, rp_id_hash: bytes | None) -> None:
    """A token bound to an rpId may only act on that RP (rp_id_hash None: all RPs)."""
    if bound is None:
        return
    if rp_id_hash is None or sha256(bound.encode()).digest() != rp_id_hash:
        raise CtapStatusError(ERR.PIN_AUTH_INVALID, "token bound to another rpId")


def _credential_id(sub_params: dict) -> bytes:
    descriptor = req_map(sub_params, 0x02)
    return req_bytes(descriptor, "id")


def _rp_entry(summary: Any) -> dict:
    rp: dict = {"id": summary.rp_id}
    if summary.rp_name:
        rp["name"] = summary.rp_name
    return {0x03: rp, 0x04: summary.rp_id_hash}


def _cred_entry(dev: Device, rec: CredentialRecord) -> dict:
    user: dict = {"id": rec.user_id}
    if rec.user_name is not None:
        user["name"] = rec.user_name
    if rec.user_display_name is not None:
        user["displayName"] = rec.user_display_name
    entry = {
        0x06: user,
        0x07: {"id": rec.credential_id, "type": "public-key"},
        0x08: cbor2.loads(rec.public_key),
        0x0A: rec.cred_protect,
    }
    if rec.large_blob_key:
        entry[0x0B] = dev.device_keys.large_blob_key(rec.credential_id)
    return entry


def _next(dev: Device, kind: str) -> Any:
    state = dev.cred_mgmt_state
    if state is not None and state.kind == kind and state.remaining > 0:
        if not state.items:
            state.fetch(dev.store)
        if state.items:
            state.remaining -= 1
            return state.items.pop(0)
    dev.cred_mgmt_state = None
    raise CtapStatusError(ERR.NOT_ALLOWED, "no enumeration in progress")


def _begin(dev: Device, state: EnumerationState) -> Any:
    """The first item of a new enumeration (NO_CREDENTIALS if there is none); the state
    stays for the getNext commands."""
    state.fetch(dev.store)
    if not state.items or state.remaining <= 0:
        raise CtapStatusError(ERR.NO_CREDENTIALS)
    dev.cred_mgmt_state = state
    state.remaining -= 1
    return state.items.pop(0)


async def handle_preview(dev: Device, params: dict, call: Call) -> dict | None:
    """authenticatorCredentialManagement prototype (0x41, FIDO_2_1_PRE)."""
    return await handle(dev, params, call, preview=True)


async def handle(dev: Device, params: dict, call: Call, *, preview: bool = False) -> dict | None:
    if not dev.config.resident_keys:
        raise CtapStatusError(ERR.INVALID_COMMAND, "no discoverable credentials")
    sub = req_int(params, 0x01)
    sub_params = opt_map(params, 0x02)

    if sub == RPS_NEXT:
        return _rp_entry(_next(dev, "rps"))
    if sub == CREDS_NEXT:
        return _cred_entry(dev, _next(dev, "creds"))
    if sub not in (GET_METADATA, RPS_BEGIN, CREDS_BEGIN, DELETE, UPDATE_USER):
        raise CtapStatusError(ERR.INVALID_SUBCOMMAND)
    if sub in (CREDS_BEGIN, DELETE, UPDATE_USER) and sub_params is None:
        raise CtapStatusError(ERR.MISSING_PARAMETER, "subCommandParams missing")
    dev.cred_mgmt_state = None
    bound = _authorize(dev, params, sub, sub_params, preview)
    store = dev.store

    if sub == GET_METADATA:
        _require_rp(bound, None)
        count = store.count_discoverable()
        return {0x01: count, 0x02: max(0, dev.config.max_discoverable - count)}

    if sub == RPS_BEGIN:
        _require_rp(bound, None)
        total = store.count_rps()
        first = _begin(dev, EnumerationState("rps", total))
        return {**_rp_entry(first), 0x05: total}

    assert sub_params is not None
    if sub == CREDS_BEGIN:
        rp_id_hash = req_bytes(sub_params, 0x01)
        _require_rp(bound, rp_id_hash)
        summary = store.rp_summary(rp_id_hash)
        total = summary.count if summary is not None else 0
        first = _begin(dev, EnumerationState("creds", total, rp_id_hash))
        call.rp_id = first.rp_id
        return {**_cred_entry(dev, first), 0x09: total}

    cred_id = _credential_id(sub_params)
    record = store.get_credential(cred_id)
    if record is None or not record.discoverable:
        raise CtapStatusError(ERR.NO_CREDENTIALS)
    _require_rp(bound, record.rp_id_hash)
    call.rp_id = record.rp_id

    if sub == DELETE:
        store.delete_credential(cred_id)
        dev.counters.forget(cred_id)
        dev.credentials.forget(cred_id)
        return None

    user = req_map(sub_params, 0x03)
    user_id = req_bytes(user, "id")
    name, display = user.get("name"), user.get("displayName")
    if not isinstance(name, str | None) or not isinstance(display, str | None):
        raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, "user fields must be text")
    if user_id != record.user_id:
        raise CtapStatusError(ERR.INVALID_PARAMETER, "user.id does not match the credential")
    # absent or empty fields are removed (CTAP 2.1 §6.8.6)
    store.update_user(cred_id, user_id, name or None, display or None)
    return None

"""Typed access to CTAP request maps: every malformed field becomes a CTAP status."""

from __future__ import annotations

from functools import lru_cache
from hashlib import sha256
from typing import Any

import cbor2

from authenticator.core.errors import ERR, CtapStatusError


class _BadKey(Exception):
    """A map key CTAP2 never uses (float, bool, null, bytes, array ...)."""


def _check_keys(a: object, b: object = None) -> dict:
    # CTAP2 maps are keyed by integers or text strings only (CTAP 2.1 §8). Python would make
    # 1.0 and True equal to 1, so without this {1.0: cdh} would pass as clientDataHash.
    # (cbor2's C decoder calls hook(map, immutable), its docs say hook(decoder, map).)
    # Runs for every map of every request: no generator, no *args (half the decode time).
    value = a if isinstance(a, dict) else b
    if not isinstance(value, dict):
        raise ValueError("object_hook was given no map")
    for key in value:
        if type(key) is not int and type(key) is not str:
            raise _BadKey(type(key).__name__)
    return value


def decode_request(data: bytes) -> dict:
    """CBOR bytes -> parameter map (empty request allowed), decoded strictly.

    Junk and duplicate map keys (anywhere, compared as decoded: 1, 1.0 and true collide) are
    INVALID_CBOR, as a strict CTAP2 decoder answers (the last duplicate must not silently
    win); a key that is not an integer or text string is CBOR_UNEXPECTED_TYPE."""
    if not data:
        return {}
    try:
        value = cbor2.loads(data, allow_duplicate_keys=False, object_hook=_check_keys)
    except Exception as e:
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, _BadKey):
            cause = cause.__cause__ or cause.__context__  # cbor2 wraps the hook's exception
        if cause is not None:
            raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, f"map key of type {cause}") from e
        raise CtapStatusError(ERR.INVALID_CBOR, "undecodable CBOR") from e
    if not isinstance(value, dict):
        raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, "request is not a map")
    return value


def encode(value: Any) -> bytes:
    """CTAP2 canonical CBOR (RFC 7049 length-first key order)."""
    return cbor2.dumps(value, canonical=True)


def encode_ordered(value: Any) -> bytes:
    """CBOR for maps the caller built in canonical key order (hot paths): same bytes as
    ``encode`` at a third of the cost. COSE keys ({1, 3, -1, -2, -3}) qualify as built."""
    return cbor2.dumps(value)


def _typed(params: dict, key: Any, kind: type | tuple[type, ...], required: bool) -> Any:
    if key not in params:
        if required:
            raise CtapStatusError(ERR.MISSING_PARAMETER, f"missing {key!r}")
        return None
    value = params[key]
    if kind is int and isinstance(value, bool):
        raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, f"{key!r} must be an integer")
    if not isinstance(value, kind):
        raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, f"{key!r} has the wrong type")
    return value


def req_bytes(params: dict, key: Any) -> bytes:
    return _typed(params, key, bytes, True)


def opt_bytes(params: dict, key: Any) -> bytes | None:
    return _typed(params, key, bytes, False)


def req_str(params: dict, key: Any) -> str:
    return _typed(params, key, str, True)


def opt_str(params: dict, key: Any) -> str | None:
    return _typed(params, key, str, False)


def req_int(params: dict, key: Any) -> int:
    return _typed(params, key, int, True)


def opt_int(params: dict, key: Any) -> int | None:
    return _typed(params, key, int, False)


def req_map(params: dict, key: Any) -> dict:
    return _typed(params, key, dict, True)


def opt_map(params: dict, key: Any) -> dict | None:
    return _typed(params, key, dict, False)


def opt_list(params: dict, key: Any) -> list | None:
    return _typed(params, key, list, False)


def req_list(params: dict, key: Any) -> list:
    return _typed(params, key, list, True)


def opt_bool(params: dict, key: Any) -> bool | None:
    return _typed(params, key, bool, False)


def client_data_hash(params: dict, key: int) -> bytes:
    value = req_bytes(params, key)
    if len(value) != 32:
        raise CtapStatusError(ERR.INVALID_LENGTH, "clientDataHash must be 32 bytes")
    return value


def descriptors(params: dict, key: int) -> list[bytes]:
    """A credential descriptor list -> the ids of its public-key entries (others skipped)."""
    items = opt_list(params, key)
    if items is None:
        return []
    ids = []
    for item in items:
        if not isinstance(item, dict):
            raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, "descriptor is not a map")
        cred_type = req_str(item, "type")
        cred_id = req_bytes(item, "id")
        if "transports" in item and not isinstance(item["transports"], list):
            raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, "transports is not an array")
        if cred_type == "public-key":
            ids.append(cred_id)
    return ids


def options(params: dict, key: int) -> dict[str, bool]:
    opts = opt_map(params, key) or {}
    for name, value in opts.items():
        if not isinstance(name, str) or not isinstance(value, bool):
            raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, "options must map text to bool")
    return opts


@lru_cache(maxsize=1024)
def rp_hash(rp_id: str) -> bytes:
    """SHA-256 of an RP ID, remembered: a ceremony loop asks for the same few RPs."""
    return sha256(rp_id.encode()).digest()

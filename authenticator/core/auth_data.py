"""authenticatorData bytes, with the flags computed in one place."""

from __future__ import annotations

import struct

from authenticator.core.params import encode

UP, UV, BE, BS, AT, ED = 0x01, 0x04, 0x08, 0x10, 0x40, 0x80


def flags(*, up: bool, uv: bool, be: bool, bs: bool, at: bool = False, ed: bool = False) -> int:
    return (
        (UP if up else 0)
        | (UV if uv else 0)
        | (BE if be else 0)
        | (BS if bs and be else 0)
        | (AT if at else 0)
        | (ED if ed else 0)
    )


def build(
    rp_id_hash: bytes,
    flag_bits: int,
    counter: int,
    attested: bytes = b"",
    extensions: dict | None = None,
) -> bytes:
    if extensions:
        flag_bits |= ED
    else:
        flag_bits &= ~ED
    if attested:
        flag_bits |= AT
    return (
        rp_id_hash
        + struct.pack(">BI", flag_bits, counter & 0xFFFFFFFF)
        + attested
        + (encode(extensions) if extensions else b"")
    )


def attested_credential_data(aaguid: bytes, cred_id: bytes, cose_key: bytes) -> bytes:
    return aaguid + struct.pack(">H", len(cred_id)) + cred_id + cose_key

"""CTAP1/U2F over ISO 7816 APDUs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from authenticator.core import Authenticator, Call

SW_NO_ERROR = b"\x90\x00"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_UNKNOWN = b"\x6f\x00"


async def handle(auth: Authenticator, apdu: bytes, call: Call) -> bytes:
    return SW_INS_NOT_SUPPORTED

"""authenticatorLargeBlobs (0x0C)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from authenticator.errors import ERR, CtapStatusError

if TYPE_CHECKING:
    from authenticator.core import Authenticator, Call


@dataclass
class PendingWrite:
    expected_length: int
    data: bytearray


async def handle(auth: Authenticator, params: dict, call: Call) -> dict | None:
    raise CtapStatusError(ERR.INVALID_COMMAND, "largeBlobs not yet available")

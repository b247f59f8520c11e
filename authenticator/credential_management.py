"""authenticatorCredentialManagement (0x0A, prototype 0x41)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from authenticator.errors import ERR, CtapStatusError

if TYPE_CHECKING:
    from authenticator.core import Authenticator, Call


@dataclass
class EnumerationState:
    kind: str
    items: list


async def handle(auth: Authenticator, params: dict, call: Call) -> dict | None:
    raise CtapStatusError(ERR.INVALID_COMMAND, "credentialManagement not yet available")

"""authenticatorSelection (0x0B): the user picks this authenticator with a touch."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from authenticator.core.device import Call, Device


async def handle(dev: Device, params: dict, call: Call) -> None:
    await dev.require_presence(call)
    return None

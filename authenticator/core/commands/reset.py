"""authenticatorReset (0x07): forget everything, only just after power-up and with a touch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from authenticator.core.errors import ERR, CtapStatusError

if TYPE_CHECKING:
    from authenticator.core.device import Call, Device


async def handle(dev: Device, params: dict, call: Call) -> None:
    if not dev.within_reset_window():
        raise CtapStatusError(ERR.NOT_ALLOWED, "reset only within 10 s of power-up")
    await dev.require_presence(call)
    dev.factory_reset()
    return None

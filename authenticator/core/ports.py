"""The ports the core talks through, and the one interface transports call.

The core never does I/O: storage, presence, time and randomness come in through these
protocols, and transports hand it whole messages through :class:`CtapHandler`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol


class KeepaliveStatus(IntEnum):
    """CTAPHID/BLE KEEPALIVE status bytes."""

    PROCESSING = 1
    UPNEEDED = 2


@dataclass
class CommandContext:
    """What a transport tells the core about one command.

    ``on_status`` is called whenever the core's keepalive status changes (the transport
    repeats the latest status every 100 ms); ``cancel`` is set by the transport on
    CTAPHID CANCEL / BLE CANCEL and ends a presence wait with CTAP2_ERR_KEEPALIVE_CANCEL.
    """

    transport: str = "usb"
    on_status: Callable[[KeepaliveStatus], None] | None = None
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    channel: int | None = None

    def status(self, value: KeepaliveStatus) -> None:
        if self.on_status is not None:
            self.on_status(value)


class CtapHandler(Protocol):
    """What every transport drives: whole CTAP messages in, whole responses out."""

    async def handle_cbor(self, request: bytes, ctx: CommandContext | None = None) -> bytes:
        """A CTAP2 request (command byte + CBOR) -> status byte + CBOR response."""
        ...

    async def handle_u2f(self, apdu: bytes, ctx: CommandContext | None = None) -> bytes:
        """A CTAP1/U2F ISO 7816 APDU -> response data + SW1 SW2."""
        ...

    def power_cycle(self) -> None:
        """Simulated unplug/replug: drop volatile state, keep persistent state."""
        ...

    def wink(self) -> None:
        """CTAPHID WINK: show the user which device this is."""
        ...


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time(self) -> float: ...


class Random(Protocol):
    def bytes(self, n: int) -> bytes: ...

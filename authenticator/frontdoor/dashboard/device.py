"""python-fido2's synchronous client against the authenticator on the server's own loop.

Why: a PIN change or a reset from the dashboard should be a real CTAP exchange (ClientPin
key agreement, retries, the reset window and presence), and must take its turn behind the
transports' commands. ``InProcessDevice`` runs the core on a private loop, which would
bypass that ordering, so this device hops from a worker thread into the running loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from fido2.ctap import STATUS, CtapDevice, CtapError
from fido2.hid import CAPABILITY, CTAPHID

from authenticator.core.ports import CommandContext, CtapHandler

TRANSPORT = "dashboard"


class LoopDevice(CtapDevice):
    """A CtapDevice for worker threads; ``loop`` is the loop the authenticator lives on."""

    def __init__(self, handler: CtapHandler, loop: asyncio.AbstractEventLoop) -> None:
        self.handler = handler
        self.loop = loop

    @property
    def capabilities(self) -> int:
        return CAPABILITY.CBOR | CAPABILITY.NMSG

    def call(
        self,
        cmd: int,
        data: bytes = b"",
        event: threading.Event | None = None,
        on_keepalive: Callable[[STATUS], None] | None = None,
    ) -> bytes:
        if cmd != CTAPHID.CBOR:
            raise CtapError(CtapError.ERR.INVALID_COMMAND)

        async def run() -> bytes:
            return await self.handler.handle_cbor(bytes(data), CommandContext(transport=TRANSPORT))

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result()

    def close(self) -> None:
        pass

    @classmethod
    def list_devices(cls):  # type: ignore[override]
        return iter(())

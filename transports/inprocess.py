"""The emulator as a python-fido2 ``CtapDevice``, in the same process.

``fido2.ctap2.Ctap2``, ``ClientPin`` and ``Fido2Client`` are synchronous; the core is
async. The device runs the core on its own event-loop thread and forwards cancel events
and keepalive statuses between the two worlds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future

from fido2.ctap import STATUS, CtapDevice, CtapError
from fido2.hid import CAPABILITY, CTAPHID

from authenticator.core.ports import CommandContext, CtapHandler, KeepaliveStatus


class LoopThread:
    """A private asyncio loop on a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="fido-emu")
        self._thread.start()

    def run(self, coro) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)


class InProcessDevice(CtapDevice):
    """A CtapDevice backed directly by a :class:`CtapHandler` (normally ``Authenticator``)."""

    def __init__(self, handler: CtapHandler, transport: str = "usb", u2f: bool = True) -> None:
        self.handler = handler
        self.transport = transport
        self._u2f = u2f
        self._loop = LoopThread()

    @property
    def capabilities(self) -> int:
        caps = CAPABILITY.CBOR | CAPABILITY.WINK
        return caps if self._u2f else caps | CAPABILITY.NMSG

    def call(
        self,
        cmd: int,
        data: bytes = b"",
        event: threading.Event | None = None,
        on_keepalive: Callable[[STATUS], None] | None = None,
    ) -> bytes:
        if cmd == CTAPHID.PING:
            return bytes(data)
        if cmd == CTAPHID.WINK:
            self.handler.wink()
            return b""
        if cmd not in (CTAPHID.CBOR, CTAPHID.MSG):
            raise CtapError(CtapError.ERR.INVALID_COMMAND)
        last: list[int] = []

        def on_status(status: KeepaliveStatus) -> None:
            if on_keepalive is not None and (not last or last[-1] != status):
                last.append(status)
                on_keepalive(STATUS(int(status)))

        async def run() -> bytes:
            ctx = CommandContext(transport=self.transport, on_status=on_status)
            task = asyncio.ensure_future(
                self.handler.handle_cbor(bytes(data), ctx)
                if cmd == CTAPHID.CBOR
                else self.handler.handle_u2f(bytes(data), ctx)
            )
            while not task.done():
                if event is not None and event.is_set():
                    ctx.cancel.set()
                await asyncio.wait({task}, timeout=0.05)
            return task.result()

        return self._loop.run(run()).result()

    async def acall_cbor(self, data: bytes) -> bytes:
        """For async callers already on a loop: no thread hop needed."""
        return await self.handler.handle_cbor(data, CommandContext(transport=self.transport))

    def close(self) -> None:
        self._loop.stop()

    @classmethod
    def list_devices(cls) -> Iterator[CtapDevice]:
        return iter(())

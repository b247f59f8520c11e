"""The emulator as a python-fido2 ``CtapDevice``, in the same process.

``fido2.ctap2.Ctap2``, ``ClientPin`` and ``Fido2Client`` are synchronous; the core is
async. Most commands never wait (presence answers at once, the store is local), so
:meth:`InProcessDevice.call` first runs the core's coroutine directly on the caller's
thread with a private event loop marked current: a command that completes without
suspending costs no thread hop, no task and no loop iteration. A command that does wait
(a human's touch, an injected delay) continues on that same private loop, run on the
caller's thread, which also watches the caller's cancel event. Only a caller that is
itself inside a running event loop (it may not block that loop's thread with a nested
one) is served by a private loop thread, as before.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Generator, Iterator
from concurrent.futures import Future
from typing import Any

from fido2.ctap import STATUS, CtapDevice, CtapError
from fido2.hid import CAPABILITY, CTAPHID

from authenticator.core.ports import CommandContext, CtapHandler, KeepaliveStatus

CANCEL_POLL = 0.05  # how often a waiting command looks at the caller's cancel event (s)

# The running-loop marker asyncio keeps per thread. Both names are exported by asyncio
# (``asyncio._get_running_loop`` / ``asyncio._set_running_loop``) for event-loop
# implementations; setting it lets a coroutine started outside ``run_until_complete``
# create futures and tasks on our private loop if it turns out to need one.
_get_running_loop = asyncio._get_running_loop
_set_running_loop = asyncio._set_running_loop


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
        self.loop.close()


class _Continue:
    """Awaitable that continues a coroutine which already ran up to its first suspension
    (``first`` is what it yielded): the task awaiting this drives the rest, passing
    results and exceptions (cancellation included) through unchanged."""

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self._coro, self._first
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # noqa: BLE001 - handed to the coroutine as is
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    return done.value
                continue
            try:
                value = coro.send(sent)
            except StopIteration as done:
                return done.value


class InProcessDevice(CtapDevice):
    """A CtapDevice backed directly by a :class:`CtapHandler` (normally ``Authenticator``)."""

    def __init__(self, handler: CtapHandler, transport: str = "usb", u2f: bool = True) -> None:
        self.handler = handler
        self.transport = transport
        self._u2f = u2f
        self._loop = asyncio.new_event_loop()  # runs on the calling thread
        self._mutex = threading.Lock()  # one caller thread uses the private loop at a time
        self._thread: LoopThread | None = None  # only for callers inside a running loop
        self._thread_lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The private loop the core's waits run on (while a call runs on this thread):
        presence sources outside the core hand answers to it with call_soon_threadsafe."""
        return self._loop

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
        on_status = None
        if on_keepalive is not None:
            last: list[int] = []

            def on_status(status: KeepaliveStatus) -> None:
                if not last or last[-1] != status:
                    last.append(status)
                    on_keepalive(STATUS(int(status)))

        ctx = CommandContext(transport=self.transport, on_status=on_status)
        request = bytes(data)
        if _get_running_loop() is not None:
            return self._call_on_thread(cmd, request, ctx, event)
        with self._mutex:
            return self._call_here(cmd, request, ctx, event)

    def _start(self, cmd: int, request: bytes, ctx: CommandContext) -> Coroutine[Any, Any, bytes]:
        if cmd == CTAPHID.CBOR:
            return self.handler.handle_cbor(request, ctx)
        return self.handler.handle_u2f(request, ctx)

    def _call_here(
        self, cmd: int, request: bytes, ctx: CommandContext, event: threading.Event | None
    ) -> bytes:
        """Run the command on this thread: synchronously while it does not suspend, then
        (if it does) on the private loop until it is done."""
        loop = self._loop
        coro = self._start(cmd, request, ctx)
        _set_running_loop(loop)
        try:
            first = coro.send(None)
        except StopIteration as done:
            return done.value
        except BaseException:
            coro.close()
            raise
        finally:
            _set_running_loop(None)
        task = loop.create_task(_as_coroutine(_Continue(coro, first)))
        watch = None
        if event is not None:

            def poll() -> None:
                nonlocal watch
                if event.is_set():
                    ctx.cancel.set()
                elif not task.done():
                    watch = loop.call_later(CANCEL_POLL, poll)

            watch = loop.call_later(CANCEL_POLL, poll)
        try:
            return loop.run_until_complete(task)
        finally:
            if watch is not None:
                watch.cancel()

    def _call_on_thread(
        self, cmd: int, request: bytes, ctx: CommandContext, event: threading.Event | None
    ) -> bytes:
        """The caller is inside a running event loop: run on a private loop thread."""
        with self._thread_lock:
            if self._thread is None:
                self._thread = LoopThread()
            thread = self._thread

        async def run() -> bytes:
            task = asyncio.ensure_future(self._start(cmd, request, ctx))
            while not task.done():
                if event is not None and event.is_set():
                    ctx.cancel.set()
                await asyncio.wait({task}, timeout=CANCEL_POLL)
            return task.result()

        return thread.run(run()).result()

    async def acall_cbor(self, data: bytes) -> bytes:
        """For async callers already on a loop: no thread hop needed."""
        return await self.handler.handle_cbor(data, CommandContext(transport=self.transport))

    def close(self) -> None:
        with self._thread_lock:
            if self._thread is not None:
                self._thread.stop()
                self._thread = None
        with self._mutex:
            if not self._loop.is_closed():
                self._loop.close()

    @classmethod
    def list_devices(cls) -> Iterator[CtapDevice]:
        return iter(())


async def _as_coroutine(awaitable: _Continue) -> Any:
    return await awaitable

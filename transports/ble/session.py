"""The FIDO BLE authenticator's protocol logic for one link, free of D-Bus.

The GATT layer (:mod:`transports.ble.peripheral`) feeds each fidoControlPoint write into
:meth:`BleSession.feed` and sends every frame passed to ``notify`` as a fidoStatus notification.
Everything the spec asks of the authenticator between those two points lives here, so it is
testable without a kernel: reassembly (via :class:`~transports.ble.framing.Reassembler`),
PING echo, MSG dispatch to the core, KEEPALIVE every 100 ms while the core waits, CANCEL,
ERROR frames, the service revision bitfield and the control point length.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntFlag

from authenticator.core.ports import CommandContext, CtapHandler, KeepaliveStatus
from transports.ble.framing import (
    CLIENT_COMMANDS,
    DEFAULT_TIMEOUT,
    MAX_CONTROL_POINT_LENGTH,
    MIN_CONTROL_POINT_LENGTH,
    BleCommand,
    BleError,
    BleFrameError,
    BleMessage,
    Reassembler,
    error_fragment,
    fragment,
)
from transports.timers import CallLater, Timer, loop_call_later

log = logging.getLogger(__name__)

# What the engine makes up itself when the core raises (it never should): CTAP1_ERR_OTHER for
# CTAP2, SW_NO_DIAGNOSIS for U2F -- the same choice as the CTAPHID engine.
_CBOR_ERR_OTHER = bytes([0x7F])
_U2F_SW_UNKNOWN = b"\x6f\x00"


class Revision(IntFlag):
    """fidoServiceRevisionBitfield bits (CTAP 2.x "FIDO Service" table)."""

    U2F_1_1 = 0x80
    U2F_1_2 = 0x40
    FIDO2 = 0x20


def clamp_cpl(value: int) -> int:
    """A control point length inside the spec's 20..512."""
    return max(MIN_CONTROL_POINT_LENGTH, min(MAX_CONTROL_POINT_LENGTH, value))


def cpl_for_mtu(mtu: int | None, default: int) -> int:
    """Largest fragment a notification can carry on this link: ATT_MTU - 3 (opcode + handle)."""
    return clamp_cpl(default if not mtu else mtu - 3)


@dataclass
class _Running:
    """A MSG handed to the core; the link is busy until its response has been sent."""

    ctx: CommandContext
    cbor: bool
    status: KeepaliveStatus = KeepaliveStatus.PROCESSING
    task: asyncio.Task[None] | None = None
    keepalive: Timer | None = None


class BleSession:
    """One FIDO BLE link: control-point writes in, fidoStatus notifications out.

    ``notify`` is called synchronously with each outgoing frame, in order. ``lock`` is shared
    by all transports of one authenticator (one command at a time). ``u2f`` offers the U2F
    revisions next to FIDO2. Must be used from the event loop thread. ``clock`` and
    ``call_later`` are its only sense of time (tests pass fake ones).

    MSG payloads go to ``handle_u2f`` when the client selected only a U2F revision, or when the
    first byte is 0x00 (an ISO 7816 CLA byte; no CTAP2 command is 0x00) and U2F is on; every
    other payload is a CTAP2 request for ``handle_cbor``.
    """

    def __init__(
        self,
        handler: CtapHandler,
        notify: Callable[[bytes], None],
        *,
        u2f: bool = True,
        lock: asyncio.Lock | None = None,
        cpl: int = MIN_CONTROL_POINT_LENGTH,
        keepalive_interval: float = 0.1,
        request_timeout: float = DEFAULT_TIMEOUT,
        transport: str = "ble",
        clock: Callable[[], float] = time.monotonic,
        call_later: CallLater = loop_call_later,
    ) -> None:
        self.handler = handler
        self.u2f = u2f
        self.keepalive_interval = keepalive_interval
        self.request_timeout = request_timeout
        self.transport = transport
        self._notify = notify
        self._clock = clock
        self._call_later = call_later
        self._lock = lock if lock is not None else asyncio.Lock()
        self._cpl = clamp_cpl(cpl)
        self._reassembler = self._new_reassembler()
        self._timer: Timer | None = None
        self._running: _Running | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.selected: Revision | None = None

    # ------------------------------------------------------------------ properties

    @property
    def supported(self) -> Revision:
        revs = Revision.FIDO2
        return revs | Revision.U2F_1_1 | Revision.U2F_1_2 if self.u2f else revs

    @property
    def cpl(self) -> int:
        return self._cpl

    @cpl.setter
    def cpl(self, value: int) -> None:
        """Renegotiated (new MTU): applies to the next message; a partial one is dropped."""
        value = clamp_cpl(value)
        if value != self._cpl:
            self._cpl = value
            self._reassembler = self._new_reassembler()

    @property
    def busy(self) -> bool:
        return self._running is not None

    def read_revision(self) -> bytes:
        """fidoServiceRevisionBitfield read: the supported bits (the selected one, once chosen).

        The spec has the client read the supported set and write one bit; reading back
        after a selection shows that selection, which is what Chromium expects to see.
        """
        return bytes([self.selected if self.selected is not None else self.supported])

    def write_revision(self, value: bytes) -> None:
        """Select a protocol revision; ValueError (-> ATT error) unless exactly one supported bit."""
        if len(value) != 1:
            raise ValueError("revision bitfield is one byte")
        bit = value[0]
        if bit == 0 or bit & (bit - 1) or not bit & self.supported:
            raise ValueError(f"unsupported revision selection {bit:#04x}")
        self.selected = Revision(bit)
        log.debug("BLE: client selected revision %s", self.selected.name)

    # ------------------------------------------------------------------ input

    def feed(self, frame: bytes) -> None:
        """One fidoControlPoint write. Never raises: bad input is answered with an ERROR frame."""
        try:
            self._feed(bytes(frame))
        except Exception:  # a bug here must not kill the GATT server
            log.exception("BLE: internal error on frame %s", bytes(frame[:8]).hex())
            self._send_error(BleError.OTHER)

    def _feed(self, frame: bytes) -> None:
        if frame and frame[0] == BleCommand.CANCEL:
            # CANCEL is a whole message in one fragment with no response of its own; it must
            # reach a running command even though the link is otherwise busy.
            self._cancel()
            return
        if self._running is not None and frame and frame[0] & 0x80:
            self._send_error(BleError.BUSY)
            return
        result = self._reassembler.feed(frame)
        self._disarm()
        if isinstance(result, BleFrameError):
            self._send_error(result.code)
        elif isinstance(result, BleMessage):
            self._dispatch(result)
        elif self._reassembler.pending:
            self._arm()

    def _cancel(self) -> None:
        running = self._running
        if running is not None:
            log.debug("BLE: CANCEL during a running command")
            running.ctx.cancel.set()

    def _dispatch(self, message: BleMessage) -> None:
        if message.cmd == BleCommand.PING:
            self._send(BleCommand.PING, message.data)
        elif message.cmd == BleCommand.MSG:
            if not message.data:
                self._send_error(BleError.INVALID_LEN)
                return
            self._start(message.data)
        else:  # CANCEL is taken before reassembly; anything else was refused by the reassembler
            self._send_error(BleError.INVALID_CMD)

    def _is_u2f(self, data: bytes) -> bool:
        if not self.u2f:
            return False
        if self.selected is not None and not self.selected & Revision.FIDO2:
            return True
        return data[0] == 0x00

    # ------------------------------------------------------------------ commands

    def _start(self, data: bytes) -> None:
        ctx = CommandContext(transport=self.transport)
        running = _Running(ctx=ctx, cbor=not self._is_u2f(data))
        ctx.on_status = lambda status: self._on_status(running, status)
        self._running = running
        loop = asyncio.get_running_loop()
        running.task = loop.create_task(self._run(running, data))
        self._tasks.add(running.task)
        running.task.add_done_callback(self._tasks.discard)
        running.keepalive = self._call_later(
            self.keepalive_interval, lambda: self._keepalive(running)
        )

    async def _run(self, running: _Running, data: bytes) -> None:
        try:
            async with self._lock:
                if self._running is not running:
                    return  # aborted while queued behind another transport's command
                if running.cbor:
                    response = await self.handler.handle_cbor(data, running.ctx)
                else:
                    response = await self.handler.handle_u2f(data, running.ctx)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("BLE: handler failed")
            response = _CBOR_ERR_OTHER if running.cbor else _U2F_SW_UNKNOWN
        if self._running is not running:
            return  # link reset: nobody to answer
        self._finish(running)
        try:
            self._send(BleCommand.MSG, bytes(response))
        except ValueError:
            log.error("BLE: response of %d bytes does not fit BLE framing", len(response))
            self._send_error(BleError.OTHER)

    def _on_status(self, running: _Running, status: KeepaliveStatus) -> None:
        if self._running is not running:
            return
        changed = status != running.status
        running.status = KeepaliveStatus(status)
        if changed:
            self._keepalive(running)  # tell the client at once ("touch your key")

    def _keepalive(self, running: _Running) -> None:
        if self._running is not running:
            return
        if running.keepalive is not None:
            running.keepalive.cancel()
        self._send(BleCommand.KEEPALIVE, bytes([running.status]))
        running.keepalive = self._call_later(
            self.keepalive_interval, lambda: self._keepalive(running)
        )

    def _finish(self, running: _Running) -> None:
        if running.keepalive is not None:
            running.keepalive.cancel()
        if self._running is running:
            self._running = None

    # ------------------------------------------------------------------ lifecycle

    def reset(self) -> None:
        """The link went away (disconnect, notifications stopped): drop partial and running work.

        A running command is cancelled, not killed, so the core unwinds and storage writes stay
        whole; its late response is discarded. The revision selection is per connection.
        """
        self._disarm()
        self._reassembler = self._new_reassembler()
        running, self._running = self._running, None
        if running is not None:
            running.ctx.cancel.set()
            if running.keepalive is not None:
                running.keepalive.cancel()
        self.selected = None

    def power_cycle(self) -> None:
        """Simulated power loss: the link state goes, then the core's volatile state."""
        self.reset()
        self.handler.power_cycle()

    async def aclose(self) -> None:
        self.reset()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ helpers

    def _new_reassembler(self) -> Reassembler:
        return Reassembler(
            self._cpl, commands=CLIENT_COMMANDS, timeout=self.request_timeout, clock=self._clock
        )

    def _arm(self) -> None:
        self._timer = self._call_later(self.request_timeout, self._on_timeout)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        # Every write disarms and re-arms this timer, so when it runs the partial message has
        # been idle for ``request_timeout``. (Asking the reassembler's clock instead re-armed a
        # whole period whenever the loop fired the timer a hair early.)
        self._timer = None
        error = self._reassembler.expire()
        if error is not None:
            self._send_error(error.code)

    def _send_error(self, code: BleError) -> None:
        self._emit(error_fragment(code))

    def _send(self, cmd: int, data: bytes) -> None:
        for frame in fragment(cmd, data, self._cpl):
            self._emit(frame)

    def _emit(self, frame: bytes) -> None:
        try:
            self._notify(frame)
        except Exception:
            log.exception("BLE: failed to send a notification")

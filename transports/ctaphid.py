"""The CTAPHID framing engine (CTAP 2.1 §11.2 "USB Human Interface Device"), free of I/O.

Every HID-shaped transport (UHID, the configfs gadget, the UDP simulator) feeds 64-byte
host→device reports into :meth:`CtapHidEngine.feed` and gets 64-byte device→host reports back
through a send callback. The engine owns channels, reassembly, timeouts, LOCK, CANCEL and
KEEPALIVE; the core only ever sees whole CTAP2 requests or U2F APDUs, as bytes.

Where the spec is silent the engine follows what SoloKeys' firmware and libfido2 expect;
each such choice is marked "spec silent" below.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from authenticator.core.ports import CommandContext, CtapHandler, KeepaliveStatus
from transports.timers import CallLater, Timer, loop_call_later

log = logging.getLogger(__name__)

REPORT_SIZE = 64
INIT_DATA_SIZE = REPORT_SIZE - 7  # CID(4) CMD(1) BCNTH(1) BCNTL(1)
CONT_DATA_SIZE = REPORT_SIZE - 5  # CID(4) SEQ(1)
MAX_MESSAGE_SIZE = INIT_DATA_SIZE + 128 * CONT_DATA_SIZE  # 7609
BROADCAST_CID = 0xFFFFFFFF
PROTOCOL_VERSION = 2
TYPE_INIT = 0x80
MAX_LOCK_SECONDS = 10

# CTAP2_ERR_KEEPALIVE_CANCEL / CTAP1_ERR_OTHER and the U2F "no specific diagnosis" status word:
# the only response bytes the engine ever makes up itself (when the handler raises).
_CBOR_ERR_OTHER = bytes([0x7F])
_U2F_SW_UNKNOWN = b"\x6f\x00"


class Cmd(IntEnum):
    """CTAPHID command codes (without the 0x80 init-packet bit)."""

    PING = 0x01
    MSG = 0x03
    LOCK = 0x04
    INIT = 0x06
    WINK = 0x08
    CBOR = 0x10
    CANCEL = 0x11
    KEEPALIVE = 0x3B
    ERROR = 0x3F


class HidError(IntEnum):
    """Payload byte of a CTAPHID_ERROR response."""

    INVALID_CMD = 0x01
    INVALID_PAR = 0x02
    INVALID_LEN = 0x03
    INVALID_SEQ = 0x04
    MSG_TIMEOUT = 0x05
    CHANNEL_BUSY = 0x06
    LOCK_REQUIRED = 0x0A
    INVALID_CHANNEL = 0x0B
    OTHER = 0x7F


class Capability(IntFlag):
    """CTAPHID_INIT capability flags (CTAP 2.1 §11.2.9.1.3)."""

    WINK = 0x01
    CBOR = 0x04
    NMSG = 0x08


def fragment(cid: int, cmd: int, data: bytes, report_size: int = REPORT_SIZE) -> list[bytes]:
    """Split one CTAPHID message into zero-padded reports (init packet, then SEQ 0, 1, ...).

    Used by the engine for responses and by tests/clients for requests.
    """
    if len(data) > (report_size - 7) + 128 * (report_size - 5):
        raise ValueError("CTAPHID message too long")
    head = struct.pack(">IBH", cid, TYPE_INIT | cmd, len(data))
    first = report_size - 7
    reports = [(head + data[:first]).ljust(report_size, b"\0")]
    step = report_size - 5
    for seq, offset in enumerate(range(first, len(data), step)):
        chunk = data[offset : offset + step]
        reports.append((struct.pack(">IB", cid, seq) + chunk).ljust(report_size, b"\0"))
    return reports


@dataclass
class _Receiving:
    """A message whose init packet arrived and whose continuation packets are awaited."""

    cid: int
    cmd: int
    length: int
    buf: bytearray
    seq: int = 0
    timer: Timer | None = None


@dataclass
class _Processing:
    """A whole request handed to the core; the device stays busy until the response is sent."""

    cid: int
    cmd: int
    ctx: CommandContext
    status: KeepaliveStatus = KeepaliveStatus.PROCESSING
    task: asyncio.Task[None] | None = None
    keepalive: Timer | None = None


@dataclass
class _Lock:
    cid: int
    until: float


class CtapHidEngine:
    """One CTAPHID device: channels, reassembly, dispatch to a :class:`CtapHandler`.

    ``send`` is called synchronously with each 64-byte device→host report, in order; a
    transport whose writes may block (``/dev/hidgN``) queues them itself. ``lock`` is shared
    between the transports of one authenticator so that only one command runs at a time.
    ``feed`` must be called from the event loop thread. ``adopt_cid(cid)`` decides whether a
    request on a CID never allocated opens it (Solo's simulator does; UDP uses it); without it
    only INIT adopts such a CID and anything else gets INVALID_CHANNEL.
    ``clock`` and ``call_later`` (read the time, arm a timer) are the engine's only sense of
    time, so tests can replace both.
    """

    def __init__(
        self,
        handler: CtapHandler,
        send: Callable[[bytes], None],
        *,
        u2f: bool = True,
        device_version: tuple[int, int, int] = (1, 0, 0),
        transport: str = "usb",
        lock: asyncio.Lock | None = None,
        msg_timeout: float = 0.75,
        keepalive_interval: float = 0.1,
        max_channels: int = 256,
        clock: Callable[[], float] = time.monotonic,
        call_later: CallLater = loop_call_later,
        random_bytes: Callable[[int], bytes] = os.urandom,
        adopt_cid: Callable[[int], bool] | None = None,
    ) -> None:
        self.handler = handler
        self.u2f = u2f
        self.device_version = device_version
        self.transport = transport
        self.msg_timeout = msg_timeout
        self.keepalive_interval = keepalive_interval
        self.max_channels = max_channels
        self._send_report = send
        self._lock = lock if lock is not None else asyncio.Lock()
        self._clock = clock
        self._call_later = call_later
        self._random = random_bytes
        self._adopt_cid = adopt_cid
        self._channels: OrderedDict[int, None] = OrderedDict()
        self._txn: _Receiving | _Processing | None = None
        self._channel_lock: _Lock | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------- public API

    @property
    def capabilities(self) -> Capability:
        caps = Capability.WINK | Capability.CBOR
        return caps if self.u2f else caps | Capability.NMSG

    @property
    def busy(self) -> bool:
        """True while a transaction (reassembly or a running command) holds the device."""
        return self._txn is not None

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(self._channels)

    def feed(self, report: bytes) -> None:
        """Consume one host→device report. Never raises: bad input gets an ERROR or is ignored."""
        try:
            self._feed(bytes(report))
        except Exception:  # a bug here must not kill the transport's reader
            log.exception("CTAPHID: internal error on report %s", bytes(report[:8]).hex())
            self._abort_transaction()

    def power_cycle(self) -> None:
        """Simulated replug: all channels, locks and pending messages vanish, then the core's."""
        self.reset_link()
        self.handler.power_cycle()

    def reset_link(self, *, keep_channels: bool = False) -> None:
        """The engine's half of a power cycle: pending messages and LOCK vanish; channels too
        unless ``keep_channels`` (a simulator reboot the host never saw as a re-enumeration)."""
        self._abort_transaction()
        if not keep_channels:
            self._channels.clear()
        self._channel_lock = None

    async def aclose(self) -> None:
        """Stop timers and running commands (on transport shutdown)."""
        self._abort_transaction()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ packet handling

    def _feed(self, report: bytes) -> None:
        if len(report) < 5:
            return  # not even a CID and a command/sequence byte: nothing to answer to
        report = report[:REPORT_SIZE].ljust(REPORT_SIZE, b"\0")
        cid, kind = struct.unpack_from(">IB", report)
        if kind & TYPE_INIT:
            length = (report[5] << 8) | report[6]
            self._on_init_packet(
                cid, kind & 0x7F, length, report[7 : 7 + min(length, INIT_DATA_SIZE)]
            )
        else:
            self._on_continuation(cid, kind, report[5:])

    def _on_init_packet(self, cid: int, cmd: int, length: int, data: bytes) -> None:
        if cmd == Cmd.CANCEL:
            # §11.2.9.1.5: no response to CANCEL; ignored unless it names the running command.
            self._on_cancel(cid)
            return
        if cid == 0:
            self._error(cid, HidError.INVALID_CHANNEL)
            return
        if cmd == Cmd.INIT:
            self._on_init(cid, length, data)
            return
        if cid == BROADCAST_CID:
            self._error(cid, HidError.INVALID_CHANNEL)
            return
        if self._locked_against(cid):
            # §11.2.9.2.2: "any other channel trying to send a message will fail". The spec
            # names no code; CHANNEL_BUSY makes clients (python-fido2, libfido2) retry later.
            self._error(cid, HidError.CHANNEL_BUSY)
            return
        txn = self._txn
        if txn is not None and txn.cid != cid:
            # §11.2.5.3: a request from "a different channel" while busy fails with BUSY at once,
            # allocated or not (Solo's order too: busy is checked before the channel table).
            self._error(cid, HidError.CHANNEL_BUSY)
            return
        if cid not in self._channels:
            if self._adopt_cid is None or not self._adopt_cid(cid):
                self._error(cid, HidError.INVALID_CHANNEL)
                return
            self._adopt(cid)
        if txn is not None:
            if txn.cid != cid or isinstance(txn, _Processing):
                # §11.2.5.1: another channel's request while busy fails at once. Spec silent on
                # a second request from the channel whose command is running; BUSY, like Solo.
                self._error(cid, HidError.CHANNEL_BUSY)
            else:
                # Spec silent: a new init packet on the channel mid-reassembly. Solo and
                # OpenSK-style engines drop the partial message and answer INVALID_SEQ.
                self._abort_transaction()
                self._error(cid, HidError.INVALID_SEQ)
            return
        if not self._supported(cmd):
            self._error(cid, HidError.INVALID_CMD)
            return
        if length > MAX_MESSAGE_SIZE:
            self._error(cid, HidError.INVALID_LEN)
            return
        self._channels.move_to_end(cid)
        if length <= INIT_DATA_SIZE:
            self._dispatch(cid, cmd, bytes(data))
            return
        rx = _Receiving(cid=cid, cmd=cmd, length=length, buf=bytearray(data))
        self._txn = rx
        self._arm_timeout(rx)

    def _on_continuation(self, cid: int, seq: int, data: bytes) -> None:
        rx = self._txn
        if not isinstance(rx, _Receiving) or rx.cid != cid:
            return  # §11.2.5.4: spurious continuation packets are ignored
        if seq != rx.seq:
            self._abort_transaction()
            self._error(cid, HidError.INVALID_SEQ)
            return
        rx.seq += 1
        rx.buf += data[: rx.length - len(rx.buf)]
        if len(rx.buf) < rx.length:
            self._arm_timeout(rx)
            return
        if rx.timer is not None:
            rx.timer.cancel()
        self._txn = None
        self._dispatch(cid, rx.cmd, bytes(rx.buf))

    def _arm_timeout(self, rx: _Receiving) -> None:
        # Spec silent on the value; measured from the latest packet, as Solo does (750 ms),
        # so that a slow but live host (a TCG guest) is not cut off mid-message.
        if rx.timer is not None:
            rx.timer.cancel()
        rx.timer = self._call_later(self.msg_timeout, lambda: self._on_timeout(rx))

    def _on_timeout(self, rx: _Receiving) -> None:
        if self._txn is rx:
            self._txn = None
            log.debug("CTAPHID: channel %08x timed out mid-message", rx.cid)
            self._error(rx.cid, HidError.MSG_TIMEOUT)

    def _on_init(self, cid: int, length: int, nonce: bytes) -> None:
        if length != 8:
            self._error(cid, HidError.INVALID_LEN)
            return
        txn = self._txn
        if self._locked_against(cid) or (isinstance(txn, _Processing) and txn.cid != cid):
            # A broadcast INIT while another channel's command runs gets BUSY (python-fido2
            # and libfido2 retry on it); so does any INIT while another channel holds LOCK.
            self._error(cid, HidError.CHANNEL_BUSY)
            return
        if txn is not None and txn.cid == cid:
            # §11.2.5.3: INIT on the active channel aborts its transaction and resyncs.
            self._abort_transaction()
        # Spec silent (docs/conformance.md): INIT never disturbs another channel's message being
        # reassembled, and INIT on a CID we never handed out adopts it, as Solo's firmware does
        # (the suite depends on both). Adoption grants nothing: any host on a HID bus can already
        # write to any CID. ``adopt_cid`` may refuse (UDP: a CID another client address holds).
        if cid != BROADCAST_CID and cid not in self._channels:
            if self._adopt_cid is not None and not self._adopt_cid(cid):
                self._error(cid, HidError.INVALID_CHANNEL)
                return
        new_cid = self._allocate() if cid == BROADCAST_CID else self._adopt(cid)
        major, minor, build = self.device_version
        payload = nonce + struct.pack(
            ">IBBBBB", new_cid, PROTOCOL_VERSION, major, minor, build, int(self.capabilities)
        )
        self._send(cid, Cmd.INIT, payload)

    def _on_cancel(self, cid: int) -> None:
        txn = self._txn
        if isinstance(txn, _Processing) and txn.cid == cid and txn.cmd == Cmd.CBOR:
            txn.ctx.cancel.set()

    def _supported(self, cmd: int) -> bool:
        if cmd == Cmd.MSG:
            return self.u2f
        return cmd in (Cmd.PING, Cmd.LOCK, Cmd.WINK, Cmd.CBOR)

    # ----------------------------------------------------------------- dispatch

    def _dispatch(self, cid: int, cmd: int, data: bytes) -> None:
        if cmd == Cmd.PING:
            self._send(cid, Cmd.PING, data)
        elif cmd == Cmd.WINK:
            if data:
                self._error(cid, HidError.INVALID_LEN)
                return
            self.handler.wink()
            self._send(cid, Cmd.WINK, b"")
        elif cmd == Cmd.LOCK:
            self._do_lock(cid, data)
        elif not data:
            # Neither a CTAP2 request nor an APDU can be empty (Solo answers the same way).
            self._error(cid, HidError.INVALID_LEN)
        else:
            self._start_command(cid, cmd, data)

    def _do_lock(self, cid: int, data: bytes) -> None:
        if len(data) != 1:
            self._error(cid, HidError.INVALID_LEN)
            return
        seconds = data[0]
        if seconds > MAX_LOCK_SECONDS:
            self._error(cid, HidError.INVALID_PAR)
            return
        self._channel_lock = _Lock(cid, self._clock() + seconds) if seconds else None
        self._send(cid, Cmd.LOCK, b"")

    def _locked_against(self, cid: int) -> bool:
        lk = self._channel_lock
        if lk is None:
            return False
        if self._clock() >= lk.until:
            self._channel_lock = None
            return False
        return lk.cid != cid

    def _start_command(self, cid: int, cmd: int, data: bytes) -> None:
        ctx = CommandContext(transport=self.transport, channel=cid)
        proc = _Processing(cid=cid, cmd=cmd, ctx=ctx)
        ctx.on_status = lambda status: self._on_status(proc, status)
        self._txn = proc
        loop = asyncio.get_running_loop()
        proc.task = loop.create_task(self._run(proc, data))
        self._tasks.add(proc.task)
        proc.task.add_done_callback(self._tasks.discard)
        if cmd == Cmd.CBOR:  # U2F over HID has no keepalive: the core answers at once
            proc.keepalive = self._call_later(
                self.keepalive_interval, lambda: self._keepalive(proc)
            )

    async def _run(self, proc: _Processing, data: bytes) -> None:
        try:
            async with self._lock:
                if self._txn is not proc:
                    return  # aborted (resync or power cycle) while queued behind another command
                if proc.cmd == Cmd.CBOR:
                    response = await self.handler.handle_cbor(data, proc.ctx)
                else:
                    response = await self.handler.handle_u2f(data, proc.ctx)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("CTAPHID: handler failed on channel %08x", proc.cid)
            response = _CBOR_ERR_OTHER if proc.cmd == Cmd.CBOR else _U2F_SW_UNKNOWN
        if self._txn is not proc:
            return  # aborted: the response has nobody to go to
        self._finish(proc)
        if len(response) > MAX_MESSAGE_SIZE:
            log.error("CTAPHID: response of %d bytes does not fit a message", len(response))
            self._error(proc.cid, HidError.OTHER)
            return
        self._send(proc.cid, proc.cmd, bytes(response))

    def _on_status(self, proc: _Processing, status: KeepaliveStatus) -> None:
        if self._txn is not proc or proc.cmd != Cmd.CBOR:
            return
        changed = status != proc.status
        proc.status = KeepaliveStatus(status)
        if changed:
            # Tell the client at once (it prompts "touch your key"), then keep the 100 ms beat.
            self._keepalive(proc)

    def _keepalive(self, proc: _Processing) -> None:
        if self._txn is not proc:
            return
        if proc.keepalive is not None:
            proc.keepalive.cancel()
        self._send(proc.cid, Cmd.KEEPALIVE, bytes([proc.status]))
        proc.keepalive = self._call_later(self.keepalive_interval, lambda: self._keepalive(proc))

    def _finish(self, proc: _Processing) -> None:
        if proc.keepalive is not None:
            proc.keepalive.cancel()
        if self._txn is proc:
            self._txn = None

    def _abort_transaction(self) -> None:
        """Drop the current transaction; a running command is told to cancel, not killed.

        Letting the core unwind on its own keeps storage writes whole; its late response is
        discarded, and the shared lock keeps the next command waiting until it has returned.
        """
        txn, self._txn = self._txn, None
        if isinstance(txn, _Receiving):
            if txn.timer is not None:
                txn.timer.cancel()
        elif isinstance(txn, _Processing):
            txn.ctx.cancel.set()
            if txn.keepalive is not None:
                txn.keepalive.cancel()

    # ------------------------------------------------------------------ helpers

    def _adopt(self, cid: int) -> int:
        if cid not in self._channels:
            self._make_room()
            self._channels[cid] = None
        self._channels.move_to_end(cid)
        return cid

    def _allocate(self) -> int:
        self._make_room()
        while True:
            cid = int.from_bytes(self._random(4), "big")
            if cid not in (0, BROADCAST_CID) and cid not in self._channels:
                self._channels[cid] = None
                return cid

    def _make_room(self) -> None:
        """Evict the least recently used idle channels until one more fits."""
        while len(self._channels) >= self.max_channels:
            busy = {t.cid for t in (self._txn,) if t is not None}
            if self._channel_lock is not None:
                busy.add(self._channel_lock.cid)
            victim = next((c for c in self._channels if c not in busy), None)
            if victim is None:
                break
            del self._channels[victim]

    def _error(self, cid: int, code: HidError) -> None:
        self._send(cid, Cmd.ERROR, bytes([code]))

    def _send(self, cid: int, cmd: int, data: bytes) -> None:
        for report in fragment(cid, cmd, data):
            try:
                self._send_report(report)
            except Exception:
                log.exception("CTAPHID: transport failed to send a report")
                return

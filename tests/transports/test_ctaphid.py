"""CTAPHID engine against a fake core: framing, channels, errors, keepalive, cancel, lock."""

from __future__ import annotations

import asyncio
import itertools
import os
import struct
from collections.abc import Awaitable, Callable

import pytest

from authenticator.core.ports import CommandContext, KeepaliveStatus
from tests.transports.timing import FakeTime, WatchedLock
from transports.ctaphid import (
    BROADCAST_CID,
    MAX_MESSAGE_SIZE,
    REPORT_SIZE,
    Capability,
    Cmd,
    CtapHidEngine,
    HidError,
    fragment,
)

Script = Callable[[bytes, CommandContext], Awaitable[bytes]]


class FakeHandler:
    """Echoes CBOR as status 0 + request; U2F as request + 9000; ``script`` overrides CBOR."""

    def __init__(self) -> None:
        self.script: Script | None = None
        self.cbor: list[bytes] = []
        self.u2f: list[bytes] = []
        self.winks = 0
        self.power_cycles = 0

    async def handle_cbor(self, request: bytes, ctx: CommandContext | None = None) -> bytes:
        assert ctx is not None
        self.cbor.append(request)
        if self.script is not None:
            return await self.script(request, ctx)
        return b"\x00" + request

    async def handle_u2f(self, apdu: bytes, ctx: CommandContext | None = None) -> bytes:
        self.u2f.append(apdu)
        return apdu + b"\x90\x00"

    def power_cycle(self) -> None:
        self.power_cycles += 1

    def wink(self) -> None:
        self.winks += 1


def counting_random() -> Callable[[int], bytes]:
    """Channel ids 1, 2, 3, ... so that tests (and hypothesis) can aim at allocated channels."""
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


class Host:
    """The host side: writes reports, reads and reassembles the device's reports.

    The engine runs on fake time: its timers fire only when a test calls ``clock.advance``.
    ``sent_at`` records the fake time of every report the device sent.
    """

    def __init__(self, **options: object) -> None:
        self.handler = FakeHandler()
        self.clock = FakeTime()
        self.out: asyncio.Queue[bytes] = asyncio.Queue()
        self.sent_at: list[tuple[float, bytes]] = []
        options.setdefault("clock", self.clock)
        options.setdefault("call_later", self.clock.call_later)
        options.setdefault("random_bytes", counting_random())
        self.engine = CtapHidEngine(self.handler, self._sent, **options)  # type: ignore[arg-type]

    def _sent(self, report: bytes) -> None:
        self.sent_at.append((self.clock.now, report))
        self.out.put_nowait(report)

    def write(self, cid: int, cmd: int, data: bytes = b"") -> None:
        for report in fragment(cid, cmd, data):
            self.engine.feed(report)

    async def read_report(self, timeout: float = 2.0) -> bytes:
        report = await asyncio.wait_for(self.out.get(), timeout)
        assert len(report) == REPORT_SIZE
        return report

    async def read(self, timeout: float = 2.0) -> tuple[int, int, bytes]:
        """One whole message: (cid, cmd, data)."""
        report = await self.read_report(timeout)
        cid, cmd, length = struct.unpack_from(">IBH", report)
        assert cmd & 0x80, "expected an init packet"
        data = report[7 : 7 + length]
        seq = 0
        while len(data) < length:
            cont = await self.read_report(timeout)
            ccid, cseq = struct.unpack_from(">IB", cont)
            assert (ccid, cseq) == (cid, seq)
            data += cont[5 : 5 + length - len(data)]
            seq += 1
        return cid, cmd & 0x7F, data

    async def response(self) -> tuple[int, int, bytes]:
        """The next message that is not a KEEPALIVE."""
        while (msg := await self.read())[1] == Cmd.KEEPALIVE:
            pass
        return msg

    async def call(self, cid: int, cmd: int, data: bytes = b"") -> tuple[int, bytes]:
        """Send a request, skip keepalives, return (cmd, data) of the response."""
        self.write(cid, cmd, data)
        while True:
            rcid, rcmd, rdata = await self.read()
            assert rcid == cid
            if rcmd != Cmd.KEEPALIVE:
                return rcmd, rdata

    async def init(self, cid: int = BROADCAST_CID) -> int:
        nonce = os.urandom(8)
        cmd, data = await self.call(cid, Cmd.INIT, nonce)
        assert cmd == Cmd.INIT
        assert data[:8] == nonce
        return int.from_bytes(data[8:12], "big")

    def assert_silent(self) -> None:
        assert self.out.empty(), self.out.get_nowait().hex()


def error(code: HidError) -> tuple[int, bytes]:
    return Cmd.ERROR, bytes([code])


# --------------------------------------------------------------------------- INIT / channels


async def test_init_allocates_channel_and_reports_versions_and_caps() -> None:
    host = Host(device_version=(2, 5, 9))
    nonce = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    host.write(BROADCAST_CID, Cmd.INIT, nonce)
    cid, cmd, data = await host.read()
    assert (cid, cmd, len(data)) == (BROADCAST_CID, Cmd.INIT, 17)
    new_cid, proto, major, minor, build, caps = struct.unpack(">IBBBBB", data[8:])
    assert data[:8] == nonce
    assert new_cid not in (0, BROADCAST_CID)
    assert (proto, major, minor, build) == (2, 2, 5, 9)
    assert caps == Capability.WINK | Capability.CBOR  # U2F on: no NMSG
    assert new_cid in host.engine.channels
    second = await host.init()
    assert second != new_cid


async def test_nmsg_and_invalid_cmd_when_u2f_disabled() -> None:
    host = Host(u2f=False)
    host.write(BROADCAST_CID, Cmd.INIT, bytes(8))
    _, _, data = await host.read()
    assert data[16] == Capability.WINK | Capability.CBOR | Capability.NMSG
    cid = int.from_bytes(data[8:12], "big")
    assert await host.call(cid, Cmd.MSG, b"\x00\x03\x00\x00") == error(HidError.INVALID_CMD)


async def test_init_on_allocated_channel_resyncs_same_cid() -> None:
    host = Host()
    cid = await host.init()
    assert await host.init(cid) == cid


async def test_init_resync_aborts_reassembly_on_that_channel() -> None:
    host = Host()
    cid = await host.init()
    host.engine.feed(fragment(cid, Cmd.PING, bytes(200))[0])
    assert host.engine.busy
    assert await host.init(cid) == cid
    assert not host.engine.busy
    assert await host.call(cid, Cmd.PING, b"ok") == (Cmd.PING, b"ok")


async def test_invalid_channel_cases() -> None:
    host = Host()
    cid = await host.init()
    assert await host.call(0, Cmd.INIT, bytes(8)) == error(HidError.INVALID_CHANNEL)
    assert await host.call(0, Cmd.PING, b"x") == error(HidError.INVALID_CHANNEL)
    assert await host.call(BROADCAST_CID, Cmd.PING, b"x") == error(HidError.INVALID_CHANNEL)
    assert await host.call(cid + 100, Cmd.PING, b"x") == error(HidError.INVALID_CHANNEL)


async def test_init_on_never_allocated_cid_adopts_it() -> None:
    """Spec silent; Solo's firmware (and the fido2-tests busy/abort tests) adopt the CID."""
    host = Host()
    assert await host.init(0x11223344) == 0x11223344
    assert 0x11223344 in host.engine.channels
    assert await host.call(0x11223344, Cmd.PING, b"x") == (Cmd.PING, b"x")


async def test_init_from_another_channel_leaves_reassembly_alone() -> None:
    host = Host()
    a = await host.init()
    reports = fragment(a, Cmd.PING, bytes(100))
    host.engine.feed(reports[0])
    b = await host.init()  # answered at once, a's message is still being received
    assert await host.init(0x01020304) == 0x01020304
    assert host.engine.busy
    host.engine.feed(reports[1])
    assert await host.read() == (a, Cmd.PING, bytes(100))
    assert await host.call(b, Cmd.PING, b"b") == (Cmd.PING, b"b")


async def test_other_channel_gets_busy_before_invalid_channel() -> None:
    """§11.2.5.3: a different channel's request while busy fails with BUSY, allocated or not."""
    host = Host()
    a = await host.init()
    host.engine.feed(fragment(a, Cmd.PING, bytes(100))[0])
    assert await host.call(0x55667788, Cmd.PING, b"x") == error(HidError.CHANNEL_BUSY)


async def test_init_with_wrong_length() -> None:
    host = Host()
    assert await host.call(BROADCAST_CID, Cmd.INIT, bytes(4)) == error(HidError.INVALID_LEN)


async def test_power_cycle_drops_channels_and_calls_core() -> None:
    host = Host()
    cid = await host.init()
    host.engine.power_cycle()
    assert host.handler.power_cycles == 1
    assert await host.call(cid, Cmd.PING, b"x") == error(HidError.INVALID_CHANNEL)
    await host.init()


async def test_channel_table_is_bounded() -> None:
    host = Host(max_channels=4)
    cids = [await host.init() for _ in range(10)]
    assert len(host.engine.channels) == 4
    assert await host.call(cids[-1], Cmd.PING, b"x") == (Cmd.PING, b"x")
    assert await host.call(cids[0], Cmd.PING, b"x") == error(HidError.INVALID_CHANNEL)


# ------------------------------------------------------------------ framing and plain commands


@pytest.mark.parametrize("size", [0, 1, 57, 58, 116, 117, 1000, MAX_MESSAGE_SIZE])
async def test_ping_echo_all_sizes(size: int) -> None:
    host = Host()
    cid = await host.init()
    payload = os.urandom(size)
    assert await host.call(cid, Cmd.PING, payload) == (Cmd.PING, payload)


async def test_fragment_report_count() -> None:
    assert len(fragment(1, Cmd.PING, bytes(MAX_MESSAGE_SIZE))) == 129
    assert len(fragment(1, Cmd.PING, bytes(57))) == 1
    assert len(fragment(1, Cmd.PING, bytes(58))) == 2
    with pytest.raises(ValueError):
        fragment(1, Cmd.PING, bytes(MAX_MESSAGE_SIZE + 1))


async def test_declared_length_over_max_is_invalid_len() -> None:
    host = Host()
    cid = await host.init()
    report = struct.pack(">IBH", cid, 0x80 | Cmd.PING, MAX_MESSAGE_SIZE + 1).ljust(64, b"\0")
    host.engine.feed(report)
    assert (await host.read())[1:] == error(HidError.INVALID_LEN)
    assert not host.engine.busy


async def test_short_reports_are_padded() -> None:
    """UDP clients may send fewer than 64 bytes; the missing tail is zeros."""
    host = Host()
    cid = await host.init()
    host.engine.feed(struct.pack(">IBH", cid, 0x80 | Cmd.PING, 3) + b"abc")
    assert await host.read() == (cid, Cmd.PING, b"abc")
    host.engine.feed(b"\x00\x00")  # too short to mean anything: ignored
    host.assert_silent()


async def test_cbor_and_msg_reach_handler_whole() -> None:
    host = Host()
    cid = await host.init()
    request = b"\x01" + os.urandom(3000)
    assert await host.call(cid, Cmd.CBOR, request) == (Cmd.CBOR, b"\x00" + request)
    assert host.handler.cbor == [request]
    apdu = b"\x00\x03\x00\x00"
    assert await host.call(cid, Cmd.MSG, apdu) == (Cmd.MSG, apdu + b"\x90\x00")
    assert host.handler.u2f == [apdu]


async def test_empty_cbor_is_invalid_len() -> None:
    host = Host()
    cid = await host.init()
    assert await host.call(cid, Cmd.CBOR, b"") == error(HidError.INVALID_LEN)
    assert host.handler.cbor == []


async def test_wink() -> None:
    host = Host()
    cid = await host.init()
    assert await host.call(cid, Cmd.WINK) == (Cmd.WINK, b"")
    assert host.handler.winks == 1


@pytest.mark.parametrize("cmd", [0x00, 0x02, 0x05, 0x3B, 0x3F, 0x40, 0x7F])
async def test_unknown_commands_are_invalid_cmd(cmd: int) -> None:
    host = Host()
    cid = await host.init()
    assert await host.call(cid, cmd, b"x") == error(HidError.INVALID_CMD)


async def test_handler_exception_becomes_ctap_error_not_traceback() -> None:
    host = Host()
    cid = await host.init()

    async def boom(request: bytes, ctx: CommandContext) -> bytes:
        raise RuntimeError("bug in core")

    host.handler.script = boom
    assert await host.call(cid, Cmd.CBOR, b"\x04") == (Cmd.CBOR, b"\x7f")
    assert await host.call(cid, Cmd.PING, b"still") == (Cmd.PING, b"still")


# ------------------------------------------------------------------------ sequencing errors


async def test_wrong_sequence_is_invalid_seq_and_channel_recovers() -> None:
    host = Host()
    cid = await host.init()
    reports = fragment(cid, Cmd.PING, bytes(200))
    host.engine.feed(reports[0])
    host.engine.feed(reports[2])  # SEQ 1 where 0 was due
    assert (await host.read())[1:] == error(HidError.INVALID_SEQ)
    assert not host.engine.busy
    host.engine.feed(reports[3])  # left-over continuation: spurious, ignored
    host.assert_silent()
    assert await host.call(cid, Cmd.PING, b"again") == (Cmd.PING, b"again")


async def test_new_init_packet_mid_reassembly_is_invalid_seq() -> None:
    host = Host()
    cid = await host.init()
    host.engine.feed(fragment(cid, Cmd.PING, bytes(200))[0])
    host.engine.feed(fragment(cid, Cmd.PING, b"x")[0])
    assert (await host.read())[1:] == error(HidError.INVALID_SEQ)
    assert not host.engine.busy


async def test_spurious_continuation_is_ignored() -> None:
    host = Host()
    cid = await host.init()
    host.engine.feed(struct.pack(">IB", cid, 0).ljust(64, b"\xaa"))
    host.engine.feed(struct.pack(">IB", BROADCAST_CID, 5).ljust(64, b"\xaa"))
    host.engine.feed(struct.pack(">IB", 0, 0).ljust(64, b"\xaa"))
    host.assert_silent()


async def test_msg_timeout_within_spec_window_from_the_latest_packet() -> None:
    host = Host()
    cid = await host.init()
    reports = fragment(cid, Cmd.PING, bytes(200))
    host.engine.feed(reports[0])
    host.clock.advance(0.5)  # the spec's window is 0.5 .. 1 s: not yet
    host.engine.feed(reports[1])  # a slow but live host: the wait starts again
    host.clock.advance(0.5)
    host.assert_silent()
    assert host.engine.busy
    host.clock.advance(0.5)  # 1 s after the latest packet: timed out
    assert await host.read() == (cid, Cmd.ERROR, bytes([HidError.MSG_TIMEOUT]))
    assert not host.engine.busy
    host.clock.advance(10)
    host.assert_silent()  # once only
    assert await host.call(cid, Cmd.PING, b"ok") == (Cmd.PING, b"ok")


# ------------------------------------------------------------------------------- busy / lock


async def test_channel_busy_during_reassembly_and_processing() -> None:
    host = Host()
    a = await host.init()
    b = await host.init()
    host.engine.feed(fragment(a, Cmd.PING, bytes(100))[0])
    assert await host.call(b, Cmd.PING, b"x") == error(HidError.CHANNEL_BUSY)
    host.engine.feed(fragment(a, Cmd.PING, bytes(100))[1])
    assert await host.read() == (a, Cmd.PING, bytes(100))

    release = asyncio.Event()

    async def slow(request: bytes, ctx: CommandContext) -> bytes:
        await release.wait()
        return b"\x00"

    host.handler.script = slow
    host.write(a, Cmd.CBOR, b"\x04")
    assert await host.call(b, Cmd.CBOR, b"\x04") == error(HidError.CHANNEL_BUSY)
    assert await host.call(BROADCAST_CID, Cmd.INIT, bytes(8)) == error(HidError.CHANNEL_BUSY)
    host.write(a, Cmd.PING, b"x")  # same channel, command still running
    msg = await host.response()
    assert msg == (a, Cmd.ERROR, bytes([HidError.CHANNEL_BUSY]))
    release.set()
    assert await host.response() == (a, Cmd.CBOR, b"\x00")
    assert await host.call(b, Cmd.PING, b"free") == (Cmd.PING, b"free")


async def test_shared_lock_serialises_two_engines() -> None:
    lock = WatchedLock()
    one, two = Host(lock=lock), Host(lock=lock)
    cid1, cid2 = await one.init(), await two.init()
    order: list[str] = []
    started, gate = asyncio.Event(), asyncio.Event()

    async def first(request: bytes, ctx: CommandContext) -> bytes:
        order.append("first-start")
        started.set()
        await gate.wait()
        order.append("first-end")
        return b"\x00"

    async def second(request: bytes, ctx: CommandContext) -> bytes:
        order.append("second")
        return b"\x00"

    one.handler.script, two.handler.script = first, second
    one.write(cid1, Cmd.CBOR, b"\x01")
    await asyncio.wait_for(started.wait(), 5)
    two.write(cid2, Cmd.CBOR, b"\x01")
    await asyncio.wait_for(lock.contended.wait(), 5)  # the second command waits its turn
    assert order == ["first-start"]
    two.clock.advance(two.engine.keepalive_interval)
    _, _, ka = await two.read()
    assert ka == bytes([KeepaliveStatus.PROCESSING])  # queued behind the other transport
    gate.set()
    assert await one.response() == (cid1, Cmd.CBOR, b"\x00")
    assert await two.response() == (cid2, Cmd.CBOR, b"\x00")
    assert order == ["first-start", "first-end", "second"]


async def test_lock_excludes_other_channels_until_released_or_expired() -> None:
    host = Host()
    a = await host.init()
    b = await host.init()
    assert await host.call(a, Cmd.LOCK, b"\x05") == (Cmd.LOCK, b"")
    assert await host.call(b, Cmd.PING, b"x") == error(HidError.CHANNEL_BUSY)
    assert await host.call(BROADCAST_CID, Cmd.INIT, bytes(8)) == error(HidError.CHANNEL_BUSY)
    assert await host.call(a, Cmd.PING, b"mine") == (Cmd.PING, b"mine")
    assert await host.call(a, Cmd.LOCK, b"\x00") == (Cmd.LOCK, b"")
    assert await host.call(b, Cmd.PING, b"x") == (Cmd.PING, b"x")

    assert await host.call(b, Cmd.LOCK, b"\x0a") == (Cmd.LOCK, b"")
    assert await host.call(a, Cmd.PING, b"x") == error(HidError.CHANNEL_BUSY)
    host.clock.now += 10
    assert await host.call(a, Cmd.PING, b"x") == (Cmd.PING, b"x")


async def test_lock_parameter_checks() -> None:
    host = Host()
    a = await host.init()
    assert await host.call(a, Cmd.LOCK, b"\x0b") == error(HidError.INVALID_PAR)
    assert await host.call(a, Cmd.LOCK, b"") == error(HidError.INVALID_LEN)
    assert await host.call(a, Cmd.LOCK, b"\x01\x01") == error(HidError.INVALID_LEN)


# ----------------------------------------------------------------------- keepalive and cancel


async def test_keepalive_upneeded_then_cancel_returns_handler_result() -> None:
    host = Host()
    cid = await host.init()
    started = asyncio.Event()

    async def wait_for_touch(request: bytes, ctx: CommandContext) -> bytes:
        ctx.status(KeepaliveStatus.UPNEEDED)
        started.set()
        await ctx.cancel.wait()
        return b"\x2d"  # CTAP2_ERR_KEEPALIVE_CANCEL

    host.handler.script = wait_for_touch
    host.write(cid, Cmd.CBOR, b"\x01\xa0")
    written = host.clock.now
    await asyncio.wait_for(started.wait(), 5)
    for _ in range(45):
        host.clock.advance(0.01)
    beats = [(t, r) for t, r in host.sent_at if r[4] == 0x80 | Cmd.KEEPALIVE]
    for _, report in beats:
        assert report[:8] == struct.pack(
            ">IBHB", cid, 0x80 | Cmd.KEEPALIVE, 1, KeepaliveStatus.UPNEEDED
        )
    # told at once (the client prompts "touch your key"), then every 100 ms (fake time)
    stamps = [t - written for t, _ in beats]
    assert stamps == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    host.sent_at.clear()
    host.write(cid, Cmd.CANCEL)
    msg = await host.response()
    assert msg == (cid, Cmd.CBOR, b"\x2d")
    assert await host.call(cid, Cmd.PING, b"x") == (Cmd.PING, b"x")


async def test_processing_keepalive_before_any_status() -> None:
    host = Host()
    cid = await host.init()
    gate = asyncio.Event()

    async def slow(request: bytes, ctx: CommandContext) -> bytes:
        await gate.wait()
        return b"\x00\xa0"

    host.handler.script = slow
    host.write(cid, Cmd.CBOR, b"\x01")
    host.clock.advance(0.09)
    host.assert_silent()
    host.clock.advance(0.02)
    assert await host.read() == (cid, Cmd.KEEPALIVE, bytes([KeepaliveStatus.PROCESSING]))
    gate.set()
    msg = await host.response()
    assert msg == (cid, Cmd.CBOR, b"\x00\xa0")


async def test_cancel_is_silent_and_ignored_elsewhere() -> None:
    host = Host()
    a = await host.init()
    b = await host.init()
    host.write(a, Cmd.CANCEL)
    host.write(BROADCAST_CID, Cmd.CANCEL)
    host.write(0, Cmd.CANCEL)
    host.assert_silent()

    seen: list[CommandContext] = []
    started, gate = asyncio.Event(), asyncio.Event()

    async def slow(request: bytes, ctx: CommandContext) -> bytes:
        seen.append(ctx)
        started.set()
        await gate.wait()
        return b"\x00"

    host.handler.script = slow
    host.write(a, Cmd.CBOR, b"\x01")
    await asyncio.wait_for(started.wait(), 5)
    host.write(b, Cmd.CANCEL)  # not the running channel
    assert not seen[0].cancel.is_set()  # CANCEL acts synchronously in feed(), or not at all
    assert seen[0].channel == a and seen[0].transport == "usb"
    gate.set()
    msg = await host.response()
    assert msg == (a, Cmd.CBOR, b"\x00")


async def test_resync_during_command_cancels_and_drops_late_response() -> None:
    host = Host()
    cid = await host.init()
    started, finished = asyncio.Event(), asyncio.Event()

    async def waits(request: bytes, ctx: CommandContext) -> bytes:
        started.set()
        await ctx.cancel.wait()
        finished.set()
        return b"\x2d"

    host.handler.script = waits
    host.write(cid, Cmd.CBOR, b"\x01")
    await asyncio.wait_for(started.wait(), 5)
    assert await host.init(cid) == cid
    # the handler's task runs on to its end in the step that sets ``finished``
    await asyncio.wait_for(finished.wait(), 5)
    host.clock.advance(1)
    host.assert_silent()  # the late response and any keepalive were dropped
    assert await host.call(cid, Cmd.PING, b"x") == (Cmd.PING, b"x")


async def test_power_cycle_during_command() -> None:
    host = Host()
    cid = await host.init()

    started, finished = asyncio.Event(), asyncio.Event()

    async def waits(request: bytes, ctx: CommandContext) -> bytes:
        started.set()
        await ctx.cancel.wait()
        finished.set()
        return b"\x2d"

    host.handler.script = waits
    host.write(cid, Cmd.CBOR, b"\x01")
    await asyncio.wait_for(started.wait(), 5)
    host.engine.power_cycle()
    assert not host.engine.busy
    await asyncio.wait_for(finished.wait(), 5)
    host.clock.advance(1)
    host.assert_silent()  # no keepalive after the power cycle, and the late response dropped
    await host.init()
    await host.engine.aclose()

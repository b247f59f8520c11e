"""The BLE peripheral's protocol logic without D-Bus: control-point writes in, notifications out."""

from __future__ import annotations

import asyncio

import pytest

from authenticator.core.ports import CommandContext, KeepaliveStatus
from tests.transports.timing import FakeTime, WatchedLock
from transports.ble.framing import BleCommand, BleError, Reassembler, error_fragment, fragment
from transports.ble.session import BleSession, Revision, cpl_for_mtu


class FakeHandler:
    """Echoes CBOR with status 0; a request starting 0xAA waits for a touch (or cancel)."""

    def __init__(self) -> None:
        self.touch = asyncio.Event()
        self.waiting = asyncio.Event()  # a 0xAA request is waiting for the touch
        self.returned = asyncio.Event()  # ... and has returned
        self.cbor: list[bytes] = []
        self.u2f: list[bytes] = []
        self.power_cycles = 0

    async def handle_cbor(self, request: bytes, ctx: CommandContext | None = None) -> bytes:
        assert ctx is not None and ctx.transport == "ble"
        self.cbor.append(request)
        if request[:1] == b"\xaa":
            ctx.status(KeepaliveStatus.UPNEEDED)
            self.waiting.set()
            touch = asyncio.ensure_future(self.touch.wait())
            cancel = asyncio.ensure_future(ctx.cancel.wait())
            await asyncio.wait({touch, cancel}, return_when=asyncio.FIRST_COMPLETED)
            touch.cancel()
            cancel.cancel()
            ctx.status(KeepaliveStatus.PROCESSING)
            self.returned.set()
            if ctx.cancel.is_set():
                return b"\x2d"  # CTAP2_ERR_KEEPALIVE_CANCEL
        return b"\x00" + request

    async def handle_u2f(self, apdu: bytes, ctx: CommandContext | None = None) -> bytes:
        self.u2f.append(apdu)
        return b"U2F\x90\x00"

    def power_cycle(self) -> None:
        self.power_cycles += 1

    def wink(self) -> None:
        pass


class Link:
    """A session plus the client's view: everything notified, reassembled into messages.

    The session runs on fake time (``link.time.advance``); ``sent_at`` has the fake time of
    every notification.
    """

    def __init__(self, cpl: int = 20, **kw: object) -> None:
        self.handler = FakeHandler()
        self.time = FakeTime()
        self.frames: list[bytes] = []
        self.sent_at: list[tuple[float, bytes]] = []
        self.arrived = asyncio.Event()
        kw.setdefault("clock", self.time)
        kw.setdefault("call_later", self.time.call_later)
        self.session = BleSession(self.handler, self._notify, cpl=cpl, **kw)  # type: ignore[arg-type]

    def _notify(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.sent_at.append((self.time.now, frame))
        self.arrived.set()

    def send(self, cmd: int, data: bytes) -> None:
        for f in fragment(cmd, data, self.session.cpl):
            self.session.feed(f)

    def messages(self) -> list[tuple[int, bytes]]:
        rx = Reassembler(512)
        out = []
        for f in self.frames:
            m = rx.feed(f)
            assert m is None or hasattr(m, "cmd"), m
            if m is not None:
                out.append((m.cmd, m.data))  # type: ignore[union-attr]
        return out

    async def response(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """Wait for the first non-keepalive message."""
        final = await self.wait_for(lambda m: m[0] != BleCommand.KEEPALIVE, timeout)
        return final

    async def wait_for(self, match: object, timeout: float = 5.0) -> tuple[int, bytes]:
        """The first message ``match`` accepts (a predicate or an equal tuple), once it is sent."""
        accept = match if callable(match) else match.__eq__
        async with asyncio.timeout(timeout):  # a guard against a hang, not a measurement
            while True:
                found = [m for m in self.messages() if accept(m)]
                if found:
                    return found[0]
                self.arrived.clear()
                await self.arrived.wait()

    def keepalives(self) -> list[tuple[float, int]]:
        """(fake time, status) of every KEEPALIVE notified."""
        return [(t, f[3]) for t, f in self.sent_at if f[0] == BleCommand.KEEPALIVE]


async def test_ping_echo_fragmented_both_ways() -> None:
    link = Link(cpl=20)
    data = bytes(range(256)) * 4
    link.send(BleCommand.PING, data)
    assert link.messages() == [(BleCommand.PING, data)]
    assert all(len(f) <= 20 for f in link.frames)


async def test_msg_goes_to_cbor_and_answers() -> None:
    link = Link(cpl=64)
    link.session.write_revision(bytes([Revision.FIDO2]))
    link.send(BleCommand.MSG, b"\x04")
    assert await link.response() == (BleCommand.MSG, b"\x00\x04")
    assert link.handler.cbor == [b"\x04"]


async def test_apdu_goes_to_u2f_by_cla_byte_or_revision() -> None:
    link = Link()
    link.send(BleCommand.MSG, b"\x00\x03\x00\x00")  # U2F_VERSION APDU
    assert await link.response() == (BleCommand.MSG, b"U2F\x90\x00")
    link.frames.clear()
    link.session.write_revision(bytes([Revision.U2F_1_2]))
    link.send(BleCommand.MSG, b"\x04")  # U2F-only link: every MSG is an APDU
    assert await link.response() == (BleCommand.MSG, b"U2F\x90\x00")
    assert link.handler.u2f == [b"\x00\x03\x00\x00", b"\x04"] and link.handler.cbor == []


async def test_u2f_off_sends_everything_to_cbor() -> None:
    link = Link(u2f=False)
    assert link.session.read_revision() == bytes([Revision.FIDO2])
    with pytest.raises(ValueError):
        link.session.write_revision(bytes([Revision.U2F_1_2]))
    link.send(BleCommand.MSG, b"\x00\x01")
    assert await link.response() == (BleCommand.MSG, b"\x00\x00\x01")


def test_revision_bitfield() -> None:
    session = BleSession(FakeHandler(), lambda f: None)
    assert session.read_revision() == b"\xe0"  # U2F 1.1 + 1.2 + FIDO2
    for bad in (b"", b"\x00", b"\x60", b"\x10", b"\x20\x00"):
        with pytest.raises(ValueError):
            session.write_revision(bad)
    session.write_revision(b"\x20")
    assert session.read_revision() == b"\x20"
    session.reset()  # a new connection chooses again
    assert session.read_revision() == b"\xe0"


async def test_keepalive_every_interval_while_waiting_then_cancel() -> None:
    link = Link(keepalive_interval=0.02)
    link.send(BleCommand.MSG, b"\xaa\x01")
    start = link.time.now
    await asyncio.wait_for(link.handler.waiting.wait(), 5)
    for _ in range(21):
        link.time.advance(0.005)
    # at once on UPNEEDED (the client prompts "touch your key"), then every 20 ms (fake time)
    stamps = [t - start for t, _ in link.keepalives()]
    assert stamps == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08, 0.1])
    assert {status for _, status in link.keepalives()} == {KeepaliveStatus.UPNEEDED}
    assert link.session.busy
    link.session.feed(bytes([BleCommand.CANCEL, 0, 0]))
    assert await link.response() == (BleCommand.MSG, b"\x2d")
    assert not link.session.busy
    count = len(link.frames)
    link.time.advance(1)
    assert len(link.frames) == count  # no keepalive after the response


async def test_processing_keepalive_for_a_slow_handler() -> None:
    link = Link(keepalive_interval=0.02)
    gate = asyncio.Event()
    original = link.handler.handle_cbor

    async def slow(request: bytes, ctx: CommandContext | None = None) -> bytes:
        await gate.wait()
        return await original(request, ctx)

    link.handler.handle_cbor = slow  # type: ignore[method-assign]
    link.send(BleCommand.MSG, b"\x04")
    link.time.advance(0.019)
    assert link.frames == []
    link.time.advance(0.002)
    assert link.messages() == [(BleCommand.KEEPALIVE, bytes([KeepaliveStatus.PROCESSING]))]
    gate.set()
    assert await link.response() == (BleCommand.MSG, b"\x00\x04")


async def test_busy_while_running_and_touch_completes() -> None:
    link = Link(keepalive_interval=0.05)
    link.send(BleCommand.MSG, b"\xaa")
    await asyncio.wait_for(link.handler.waiting.wait(), 5)
    link.frames.clear()
    link.send(BleCommand.PING, b"x")
    assert link.frames == [error_fragment(BleError.BUSY)]
    link.handler.touch.set()
    assert await link.response() == (BleCommand.ERROR, bytes([BleError.BUSY]))
    await link.wait_for((BleCommand.MSG, b"\x00\xaa"))


async def test_cancel_when_idle_is_ignored() -> None:
    link = Link()
    link.session.feed(bytes([BleCommand.CANCEL, 0, 0]))
    assert link.frames == []


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([b"\x82\x00\x01\x01"], BleError.INVALID_CMD),  # KEEPALIVE from a client
        ([b"\x85\x00\x00"], BleError.INVALID_CMD),  # unknown command
        ([b"\x83\x00"], BleError.INVALID_LEN),  # no length field
        ([b"\x83" + b"\x00" * 20], BleError.INVALID_LEN),  # longer than the cpl
        ([b"\x83\x00\x40" + bytes(17), b"\x01" + bytes(19)], BleError.INVALID_SEQ),
        ([b"\x00abc"], BleError.INVALID_SEQ),  # stray continuation
        ([b"\x83\x00\x00"], BleError.INVALID_LEN),  # empty MSG
    ],
)
async def test_bad_framing_gets_error_frames(frames: list[bytes], code: BleError) -> None:
    link = Link(cpl=20)
    for f in frames:
        link.session.feed(f)
    assert link.frames[-1] == error_fragment(code)
    link.frames.clear()
    link.send(BleCommand.PING, b"ok")  # and the link recovers
    assert link.messages() == [(BleCommand.PING, b"ok")]


async def test_request_timeout_mid_message() -> None:
    link = Link(cpl=20, request_timeout=0.05)
    link.session.feed(b"\x81\x00\x40" + bytes(17))
    link.time.advance(0.04)
    link.session.feed(b"\x00" + bytes(19))  # a live client: the wait starts again
    link.time.advance(0.04)
    assert link.frames == []
    link.time.advance(0.02)
    assert link.frames == [error_fragment(BleError.REQ_TIMEOUT)]
    link.time.advance(1)
    assert link.frames == [error_fragment(BleError.REQ_TIMEOUT)]  # once only


async def test_power_cycle_and_reset_drop_running_command() -> None:
    link = Link(keepalive_interval=0.02)
    link.send(BleCommand.MSG, b"\xaa")
    await asyncio.wait_for(link.handler.waiting.wait(), 5)
    link.session.power_cycle()
    assert link.handler.power_cycles == 1 and not link.session.busy
    count = len(link.frames)
    await asyncio.wait_for(link.handler.returned.wait(), 5)  # the core saw the cancel
    link.time.advance(1)
    assert len(link.frames) == count  # no keepalives, and the late response was dropped
    assert not [m for m in link.messages() if m[0] == BleCommand.MSG]
    await link.session.aclose()


async def test_cpl_change_and_mtu_rule() -> None:
    assert cpl_for_mtu(None, 20) == 20
    assert cpl_for_mtu(23, 20) == 20
    assert cpl_for_mtu(185, 20) == 182
    assert cpl_for_mtu(517, 20) == 512
    link = Link(cpl=20)
    link.session.cpl = 182
    data = bytes(500)
    link.send(BleCommand.PING, data)
    assert max(len(f) for f in link.frames) == 182
    assert link.messages() == [(BleCommand.PING, data)]


async def test_shared_lock_serializes_with_other_transports() -> None:
    lock = WatchedLock()
    link = Link(lock=lock, keepalive_interval=0.02)
    await lock.acquire()
    link.send(BleCommand.MSG, b"\x04")
    await asyncio.wait_for(lock.contended.wait(), 5)
    link.time.advance(0.03)
    assert link.handler.cbor == []  # queued behind the other transport's command
    assert (BleCommand.KEEPALIVE, bytes([KeepaliveStatus.PROCESSING])) in link.messages()
    lock.release()
    assert await link.response() == (BleCommand.MSG, b"\x00\x04")

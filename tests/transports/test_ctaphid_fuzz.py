"""Property tests: junk reports never crash the CTAPHID engine or leave it stuck."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import struct

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from authenticator.core.ports import CommandContext, KeepaliveStatus
from tests.transports.timing import FakeTime, until
from transports.ctaphid import BROADCAST_CID, REPORT_SIZE, Cmd, CtapHidEngine, HidError, fragment

ALLOCATED = [1, 2, 3]  # the engine below hands out channel ids 1, 2, 3, ...
CIDS = st.sampled_from([0, BROADCAST_CID, *ALLOCATED, 0x12345678]) | st.integers(0, 2**32 - 1)
COMMANDS = st.sampled_from([int(c) for c in Cmd]) | st.integers(0, 0x7F)


class Handler:
    def __init__(self, time: FakeTime) -> None:
        self.time = time

    async def handle_cbor(self, request: bytes, ctx: CommandContext | None = None) -> bytes:
        assert ctx is not None
        if request[:1] == b"\x99":  # a "slow" command that asks for presence
            ctx.status(KeepaliveStatus.UPNEEDED)
            timed_out = asyncio.Event()
            timer = self.time.call_later(0.02, timed_out.set)
            cancel = asyncio.ensure_future(ctx.cancel.wait())
            timeout = asyncio.ensure_future(timed_out.wait())
            await asyncio.wait({cancel, timeout}, return_when=asyncio.FIRST_COMPLETED)
            timer.cancel()
            cancel.cancel()
            timeout.cancel()
            return b"\x2d" if ctx.cancel.is_set() else b"\x27"
        return b"\x00" + request[:10]

    async def handle_u2f(self, apdu: bytes, ctx: CommandContext | None = None) -> bytes:
        return b"\x6d\x00"

    def power_cycle(self) -> None:
        pass

    def wink(self) -> None:
        pass


@st.composite
def init_packets(draw: st.DrawFn) -> bytes:
    cid = draw(CIDS)
    cmd = draw(COMMANDS)
    length = draw(
        st.sampled_from([0, 1, 8, 57, 58, 200, 7609, 7610, 0xFFFF]) | st.integers(0, 0xFFFF)
    )
    head = struct.pack(">IBH", cid, 0x80 | cmd, length)
    body = draw(st.binary(max_size=57))
    return head + body


@st.composite
def continuation_packets(draw: st.DrawFn) -> bytes:
    return struct.pack(">IB", draw(CIDS), draw(st.integers(0, 0x7F))) + draw(st.binary(max_size=59))


@st.composite
def whole_messages(draw: st.DrawFn) -> list[bytes]:
    """A well-formed message, possibly truncated or with packets dropped."""
    reports = fragment(draw(CIDS), draw(COMMANDS), draw(st.binary(max_size=300)))
    if draw(st.booleans()):
        reports = reports[: draw(st.integers(0, len(reports)))]
    return reports


REPORTS = st.lists(
    st.one_of(
        init_packets().map(lambda r: [r]),
        continuation_packets().map(lambda r: [r]),
        st.binary(max_size=80).map(lambda r: [r]),
        whole_messages(),
        st.binary(min_size=8, max_size=8).map(lambda n: fragment(BROADCAST_CID, Cmd.INIT, n)),
        st.builds(
            fragment,
            st.sampled_from(ALLOCATED),
            st.sampled_from([Cmd.PING, Cmd.CBOR, Cmd.MSG, Cmd.LOCK, Cmd.WINK, Cmd.CANCEL]),
            st.sampled_from([b"\x99", b"\x01", b"\x03", b"", b"\x0b"]) | st.binary(max_size=200),
        ),
        st.just([b"POWER"]),
        st.just([b"SLEEP"]),
    ),
    max_size=40,
).map(lambda groups: list(itertools.chain.from_iterable(groups)))


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _scenario(reports: list[bytes]) -> None:
    out: list[bytes] = []
    counter = itertools.count(1)
    time = FakeTime(0.0)
    engine = CtapHidEngine(
        Handler(time),
        out.append,
        msg_timeout=0.02,
        keepalive_interval=0.005,
        clock=time,
        call_later=time.call_later,
        random_bytes=lambda n: next(counter).to_bytes(n, "big"),
    )
    for report in reports:
        if report == b"POWER":
            engine.power_cycle()
        elif report == b"SLEEP":
            time.advance(0.01)
        else:
            engine.feed(report)
        await asyncio.sleep(0)  # a turn of the loop: commands may start (or not) in between

    # Every report the device sent is a well-formed 64-byte packet; every init packet it sent
    # is a response the protocol allows, and errors carry a defined code.
    allowed = {Cmd.PING, Cmd.MSG, Cmd.LOCK, Cmd.INIT, Cmd.WINK, Cmd.CBOR, Cmd.KEEPALIVE, Cmd.ERROR}
    for report in out:
        assert len(report) == REPORT_SIZE
        if report[4] & 0x80:
            assert report[4] & 0x7F in allowed
            if report[4] & 0x7F == Cmd.ERROR:
                assert report[7] in {int(e) for e in HidError}

    # No stuck device: once pending messages time out and any LOCK expires, a fresh client
    # can allocate a channel and ping.
    def idle() -> bool:
        time.advance(11)  # fake time for any command that started since the last look
        return not engine.busy

    await until(idle)
    out.clear()
    nonce = os.urandom(8)
    for report in fragment(BROADCAST_CID, Cmd.INIT, nonce):
        engine.feed(report)
    init = out[-1]
    assert init[:7] == struct.pack(">IBH", BROADCAST_CID, 0x80 | Cmd.INIT, 17)
    assert init[7:15] == nonce
    cid = int.from_bytes(init[15:19], "big")
    out.clear()
    payload = os.urandom(150)
    for report in fragment(cid, Cmd.PING, payload):
        engine.feed(report)
    assert out == fragment(cid, Cmd.PING, payload)
    await engine.aclose()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(REPORTS)
# always tried: a message left half-sent on an allocated channel must time out, not stick
@example(fragment(BROADCAST_CID, Cmd.INIT, bytes(8)) + fragment(1, Cmd.PING, bytes(200))[:2])
def test_junk_never_crashes_or_sticks(reports: list[bytes]) -> None:
    errors = _Errors()
    logger = logging.getLogger("transports.ctaphid")
    logger.addHandler(errors)
    try:
        asyncio.run(_scenario(reports))
    finally:
        logger.removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]

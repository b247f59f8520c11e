"""Real-time behaviour of the engines' timers on a real event loop (the tests use fake time).

- CTAPHID and BLE KEEPALIVE period while the core waits for a touch: target 100 ms; the
  median and the worst gap seen are reported (the worst shows event-loop lag under load).
- CTAPHID message timeout after a lone init packet: the spec window is 0.5 .. 1 s (the engine
  arms 0.75 s); reported as measured.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from authenticator.core.ports import CommandContext, KeepaliveStatus
from transports.ble.framing import BleCommand
from transports.ble.framing import fragment as ble_fragment
from transports.ble.session import BleSession
from transports.ctaphid import BROADCAST_CID, Cmd, CtapHidEngine, fragment


class _WaitsForCancel:
    async def handle_cbor(self, request: bytes, ctx: CommandContext | None = None) -> bytes:
        assert ctx is not None
        ctx.status(KeepaliveStatus.UPNEEDED)
        await ctx.cancel.wait()
        return b"\x2d"

    async def handle_u2f(self, apdu: bytes, ctx: CommandContext | None = None) -> bytes:
        return b"\x6d\x00"

    def power_cycle(self) -> None: ...

    def wink(self) -> None: ...


def _gaps(stamps: list[float]) -> tuple[float, float]:
    gaps = [(b - a) * 1000 for a, b in zip(stamps, stamps[1:], strict=False)]
    return statistics.median(gaps), max(gaps)


async def _ctaphid(beats: int) -> dict[str, float]:
    stamps: list[float] = []
    timeout_at: list[float] = []

    def send(report: bytes) -> None:
        if report[4] == 0x80 | Cmd.KEEPALIVE:
            stamps.append(time.perf_counter())
        elif report[4] == 0x80 | Cmd.ERROR:
            timeout_at.append(time.perf_counter())

    engine = CtapHidEngine(_WaitsForCancel(), send, random_bytes=lambda n: (7).to_bytes(n, "big"))
    for report in fragment(BROADCAST_CID, Cmd.INIT, bytes(8)):
        engine.feed(report)
    for report in fragment(7, Cmd.CBOR, b"\x01\xa0"):
        engine.feed(report)
    while len(stamps) < beats + 1:
        await asyncio.sleep(0.01)
    for report in fragment(7, Cmd.CANCEL, b""):
        engine.feed(report)
    await asyncio.sleep(0.05)
    median, worst = _gaps(stamps[1:])  # the first beat is the immediate UPNEEDED one
    started = time.perf_counter()
    engine.feed(fragment(7, Cmd.PING, bytes(200))[0])
    while not timeout_at:
        await asyncio.sleep(0.005)
    await engine.aclose()
    return {
        "ctaphid_keepalive_median_ms": median,
        "ctaphid_keepalive_worst_ms": worst,
        "ctaphid_msg_timeout_ms": (timeout_at[0] - started) * 1000,
    }


async def _ble(beats: int) -> dict[str, float]:
    stamps: list[float] = []

    def notify(frame: bytes) -> None:
        if frame[0] == BleCommand.KEEPALIVE:
            stamps.append(time.perf_counter())

    session = BleSession(_WaitsForCancel(), notify)
    for frame in ble_fragment(BleCommand.MSG, b"\x01\xa0", session.cpl):
        session.feed(frame)
    while len(stamps) < beats + 1:
        await asyncio.sleep(0.01)
    session.feed(bytes([BleCommand.CANCEL, 0, 0]))
    await session.aclose()
    median, worst = _gaps(stamps[1:])
    return {"ble_keepalive_median_ms": median, "ble_keepalive_worst_ms": worst}


def timer_figures(beats: int = 30) -> dict[str, float]:
    async def both() -> dict[str, float]:
        return {**await _ctaphid(beats), **await _ble(beats)}

    return asyncio.run(both())


if __name__ == "__main__":
    for name, value in timer_figures().items():
        print(f"{name:32s} {value:8.1f}")

"""BLE framing: every ble_* vector, plus properties on hostile fragment streams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transports.ble.framing import (
    CLIENT_COMMANDS,
    MAX_CONTROL_POINT_LENGTH,
    MIN_CONTROL_POINT_LENGTH,
    BleCommand,
    BleError,
    BleFrameError,
    BleMessage,
    Reassembler,
    error_fragment,
    fragment,
    max_message_len,
)

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "hybrid" / "hybrid_ble_vectors.json").read_text()
)


def of(kind: str) -> list[Any]:
    return [pytest.param(v, id=v["name"]) for v in VECTORS if v["kind"] == kind]


def feed_all(r: Reassembler, frames: list[bytes]) -> list[BleMessage | BleFrameError | None]:
    return [r.feed(f) for f in frames]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("v", of("ble_fragment"))
def test_ble_fragment(v: dict[str, Any]) -> None:
    i = v["inputs"]
    data, cpl = bytes.fromhex(i["data_hex"]), i["max_fragment_len"]
    frames = fragment(i["cmd"], data, cpl)
    assert [f.hex() for f in frames] == v["expected"]["fragments_hex"]
    r = Reassembler(cpl, commands=range(0x80, 0x100))
    results = feed_all(r, frames)
    assert results[:-1] == [None] * (len(frames) - 1)
    assert results[-1] == BleMessage(i["cmd"], data)


@pytest.mark.parametrize("v", of("ble_reassemble"))
def test_ble_reassemble(v: dict[str, Any]) -> None:
    frames = [bytes.fromhex(f) for f in v["inputs"]["fragments_hex"]]
    results = feed_all(Reassembler(MIN_CONTROL_POINT_LENGTH), frames)
    exp = v["expected"]
    assert results[-1] == BleMessage(exp["cmd"], bytes.fromhex(exp["data_hex"]))


@pytest.mark.parametrize("v", of("ble_limits"))
def test_ble_limits(v: dict[str, Any]) -> None:
    cpl, exp = v["inputs"]["max_fragment_len"], v["expected"]
    assert max_message_len(cpl) == exp["max_message_len"]
    data = bytes(range(256)) * (exp["max_message_len"] // 256) + bytes(exp["max_message_len"] % 256)
    frames = fragment(BleCommand.MSG, data, cpl)
    assert len(frames) == exp["fragments_at_max"]
    r = Reassembler(cpl)
    assert feed_all(r, frames)[-1] == BleMessage(BleCommand.MSG, data)
    # one byte more than the maximum is refused at the initial fragment
    if exp["max_message_len"] < 0xFFFF:
        too_long = bytes([BleCommand.MSG]) + (exp["max_message_len"] + 1).to_bytes(2, "big")
        assert r.feed(too_long) == BleFrameError(BleError.INVALID_LEN)


@pytest.mark.parametrize("v", of("ble_fragment_serialize"))
def test_ble_fragment_serialize(v: dict[str, Any]) -> None:
    i, exp = v["inputs"], v["expected"]
    chunk = bytes.fromhex(i["fragment_hex"])
    if "cmd" in i:
        data = chunk + bytes(i["data_length"] - len(chunk))
        frame = fragment(i["cmd"], data, len(chunk) + 3)[0]
    else:
        # a continuation with SEQ 61: the 62nd continuation of a long message
        cpl = len(chunk) + 1
        data = bytes(cpl - 3) + bytes((cpl - 1) * i["seq"]) + chunk
        frame = fragment(BleCommand.MSG, data, cpl)[i["seq"] + 1]
    assert frame.hex() == exp["serialized_hex"]
    assert len(frame) == exp["size"]


@pytest.mark.parametrize("v", of("ble_rule"))
def test_ble_rule(v: dict[str, Any]) -> None:
    exp = v["expected"]
    for name in ("PING", "KEEPALIVE", "MSG", "CANCEL", "ERROR"):
        assert BleCommand[name] == int(exp[name], 16)
    assert error_fragment(BleError.INVALID_SEQ) == bytes([0xBF, 0, 1, 4])
    assert [int(e) for e in BleError] == [1, 2, 3, 4, 5, 6, 0x7F]


def test_seq_wraps_after_0x7f() -> None:
    data = bytes(range(256)) * 20
    frames = fragment(BleCommand.MSG, data, MIN_CONTROL_POINT_LENGTH)
    seqs = [f[0] for f in frames[1:]]
    assert seqs[127] == 0x7F and seqs[128] == 0
    r = Reassembler(MIN_CONTROL_POINT_LENGTH, max_len=len(data))
    assert feed_all(r, frames)[-1] == BleMessage(BleCommand.MSG, data)


def test_errors() -> None:
    r = Reassembler(20, commands=CLIENT_COMMANDS)
    assert r.feed(b"\x82\x00\x00") == BleFrameError(BleError.INVALID_CMD)
    assert r.feed(b"\x83\x00") == BleFrameError(BleError.INVALID_LEN)
    assert r.feed(b"\x00abc") == BleFrameError(BleError.INVALID_SEQ)  # stray continuation
    assert r.feed(b"\x83\x00\x02abc") == BleFrameError(BleError.INVALID_LEN)  # too much data
    assert r.feed(bytes(21)) == BleFrameError(BleError.INVALID_LEN)  # over cpl
    assert r.feed(b"\x83\x00\x20" + bytes(17)) is None
    assert r.feed(b"\x01" + bytes(5)) == BleFrameError(BleError.INVALID_SEQ)
    assert not r.pending
    assert r.feed(b"\x83\x00\x12" + bytes(17)) is None
    assert r.feed(b"\x00\x00\x00") == BleFrameError(BleError.INVALID_LEN)  # overflows length
    assert r.feed(b"") is None
    assert r.feed(b"\xbe\x00\x00") == BleMessage(BleCommand.CANCEL, b"")


def test_timeout_with_injected_clock() -> None:
    clock = FakeClock()
    r = Reassembler(20, timeout=1.0, clock=clock)
    frames = fragment(BleCommand.MSG, bytes(40), 20)
    assert r.feed(frames[0]) is None
    clock.now += 0.9
    assert r.check_timeout() is None
    assert r.feed(frames[1]) is None
    clock.now += 1.5
    assert r.check_timeout() == BleFrameError(BleError.REQ_TIMEOUT)
    assert r.feed(frames[2]) == BleFrameError(BleError.INVALID_SEQ)
    # a late continuation found by feed() before anyone polled reports the timeout
    assert r.feed(frames[0]) is None
    clock.now += 5
    assert r.feed(frames[1]) == BleFrameError(BleError.REQ_TIMEOUT)
    assert feed_all(r, frames)[-1] == BleMessage(BleCommand.MSG, bytes(40))


def test_new_initial_replaces_pending() -> None:
    r = Reassembler(20)
    assert r.feed(fragment(BleCommand.MSG, bytes(40), 20)[0]) is None
    assert r.feed(b"\x81\x00\x01x") == BleMessage(BleCommand.PING, b"x")


def test_fragment_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        fragment(0x03, b"", 20)
    with pytest.raises(ValueError):
        fragment(BleCommand.MSG, bytes(0x10000), 512)


# --- properties ---------------------------------------------------------------------------

cpls = st.integers(MIN_CONTROL_POINT_LENGTH, MAX_CONTROL_POINT_LENGTH)
commands = st.sampled_from([BleCommand.PING, BleCommand.MSG, BleCommand.CANCEL])


@settings(deadline=None)  # hypothesis' per-example deadline is a timed assertion
@given(cpl=cpls, cmd=commands, data=st.binary(max_size=3000))
def test_round_trip(cpl: int, cmd: int, data: bytes) -> None:
    data = data[: max_message_len(cpl)]
    frames = fragment(cmd, data, cpl)
    assert all(len(f) <= cpl for f in frames)
    r = Reassembler(cpl)
    results = feed_all(r, frames)
    assert results[-1] == BleMessage(cmd, data)
    assert all(x is None for x in results[:-1])


def _assert_recovers(r: Reassembler, cpl: int) -> None:
    probe = bytes(range(200))
    results = feed_all(r, fragment(BleCommand.MSG, probe, cpl))
    assert results[-1] == BleMessage(BleCommand.MSG, probe)


@settings(max_examples=300, deadline=None)
@given(cpl=cpls, junk=st.lists(st.binary(max_size=600), max_size=20))
def test_random_fragments_never_raise_and_never_stick(cpl: int, junk: list[bytes]) -> None:
    r = Reassembler(cpl, commands=CLIENT_COMMANDS)
    for frame in junk:
        result = r.feed(frame)
        assert result is None or isinstance(result, BleMessage | BleFrameError)
        if isinstance(result, BleMessage):
            assert result.cmd in CLIENT_COMMANDS
    _assert_recovers(r, cpl)


@settings(max_examples=200, deadline=None)
@given(cpl=cpls, data=st.binary(min_size=1, max_size=4000), cut=st.integers(0, 200))
def test_truncated_message_then_valid(cpl: int, data: bytes, cut: int) -> None:
    frames = fragment(BleCommand.MSG, data[: max_message_len(cpl)], cpl)
    kept = frames[: min(cut, len(frames) - 1)] if len(frames) > 1 else []
    r = Reassembler(cpl)
    assert all(x is None for x in feed_all(r, kept))
    _assert_recovers(r, cpl)  # a fresh initial fragment abandons the truncated one


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=60, max_size=2000), seed=st.randoms(use_true_random=False))
def test_out_of_order_fragments(data: bytes, seed: Any) -> None:
    cpl = MIN_CONTROL_POINT_LENGTH
    frames = fragment(BleCommand.MSG, data, cpl)
    order = frames[1:]
    seed.shuffle(order)
    shuffled = [frames[0], *order]
    r = Reassembler(cpl)
    results = feed_all(r, shuffled)
    if order == frames[1:]:
        assert results[-1] == BleMessage(BleCommand.MSG, data)
    else:
        assert BleFrameError(BleError.INVALID_SEQ) in results
        assert not any(isinstance(x, BleMessage) for x in results)
    _assert_recovers(r, cpl)

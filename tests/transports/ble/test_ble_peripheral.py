"""The GATT glue of BlePeripheralTransport without bluetoothd: characteristic callbacks only."""

from __future__ import annotations

import asyncio

import pytest
from dbus_fast import Variant

from tests.transports.ble.test_ble_session import FakeHandler
from transports.ble.framing import BleCommand, fragment
from transports.ble.peripheral import BLUEZ_MAX_WRITE, BlePeripheralTransport


class FakeStatus:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def notify(self, value: bytes) -> None:
        self.sent.append(value)


def make(**kw: object) -> tuple[BlePeripheralTransport, FakeStatus]:
    t = BlePeripheralTransport(FakeHandler(), **kw)  # type: ignore[arg-type]
    status = FakeStatus()
    t._status = status  # type: ignore[assignment]
    return t, status


@pytest.mark.parametrize(
    ("mtu", "cap", "expected"),
    [
        (None, None, 20),
        (23, None, 20),
        (185, None, 182),
        (517, None, BLUEZ_MAX_WRITE),
        (517, 64, 64),
    ],
)
def test_control_point_length_follows_the_mtu(mtu, cap, expected) -> None:
    t, _ = make(control_point_length=cap)
    options = {} if mtu is None else {"mtu": Variant("q", mtu)}
    assert t._read_cpl(options) == expected.to_bytes(2, "big")
    assert t.session.cpl == expected


async def test_writes_reach_the_session_and_answers_are_notified() -> None:
    t, status = make()
    t._read_cpl({"mtu": Variant("q", 185)})
    for frame in fragment(BleCommand.PING, bytes(300), 182):
        t._write_control_point(frame, {"mtu": Variant("q", 185)})
    assert status.sent == fragment(BleCommand.PING, bytes(300), 182)


async def test_stop_notify_resets_the_link() -> None:
    t, status = make()
    t.session.write_revision(b"\x20")
    t._write_control_point(bytes([BleCommand.MSG, 0, 1, 0xAA]), {})  # waits for a touch
    await asyncio.wait_for(t.session.handler.waiting.wait(), 5)  # type: ignore[attr-defined]
    assert t.session.busy and status.sent  # the UPNEEDED keepalive
    t._on_notify_state(False)
    assert not t.session.busy and t.session.selected is None
    t.power_cycle()
    assert t.session.handler.power_cycles == 1  # type: ignore[attr-defined]
    assert t.engine is t.session


def test_u2f_follows_the_handler_config_and_flags_follow_pairing() -> None:
    class Cfg:
        u2f = False

    handler = FakeHandler()
    handler.config = Cfg()  # type: ignore[attr-defined]
    t = BlePeripheralTransport(handler)  # type: ignore[arg-type]
    assert t.session.read_revision() == b"\x20"
    assert t._flags("write") == ["encrypt-write"]
    assert make(pairing="passkey")[0]._flags("read") == ["encrypt-authenticated-read"]
    assert make(pairing="none")[0]._flags("read") == ["read"]
    with pytest.raises(ValueError):
        BlePeripheralTransport(handler, pairing="pin")  # type: ignore[arg-type]

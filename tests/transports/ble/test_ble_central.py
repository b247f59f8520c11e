"""The bleak central's CtapDevice logic over a loopback link to BleSession (no radio, no bleak I/O).

python-fido2's Ctap2 and Fido2Client drive BleCtapDevice; its GATT writes go straight into a
BleSession in front of the real core, whose notifications come back as if from fidoStatus.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.hid import CAPABILITY, CTAPHID

from authenticator.core import Authenticator
from authenticator.core.config import Config
from storage.memory import MemoryStore
from tests.transports.ble.vm_ble_central import exercise
from tests.transports.ble.vm_ble_peripheral import SlowPresence
from transports.ble.central import BleCtapDevice, _adapter_kwargs
from transports.ble.framing import BleCommand, BleError
from transports.ble.session import BleSession, Revision


class _FakeClient:
    address = "loopback"

    async def disconnect(self) -> None:
        pass


class LoopbackBleDevice(BleCtapDevice):
    """BleCtapDevice whose 'radio' is a BleSession on the device's own loop."""

    def __init__(self, handler: Any, cpl: int = 20, **kwargs: Any) -> None:
        self._handler = handler
        self._loop_cpl = cpl
        self.writes: list[bytes] = []
        super().__init__("loopback", pair=False, **kwargs)

    async def _connect(self, target: Any, pair: bool, timeout: float, revision: Any) -> None:
        self._frames = asyncio.Queue()
        self.session = BleSession(self._handler, self._frames.put_nowait, cpl=self._loop_cpl)
        self.session.write_revision(bytes([Revision.FIDO2]))
        self.revision = Revision.FIDO2
        self.cpl = self.session.cpl
        self._client = _FakeClient()  # type: ignore[assignment]

    async def _write(self, frame: bytes) -> None:
        self.writes.append(frame)
        self.session.feed(frame)


@pytest.fixture
def device():
    auth = Authenticator(Config(), MemoryStore(), presence=SlowPresence())
    dev = LoopbackBleDevice(auth, cpl=20, response_timeout=10.0)
    yield dev
    dev.close()


def test_fido2_client_over_ble_framing(device: LoopbackBleDevice) -> None:
    """The very checks the VM test runs over the emulated radio, here over a loopback."""
    names: list[str] = []
    exercise(device, lambda name, started: names.append(name))
    assert len(names) == 6
    assert all(len(f) <= 20 for f in device.writes)
    assert bytes([BleCommand.CANCEL, 0, 0]) in device.writes


def test_capabilities_and_wink(device: LoopbackBleDevice) -> None:
    assert device.capabilities & CAPABILITY.CBOR
    assert device.capabilities & CAPABILITY.NMSG  # FIDO2 selected: no U2F on this link
    assert device.call(CTAPHID.WINK) == b""
    with pytest.raises(CtapError):
        device.call(CTAPHID.LOCK, b"\x01")


def test_ble_error_frame_becomes_ctap_error(device: LoopbackBleDevice) -> None:
    """A corrupted request draws an ERROR frame, which the caller sees as a CtapError."""
    write = device._write

    async def corrupting(frame: bytes) -> None:
        await write(b"\x05" + frame[1:] if frame[0] == 0 else frame)  # SEQ 0 -> 5

    device._write = corrupting  # type: ignore[method-assign]
    with pytest.raises(CtapError) as e:
        device.call(CTAPHID.PING, bytes(100))
    assert e.value.code == BleError.INVALID_SEQ
    device._write = write  # type: ignore[method-assign]
    assert device.call(CTAPHID.PING, bytes(100)) == bytes(100)  # and the link recovers


def test_cancel_from_another_thread(device: LoopbackBleDevice) -> None:
    event = threading.Event()
    timer = threading.Timer(0.3, event.set)
    timer.start()
    with pytest.raises(CtapError) as e:
        Ctap2(device).make_credential(
            b"\x00" * 32,
            {"id": "cancel.example"},
            {"id": b"u", "name": "u"},
            [{"type": "public-key", "alg": -7}],
            event=event,
        )
    assert e.value.code == CtapError.ERR.KEEPALIVE_CANCEL


def test_adapter_kwargs() -> None:
    assert _adapter_kwargs(None) == {}
    kw = _adapter_kwargs("hci1")
    assert kw in ({"bluez": {"adapter": "hci1"}}, {"adapter": "hci1"})

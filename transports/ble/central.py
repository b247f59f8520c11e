"""The client side of FIDO BLE on bleak, as a python-fido2 ``CtapDevice``.

python-fido2's ``Ctap2``, ``ClientPin`` and ``Fido2Client`` speak CTAPHID command codes to a
blocking device object. :class:`BleCtapDevice` maps them onto a BLE link: CTAPHID CBOR and MSG
become a BLE MSG (the revision written to fidoServiceRevisionBitfield tells the authenticator
which protocol it carries), PING becomes a BLE PING, and the caller's cancel event a BLE
CANCEL. bleak is asyncio-only, so every device owns a private event loop on a daemon thread
and ``call`` blocks on it, as python-fido2 expects.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from fido2.ctap import STATUS, CtapDevice, CtapError
from fido2.hid import CAPABILITY, CTAPHID

from transports.ble import uuids
from transports.ble.framing import (
    ALL_COMMANDS,
    MAX_CONTROL_POINT_LENGTH,
    MIN_CONTROL_POINT_LENGTH,
    BleCommand,
    BleFrameError,
    BleMessage,
    Reassembler,
    fragment,
)
from transports.ble.session import Revision, clamp_cpl

log = logging.getLogger(__name__)
T = TypeVar("T")


def _adapter_kwargs(adapter: str | None) -> dict[str, Any]:
    """bleak >= 3 selects the adapter with ``bluez={"adapter": ...}``; older with ``adapter=``."""
    if adapter is None:
        return {}
    if "bluez" in inspect.signature(BleakClient.__init__).parameters:
        try:
            from bleak.args.bluez import BlueZClientArgs

            if "adapter" in BlueZClientArgs.__annotations__:
                return {"bluez": {"adapter": adapter}}
        except ImportError:
            pass
    return {"adapter": adapter}


@dataclass(frozen=True)
class FoundAuthenticator:
    """One advertising FIDO BLE authenticator, as seen by a scan."""

    device: BLEDevice
    name: str | None
    rssi: int | None
    pairing_mode: bool
    passkey_entry: bool

    @property
    def address(self) -> str:
        return self.device.address


async def scan(timeout: float = 5.0, adapter: str | None = None) -> list[FoundAuthenticator]:
    """Devices advertising the FIDO service (0xFFFD), with their pairing-mode flags."""
    found = await BleakScanner.discover(
        timeout=timeout,
        return_adv=True,
        service_uuids=[uuids.FIDO_SERVICE],
        **_adapter_kwargs(adapter),
    )
    result = []
    for device, adv in found.values():
        if uuids.FIDO_SERVICE not in [u.lower() for u in adv.service_uuids]:
            continue
        flags_data = adv.service_data.get(uuids.FIDO_SERVICE, b"")
        flags = flags_data[0] if flags_data else 0
        result.append(
            FoundAuthenticator(
                device=device,
                name=adv.local_name or device.name,
                rssi=adv.rssi,
                pairing_mode=bool(flags & uuids.SERVICE_DATA_PAIRING_MODE),
                passkey_entry=bool(flags & uuids.SERVICE_DATA_PASSKEY_ENTRY),
            )
        )
    return result


class _LoopThread:
    """A private asyncio loop on a daemon thread: bleak needs one, python-fido2 blocks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="ble")
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


class BleCtapDevice(CtapDevice):
    """A FIDO BLE authenticator reached through bleak, usable wherever python-fido2 wants a device.

    ``target``: a ``BLEDevice`` from :func:`scan` or an address. ``pair``: ask BlueZ to pair
    (bond) before use; Just Works needs no agent, a passkey key needs the desktop's agent
    (or ``bluetoothctl``) to type it. ``response_timeout``: seconds without any frame
    (keepalives count) before a call fails with CtapError TIMEOUT.
    """

    def __init__(
        self,
        target: BLEDevice | str,
        *,
        adapter: str | None = None,
        pair: bool = True,
        connect_timeout: float = 60.0,
        response_timeout: float = 30.0,
        revision: Revision | None = None,
    ) -> None:
        self.adapter = adapter
        self.response_timeout = response_timeout
        self._thread = _LoopThread()
        self._client: BleakClient | None = None
        self._frames: asyncio.Queue[bytes] | None = None
        self._lock = threading.Lock()
        self.cpl = MIN_CONTROL_POINT_LENGTH
        self.revision: Revision | None = None
        self.supported_revisions = Revision(0)
        self.device_info: dict[str, str] = {}
        try:
            self._thread.run(
                self._connect(target, pair, connect_timeout, revision), connect_timeout * 2
            )
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        address = self._client.address if self._client is not None else "?"
        return f"BleCtapDevice({address}, cpl={self.cpl}, revision={self.revision!r})"

    # ------------------------------------------------------------------ CtapDevice

    @property
    def capabilities(self) -> int:
        caps = CAPABILITY(0)
        if self.revision is None or self.revision & Revision.FIDO2:
            caps |= CAPABILITY.CBOR
        if self.revision is None or not self.revision & (Revision.U2F_1_1 | Revision.U2F_1_2):
            caps |= CAPABILITY.NMSG
        return int(caps)

    def call(
        self,
        cmd: int,
        data: bytes = b"",
        event: threading.Event | None = None,
        on_keepalive: Callable[[STATUS], None] | None = None,
    ) -> bytes:
        if cmd in (CTAPHID.CBOR, CTAPHID.MSG):
            ble_cmd = BleCommand.MSG
        elif cmd == CTAPHID.PING:
            ble_cmd = BleCommand.PING
        elif cmd == CTAPHID.WINK:
            return b""  # BLE has no wink; nothing to show
        else:
            raise CtapError(CtapError.ERR.INVALID_COMMAND)
        with self._lock:
            return self._thread.run(self._exchange(ble_cmd, bytes(data), event, on_keepalive))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._thread.loop.is_running():
            try:
                self._thread.run(client.disconnect(), timeout=30)
            except Exception as e:
                log.debug("BLE: disconnect failed: %s", e)
        self._thread.stop()

    @classmethod
    def list_devices(
        cls, timeout: float = 5.0, adapter: str | None = None, **kwargs: Any
    ) -> Iterator[BleCtapDevice]:
        """Scan, then connect to each FIDO BLE authenticator found (pairing as configured)."""
        for found in asyncio.run(scan(timeout, adapter)):
            try:
                yield cls(found.device, adapter=adapter, **kwargs)
            except Exception as e:
                log.warning("BLE: cannot open %s: %s", found.address, e)

    # ------------------------------------------------------------------ internals

    async def _connect(
        self,
        target: BLEDevice | str,
        pair: bool,
        timeout: float,
        revision: Revision | None,
    ) -> None:
        client = BleakClient(target, timeout=timeout, **_adapter_kwargs(self.adapter))
        await client.connect()
        self._client = client
        if pair:
            await client.pair()
        self._frames = asyncio.Queue()
        service = client.services.get_service(uuids.FIDO_SERVICE)
        if service is None:
            raise OSError(f"{client.address} has no FIDO service")
        chars = {c.uuid.lower(): c for c in service.characteristics}
        if uuids.SERVICE_REVISION_BITFIELD in chars:
            raw = await client.read_gatt_char(uuids.SERVICE_REVISION_BITFIELD)
            self.supported_revisions = Revision(raw[0] & 0xE0) if raw else Revision(0)
            chosen = revision or next(
                (r for r in (Revision.FIDO2, Revision.U2F_1_2, Revision.U2F_1_1)
                 if r & self.supported_revisions),
                None,
            )  # fmt: skip
            if chosen is None:
                raise OSError(f"no usable FIDO revision in {raw.hex()}")
            await client.write_gatt_char(
                uuids.SERVICE_REVISION_BITFIELD, bytes([chosen]), response=True
            )
            self.revision = chosen
        else:  # U2F 1.0 devices have no bitfield
            self.revision = Revision.U2F_1_1 if revision is None else revision
        raw = await client.read_gatt_char(uuids.CONTROL_POINT_LENGTH)
        self.cpl = clamp_cpl(int.from_bytes(raw[:2], "big")) if len(raw) >= 2 else 20
        await client.start_notify(uuids.STATUS, self._on_status)
        await self._read_device_info(client)
        log.info("BLE: connected to %s: %r", client.address, self)

    async def _read_device_info(self, client: BleakClient) -> None:
        names = {
            uuids.MANUFACTURER_NAME: "manufacturer",
            uuids.MODEL_NUMBER: "model",
            uuids.FIRMWARE_REVISION: "firmware",
            uuids.SOFTWARE_REVISION: "software",
        }
        for service in client.services:
            for char in service.characteristics:
                key = names.get(char.uuid.lower())
                if key is None or key in self.device_info or "read" not in char.properties:
                    continue
                try:
                    value = await client.read_gatt_char(char)
                except Exception:
                    continue
                self.device_info[key] = bytes(value).decode("utf-8", "replace")

    def _on_status(self, _char: Any, data: bytearray) -> None:
        if self._frames is not None:
            self._frames.put_nowait(bytes(data))

    async def _write(self, frame: bytes) -> None:
        assert self._client is not None
        await self._client.write_gatt_char(uuids.CONTROL_POINT, frame, response=True)

    async def _exchange(
        self,
        cmd: int,
        data: bytes,
        event: threading.Event | None,
        on_keepalive: Callable[[STATUS], None] | None,
    ) -> bytes:
        if self._client is None or self._frames is None:
            raise OSError("BLE device is closed")
        while not self._frames.empty():  # stale frames of an abandoned exchange
            self._frames.get_nowait()
        for frame in fragment(cmd, data, self.cpl):
            await self._write(frame)
        rx = Reassembler(
            MAX_CONTROL_POINT_LENGTH, commands=ALL_COMMANDS, timeout=self.response_timeout
        )
        cancel_sent = False
        last_status: int | None = None
        deadline = time.monotonic() + self.response_timeout
        while True:
            if event is not None and event.is_set() and not cancel_sent:
                cancel_sent = True
                await self._write(fragment(BleCommand.CANCEL, b"", self.cpl)[0])
            if time.monotonic() > deadline:
                raise CtapError(CtapError.ERR.TIMEOUT)
            try:
                frame = await asyncio.wait_for(self._frames.get(), 0.05 if event else 1.0)
            except TimeoutError:
                continue
            deadline = time.monotonic() + self.response_timeout
            result = rx.feed(frame)
            if result is None:
                continue
            if isinstance(result, BleFrameError):
                raise CtapError(CtapError.ERR.INVALID_SEQ)
            if result.cmd == BleCommand.KEEPALIVE:
                status = result.data[0] if result.data else 0
                if status != last_status and on_keepalive is not None:
                    last_status = status
                    on_keepalive(STATUS(status) if status in (1, 2) else status)  # type: ignore[arg-type]
                continue
            return self._response(cmd, result)

    @staticmethod
    def _response(cmd: int, message: BleMessage) -> bytes:
        if message.cmd == BleCommand.ERROR:
            code = message.data[0] if message.data else CtapError.ERR.OTHER
            raise CtapError(code)
        if message.cmd != cmd:
            raise CtapError(CtapError.ERR.INVALID_COMMAND)
        return message.data


__all__ = ["BleCtapDevice", "FoundAuthenticator", "scan"]

"""The phone's BLE advert for hybrid: the 20-byte encrypted EID as service data, via BlueZ.

The advert is what proves proximity: the desktop only learns the tunnel's routing id by
hearing it over the air. It is a non-connectable ("broadcast") LE advertisement carrying one
service-data field under 0xFFF9 (FIDO) -- or 0xFDE2, the Google UUID older Chromium and iOS 16
used. Only one fits: flags-less, 2 + 2 + 20 bytes of service data is 24 of the 31 legacy
advertising bytes, and a second copy would not fit. No local name, no service UUID list.

bluetoothd is driven over D-Bus with dbus-fast, as the FIDO BLE peripheral does
(:mod:`transports.ble.peripheral`): one ``org.bluez.LEAdvertisement1`` object, registered with
the adapter's ``LEAdvertisingManager1`` for as long as the handshake may take.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from itertools import count

from dbus_fast import BusType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusDict, DBusStr, DBusUInt32
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_method, dbus_property

from transports.ble.peripheral import _call, _find_adapter, _set
from transports.hybrid.advert import ADVERT_LEN, SERVICE_UUID_FIDO, SERVICE_UUID_GOOGLE

log = logging.getLogger(__name__)

ROOT = "/org/fidoemu/hybrid"
_ADV_MANAGER = "org.bluez.LEAdvertisingManager1"
_serial = count()


class _EidAdvertisement(ServiceInterface):
    """org.bluez.LEAdvertisement1 carrying only the EID as service data."""

    def __init__(self, path: str, uuid16: int, data: bytes, interval_ms: int) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self.path = path
        self._uuid = f"{uuid16:04x}"  # 16-bit form: BlueZ then emits a 16-bit service-data AD
        self._data = data
        self._interval_ms = interval_ms

    @dbus_property(PropertyAccess.READ)
    def Type(self) -> DBusStr:  # noqa: N802 (D-Bus names)
        return "broadcast"

    @dbus_property(PropertyAccess.READ)
    def ServiceData(self) -> DBusDict:  # noqa: N802
        return {self._uuid: Variant("ay", self._data)}

    # A hint: BlueZ 5.66 passes 0 ("kernel default") to the kernel anyway, and Linux 6.1 then
    # advertises this non-connectable set every 100-150 ms (seen with btmon in the VM test).
    @dbus_property(PropertyAccess.READ)
    def MinInterval(self) -> DBusUInt32:  # noqa: N802
        return self._interval_ms

    @dbus_property(PropertyAccess.READ)
    def MaxInterval(self) -> DBusUInt32:  # noqa: N802
        return self._interval_ms

    @dbus_method()
    def Release(self):  # noqa: N802
        log.info("hybrid BLE: BlueZ released the advertisement")


class HybridAdvertiser:
    """Send hybrid adverts from one BlueZ adapter.

    ``async with HybridAdvertiser(adapter="hci0") as adv:`` connects to the system bus and
    powers the adapter (so a missing radio shows up before any tunnel is opened); then
    ``adv`` itself is a ``run_authenticator`` ``advertise`` callback: called with the 20 bytes
    it returns an async context manager that advertises them until the handshake is over.
    """

    def __init__(
        self,
        *,
        adapter: str | None = None,
        service_uuid: int = SERVICE_UUID_FIDO,
        interval_ms: int = 100,
        adapter_timeout: float = 30.0,
    ) -> None:
        if service_uuid not in (SERVICE_UUID_FIDO, SERVICE_UUID_GOOGLE):
            raise ValueError(f"hybrid adverts use 0xFFF9 or 0xFDE2, not {service_uuid:#06x}")
        self.adapter = adapter
        if not 20 <= interval_ms <= 10240:
            raise ValueError("advertising interval must be 20..10240 ms")
        self.service_uuid = service_uuid
        self.interval_ms = interval_ms
        self.adapter_timeout = adapter_timeout
        self.adapter_path: str | None = None
        self._bus: MessageBus | None = None

    async def open(self) -> None:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            path = await _find_adapter(bus, self.adapter, self.adapter_timeout)
            await _set(bus, path, "org.bluez.Adapter1", "Powered", Variant("b", True))
        except BaseException:
            bus.disconnect()
            raise
        self._bus, self.adapter_path = bus, path

    async def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()

    async def __aenter__(self) -> HybridAdvertiser:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __call__(self, service_data: bytes) -> AbstractAsyncContextManager[None]:
        return self.advertising(service_data)

    @asynccontextmanager
    async def advertising(self, service_data: bytes) -> AsyncIterator[None]:
        """Advertise ``service_data`` (the 20-byte EID) while the block runs."""
        if len(service_data) != ADVERT_LEN:
            raise ValueError(f"a hybrid advert is {ADVERT_LEN} bytes, got {len(service_data)}")
        bus, path = self._bus, self.adapter_path
        if bus is None or path is None:
            raise RuntimeError("HybridAdvertiser is not open")
        adv = _EidAdvertisement(
            f"{ROOT}/adv{next(_serial)}", self.service_uuid, service_data, self.interval_ms
        )
        bus.export(adv.path, adv)
        try:
            await _call(bus, path, _ADV_MANAGER, "RegisterAdvertisement", "oa{sv}", (adv.path, {}))
            log.info("hybrid BLE: advertising on %s under %#06x", path, self.service_uuid)
            try:
                yield
            finally:
                try:
                    await _call(
                        bus, path, _ADV_MANAGER, "UnregisterAdvertisement", "o", (adv.path,)
                    )
                except Exception as e:  # bluetoothd may have gone; the advert goes with it
                    log.debug("hybrid BLE: UnregisterAdvertisement failed: %s", e)
                log.info("hybrid BLE: advertising stopped")
        finally:
            bus.unexport(adv.path, adv)


__all__ = ["HybridAdvertiser"]

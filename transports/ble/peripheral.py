"""The FIDO BLE authenticator as a GATT peripheral on BlueZ, spoken to over D-Bus (dbus-fast).

bleak is central-only, so the peripheral talks to bluetoothd directly: it exports a GATT
application (FIDO service 0xFFFD + Device Information), an LE advertisement and a pairing
agent, and registers them with the adapter. dbus-fast is used directly (not bless) because
bleak already depends on it on Linux, and because the agent, the advertisement's service data
and the per-link ATT MTU (``mtu`` in ReadValue/WriteValue options, for fidoControlPointLength)
all need BlueZ interfaces that bless does not expose.

The protocol logic lives in :class:`~transports.ble.session.BleSession`; this module only moves
GATT reads, writes and notifications between bluetoothd and it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Annotated, Any, Literal

from dbus_fast import BusType, DBusError, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import (
    DBusBool,
    DBusBytes,
    DBusDict,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
    DBusUInt16,
    DBusUInt32,
)
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_method, dbus_property

from authenticator.core.ports import CtapHandler
from transports.ble import uuids
from transports.ble.framing import MIN_CONTROL_POINT_LENGTH
from transports.ble.session import BleSession, clamp_cpl, cpl_for_mtu

log = logging.getLogger(__name__)

BLUEZ = "org.bluez"
ROOT = "/org/fidoemu"
DBusStrList = Annotated[list[str], DBusSignature("as")]
Pairing = Literal["just-works", "passkey", "none"]
_ERR_NOT_PERMITTED = "org.bluez.Error.NotPermitted"
_ERR_INVALID_LENGTH = "org.bluez.Error.InvalidValueLength"
_ERR_FAILED = "org.bluez.Error.Failed"
_ERR_REJECTED = "org.bluez.Error.Rejected"
#: Largest control-point write BlueZ's GATT server accepts: before the 2022 fix to
#: ``check_length`` in src/shared/gatt-server.c (BlueZ <= 5.66, Debian 12, Raspberry Pi OS
#: bookworm) it counts the 2-byte handle as value, so a 512-byte write fails with ATT error
#: 0x0D (Invalid Attribute Value Length) although the ATT MTU of 517 allows it.
BLUEZ_MAX_WRITE = 510


def _version() -> str:
    try:
        return metadata.version("fido-emulator")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _mtu(options: dict[str, Variant]) -> int | None:
    value = options.get("mtu")
    return int(value.value) if value is not None else None


class _Service(ServiceInterface):
    def __init__(self, path: str, uuid: str) -> None:
        super().__init__("org.bluez.GattService1")
        self.path = path
        self._uuid = uuid

    @dbus_property(PropertyAccess.READ)
    def UUID(self) -> DBusStr:  # noqa: N802 (D-Bus names)
        return self._uuid

    @dbus_property(PropertyAccess.READ)
    def Primary(self) -> DBusBool:  # noqa: N802
        return True


class _Characteristic(ServiceInterface):
    """One GATT characteristic whose reads and writes are delegated to callables."""

    def __init__(
        self,
        path: str,
        uuid: str,
        service: str,
        flags: list[str],
        *,
        read: Callable[[dict[str, Variant]], bytes] | None = None,
        write: Callable[[bytes, dict[str, Variant]], None] | None = None,
        on_notify: Callable[[bool], None] | None = None,
    ) -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self.path = path
        self._uuid = uuid
        self._service = service
        self._flags = flags
        self._read = read
        self._write = write
        self._on_notify = on_notify
        self._value = b""
        self._notifying = False

    @dbus_property(PropertyAccess.READ)
    def UUID(self) -> DBusStr:  # noqa: N802
        return self._uuid

    @dbus_property(PropertyAccess.READ)
    def Service(self) -> DBusObjectPath:  # noqa: N802
        return self._service

    @dbus_property(PropertyAccess.READ)
    def Flags(self) -> DBusStrList:  # noqa: N802
        return self._flags

    @dbus_property(PropertyAccess.READ)
    def Value(self) -> DBusBytes:  # noqa: N802
        return self._value

    @dbus_property(PropertyAccess.READ)
    def Notifying(self) -> DBusBool:  # noqa: N802
        return self._notifying

    @dbus_method()
    def ReadValue(self, options: DBusDict) -> DBusBytes:  # noqa: N802
        if self._read is None:
            raise DBusError(_ERR_NOT_PERMITTED, "not readable")
        offset = int(options["offset"].value) if "offset" in options else 0
        return self._read(options)[offset:]

    @dbus_method()
    def WriteValue(self, value: DBusBytes, options: DBusDict):  # noqa: N802
        if self._write is None:
            raise DBusError(_ERR_NOT_PERMITTED, "not writable")
        if "offset" in options and int(options["offset"].value):
            raise DBusError(_ERR_NOT_PERMITTED, "long writes are not supported")
        try:
            self._write(bytes(value), options)
        except ValueError as e:
            raise DBusError(_ERR_INVALID_LENGTH, str(e)) from e

    @dbus_method()
    def StartNotify(self):  # noqa: N802
        if self._on_notify is None:
            raise DBusError(_ERR_NOT_PERMITTED, "no notifications")
        self._notifying = True
        self._on_notify(True)

    @dbus_method()
    def StopNotify(self):  # noqa: N802
        self._notifying = False
        if self._on_notify is not None:
            self._on_notify(False)

    def notify(self, value: bytes) -> None:
        """Send a notification: BlueZ turns a Value change into ATT notifications."""
        self._value = value
        self.emit_properties_changed({"Value": value})


class _Advertisement(ServiceInterface):
    """org.bluez.LEAdvertisement1: connectable, FIDO service UUID, pairing-mode service data."""

    def __init__(self, path: str, name: str, service_data: bytes, discoverable: bool) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self.path = path
        self._name = name
        self._service_data = service_data
        self._discoverable = discoverable

    @dbus_property(PropertyAccess.READ)
    def Type(self) -> DBusStr:  # noqa: N802
        return "peripheral"

    @dbus_property(PropertyAccess.READ)
    def ServiceUUIDs(self) -> DBusStrList:  # noqa: N802
        return [uuids.FIDO_SERVICE]

    @dbus_property(PropertyAccess.READ)
    def ServiceData(self) -> DBusDict:  # noqa: N802
        return {uuids.FIDO_SERVICE: Variant("ay", self._service_data)}

    @dbus_property(PropertyAccess.READ)
    def LocalName(self) -> DBusStr:  # noqa: N802
        return self._name

    @dbus_property(PropertyAccess.READ)
    def Discoverable(self) -> DBusBool:  # noqa: N802
        return self._discoverable

    @dbus_method()
    def Release(self):  # noqa: N802
        log.info("BLE: BlueZ released the advertisement")


class _Agent(ServiceInterface):
    """org.bluez.Agent1 for LE Secure Connections pairing.

    Just Works: every confirmation is accepted (the emulator has no buttons). Passkey: BlueZ
    hands us the passkey to display (DisplayOnly), which goes to the terminal.
    """

    def __init__(self, path: str, show: Callable[[str], None]) -> None:
        super().__init__("org.bluez.Agent1")
        self.path = path
        self._show = show

    @dbus_method()
    def Release(self):  # noqa: N802
        pass

    @dbus_method()
    def RequestPinCode(self, device: DBusObjectPath) -> DBusStr:  # noqa: N802
        raise DBusError(_ERR_REJECTED, "no PIN codes (LE only)")

    @dbus_method()
    def DisplayPinCode(self, device: DBusObjectPath, pincode: DBusStr):  # noqa: N802
        self._show(f"BLE pairing PIN for {device}: {pincode}")

    @dbus_method()
    def RequestPasskey(self, device: DBusObjectPath) -> DBusUInt32:  # noqa: N802
        raise DBusError(_ERR_REJECTED, "the authenticator cannot type a passkey")

    @dbus_method()
    def DisplayPasskey(  # noqa: N802
        self, device: DBusObjectPath, passkey: DBusUInt32, entered: DBusUInt16
    ):
        if entered == 0:
            self._show(f"BLE pairing passkey: {passkey:06d} (type it on the client)")

    @dbus_method()
    def RequestConfirmation(self, device: DBusObjectPath, passkey: DBusUInt32):  # noqa: N802
        log.info("BLE: pairing confirmed for %s", device)

    @dbus_method()
    def RequestAuthorization(self, device: DBusObjectPath):  # noqa: N802
        log.info("BLE: pairing authorized for %s", device)

    @dbus_method()
    def AuthorizeService(self, device: DBusObjectPath, uuid: DBusStr):  # noqa: N802
        pass

    @dbus_method()
    def Cancel(self):  # noqa: N802
        log.info("BLE: pairing cancelled")


async def _call(
    bus: MessageBus, path: str, interface: str, member: str, signature: str = "", body: Any = ()
) -> Message:
    reply = await bus.call(
        Message(
            destination=BLUEZ,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=list(body),
        )
    )
    assert reply is not None
    if reply.message_type == MessageType.ERROR:
        raise RuntimeError(f"{interface}.{member} on {path}: {reply.error_name} {reply.body}")
    return reply


async def _set(bus: MessageBus, path: str, interface: str, name: str, value: Variant) -> None:
    await _call(
        bus, path, "org.freedesktop.DBus.Properties", "Set", "ssv", (interface, name, value)
    )


async def _find_adapter(bus: MessageBus, wanted: str | None, timeout: float) -> str:
    """The adapter's object path, waiting for bluetoothd to register it (it may still be starting,
    e.g. at boot on a Raspberry Pi). ``wanted`` is "hci0" or a path; None takes the first."""
    needed = {"org.bluez.Adapter1", "org.bluez.GattManager1", "org.bluez.LEAdvertisingManager1"}
    target = (
        None if wanted is None else wanted if wanted.startswith("/") else f"/org/bluez/{wanted}"
    )
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            reply = await _call(bus, "/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects")
            objects = reply.body[0]
        except RuntimeError:
            objects = {}  # bluetoothd not on the bus yet
        ready = sorted(path for path, ifaces in objects.items() if needed <= set(ifaces))
        if target in ready or (target is None and ready):
            return target or ready[0]
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(
                f"no BlueZ adapter {wanted or ''} with GATT server and LE advertising "
                f"(found: {ready or 'none'}); is bluetoothd running?"
            )
        await asyncio.sleep(0.5)


class BlePeripheralTransport:
    """Serve one authenticator as a FIDO BLE peripheral on a BlueZ adapter.

    ``adapter``: "hci0" or "/org/bluez/hci0" (default: the first capable adapter).
    ``control_point_length``: None negotiates ATT_MTU - 3 per link (20..512); a number caps it.
    ``pairing``: "just-works" (LE SC without MITM; characteristics need an encrypted link),
    "passkey" (DisplayOnly agent, passkey printed; needs an authenticated link) or "none"
    (no encryption required -- for debugging only; real clients pair anyway).
    ``pairing_mode`` advertises the FIDO "pairing mode" service-data flag and makes the
    adapter discoverable. ``u2f`` defaults to the handler's ``config.u2f``.
    """

    def __init__(
        self,
        handler: CtapHandler,
        *,
        lock: asyncio.Lock | None = None,
        adapter: str | None = None,
        name: str = "fido-emu",
        control_point_length: int | None = None,
        pairing: Pairing = "just-works",
        pairing_mode: bool = True,
        u2f: bool | None = None,
        keepalive_interval: float = 0.1,
        manufacturer: str = "fido-emulator",
        model: str = "fido-emu BLE",
        show: Callable[[str], None] | None = None,
        adapter_timeout: float = 30.0,
    ) -> None:
        if pairing not in ("just-works", "passkey", "none"):
            raise ValueError(f"unknown pairing mode {pairing!r}")
        if u2f is None:
            u2f = bool(getattr(getattr(handler, "config", None), "u2f", True))
        self.adapter = adapter
        self.adapter_timeout = adapter_timeout
        self.name = name
        self.control_point_length = control_point_length
        self.pairing: Pairing = pairing
        self.pairing_mode = pairing_mode
        self.manufacturer = manufacturer
        self.model = model
        self._show = show or (lambda text: print(text, file=sys.stderr, flush=True))
        default_cpl = clamp_cpl(control_point_length or MIN_CONTROL_POINT_LENGTH)
        self.session = BleSession(
            handler,
            self._notify,
            u2f=u2f,
            lock=lock,
            cpl=default_cpl,
            keepalive_interval=keepalive_interval,
        )
        self._bus: MessageBus | None = None
        self._adapter_path: str | None = None
        self._registered: list[tuple[str, str, str]] = []  # (interface, unregister member, path)
        self._status: _Characteristic | None = None
        self._exported: list[tuple[str, ServiceInterface]] = []

    # ------------------------------------------------------------------ API

    @property
    def engine(self) -> BleSession:
        """Same shape as the HID transports (``t.engine.power_cycle()`` in ``fido-emu run``)."""
        return self.session

    def power_cycle(self) -> None:
        self.session.power_cycle()

    async def start(self) -> None:
        bus = await MessageBus(bus_type=BusType.SYSTEM, negotiate_unix_fd=True).connect()
        self._bus = bus
        try:
            self._adapter_path = await _find_adapter(bus, self.adapter, self.adapter_timeout)
            await self._prepare_adapter(bus)
            self._export_gatt(bus)
            await self._register(bus)
        except BaseException:
            await self.close()
            raise
        log.info(
            "FIDO BLE peripheral %r on %s (pairing %s)", self.name, self._adapter_path, self.pairing
        )

    async def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            for interface, member, path in reversed(self._registered):
                target = self._adapter_path if member != "UnregisterAgent" else "/org/bluez"
                try:
                    await _call(bus, target or "/", interface, member, "o", (path,))
                except Exception as e:  # bluetoothd may be gone already
                    log.debug("BLE: %s failed on close: %s", member, e)
            self._registered.clear()
            for path, iface in self._exported:
                bus.unexport(path, iface)
            self._exported.clear()
            bus.disconnect()
        await self.session.aclose()

    async def __aenter__(self) -> BlePeripheralTransport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ setup

    async def _prepare_adapter(self, bus: MessageBus) -> None:
        path = self._adapter_path
        assert path is not None
        await _set(bus, path, "org.bluez.Adapter1", "Powered", Variant("b", True))
        await _set(bus, path, "org.bluez.Adapter1", "Alias", Variant("s", self.name))
        await _set(bus, path, "org.bluez.Adapter1", "Pairable", Variant("b", True))
        await _set(bus, path, "org.bluez.Adapter1", "PairableTimeout", Variant("u", 0))
        if self.pairing_mode:
            await _set(bus, path, "org.bluez.Adapter1", "DiscoverableTimeout", Variant("u", 0))
            await _set(bus, path, "org.bluez.Adapter1", "Discoverable", Variant("b", True))

    def _flags(self, *base: str) -> list[str]:
        prefix = {"just-works": "encrypt-", "passkey": "encrypt-authenticated-", "none": ""}
        return [prefix[self.pairing] + f for f in base]

    def _export_gatt(self, bus: MessageBus) -> None:
        app = f"{ROOT}/app"
        fido = _Service(f"{app}/fido", uuids.FIDO_SERVICE)
        self._status = _Characteristic(
            f"{fido.path}/status", uuids.STATUS, fido.path, ["notify"],
            on_notify=self._on_notify_state,
        )  # fmt: skip
        # Notification security follows the link: BlueZ has no encrypt-notify for LE, and the
        # control point it answers cannot be written without the encryption asked below.
        chars = [
            _Characteristic(
                f"{fido.path}/control_point", uuids.CONTROL_POINT, fido.path,
                self._flags("write"), write=self._write_control_point,
            ),
            self._status,
            _Characteristic(
                f"{fido.path}/control_point_length", uuids.CONTROL_POINT_LENGTH, fido.path,
                self._flags("read"), read=self._read_cpl,
            ),
            _Characteristic(
                f"{fido.path}/revision_bitfield", uuids.SERVICE_REVISION_BITFIELD, fido.path,
                self._flags("read", "write"), read=lambda _o: self.session.read_revision(),
                write=lambda value, _o: self.session.write_revision(value),
            ),
        ]  # fmt: skip
        dis = _Service(f"{app}/dis", uuids.DEVICE_INFORMATION)
        version = _version()
        info = {
            uuids.MANUFACTURER_NAME: self.manufacturer,
            uuids.MODEL_NUMBER: self.model,
            uuids.FIRMWARE_REVISION: version,
            uuids.SOFTWARE_REVISION: version,
        }
        for i, (uuid, text) in enumerate(info.items()):
            data = text.encode()
            chars.append(
                _Characteristic(
                    f"{dis.path}/char{i}", uuid, dis.path, ["read"], read=lambda _o, d=data: d
                )
            )
        for iface in (fido, dis, *chars):
            self._export(bus, iface.path, iface)

    def _export(self, bus: MessageBus, path: str, iface: ServiceInterface) -> None:
        bus.export(path, iface)
        self._exported.append((path, iface))

    async def _register(self, bus: MessageBus) -> None:
        path = self._adapter_path
        assert path is not None
        if self.pairing != "none":
            agent = _Agent(f"{ROOT}/agent", self._show)
            self._export(bus, agent.path, agent)
            capability = "DisplayOnly" if self.pairing == "passkey" else "NoInputNoOutput"
            await _call(
                bus, "/org/bluez", "org.bluez.AgentManager1", "RegisterAgent", "os",
                (agent.path, capability),
            )  # fmt: skip
            self._registered.append(("org.bluez.AgentManager1", "UnregisterAgent", agent.path))
            await _call(
                bus, "/org/bluez", "org.bluez.AgentManager1", "RequestDefaultAgent", "o",
                (agent.path,),
            )  # fmt: skip
        app = f"{ROOT}/app"
        await _call(bus, path, "org.bluez.GattManager1", "RegisterApplication", "oa{sv}", (app, {}))
        self._registered.append(("org.bluez.GattManager1", "UnregisterApplication", app))
        flags = uuids.SERVICE_DATA_PAIRING_MODE if self.pairing_mode else 0
        if self.pairing == "passkey":
            flags |= uuids.SERVICE_DATA_PASSKEY_ENTRY
        adv = _Advertisement(f"{ROOT}/adv0", self.name, bytes([flags]), self.pairing_mode)
        self._export(bus, adv.path, adv)
        await _call(
            bus, path, "org.bluez.LEAdvertisingManager1", "RegisterAdvertisement", "oa{sv}",
            (adv.path, {}),
        )  # fmt: skip
        self._registered.append(
            ("org.bluez.LEAdvertisingManager1", "UnregisterAdvertisement", adv.path)
        )

    # ------------------------------------------------------------------ GATT callbacks

    def _link_cpl(self, options: dict[str, Variant]) -> int:
        cap = min(self.control_point_length or BLUEZ_MAX_WRITE, BLUEZ_MAX_WRITE)
        return min(clamp_cpl(cap), cpl_for_mtu(_mtu(options), MIN_CONTROL_POINT_LENGTH))

    def _read_cpl(self, options: dict[str, Variant]) -> bytes:
        cpl = self._link_cpl(options)
        self.session.cpl = cpl
        log.debug("BLE: control point length %d (ATT MTU %s)", cpl, _mtu(options))
        return cpl.to_bytes(2, "big")

    def _write_control_point(self, value: bytes, options: dict[str, Variant]) -> None:
        if _mtu(options) is not None and not self.session.busy:
            self.session.cpl = self._link_cpl(options)
        self.session.feed(value)

    def _on_notify_state(self, enabled: bool) -> None:
        log.debug("BLE: fidoStatus notifications %s", "on" if enabled else "off")
        if not enabled:
            self.session.reset()  # the client went away (BlueZ stops when the last one leaves)

    def _notify(self, frame: bytes) -> None:
        if self._status is None:
            raise RuntimeError("BLE peripheral not started")
        self._status.notify(frame)


__all__ = ["BlePeripheralTransport", "Pairing"]

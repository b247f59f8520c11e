"""CTAPHID over Linux ``/dev/uhid``: the emulator appears to the host as a USB security key.

Browsers and libfido2 then find it like real hardware through ``/dev/hidrawN``. The event
encoding follows ``include/uapi/linux/uhid.h`` (packed structs, host byte order) and is kept as
pure functions so it is testable without the kernel module.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import struct
from dataclasses import dataclass
from typing import Any

from authenticator.core.ports import CtapHandler
from transports.ctaphid import REPORT_SIZE, CtapHidEngine
from transports.hid_descriptor import DEFAULT_PID, DEFAULT_VID, FIDO_REPORT_DESCRIPTOR
from transports.lifecycle import Served

log = logging.getLogger(__name__)

UHID_PATH = "/dev/uhid"

# enum uhid_event_type
UHID_DESTROY = 1
UHID_START = 2
UHID_STOP = 3
UHID_OPEN = 4
UHID_CLOSE = 5
UHID_OUTPUT = 6
UHID_GET_REPORT = 9
UHID_GET_REPORT_REPLY = 10
UHID_CREATE2 = 11
UHID_INPUT2 = 12
UHID_SET_REPORT = 13
UHID_SET_REPORT_REPLY = 14

# enum uhid_report_type
UHID_FEATURE_REPORT = 0
UHID_OUTPUT_REPORT = 1
UHID_INPUT_REPORT = 2

UHID_DATA_MAX = 4096
HID_MAX_DESCRIPTOR_SIZE = 4096
BUS_USB = 0x03

# sizeof(struct uhid_event): u32 type + the largest union member, uhid_create2_req
# (128 + 64 + 64 + 2 + 2 + 4 * 4 + 4096 = 4372).
_CREATE2 = struct.Struct(f"=I128s64s64sHHIIII{HID_MAX_DESCRIPTOR_SIZE}s")
UHID_EVENT_SIZE = _CREATE2.size
_INPUT2 = struct.Struct(f"=IH{UHID_DATA_MAX}s")
_OUTPUT = struct.Struct(f"=I{UHID_DATA_MAX}sHB")
_GET_REPORT = struct.Struct("=IIBB")
_SET_REPORT = struct.Struct(f"=IIBBH{UHID_DATA_MAX}s")
_REPORT_REPLY = struct.Struct(f"=IIHH{UHID_DATA_MAX}s")  # GET_REPORT_REPLY
_SET_REPLY = struct.Struct("=IIH")
_START = struct.Struct("=IQ")


@dataclass(frozen=True)
class UhidDevice:
    """What UHID_CREATE2 tells the kernel; name/uniq show up in sysfs and ``fido2-token -L``."""

    name: str = "fido-emulator"
    phys: str = ""
    uniq: str = ""
    vid: int = DEFAULT_VID
    pid: int = DEFAULT_PID
    version: int = 0x0100
    country: int = 0
    bus: int = BUS_USB
    descriptor: bytes = FIDO_REPORT_DESCRIPTOR


@dataclass(frozen=True)
class UhidEvent:
    """A decoded kernel→user event; fields beyond ``type`` are filled where the type has them."""

    type: int
    data: bytes = b""
    rtype: int = 0
    request_id: int = 0
    rnum: int = 0
    dev_flags: int = 0


def _cstr(text: str, size: int) -> bytes:
    raw = text.encode()
    if len(raw) >= size:
        raise ValueError(f"{text!r} longer than {size - 1} bytes")
    return raw


def encode_create2(dev: UhidDevice) -> bytes:
    if len(dev.descriptor) > HID_MAX_DESCRIPTOR_SIZE:
        raise ValueError("report descriptor too long")
    return _CREATE2.pack(
        UHID_CREATE2,
        _cstr(dev.name, 128),
        _cstr(dev.phys, 64),
        _cstr(dev.uniq, 64),
        len(dev.descriptor),
        dev.bus,
        dev.vid,
        dev.pid,
        dev.version,
        dev.country,
        dev.descriptor,
    )


def encode_input2(report: bytes) -> bytes:
    """A device→host report; no report-id byte since the descriptor declares none."""
    if len(report) > UHID_DATA_MAX:
        raise ValueError("report too long")
    return _INPUT2.pack(UHID_INPUT2, len(report), report).ljust(UHID_EVENT_SIZE, b"\0")


def encode_destroy() -> bytes:
    return struct.pack("=I", UHID_DESTROY).ljust(UHID_EVENT_SIZE, b"\0")


def encode_get_report_reply(request_id: int, err: int) -> bytes:
    return _REPORT_REPLY.pack(UHID_GET_REPORT_REPLY, request_id, err, 0, b"").ljust(
        UHID_EVENT_SIZE, b"\0"
    )


def encode_set_report_reply(request_id: int, err: int) -> bytes:
    return _SET_REPLY.pack(UHID_SET_REPORT_REPLY, request_id, err).ljust(UHID_EVENT_SIZE, b"\0")


def decode_event(buf: bytes) -> UhidEvent:
    """Parse one event read from ``/dev/uhid`` (short reads are zero-extended, as uhid.h says)."""
    buf = bytes(buf).ljust(UHID_EVENT_SIZE, b"\0")
    (etype,) = struct.unpack_from("=I", buf)
    if etype == UHID_OUTPUT:
        _, data, size, rtype = _OUTPUT.unpack_from(buf)
        return UhidEvent(etype, data=data[: min(size, UHID_DATA_MAX)], rtype=rtype)
    if etype == UHID_GET_REPORT:
        _, rid, rnum, rtype = _GET_REPORT.unpack_from(buf)
        return UhidEvent(etype, request_id=rid, rnum=rnum, rtype=rtype)
    if etype == UHID_SET_REPORT:
        _, rid, rnum, rtype, size, data = _SET_REPORT.unpack_from(buf)
        return UhidEvent(etype, data=data[:size], request_id=rid, rnum=rnum, rtype=rtype)
    if etype == UHID_START:
        _, flags = _START.unpack_from(buf)
        return UhidEvent(etype, dev_flags=flags)
    return UhidEvent(etype)


def output_report(data: bytes, report_length: int = REPORT_SIZE) -> bytes:
    """The CTAPHID report inside a UHID_OUTPUT payload.

    hidraw's write() ABI puts the report number first (0 when the descriptor has no report
    ids) and uhid forwards the buffer untouched, so ``data`` is 0x00 + 64 bytes. That byte is
    always dropped; the rest is cut or zero-padded to one report.
    """
    return data[1 : 1 + report_length].ljust(report_length, b"\0")


class UhidTransport(Served):
    """Create a UHID device and serve CTAPHID on it until closed (which destroys it)."""

    def __init__(
        self,
        handler: CtapHandler,
        device: UhidDevice | None = None,
        *,
        path: str = UHID_PATH,
        lock: asyncio.Lock | None = None,
        **engine_options: Any,
    ) -> None:
        self.device = device or UhidDevice()
        self.path = path
        self.fd: int | None = None
        self.started = asyncio.Event()
        self.opened = False
        engine_options.setdefault("transport", "usb")
        self.engine = CtapHidEngine(handler, self._send, lock=lock, **engine_options)

    async def start(self, fd: int | None = None) -> None:
        """Open ``path`` (or adopt ``fd``, e.g. a socketpair end in tests) and UHID_CREATE2."""
        if fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        else:
            os.set_blocking(fd, False)
        self.fd = fd
        try:
            os.write(self.fd, encode_create2(self.device))
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise
        asyncio.get_running_loop().add_reader(self.fd, self._on_readable)
        log.info(
            "UHID device %r %04x:%04x created", self.device.name, self.device.vid, self.device.pid
        )

    async def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            try:
                os.write(fd, encode_destroy())
            except OSError as exc:
                log.debug("UHID_DESTROY: %s", exc)
            os.close(fd)  # closing the fd destroys the device too; DESTROY makes it prompt
        await self.engine.aclose()


    def _on_readable(self) -> None:
        while self.fd is not None:
            try:
                buf = os.read(self.fd, UHID_EVENT_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                log.error("UHID read failed: %s", exc)
                return
            if not buf:
                return
            self.handle_event(decode_event(buf))

    def handle_event(self, event: UhidEvent) -> None:
        """React to one kernel event (public so tests can drive it without a kernel)."""
        if event.type == UHID_OUTPUT:
            if event.rtype == UHID_OUTPUT_REPORT:
                self.engine.feed(output_report(event.data))
        elif event.type == UHID_START:
            self.started.set()
        elif event.type == UHID_STOP:
            self.started.clear()
        elif event.type == UHID_OPEN:
            self.opened = True
        elif event.type == UHID_CLOSE:
            self.opened = False
        elif event.type == UHID_GET_REPORT:
            # No feature/input reports to read back; answer at once so the host does not wait
            # for the kernel's 5 s timeout.
            self._write(encode_get_report_reply(event.request_id, errno.EIO))
        elif event.type == UHID_SET_REPORT:
            self._write(encode_set_report_reply(event.request_id, errno.EIO))

    def _send(self, report: bytes) -> None:
        self._write(encode_input2(report))

    def _write(self, event: bytes) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, event)
        except OSError as exc:
            log.warning("UHID write failed: %s", exc)

"""CTAPHID over a USB HID gadget (Linux configfs ``usb_gadget`` + ``f_hid``).

On a Raspberry Pi the OTG port (dwc2 UDC) makes the Pi a USB security key for the laptop it is
plugged into; in the VM tests ``dummy_hcd`` loops the gadget back into the same kernel. The
configfs steps are filesystem operations behind a small :class:`ConfigFs` seam so they can be
checked against a fake tree; ``setup`` is idempotent and ``teardown`` undoes it in reverse.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authenticator.core.ports import CtapHandler
from transports.ctaphid import REPORT_SIZE, CtapHidEngine
from transports.hid_descriptor import DEFAULT_PID, DEFAULT_VID, report_descriptor
from transports.lifecycle import Served

log = logging.getLogger(__name__)

FUNCTION = "hid.usb0"
CONFIG = "c.1"
LANG = "0x409"  # en-US
MAX_QUEUED_REPORTS = 4096


@dataclass
class GadgetConfig:
    """Identity and placement of the gadget; every path is injectable for tests."""

    name: str = "fido_emu"
    vid: int = DEFAULT_VID
    pid: int = DEFAULT_PID
    bcd_device: int = 0x0100
    manufacturer: str = "fido-emulator"
    product: str = "fido-emulator security key"
    serial: str = "0000000000000001"
    configuration: str = "FIDO"
    max_power_ma: int = 100
    report_length: int = REPORT_SIZE
    udc: str | None = None  # None: the first entry of /sys/class/udc
    configfs_root: Path = Path("/sys/kernel/config/usb_gadget")
    udc_class_root: Path = Path("/sys/class/udc")
    sys_char_root: Path = Path("/sys/dev/char")
    dev_root: Path = Path("/dev")

    @property
    def gadget_dir(self) -> Path:
        return self.configfs_root / self.name


class ConfigFs:
    """The few filesystem operations configfs needs; a fake subclass records them in tests."""

    def mkdir(self, path: Path) -> None:
        path.mkdir(exist_ok=True)

    def write(self, path: Path, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)

    def read(self, path: Path) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def symlink(self, target: Path, link: Path) -> None:
        os.symlink(target, link)

    def unlink(self, link: Path) -> None:
        os.unlink(link)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def listdir(self, path: Path) -> list[str]:
        return sorted(os.listdir(path))


class GadgetError(RuntimeError):
    pass


def _attr(fs: ConfigFs, path: Path) -> str:
    try:
        return fs.read(path).decode(errors="replace").strip()
    except OSError:
        return ""


def find_udc(config: GadgetConfig, fs: ConfigFs | None = None) -> str:
    fs = fs or ConfigFs()
    if config.udc:
        return config.udc
    try:
        udcs = fs.listdir(config.udc_class_root)
    except OSError:
        udcs = []
    if not udcs:
        raise GadgetError(
            f"no USB device controller in {config.udc_class_root} "
            "(load dwc2 on a Pi, or dummy_hcd for tests)"
        )
    return udcs[0]


def is_bound(config: GadgetConfig, fs: ConfigFs | None = None) -> bool:
    fs = fs or ConfigFs()
    return bool(_attr(fs, config.gadget_dir / "UDC"))


def _matches(config: GadgetConfig, fs: ConfigFs) -> bool:
    g = config.gadget_dir
    return (
        int(_attr(fs, g / "idVendor") or "-1", 0) == config.vid
        and int(_attr(fs, g / "idProduct") or "-1", 0) == config.pid
        and fs.read(g / "functions" / FUNCTION / "report_desc")
        == report_descriptor(config.report_length)
    )


def setup(config: GadgetConfig, fs: ConfigFs | None = None) -> Path:
    """Create (or find) the gadget, bind it to the UDC, return the ``/dev/hidgN`` path.

    Calling it again with the same config changes nothing; a bound gadget of that name with
    another identity is torn down and rebuilt (its attributes are read-only while bound).
    """
    fs = fs or ConfigFs()
    g = config.gadget_dir
    if g.exists() and is_bound(config, fs):
        try:
            same = _matches(config, fs)
        except OSError:
            same = False
        if same:
            return hidg_path(config, fs)
        teardown(config, fs)

    fs.mkdir(g)
    fs.write(g / "idVendor", f"0x{config.vid:04x}\n".encode())
    fs.write(g / "idProduct", f"0x{config.pid:04x}\n".encode())
    fs.write(g / "bcdDevice", f"0x{config.bcd_device:04x}\n".encode())
    fs.write(g / "bcdUSB", b"0x0200\n")
    fs.mkdir(g / "strings")
    fs.mkdir(g / "strings" / LANG)
    fs.write(g / "strings" / LANG / "manufacturer", f"{config.manufacturer}\n".encode())
    fs.write(g / "strings" / LANG / "product", f"{config.product}\n".encode())
    fs.write(g / "strings" / LANG / "serialnumber", f"{config.serial}\n".encode())

    c = g / "configs" / CONFIG
    fs.mkdir(g / "configs")
    fs.mkdir(c)
    fs.write(c / "MaxPower", f"{config.max_power_ma}\n".encode())
    fs.mkdir(c / "strings")
    fs.mkdir(c / "strings" / LANG)
    fs.write(c / "strings" / LANG / "configuration", f"{config.configuration}\n".encode())

    f = g / "functions" / FUNCTION
    fs.mkdir(g / "functions")
    fs.mkdir(f)
    fs.write(f / "protocol", b"0\n")  # not a boot keyboard/mouse
    fs.write(f / "subclass", b"0\n")
    fs.write(f / "report_length", f"{config.report_length}\n".encode())
    fs.write(f / "report_desc", report_descriptor(config.report_length))

    link = c / FUNCTION
    if not link.is_symlink():
        fs.symlink(f, link)

    udc = find_udc(config, fs)
    try:
        fs.write(g / "UDC", f"{udc}\n".encode())
    except OSError as exc:
        raise GadgetError(f"cannot bind gadget to UDC {udc!r}: {exc}") from exc
    log.info("USB gadget %s bound to %s", config.name, udc)
    return hidg_path(config, fs)


def hidg_path(config: GadgetConfig, fs: ConfigFs | None = None) -> Path:
    """Map the function's ``dev`` (major:minor) to its device node via sysfs' uevent."""
    fs = fs or ConfigFs()
    devnum = _attr(fs, config.gadget_dir / "functions" / FUNCTION / "dev")
    if not devnum:
        raise GadgetError(f"{config.gadget_dir} has no {FUNCTION} device number")
    uevent = _attr(fs, config.sys_char_root / devnum / "uevent")
    for line in uevent.splitlines():
        if line.startswith("DEVNAME="):
            return config.dev_root / line.split("=", 1)[1]
    return config.dev_root / f"hidg{devnum.split(':')[-1]}"


def teardown(config: GadgetConfig, fs: ConfigFs | None = None) -> None:
    """Unbind and remove the gadget: links, then configs, functions, strings, the gadget."""
    fs = fs or ConfigFs()
    g = config.gadget_dir
    if not g.exists():
        return
    if is_bound(config, fs):
        fs.write(g / "UDC", b"\n")
    configs = g / "configs"
    for cname in _list(fs, configs):
        cdir = configs / cname
        for entry in _list(fs, cdir):
            if (cdir / entry).is_symlink():
                fs.unlink(cdir / entry)
        for lang in _list(fs, cdir / "strings"):
            fs.rmdir(cdir / "strings" / lang)
        fs.rmdir(cdir)
    for fname in _list(fs, g / "functions"):
        fs.rmdir(g / "functions" / fname)
    for lang in _list(fs, g / "strings"):
        fs.rmdir(g / "strings" / lang)
    fs.rmdir(g)
    log.info("USB gadget %s removed", config.name)


def _list(fs: ConfigFs, path: Path) -> list[str]:
    """Subdirectories and links only (configfs attribute files cannot be removed)."""
    try:
        names = fs.listdir(path)
    except OSError:
        return []
    return [n for n in names if (path / n).is_dir() or (path / n).is_symlink()]


@dataclass
class _Writer:
    """Reports waiting for the host: f_hid accepts one IN report at a time (EAGAIN until read)."""

    queue: collections.deque[bytes] = field(default_factory=collections.deque)
    waiting: bool = False


class GadgetTransport(Served):
    """Serve CTAPHID on ``/dev/hidgN``; with ``manage_gadget`` also create and remove the gadget."""

    def __init__(
        self,
        handler: CtapHandler,
        config: GadgetConfig | None = None,
        *,
        device_path: Path | str | None = None,
        manage_gadget: bool = True,
        teardown_on_close: bool = True,
        fs: ConfigFs | None = None,
        lock: asyncio.Lock | None = None,
        **engine_options: Any,
    ) -> None:
        self.config = config or GadgetConfig()
        self.device_path = Path(device_path) if device_path else None
        self.manage_gadget = manage_gadget
        self.teardown_on_close = teardown_on_close
        self.fs = fs or ConfigFs()
        self.fd: int | None = None
        self._out = _Writer()
        engine_options.setdefault("transport", "usb")
        self.engine = CtapHidEngine(handler, self._send, lock=lock, **engine_options)

    async def start(self, node_timeout: float = 5.0) -> Path:
        if self.manage_gadget:
            self.device_path = await asyncio.to_thread(setup, self.config, self.fs)
        if self.device_path is None:
            raise GadgetError("no device path and manage_gadget is off")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + node_timeout
        while not self.device_path.exists():  # devtmpfs/udev creates the node just after bind
            if loop.time() > deadline:
                raise GadgetError(f"{self.device_path} did not appear")
            await asyncio.sleep(0.05)
        self.fd = os.open(self.device_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        loop.add_reader(self.fd, self._on_readable)
        log.info("CTAPHID on %s", self.device_path)
        return self.device_path

    async def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(fd)
            if self._out.waiting:
                loop.remove_writer(fd)
            os.close(fd)
        self._out = _Writer()
        await self.engine.aclose()
        if self.manage_gadget and self.teardown_on_close:
            await asyncio.to_thread(teardown, self.config, self.fs)


    def _on_readable(self) -> None:
        while self.fd is not None:
            try:
                report = os.read(self.fd, self.config.report_length)
            except BlockingIOError:
                return
            except OSError as exc:  # ESHUTDOWN while the host is unplugged
                log.debug("hidg read: %s", exc)
                return
            if not report:
                return
            self.engine.feed(report)

    def _send(self, report: bytes) -> None:
        if self.fd is None:
            return
        if len(self._out.queue) >= MAX_QUEUED_REPORTS:
            log.warning("hidg: host is not reading; dropping a report")
            return
        self._out.queue.append(report)
        self._flush()

    def _flush(self) -> None:
        out = self._out
        while out.queue and self.fd is not None:
            try:
                os.write(self.fd, out.queue[0])
            except BlockingIOError:
                if not out.waiting:
                    asyncio.get_running_loop().add_writer(self.fd, self._flush)
                    out.waiting = True
                return
            except OSError as exc:
                log.debug("hidg write: %s", exc)
                out.queue.clear()
                break
            out.queue.popleft()
        if out.waiting and self.fd is not None:
            asyncio.get_running_loop().remove_writer(self.fd)
        out.waiting = False

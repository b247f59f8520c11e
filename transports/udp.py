"""CTAPHID over UDP: the SoloKeys simulator convention, for tests without a kernel device.

One datagram is one 64-byte HID report with no report-id byte. The device listens on
127.0.0.1:8111 and sends every report to 127.0.0.1:7112 (solo1 ``pc/device.c``), so existing
tools written for the Solo simulator (solo-python, fido2-tests) can talk to us. The client side
(:class:`UdpCtapHidConnection`) plugs into python-fido2's ``CtapHidDevice``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

from authenticator.core.ports import CtapHandler
from transports.ctaphid import REPORT_SIZE, CtapHidEngine
from transports.hid_descriptor import DEFAULT_PID, DEFAULT_VID
from transports.lifecycle import Served

log = logging.getLogger(__name__)

DEFAULT_LISTEN = ("127.0.0.1", 8111)
DEFAULT_REPLY_TO = ("127.0.0.1", 7112)

# The 64-byte report on which the solo1 simulator exits with status 100 so that its test harness
# (solokeys/fido2-tests) restarts it: a simulated unplug/replug. We take it as power_cycle().
SOLO_MAGIC_REBOOT = bytes.fromhex(
    "ac1052ca95e569de69e02ebff333485f13f9b2da34c5a8a3"
    "40526697a9ab2e0b394d8d04973c134005be1a0140bff604"
    "5bb26eb77a73eaa47813f6b49a7250dc"
)
assert len(SOLO_MAGIC_REBOOT) == REPORT_SIZE

Address = tuple[str, int]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable when no client listens on the reply port: harmless.
        log.debug("UDP transport: %s", exc)


class UdpTransport(Served):
    """Serve one CTAPHID device over UDP.

    ``reply_to=None`` answers whoever sent the latest datagram instead of a fixed address,
    which lets tests run on ephemeral ports. ``engine_options`` go to :class:`CtapHidEngine`
    (``u2f``, ``device_version``, ``msg_timeout`` ...); pass the authenticator-wide ``lock``.
    """

    def __init__(
        self,
        handler: CtapHandler,
        *,
        listen: Address = DEFAULT_LISTEN,
        reply_to: Address | None = DEFAULT_REPLY_TO,
        lock: asyncio.Lock | None = None,
        **engine_options: Any,
    ) -> None:
        self.listen = listen
        self.reply_to = reply_to
        self._peer: Address | None = reply_to
        self._transport: asyncio.DatagramTransport | None = None
        self.engine = CtapHidEngine(handler, self._send, lock=lock, **engine_options)

    @property
    def address(self) -> Address:
        """The bound (host, port), useful after listening on port 0."""
        if self._transport is None:
            raise RuntimeError("UDP transport not started")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=self.listen
        )
        log.info("CTAPHID over UDP on %s:%d", *self.address)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        await self.engine.aclose()


    def _on_datagram(self, data: bytes, addr: Any) -> None:
        if self.reply_to is None:
            self._peer = (addr[0], addr[1])
        if data == SOLO_MAGIC_REBOOT:
            log.info("UDP transport: simulator reboot report, power-cycling")
            self.engine.power_cycle()
            return
        self.engine.feed(data)

    def _send(self, report: bytes) -> None:
        if self._transport is None or self._peer is None:
            return
        self._transport.sendto(report, self._peer)


class UdpCtapHidConnection(CtapHidConnection):
    """python-fido2 connection to a UDP CTAPHID device (blocking, as python-fido2 expects).

    Binds ``local`` (the device's reply address, 127.0.0.1:7112 by convention; port 0 for an
    ephemeral port when the device replies to the sender) and sends to ``device``.
    """

    def __init__(
        self,
        device: Address = DEFAULT_LISTEN,
        local: Address = DEFAULT_REPLY_TO,
        timeout: float | None = 30.0,
    ) -> None:
        self.device = device
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(local)
        self.sock.settimeout(timeout)

    def write_packet(self, data: bytes) -> None:
        self.sock.sendto(bytes(data).ljust(REPORT_SIZE, b"\0"), self.device)

    def read_packet(self) -> bytes:
        while True:
            data, addr = self.sock.recvfrom(2048)
            if addr[1] == self.device[1]:
                return data

    def close(self) -> None:
        self.sock.close()

    def send_reboot(self) -> None:
        """Ask the simulator to power-cycle (the solo1 magic report)."""
        self.sock.sendto(SOLO_MAGIC_REBOOT, self.device)


def udp_descriptor(device: Address = DEFAULT_LISTEN) -> HidDescriptor:
    return HidDescriptor(
        path=f"udp:{device[0]}:{device[1]}",
        vid=DEFAULT_VID,
        pid=DEFAULT_PID,
        report_size_in=REPORT_SIZE,
        report_size_out=REPORT_SIZE,
        product_name="fido-emulator (UDP)",
        serial_number=None,
    )


def open_udp_device(
    device: Address = DEFAULT_LISTEN,
    local: Address = DEFAULT_REPLY_TO,
    timeout: float | None = 30.0,
) -> CtapHidDevice:
    """A python-fido2 ``CtapHidDevice`` talking to a UDP device (sends CTAPHID_INIT at once)."""
    connection = UdpCtapHidConnection(device, local, timeout)
    try:
        return CtapHidDevice(udp_descriptor(device), connection)
    except Exception:
        connection.close()
        raise

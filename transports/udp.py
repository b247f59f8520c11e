"""CTAPHID over UDP: the SoloKeys simulator convention, for tests without a kernel device.

One datagram is one 64-byte HID report with no report-id byte. The device listens on
127.0.0.1:8111 like solo1's ``pc/device.c``; its clients (solo-python, fido2-tests,
python-fido2 over :class:`UdpCtapHidConnection`) bind 127.0.0.1:7112 by convention and send
from it, so answering every datagram to its sender serves them and any number of other clients.

Each client address gets its own CTAPHID engine, so its channels belong to it: another address
naming them gets INVALID_CHANNEL (a HID bus has one host; UDP has many), and a flood of INITs
from one address evicts only that address's channels. Like Solo's simulator, a request on a CID
nobody holds opens it for the sender (fido2-tests picks CIDs itself, e.g. after a reboot). Broadcast INITs are rate-limited per
address. Commands from all clients share the authenticator's lock: one runs at a time, the
others wait with KEEPALIVE PROCESSING instead of being told CHANNEL_BUSY.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

from authenticator.core.ports import CtapHandler
from transports.ctaphid import BROADCAST_CID, REPORT_SIZE, TYPE_INIT, Cmd, CtapHidEngine
from transports.hid_descriptor import DEFAULT_PID, DEFAULT_VID
from transports.lifecycle import Served

log = logging.getLogger(__name__)

DEFAULT_LISTEN = ("127.0.0.1", 8111)
DEFAULT_REPLY_TO = ("127.0.0.1", 7112)

# The 64-byte report on which the solo1 simulator reboots (fido2-tests sends it between tests
# and keeps using its channel). Honoured only with ``allow_reboot_report``: otherwise any local
# process could power-cycle the device, clearing PIN_AUTH_BLOCKED and reopening reset's window.
SOLO_MAGIC_REBOOT = bytes.fromhex(
    "ac1052ca95e569de69e02ebff333485f13f9b2da34c5a8a3"
    "40526697a9ab2e0b394d8d04973c134005be1a0140bff604"
    "5bb26eb77a73eaa47813f6b49a7250dc"
)
assert len(SOLO_MAGIC_REBOOT) == REPORT_SIZE

_BROADCAST_INIT = struct.pack(">IB", BROADCAST_CID, TYPE_INIT | Cmd.INIT)

Address = tuple[str, int]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable when a client went away: harmless.
        log.debug("UDP transport: %s", exc)


@dataclass
class _Peer:
    """One client address: its own channels (engine) and its broadcast-INIT token bucket."""

    engine: CtapHidEngine
    tokens: float
    refilled: float
    seen: float
    warned: bool = False


class UdpTransport(Served):
    """Serve one CTAPHID device over UDP to any number of client addresses.

    ``allow_reboot_report`` honours solo1's magic reboot report (the core power-cycles, channels
    stay, as with Solo's simulator). ``init_rate`` broadcast INITs per second (burst
    ``init_burst``) per address; more are dropped. At most ``max_peers`` addresses are tracked;
    the least recently seen idle one is forgotten when a new one arrives, unless all were seen
    within ``peer_idle`` seconds (then the newcomer is ignored, so a flood from many ports cannot
    push out a working client). ``engine_options`` go to :class:`CtapHidEngine`; pass the
    authenticator-wide ``lock``.
    """

    def __init__(
        self,
        handler: CtapHandler,
        *,
        listen: Address = DEFAULT_LISTEN,
        reply_to: None = None,
        lock: asyncio.Lock | None = None,
        allow_reboot_report: bool = False,
        init_rate: float = 20.0,
        init_burst: int = 64,
        max_peers: int = 256,
        peer_idle: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        **engine_options: Any,
    ) -> None:
        if reply_to is not None:
            raise ValueError("UDP replies always go to the sender; reply_to is no longer taken")
        self.handler = handler
        self.listen = listen
        self.allow_reboot_report = allow_reboot_report
        self.init_rate = init_rate
        self.init_burst = init_burst
        self.max_peers = max_peers
        self.peer_idle = peer_idle
        self._clock = clock
        self._lock = lock if lock is not None else asyncio.Lock()
        self._engine_options = engine_options
        self._peers: OrderedDict[Address, _Peer] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._transport: asyncio.DatagramTransport | None = None
        self._reboot_warned = False

    @property
    def address(self) -> Address:
        """The bound (host, port), useful after listening on port 0."""
        if self._transport is None:
            raise RuntimeError("UDP transport not started")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    @property
    def peers(self) -> tuple[Address, ...]:
        return tuple(self._peers)

    def channels(self, peer: Address) -> tuple[int, ...]:
        """The channels ``peer`` holds (empty for an unknown address)."""
        entry = self._peers.get(peer)
        return entry.engine.channels if entry is not None else ()

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
        peers, self._peers = list(self._peers.values()), OrderedDict()
        await asyncio.gather(*(p.engine.aclose() for p in peers), *self._closing)

    def power_cycle(self) -> None:
        """Simulated unplug/replug: every client's channels go, then the core's volatile state."""
        for peer in self._peers.values():
            peer.engine.reset_link()
        self.handler.power_cycle()

    def reboot(self) -> None:
        """Solo simulator reboot: the core power-cycles, channels stay (no re-enumeration)."""
        for peer in self._peers.values():
            peer.engine.reset_link(keep_channels=True)
        self.handler.power_cycle()

    # ----------------------------------------------------------------- datagrams

    def _on_datagram(self, data: bytes, addr: Any) -> None:
        address: Address = (addr[0], addr[1])
        if data == SOLO_MAGIC_REBOOT:
            if self.allow_reboot_report:
                log.info("UDP transport: simulator reboot report from %s:%d", *address)
                self.reboot()
            elif not self._reboot_warned:
                self._reboot_warned = True
                log.warning(
                    "UDP transport: ignored a simulator reboot report from %s:%d "
                    "(fido-emu run --allow-reboot-report honours it)", *address
                )
            return
        peer = self._peer(address)
        if peer is None:
            return
        if data.startswith(_BROADCAST_INIT) and not self._take_token(peer, address):
            return
        peer.engine.feed(data)

    def _peer(self, address: Address) -> _Peer | None:
        now = self._clock()
        peer = self._peers.get(address)
        if peer is not None:
            peer.seen = now
            self._peers.move_to_end(address)
            return peer
        if len(self._peers) >= self.max_peers and not self._forget_one(now):
            log.debug("UDP transport: peer table full, ignoring %s:%d", *address)
            return None
        engine = CtapHidEngine(
            self.handler, lambda report: self._send(report, address), lock=self._lock,
            adopt_cid=lambda cid: self._unowned(cid, address), **self._engine_options,
        )
        peer = _Peer(engine, tokens=float(self.init_burst), refilled=now, seen=now)
        self._peers[address] = peer
        return peer

    def _unowned(self, cid: int, address: Address) -> bool:
        """A client may open any CID (as on Solo's simulator) that no other address holds."""
        return not any(
            cid in peer.engine.channels for a, peer in self._peers.items() if a != address
        )

    def _forget_one(self, now: float) -> bool:
        for address, peer in self._peers.items():
            if now - peer.seen < self.peer_idle:
                return False  # ordered by last use: everyone after this one is fresher
            if not peer.engine.busy:
                del self._peers[address]
                task = asyncio.get_running_loop().create_task(peer.engine.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
                return True
        return False

    def _take_token(self, peer: _Peer, address: Address) -> bool:
        now = self._clock()
        peer.tokens = min(
            float(self.init_burst), peer.tokens + (now - peer.refilled) * self.init_rate
        )
        peer.refilled = now
        if peer.tokens >= 1.0:
            peer.tokens -= 1.0
            return True
        if not peer.warned:
            peer.warned = True
            log.warning("UDP transport: broadcast INIT flood from %s:%d, dropping", *address)
        return False

    def _send(self, report: bytes, address: Address) -> None:
        if self._transport is not None:
            self._transport.sendto(report, address)


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

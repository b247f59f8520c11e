"""UDP simulator transport, driven by python-fido2's own CTAPHID client."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
from collections.abc import AsyncIterator

import pytest
from fido2.ctap import CtapError
from fido2.hid import CAPABILITY, CTAPHID, CtapHidDevice

from authenticator.core.ports import CommandContext, KeepaliveStatus
from transports.ctaphid import MAX_MESSAGE_SIZE, fragment
from transports.udp import (
    SOLO_MAGIC_REBOOT,
    UdpTransport,
    open_udp_device,
)

LOOPBACK = "127.0.0.1"


class FakeHandler:
    def __init__(self) -> None:
        self.power_cycles = 0
        self.winks = 0
        self.presence = asyncio.Event()
        self.presence.set()

    async def handle_cbor(self, request: bytes, ctx: CommandContext | None = None) -> bytes:
        assert ctx is not None
        if not self.presence.is_set():
            ctx.status(KeepaliveStatus.UPNEEDED)
            waiter = asyncio.ensure_future(self.presence.wait())
            cancel = asyncio.ensure_future(ctx.cancel.wait())
            await asyncio.wait({waiter, cancel}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            cancel.cancel()
            if ctx.cancel.is_set():
                return b"\x2d"
        return b"\x00" + request[::-1]

    async def handle_u2f(self, apdu: bytes, ctx: CommandContext | None = None) -> bytes:
        return b"\x6d\x00"

    def power_cycle(self) -> None:
        self.power_cycles += 1

    def wink(self) -> None:
        self.winks += 1


@pytest.fixture
async def server() -> AsyncIterator[tuple[UdpTransport, FakeHandler]]:
    handler = FakeHandler()
    transport = UdpTransport(handler, listen=(LOOPBACK, 0))
    await transport.start()
    yield transport, handler
    await transport.close()


def _open(transport: UdpTransport) -> CtapHidDevice:
    return open_udp_device(transport.address, (LOOPBACK, 0), timeout=5)


async def test_python_fido2_ping_max_and_cbor(server: tuple[UdpTransport, FakeHandler]) -> None:
    transport, handler = server
    dev = await asyncio.to_thread(_open, transport)
    try:
        assert dev.version == 2
        assert dev.capabilities & CAPABILITY.CBOR
        assert dev.capabilities & CAPABILITY.WINK
        assert not dev.capabilities & CAPABILITY.NMSG
        payload = os.urandom(MAX_MESSAGE_SIZE)
        assert await asyncio.to_thread(dev.ping, payload) == payload
        request = b"\x04" + os.urandom(500)
        response = await asyncio.to_thread(dev.call, CTAPHID.CBOR, request)
        assert response == b"\x00" + request[::-1]
        await asyncio.to_thread(dev.wink)
        assert handler.winks == 1
    finally:
        dev.close()


async def test_python_fido2_keepalive_and_cancel(server: tuple[UdpTransport, FakeHandler]) -> None:
    transport, handler = server
    handler.presence.clear()
    dev = await asyncio.to_thread(_open, transport)
    statuses: list[int] = []
    cancel = threading.Event()

    def on_keepalive(status: int) -> None:
        statuses.append(status)
        cancel.set()  # python-fido2 then sends CTAPHID_CANCEL itself

    try:
        with pytest.raises(CtapError) as info:
            # At the HID layer the cancelled call returns the CTAP status byte as data.
            def run() -> bytes:
                data = dev.call(CTAPHID.CBOR, b"\x01\xa0", cancel, on_keepalive)
                raise CtapError(data[0])

            await asyncio.to_thread(run)
        assert info.value.code == CtapError.ERR.KEEPALIVE_CANCEL
        assert statuses == [KeepaliveStatus.UPNEEDED]
    finally:
        dev.close()


async def test_two_clients_get_distinct_channels(server: tuple[UdpTransport, FakeHandler]) -> None:
    transport, _ = server
    a = await asyncio.to_thread(_open, transport)
    b = await asyncio.to_thread(_open, transport)
    try:
        assert a._channel_id != b._channel_id
        assert await asyncio.to_thread(a.ping, b"a") == b"a"
    finally:
        a.close()
        b.close()


class RawClient:
    """A bare UDP CTAPHID client on its own port (no python-fido2), for exact reports."""

    def __init__(self, device: tuple[str, int]) -> None:
        self.device = device
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def send(self, cid: int, cmd: int, data: bytes = b"") -> None:
        for report in fragment(cid, cmd, data):
            self.sock.sendto(report, self.device)

    def send_raw(self, report: bytes) -> None:
        self.sock.sendto(report, self.device)

    async def recv(self) -> tuple[int, int, bytes]:
        report = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, 64), 5)
        cid, cmd, length = struct.unpack_from(">IBH", report)
        return cid, cmd & 0x7F, report[7 : 7 + min(length, 57)]

    async def init(self, cid: int = 0xFFFFFFFF) -> int:
        nonce = os.urandom(8)
        self.send(cid, CTAPHID.INIT, nonce)
        rcid, cmd, data = await self.recv()
        assert (rcid, cmd, data[:8]) == (cid, CTAPHID.INIT, nonce)
        return int.from_bytes(data[8:12], "big")

    def silent(self) -> bool:
        try:
            self.sock.recv(64)
        except BlockingIOError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def clients(server: tuple[UdpTransport, FakeHandler]):
    made: list[RawClient] = []

    def make() -> RawClient:
        made.append(RawClient(server[0].address))
        return made[-1]

    yield make
    for c in made:
        c.close()


async def test_d9_reboot_report_ignored_without_the_flag(server, clients) -> None:
    """D9: any local process could otherwise power-cycle the device (clears PIN_AUTH_BLOCKED)."""
    transport, handler = server
    a = clients()
    cid = await a.init()
    a.send_raw(SOLO_MAGIC_REBOOT)
    a.send(cid, CTAPHID.PING, b"after")  # datagrams are handled in order
    assert await a.recv() == (cid, CTAPHID.PING, b"after")
    assert handler.power_cycles == 0


async def test_reboot_report_with_the_flag_power_cycles_and_keeps_channels() -> None:
    """Solo's simulator semantics: the core power-cycles, the host's channel stays usable."""
    handler = FakeHandler()
    transport = UdpTransport(handler, listen=(LOOPBACK, 0), allow_reboot_report=True)
    await transport.start()
    a = RawClient(transport.address)
    try:
        cid = await a.init()
        a.send_raw(SOLO_MAGIC_REBOOT)
        a.send(cid, CTAPHID.PING, b"same channel")
        assert await a.recv() == (cid, CTAPHID.PING, b"same channel")
        assert handler.power_cycles == 1
        assert cid in transport.channels(a.address)
    finally:
        a.close()
        await transport.close()


async def test_power_cycle_drops_every_clients_channels(server, clients) -> None:
    transport, handler = server
    a = clients()
    await a.init()
    transport.power_cycle()
    assert handler.power_cycles == 1
    assert transport.channels(a.address) == ()
    await a.init()


async def test_replies_go_to_each_sender(server, clients) -> None:
    a, b = clients(), clients()
    ca, cb = await a.init(), await b.init()
    b.send(cb, CTAPHID.PING, b"to b")
    a.send(ca, CTAPHID.PING, b"to a")
    assert await a.recv() == (ca, CTAPHID.PING, b"to a")
    assert await b.recv() == (cb, CTAPHID.PING, b"to b")
    assert a.silent() and b.silent()


async def test_d9_channel_belongs_to_the_address_that_allocated_it(server, clients) -> None:
    """D9: another address naming a client's CID gets INVALID_CHANNEL, the owner is unharmed."""
    transport, _ = server
    owner, other = clients(), clients()
    cid = await owner.init()
    other.send(cid, CTAPHID.PING, b"steal")
    assert await other.recv() == (cid, CTAPHID.ERROR, bytes([0x0B]))
    other.send(cid, CTAPHID.INIT, os.urandom(8))  # nor can it resync (adopt) the owner's CID
    assert await other.recv() == (cid, CTAPHID.ERROR, bytes([0x0B]))
    assert cid not in transport.channels(other.address)
    owner.send(cid, CTAPHID.PING, b"mine")
    assert await owner.recv() == (cid, CTAPHID.PING, b"mine")


async def test_unheld_cid_is_adopted_like_solos_simulator(server, clients) -> None:
    """fido2-tests sends on CIDs it picked itself; nobody holds them, so the sender gets them."""
    transport, _ = server
    a = clients()
    a.send(0x05040302, CTAPHID.PING, b"x")
    assert await a.recv() == (0x05040302, CTAPHID.PING, b"x")
    assert await a.init(0x11223344) == 0x11223344
    assert set(transport.channels(a.address)) == {0x05040302, 0x11223344}


async def test_d9_init_flood_from_another_port_leaves_client_channel(server, clients) -> None:
    """D9: 300 broadcast INITs from another local port used to evict a connected client."""
    transport, _ = server
    victim, attacker = clients(), clients()
    cid = await victim.init()
    for _ in range(10):  # in batches, each acknowledged, so the kernel's socket buffer never drops
        for _ in range(30):
            attacker.send(0xFFFFFFFF, CTAPHID.INIT, os.urandom(8))
        attacker.send(0xFFFFFFFF, CTAPHID.PING, b"mark")  # INVALID_CHANNEL: the batch was read
        while (await attacker.recv())[1] != CTAPHID.ERROR:
            pass
    victim.send(cid, CTAPHID.PING, b"still here")
    assert await victim.recv() == (cid, CTAPHID.PING, b"still here")
    assert cid in transport.channels(victim.address)


async def test_d9_broadcast_init_is_rate_limited_per_source() -> None:
    now = [0.0]
    transport = UdpTransport(
        FakeHandler(), listen=(LOOPBACK, 0), init_rate=2.0, init_burst=5, clock=lambda: now[0]
    )
    await transport.start()
    a, b = RawClient(transport.address), RawClient(transport.address)
    try:
        for _ in range(8):
            a.send(0xFFFFFFFF, CTAPHID.INIT, os.urandom(8))
        a.send(0xFFFFFFFF, CTAPHID.PING, b"mark")  # answered (INVALID_CHANNEL): ends the batch
        answers = []
        while (msg := await a.recv())[1] == CTAPHID.INIT:
            answers.append(msg)
        assert len(answers) == 5 and msg[1] == CTAPHID.ERROR
        assert await b.init()  # another source has its own budget
        now[0] += 1.0  # two tokens back for a
        assert await a.init() and await a.init()
        a.send(0xFFFFFFFF, CTAPHID.INIT, os.urandom(8))
        a.send(0xFFFFFFFF, CTAPHID.PING, b"mark")
        assert (await a.recv())[1] == CTAPHID.ERROR
    finally:
        a.close()
        b.close()
        await transport.close()


async def test_peer_table_is_bounded_and_protects_active_clients() -> None:
    now = [0.0]
    transport = UdpTransport(
        FakeHandler(), listen=(LOOPBACK, 0), max_peers=2, peer_idle=10.0, clock=lambda: now[0]
    )
    await transport.start()
    a, b, c = (RawClient(transport.address) for _ in range(3))
    try:
        ca = await a.init()
        await b.init()
        c.send(0xFFFFFFFF, CTAPHID.INIT, os.urandom(8))  # table full of fresh peers: ignored
        a.send(ca, CTAPHID.PING, b"a")
        assert await a.recv() == (ca, CTAPHID.PING, b"a")
        assert c.silent() and c.address not in transport.peers
        now[0] += 11.0  # b idles out (a too, but a is used again first)
        a.send(ca, CTAPHID.PING, b"a")
        assert await a.recv() == (ca, CTAPHID.PING, b"a")
        assert await c.init()
        assert set(transport.peers) == {a.address, c.address}
    finally:
        for x in (a, b, c):
            x.close()
        await transport.close()


async def test_clients_queue_on_the_shared_lock_instead_of_busy(server, clients) -> None:
    """Two addresses with commands at once: both answered, the second after the first."""
    transport, handler = server
    handler.presence.clear()
    a, b = clients(), clients()
    ca, cb = await a.init(), await b.init()
    a.send(ca, CTAPHID.CBOR, b"\x01\xa0")
    assert await a.recv() == (ca, 0x3B, bytes([2]))  # KEEPALIVE UPNEEDED: a holds the core
    b.send(cb, CTAPHID.CBOR, b"\x04")
    assert await b.recv() == (cb, 0x3B, bytes([1]))  # PROCESSING while queued, not CHANNEL_BUSY
    handler.presence.set()
    while (msg := await a.recv())[1] == 0x3B:
        pass
    assert msg == (ca, CTAPHID.CBOR, b"\x00\xa0\x01")
    while (msg := await b.recv())[1] == 0x3B:
        pass
    assert msg == (cb, CTAPHID.CBOR, b"\x00\x04")


def test_reply_to_is_refused() -> None:
    with pytest.raises(ValueError, match="sender"):
        UdpTransport(FakeHandler(), reply_to=("127.0.0.1", 7112))  # type: ignore[arg-type]


def test_magic_reboot_report_is_64_bytes() -> None:
    assert len(SOLO_MAGIC_REBOOT) == 64
    # Not a valid-looking CTAPHID report on any channel we would hand out by chance.
    assert SOLO_MAGIC_REBOOT[:4] == bytes.fromhex("ac1052ca")


async def test_real_core_make_credential_and_get_assertion_over_udp() -> None:
    """The lead's core behind our UDP transport, driven by python-fido2's Ctap2."""
    from fido2.ctap2 import Ctap2
    from fido2.ctap2.base import AttestationResponse

    from authenticator import core

    transport = UdpTransport(core.Authenticator(), listen=(LOOPBACK, 0))
    await transport.start()
    dev = await asyncio.to_thread(_open, transport)
    try:

        def ceremony() -> None:
            ctap2 = Ctap2(dev)
            assert "FIDO_2_0" in ctap2.info.versions
            cdh = os.urandom(32)
            made: AttestationResponse = ctap2.make_credential(
                cdh,
                {"id": "example.com", "name": "Example"},
                {"id": b"user-1", "name": "alice"},
                [{"type": "public-key", "alg": -7}],
            )
            cred = made.auth_data.credential_data
            assert cred is not None
            cdh2 = os.urandom(32)
            got = ctap2.get_assertion(
                "example.com", cdh2, [{"type": "public-key", "id": cred.credential_id}]
            )
            got.verify(cdh2, cred.public_key)
            assert got.auth_data.counter >= made.auth_data.counter

        await asyncio.to_thread(ceremony)
    finally:
        dev.close()
        await transport.close()

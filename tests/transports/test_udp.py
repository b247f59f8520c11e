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
    UdpCtapHidConnection,
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
    transport = UdpTransport(handler, listen=(LOOPBACK, 0), reply_to=None)
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


async def test_solo_magic_reboot_power_cycles(server: tuple[UdpTransport, FakeHandler]) -> None:
    transport, handler = server
    dev = await asyncio.to_thread(_open, transport)
    try:
        conn: UdpCtapHidConnection = dev._connection  # type: ignore[assignment]
        conn.send_reboot()
        for _ in range(100):
            if handler.power_cycles:
                break
            await asyncio.sleep(0.01)
        assert handler.power_cycles == 1
        # The old channel is gone, as after a replug.
        with pytest.raises(CtapError) as info:
            await asyncio.to_thread(dev.ping, b"x")
        assert info.value.code == CtapError.ERR.INVALID_CHANNEL
    finally:
        dev.close()


async def test_fixed_reply_address_convention() -> None:
    """The solo1 layout: device answers a fixed address, whoever sent the request."""
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind((LOOPBACK, 0))
    client.setblocking(False)
    transport = UdpTransport(FakeHandler(), listen=(LOOPBACK, 0), reply_to=client.getsockname())
    await transport.start()
    try:
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        nonce = os.urandom(8)
        sender.sendto(fragment(0xFFFFFFFF, CTAPHID.INIT, nonce)[0], transport.address)
        loop = asyncio.get_running_loop()
        report = await asyncio.wait_for(loop.sock_recv(client, 64), 5)
        assert len(report) == 64
        assert struct.unpack_from(">IBH", report) == (0xFFFFFFFF, 0x86, 17)
        assert report[7:15] == nonce
        sender.close()
    finally:
        client.close()
        await transport.close()


def test_magic_reboot_report_is_64_bytes() -> None:
    assert len(SOLO_MAGIC_REBOOT) == 64
    # Not a valid-looking CTAPHID report on any channel we would hand out by chance.
    assert SOLO_MAGIC_REBOOT[:4] == bytes.fromhex("ac1052ca")


async def test_real_core_make_credential_and_get_assertion_over_udp() -> None:
    """The lead's core behind our UDP transport, driven by python-fido2's Ctap2."""
    core = pytest.importorskip("authenticator.core")
    from fido2.ctap2 import Ctap2
    from fido2.ctap2.base import AttestationResponse

    transport = UdpTransport(core.Authenticator(), listen=(LOOPBACK, 0), reply_to=None)
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

"""A whole hybrid session on loopback: desktop (client_role) <-> tunnel server <-> phone
(authenticator_role), driven through python-fido2."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import cbor2
import pytest
from fido2.ctap2 import Ctap2
from fido2.hid import CTAPHID

from authenticator.core.ports import CommandContext
from transports.hybrid.authenticator_role import HybridError, run_authenticator
from transports.hybrid.client_role import HybridClient, HybridClientError, HybridCtapDevice
from transports.hybrid.tunnel_server import TunnelServer

GET_INFO = cbor2.dumps({1: ["FIDO_2_0"], 3: bytes(16)}, canonical=True)


class EchoHandler:
    """Answers getInfo with a minimal valid response and echoes everything else."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    async def handle_cbor(self, request: bytes, ctx: CommandContext | None = None) -> bytes:
        self.seen.append(request)
        assert ctx is not None and ctx.transport == "hybrid"
        if request == b"\x04":
            return b"\x00" + GET_INFO
        return b"\x00" + request

    async def handle_u2f(self, apdu: bytes, ctx: CommandContext | None = None) -> bytes:
        return b"\x6d\x00"

    def power_cycle(self) -> None: ...

    def wink(self) -> None: ...


async def _start_phone(
    server: TunnelServer, client: HybridClient, handler: object
) -> tuple[asyncio.Task[None], bytes]:
    adverts: asyncio.Queue[bytes] = asyncio.Queue()
    phone = asyncio.create_task(
        run_authenticator(client.qr_url, handler, adverts.put_nowait, tunnel_url=server.url())  # type: ignore[arg-type]
    )
    advert = await asyncio.wait_for(adverts.get(), 5)
    assert len(advert) == 20
    return phone, advert


async def test_get_info_through_ctap2() -> None:
    async with TunnelServer() as server:
        client = HybridClient(tunnel_url=server.url())
        handler = EchoHandler()
        phone, advert = await _start_phone(server, client, handler)
        device = await asyncio.to_thread(HybridCtapDevice.open, client, advert)
        try:
            assert device.get_info == GET_INFO  # from the post-handshake message
            info = await asyncio.to_thread(lambda: Ctap2(device).get_info())
            assert info.versions == ["FIDO_2_0"]
            assert info.aaguid == bytes(16)
            echoed = await asyncio.to_thread(device.call, CTAPHID.CBOR, b"\x42\xa0")
            assert echoed == b"\x00\x42\xa0"
        finally:
            await asyncio.to_thread(device.close)
        await asyncio.wait_for(phone, 5)  # the desktop's shutdown frame ends the phone's loop
        assert handler.seen[-1] == b"\x42\xa0"


async def test_async_session_and_adverts_from_a_scanner() -> None:
    async with TunnelServer() as server:
        client = HybridClient(tunnel_url=server.url(), request_type="mc")
        phone, advert = await _start_phone(server, client, EchoHandler())

        async def scanner() -> AsyncIterator[bytes]:
            yield bytes(20)  # someone else's advert
            yield advert + b"\xa1\x01\x19\x12\x34"  # ours, with a CTAP 2.3 suffix

        session = await client.connect(scanner())
        assert session.get_info == GET_INFO
        assert await session.call(b"\x01\xa1\x01\x02") == b"\x00\x01\xa1\x01\x02"
        await session.close()
        await asyncio.wait_for(phone, 5)


async def test_foreign_advert_is_refused() -> None:
    client = HybridClient(tunnel_url="ws://127.0.0.1:9")
    with pytest.raises(HybridClientError):
        await client.connect(bytes(20))


async def test_phone_gives_up_without_a_desktop() -> None:
    async with TunnelServer(pair_timeout=0.2) as server:
        client = HybridClient(tunnel_url=server.url())
        with pytest.raises(HybridError):
            await asyncio.wait_for(
                run_authenticator(
                    client.qr_url, EchoHandler(), lambda _: None, tunnel_url=server.url()
                ),
                5,
            )


async def test_wrong_qr_secret_fails_the_handshake() -> None:
    async with TunnelServer() as server:
        client = HybridClient(tunnel_url=server.url())
        impostor = HybridClient(tunnel_url=server.url(), secret=client.secret)  # other identity
        phone, advert = await _start_phone(server, client, EchoHandler())
        with pytest.raises(HybridClientError):
            await impostor.connect(advert, timeout=5)
        with pytest.raises(HybridError):
            await asyncio.wait_for(phone, 5)

"""The tunnel server on loopback: pairing, relaying, and turning away bad or abandoned peers."""

from __future__ import annotations

import asyncio
import os

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from transports.hybrid.domains import ROUTING_ID_HEADER, SUBPROTOCOL, connect_url, new_tunnel_url
from transports.hybrid.tunnel_client import open_tunnel
from transports.hybrid.tunnel_server import TunnelServer


async def _status(url: str, subprotocols: list[str] | None = None) -> int:
    with pytest.raises(InvalidStatus) as err:
        await connect(url, subprotocols=subprotocols or [SUBPROTOCOL], proxy=None)  # type: ignore[list-item]
    return err.value.response.status_code


async def test_pairs_and_relays_both_ways() -> None:
    async with TunnelServer() as server:
        tunnel_id = os.urandom(16)
        phone = await open_tunnel(new_tunnel_url(server.url(), tunnel_id))
        assert phone.subprotocol == SUBPROTOCOL
        routing_id = bytes.fromhex(phone.response.headers[ROUTING_ID_HEADER])
        assert len(routing_id) == 3
        desktop = await open_tunnel(connect_url(server.url(), routing_id, tunnel_id))
        await desktop.send(b"hello phone")
        assert await phone.recv() == b"hello phone"
        await phone.send(b"hello desktop")
        assert await desktop.recv() == b"hello desktop"
        # a second desktop for the same tunnel is refused
        assert await _status(connect_url(server.url(), routing_id, tunnel_id)) == 409
        await desktop.close()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(phone.recv(), 5)
        await asyncio.sleep(0.05)
        assert server.tunnel_count == 0


async def test_bad_paths() -> None:
    async with TunnelServer() as server:
        base = server.url()
        assert await _status(base + "/nope") == 404
        assert await _status(base + "/cable/new/xyz") == 400
        assert await _status(base + "/cable/new/" + "00" * 15) == 400
        assert await _status(base + "/cable/connect/0000/" + "00" * 16) == 400
        assert await _status(connect_url(base, b"abc", bytes(16))) == 404
        assert await _status(new_tunnel_url(base, bytes(16)), ["other"]) == 400


async def test_abandoned_new_is_closed() -> None:
    async with TunnelServer(pair_timeout=0.2) as server:
        tunnel_id = os.urandom(16)
        phone = await open_tunnel(new_tunnel_url(server.url(), tunnel_id))
        routing_id = bytes.fromhex(phone.response.headers[ROUTING_ID_HEADER])
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(phone.recv(), 5)
        assert server.tunnel_count == 0
        assert await _status(connect_url(server.url(), routing_id, tunnel_id)) == 404


async def test_phone_leaving_early_frees_the_tunnel() -> None:
    async with TunnelServer() as server:
        phone = await open_tunnel(new_tunnel_url(server.url(), bytes(16)))
        await phone.close()
        for _ in range(50):
            if server.tunnel_count == 0:
                break
            await asyncio.sleep(0.02)
        assert server.tunnel_count == 0


async def test_tunnel_limit() -> None:
    async with TunnelServer(max_tunnels=1) as server:
        first = await open_tunnel(new_tunnel_url(server.url(), bytes(16)))
        assert await _status(new_tunnel_url(server.url(), b"\x01" * 16)) == 503
        await first.close()


async def test_oversized_and_text_frames_close() -> None:
    async with TunnelServer(max_message_size=1024) as server:
        tunnel_id = os.urandom(16)
        phone = await open_tunnel(new_tunnel_url(server.url(), tunnel_id))
        rid = bytes.fromhex(phone.response.headers[ROUTING_ID_HEADER])
        desktop = await open_tunnel(connect_url(server.url(), rid, tunnel_id))
        await desktop.send(bytes(2048))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(phone.recv(), 5)

        tunnel_id = os.urandom(16)
        phone = await open_tunnel(new_tunnel_url(server.url(), tunnel_id))
        rid = bytes.fromhex(phone.response.headers[ROUTING_ID_HEADER])
        desktop = await open_tunnel(connect_url(server.url(), rid, tunnel_id))
        await desktop.send("text")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(phone.recv(), 5)


async def test_idle_tunnel_is_closed() -> None:
    async with TunnelServer(idle_timeout=0.2) as server:
        tunnel_id = os.urandom(16)
        phone = await open_tunnel(new_tunnel_url(server.url(), tunnel_id))
        rid = bytes.fromhex(phone.response.headers[ROUTING_ID_HEADER])
        desktop = await open_tunnel(connect_url(server.url(), rid, tunnel_id))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(desktop.recv(), 5)

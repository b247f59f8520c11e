"""The tunnel server on loopback: pairing, relaying, and turning away bad or abandoned peers."""

from __future__ import annotations

import asyncio
import base64
import inspect
import os
import sys
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response

from tests.transports.timing import FakeTime, until
from transports.hybrid.domains import ROUTING_ID_HEADER, SUBPROTOCOL, connect_url, new_tunnel_url
from transports.hybrid.linking import (
    CLIENT_PAYLOAD_HEADER,
    ClientPayload,
    b64url,
    contact_url,
    listen_url,
)
from transports.hybrid.tunnel_client import open_tunnel
from transports.hybrid.tunnel_server import TunnelServer, default_client_key, peer_uid


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
        await until(lambda: server.tunnel_count == 0)


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
        await until(lambda: server.tunnel_count == 0)


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


# -- issue 13 D5: bounded state under aborted handshakes, hoarding clients and contact floods


class _Counting(TunnelServer):
    """Counts HTTP requests the server has decided on, so a test knows its abort was seen."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.requests = 0

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            return super()._process_request(connection, request)
        finally:
            self.requests += 1


async def _abort_handshake(server: _Counting, path: str, headers: str = "") -> None:
    """Send a complete upgrade request, hang up before the answer, wait until it is undone."""
    seen = server.requests
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n{headers}\r\n".encode()
    )
    await writer.drain()
    writer.transport.abort()
    await until(lambda: server.requests == seen + 1)  # the server reserved what it asked for
    await until(lambda: server.handshake_count == 0)  # ... and has given it back


async def _open_from(url: str, local_host: str, **kw: Any) -> ClientConnection:
    """A tunnel opened from another loopback address: another client for the per-client caps."""
    return await connect(
        url,
        subprotocols=[SUBPROTOCOL],
        proxy=None,
        local_addr=(local_host, 0),
        **kw,  # type: ignore[list-item]
    )


async def test_D5_aborted_handshakes_free_plans_slots_and_claims() -> None:
    async with _Counting(max_tunnels=4, max_tunnels_per_client=4) as server:
        for _ in range(4):
            await _abort_handshake(server, f"/cable/new/{os.urandom(16).hex()}")
        assert server.tunnel_count == 0
        # every slot is free again for legitimate phones (before: 503 until a ~75 s sweep)
        phones = [await open_tunnel(new_tunnel_url(server.url(), os.urandom(16))) for _ in range(4)]

        # a desktop that hangs up mid-handshake does not keep the tunnel "already joined"
        for ws in phones[1:]:
            await ws.close()
        tunnel_id = os.urandom(16)
        await until(lambda: server.tunnel_count == 1)
        phone = await open_tunnel(new_tunnel_url(server.url(), tunnel_id))
        routing_id = bytes.fromhex(phone.response.headers[ROUTING_ID_HEADER])
        await _abort_handshake(server, f"/cable/connect/{routing_id.hex()}/{tunnel_id.hex()}")
        desktop = await open_tunnel(connect_url(server.url(), routing_id, tunnel_id))
        await desktop.send(b"joined")
        assert await asyncio.wait_for(phone.recv(), 5) == b"joined"

        # aborted contact and listen requests leave no tunnel and no contact id behind
        contact_id = os.urandom(16)
        await _abort_handshake(server, f"/cable/listen/{b64url(contact_id)}")
        assert server.contact_count == 0
        listener = await open_tunnel(listen_url(server.url(), contact_id))
        payload = ClientPayload(os.urandom(8), os.urandom(16), "ga").to_header()
        before = server.tunnel_count
        await _abort_handshake(
            server,
            f"/cable/contact/{b64url(contact_id)}",
            f"{CLIENT_PAYLOAD_HEADER}: {payload}\r\n",
        )
        assert server.tunnel_count == before
        for ws in (listener, desktop, phone, phones[0]):
            await ws.close()


async def test_D5_one_client_hoarding_unpaired_sockets_does_not_block_others() -> None:
    async with TunnelServer() as server:
        hoard: list[ClientConnection] = []
        with pytest.raises(InvalidStatus) as refused:
            for _ in range(server.max_tunnels):
                url = new_tunnel_url(server.url(), os.urandom(16))
                hoard.append(await _open_from(url, "127.0.0.2"))
        assert refused.value.response.status_code == 503
        assert len(hoard) == server.max_tunnels_per_client < server.max_tunnels
        # another client still opens tunnels while the hoard is held
        other = await open_tunnel(new_tunnel_url(server.url(), os.urandom(16)))
        for ws in [*hoard, other]:
            await ws.close()

    # and unpaired sockets do not stay: each is closed after the (configurable) pair timeout
    async with TunnelServer(pair_timeout=0.05, max_tunnels_per_client=2) as server:
        url = new_tunnel_url(server.url(), os.urandom(16))
        held = [await _open_from(url, "127.0.0.2"), await _open_from(url, "127.0.0.2")]
        for ws in held:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_reason == "no peer"
        await until(lambda: server.tunnel_count == 0)
        again = await _open_from(url, "127.0.0.2")
        await again.close()


async def _desktop_status(server: TunnelServer, contact_id: bytes) -> int:
    """101 (then hung up) when the contact id is known, else the refusal's status."""
    payload = ClientPayload(os.urandom(8), os.urandom(16), "ga").to_header()
    try:
        ws = await connect(
            contact_url(server.url(), contact_id),
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers={CLIENT_PAYLOAD_HEADER: payload},
            proxy=None,
        )
    except InvalidStatus as e:
        return e.response.status_code
    await ws.close()
    return 101


async def test_D5_contact_ids_expire_and_never_lock_new_listeners_out() -> None:
    # a full table of phones that went away does not refuse the next phone
    async with TunnelServer(max_contacts=4) as server:
        for _ in range(4):
            ws = await open_tunnel(listen_url(server.url(), os.urandom(16)))
            await ws.close()
        newcomer = os.urandom(16)
        ws = await open_tunnel(listen_url(server.url(), newcomer))  # before: 503 until restart
        assert server.contact_count == 4
        # only when every known contact id has a listener is a new one refused
        listening = [await open_tunnel(listen_url(server.url(), os.urandom(16))) for _ in range(3)]
        with pytest.raises(InvalidStatus) as full:
            await open_tunnel(listen_url(server.url(), os.urandom(16)))
        assert full.value.response.status_code == 503
        for listener in [ws, *listening]:
            await listener.close()

    # one client cannot fill the table: its own idle contact ids go first
    async with TunnelServer(max_contacts=8, max_contacts_per_client=2) as server:
        mine = [await _open_from(listen_url(server.url(), os.urandom(16)), "127.0.0.2")]
        mine.append(await _open_from(listen_url(server.url(), os.urandom(16)), "127.0.0.2"))
        with pytest.raises(InvalidStatus) as capped:
            await _open_from(listen_url(server.url(), os.urandom(16)), "127.0.0.2")
        assert capped.value.response.status_code == 503
        other = await open_tunnel(listen_url(server.url(), os.urandom(16)))
        for listener in [*mine, other]:
            await listener.close()

    # contact ids are forgotten contact_ttl after their last listener left, never while heard
    clock = FakeTime()
    async with TunnelServer(contact_ttl=100, clock=clock) as server:
        contact_id = os.urandom(16)
        listener = await open_tunnel(listen_url(server.url(), contact_id))
        clock.now += 1000
        assert await _desktop_status(server, contact_id) == 101
        await listener.close()
        await until(lambda: server.listener_count == 0)
        clock.now += 99
        assert await _desktop_status(server, contact_id) == 101
        clock.now += 2
        assert await _desktop_status(server, contact_id) == 410
        assert server.contact_count == 0


async def test_client_key_names_the_local_user_on_loopback() -> None:
    """Per-client caps tell local users apart even though they all share 127.0.0.1."""
    accepted: asyncio.Future[tuple[Any, Any]] = asyncio.get_running_loop().create_future()

    def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result((writer.get_extra_info("peername"), writer.get_extra_info("sockname")))
        writer.close()

    listener = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    peer, ours = await asyncio.wait_for(accepted, 5)
    assert peer_uid(peer, ours) == os.getuid()
    assert peer_uid(("192.0.2.1", 5), ours) is None  # not loopback: the address alone
    assert peer_uid(("127.0.0.1", 1), ours) is None  # no such socket
    writer.close()
    listener.close()

    async with TunnelServer() as server:
        ws = await open_tunnel(listen_url(server.url(), os.urandom(16)))
        keys = {default_client_key(c) for c in server._server.connections}  # type: ignore[union-attr]
        assert keys == {("127.0.0.1", os.getuid())}
        await ws.close()


def test_cli_limit_options_match_the_server_defaults() -> None:
    from authenticator.frontdoor.cli.hybrid import TUNNEL_LIMITS

    defaults = {name: p.default for name, p in inspect.signature(TunnelServer).parameters.items()}
    for option, kind, default, _ in TUNNEL_LIMITS:
        name = option[2:].replace("-", "_")
        assert defaults[name] == default and isinstance(defaults[name], kind), option


async def test_cli_passes_the_limits_to_the_server() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "authenticator.frontdoor.cli", "tunnel-server", "--port", "0",
        "--max-tunnels-per-client", "1",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        assert "listening on ws://127.0.0.1:" in line, line
        base = line.split("listening on ", 1)[1].strip()
        first = await open_tunnel(new_tunnel_url(base, os.urandom(16)))
        assert await _status(new_tunnel_url(base, os.urandom(16))) == 503
        await first.close()
    finally:
        proc.terminate()
        await proc.wait()

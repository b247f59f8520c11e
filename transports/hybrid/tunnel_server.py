"""A caBLE v2 tunnel server: pairs the phone's and the desktop's WebSockets and relays frames.

- ``GET /cable/new/<tunnel id hex>``: the phone. The reply carries ``X-caBLE-Routing-ID``
  (3 bytes, hex) which the phone puts in its BLE advert.
- ``GET /cable/connect/<routing id hex>/<tunnel id hex>``: the desktop, once it has decrypted
  the advert. Both sides must offer the ``fido.cable`` subprotocol.
The server sees only ciphertext. Waits and sizes are bounded: a phone nobody joins within
``pair_timeout`` is closed, as is a tunnel idle for ``idle_timeout``; at most ``max_tunnels``
exist at once; frames over ``max_message_size`` close the connection (1009).
Real browsers only talk to their assigned domains over TLS; this server is for tests and labs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import ssl as ssl_module
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from transports.hybrid.domains import ROUTING_ID_HEADER, SUBPROTOCOL

log = logging.getLogger(__name__)

_NEW = re.compile(r"^/cable/new/([^/]*)$")
_CONNECT = re.compile(r"^/cable/connect/([^/]*)/([^/]*)$")
_HEX = re.compile(r"^[0-9A-Fa-f]+$")


@dataclass
class _Tunnel:
    routing_id: bytes
    tunnel_id: bytes
    created: float
    peer: asyncio.Future[ServerConnection]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    started: bool = False  # the phone's handler runs
    claimed: bool = False  # a desktop has been let in


def _parse_hex(value: str, size: int) -> bytes | None:
    if len(value) != 2 * size or not _HEX.match(value):
        return None
    return bytes.fromhex(value)


class TunnelServer:
    """The server's state; ``start``/``close`` or ``async with`` it."""

    def __init__(
        self,
        *,
        pair_timeout: float = 60.0,
        idle_timeout: float = 300.0,
        max_tunnels: int = 256,
        max_message_size: int = 64 * 1024,
        routing_ids: Callable[[], bytes] = lambda: os.urandom(3),
    ) -> None:
        self.pair_timeout = pair_timeout
        self.idle_timeout = idle_timeout
        self.max_tunnels = max_tunnels
        self.max_message_size = max_message_size
        self._routing_ids = routing_ids
        self._tunnels: dict[tuple[bytes, bytes], _Tunnel] = {}
        self._plans: dict[ServerConnection, tuple[str, _Tunnel]] = {}
        self._server: Server | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl: ssl_module.SSLContext | None = None
    ) -> None:
        self._server = await ws_serve(
            self._handler,
            host,
            port,
            ssl=ssl,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            process_request=self._process_request,
            process_response=self._process_response,
            max_size=self.max_message_size,
            open_timeout=10,
            compression=None,
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def url(self, host: str = "127.0.0.1") -> str:
        """Base URL for clients of a plain-text server (what the roles call ``tunnel_url``)."""
        return f"ws://{host}:{self.port}"

    @property
    def tunnel_count(self) -> int:
        return len(self._tunnels)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> TunnelServer:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- HTTP phase -------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Drop reservations whose WebSocket never came up (handshake failed after 101 plan)."""
        limit = time.monotonic() - self.pair_timeout - 15
        for key, tunnel in list(self._tunnels.items()):
            if not tunnel.started and tunnel.created < limit:
                del self._tunnels[key]

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        protocols = ",".join(request.headers.get_all("Sec-WebSocket-Protocol"))
        if SUBPROTOCOL not in [p.strip() for p in protocols.split(",")]:
            return connection.respond(HTTPStatus.BAD_REQUEST, "fido.cable subprotocol required\n")
        if match := _NEW.match(path):
            tunnel_id = _parse_hex(match[1], 16)
            if tunnel_id is None:
                return connection.respond(HTTPStatus.BAD_REQUEST, "bad tunnel id\n")
            self._sweep()
            if len(self._tunnels) >= self.max_tunnels:
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many tunnels\n")
            for _ in range(16):
                routing_id = self._routing_ids()
                if (routing_id, tunnel_id) not in self._tunnels:
                    break
            else:
                return connection.respond(HTTPStatus.CONFLICT, "tunnel exists\n")
            loop = asyncio.get_running_loop()
            tunnel = _Tunnel(routing_id, tunnel_id, time.monotonic(), loop.create_future())
            self._tunnels[(routing_id, tunnel_id)] = tunnel
            self._plans[connection] = ("new", tunnel)
            return None
        if match := _CONNECT.match(path):
            routing_id, tunnel_id = _parse_hex(match[1], 3), _parse_hex(match[2], 16)
            if routing_id is None or tunnel_id is None:
                return connection.respond(HTTPStatus.BAD_REQUEST, "bad routing or tunnel id\n")
            tunnel = self._tunnels.get((routing_id, tunnel_id))
            if tunnel is None:
                return connection.respond(HTTPStatus.NOT_FOUND, "no such tunnel\n")
            if tunnel.claimed:
                return connection.respond(HTTPStatus.CONFLICT, "tunnel already joined\n")
            tunnel.claimed = True
            self._plans[connection] = ("connect", tunnel)
            return None
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")

    def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        plan = self._plans.get(connection)
        if plan is None:
            return None
        kind, tunnel = plan
        if response.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
            self._plans.pop(connection, None)
            if kind == "new":
                self._tunnels.pop((tunnel.routing_id, tunnel.tunnel_id), None)
            else:
                tunnel.claimed = False
            return None
        if kind == "new":
            response.headers[ROUTING_ID_HEADER] = tunnel.routing_id.hex().upper()
        return None

    # -- WebSocket phase --------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        plan = self._plans.pop(ws, None)
        if plan is None:
            await ws.close(1011, "no tunnel")
            return
        kind, tunnel = plan
        if kind == "new":
            await self._run_phone(ws, tunnel)
        else:
            await self._run_desktop(ws, tunnel)

    async def _run_phone(self, ws: ServerConnection, tunnel: _Tunnel) -> None:
        tunnel.started = True
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            await asyncio.wait(
                {tunnel.peer, closed},
                timeout=self.pair_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not tunnel.peer.done():
                log.info("tunnel %s: no desktop joined", tunnel.routing_id.hex())
                self._tunnels.pop((tunnel.routing_id, tunnel.tunnel_id), None)
                await ws.close(1000, "no peer")
                return
            desktop = tunnel.peer.result()
            await self._relay(ws, desktop)
        finally:
            closed.cancel()
            self._tunnels.pop((tunnel.routing_id, tunnel.tunnel_id), None)
            if not tunnel.peer.done():
                tunnel.peer.cancel()
            tunnel.done.set()

    async def _run_desktop(self, ws: ServerConnection, tunnel: _Tunnel) -> None:
        if tunnel.peer.done() or tunnel.done.is_set():
            await ws.close(1000, "tunnel gone")
            return
        tunnel.peer.set_result(ws)
        await tunnel.done.wait()
        await ws.close()

    async def _relay(self, a: ServerConnection, b: ServerConnection) -> None:
        pumps = [asyncio.create_task(self._pump(a, b)), asyncio.create_task(self._pump(b, a))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for task in pumps:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task
            await asyncio.gather(a.close(), b.close(), return_exceptions=True)

    async def _pump(self, src: ServerConnection, dst: ServerConnection) -> None:
        try:
            while True:
                async with asyncio.timeout(self.idle_timeout):
                    message = await src.recv()
                if isinstance(message, str):
                    await src.close(1003, "binary frames only")
                    return
                await dst.send(message)
        except (ConnectionClosed, TimeoutError):
            return


async def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    ssl: ssl_module.SSLContext | None = None,
    pair_timeout: float = 60.0,
    idle_timeout: float = 300.0,
    max_tunnels: int = 256,
    max_message_size: int = 64 * 1024,
    ready: Callable[[TunnelServer], None] | None = None,
) -> None:
    """Run a tunnel server until cancelled (``fido-emu tunnel-server``)."""
    server = TunnelServer(
        pair_timeout=pair_timeout,
        idle_timeout=idle_timeout,
        max_tunnels=max_tunnels,
        max_message_size=max_message_size,
    )
    await server.start(host, port, ssl)
    log.info("caBLE tunnel server listening on %s:%d", host, server.port)
    if ready is not None:
        ready(server)
    try:
        await asyncio.Future()
    finally:
        await server.close()

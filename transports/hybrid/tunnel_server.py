"""A caBLE v2 tunnel server: pairs the phone's and the desktop's WebSockets and relays frames.

- ``GET /cable/new/<tunnel id hex>``: the phone. The reply carries ``X-caBLE-Routing-ID``
  (3 bytes, hex) which the phone puts in its BLE advert.
- ``GET /cable/connect/<routing id hex>/<tunnel id hex>``: the desktop, once it has decrypted
  the advert; or a linked phone answering a contact (below).
- ``GET /cable/contact/<base64url contact id>`` with ``X-caBLE-Client-Payload``: a linked
  desktop reconnecting without a QR code. Unknown contact ids get 410 (Chromium then forgets
  the pairing). The server picks a routing and tunnel id, and tells the phone.
- ``GET /cable/listen/<base64url contact id>`` (ours, not Google's): how a linked phone is told.
  Google's server wakes the phone with an FCM message instead; here the phone keeps this
  WebSocket open and receives one binary CBOR :class:`~transports.hybrid.linking.ContactNotice`
  per desktop (queued while it is away); it may send back a 16-byte tunnel id to decline one.
  A contact id becomes known when a phone first listens on it, and stays known (in memory).
Every WebSocket must offer the ``fido.cable`` subprotocol.
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
from transports.hybrid.linking import (
    CLIENT_PAYLOAD_HEADER,
    MAX_CONTACT_ID_LEN,
    TUNNEL_ID_LEN,
    ClientPayload,
    ContactNotice,
    LinkingError,
    unb64url,
)

log = logging.getLogger(__name__)

_NEW = re.compile(r"^/cable/new/([^/]*)$")
_CONNECT = re.compile(r"^/cable/connect/([^/]*)/([^/]*)$")
_CONTACT = re.compile(r"^/cable/contact/([A-Za-z0-9_-]+)$")
_LISTEN = re.compile(r"^/cable/listen/([A-Za-z0-9_-]+)$")
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
MAX_QUEUED_CONTACTS = 16


@dataclass
class _Tunnel:
    routing_id: bytes
    tunnel_id: bytes
    created: float
    peer: asyncio.Future[ServerConnection]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    started: bool = False  # the waiting side's handler runs (phone; desktop for a contact)
    claimed: bool = False  # the joining side has been let in
    contact_id: bytes | None = None  # set for tunnels opened by /cable/contact
    client_payload: bytes = b""


@dataclass
class _Contact:
    """A linked phone's contact id: its pending contacts and its listening socket, if any."""

    queue: asyncio.Queue[_Tunnel] = field(
        default_factory=lambda: asyncio.Queue(MAX_QUEUED_CONTACTS)
    )
    listener: ServerConnection | None = None


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
        max_contacts: int = 1024,
    ) -> None:
        self.pair_timeout = pair_timeout
        self.idle_timeout = idle_timeout
        self.max_tunnels = max_tunnels
        self.max_message_size = max_message_size
        self._routing_ids = routing_ids
        self.max_contacts = max_contacts
        self._tunnels: dict[tuple[bytes, bytes], _Tunnel] = {}
        self._contacts: dict[bytes, _Contact] = {}
        self._plans: dict[ServerConnection, tuple[str, _Tunnel | bytes]] = {}
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
        if match := _CONTACT.match(path):
            return self._plan_contact(connection, request, match[1])
        if match := _LISTEN.match(path):
            try:
                contact_id = unb64url(match[1])
            except LinkingError:
                return connection.respond(HTTPStatus.BAD_REQUEST, "bad contact id\n")
            if not 0 < len(contact_id) <= MAX_CONTACT_ID_LEN:
                return connection.respond(HTTPStatus.BAD_REQUEST, "bad contact id\n")
            if contact_id not in self._contacts and len(self._contacts) >= self.max_contacts:
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many contacts\n")
            self._plans[connection] = ("listen", contact_id)
            return None
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")

    def _plan_contact(
        self, connection: ServerConnection, request: Request, encoded: str
    ) -> Response | None:
        try:
            contact_id = unb64url(encoded)
        except LinkingError:
            return connection.respond(HTTPStatus.BAD_REQUEST, "bad contact id\n")
        if contact_id not in self._contacts:
            return connection.respond(HTTPStatus.GONE, "unknown contact id\n")
        try:
            raw = bytes.fromhex(request.headers.get(CLIENT_PAYLOAD_HEADER, ""))
            ClientPayload.from_cbor(raw)
        except (LinkingError, ValueError):
            return connection.respond(HTTPStatus.BAD_REQUEST, "bad client payload\n")
        self._sweep()
        if len(self._tunnels) >= self.max_tunnels:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many tunnels\n")
        routing_id, tunnel_id = self._routing_ids(), os.urandom(TUNNEL_ID_LEN)
        loop = asyncio.get_running_loop()
        tunnel = _Tunnel(routing_id, tunnel_id, time.monotonic(), loop.create_future())
        tunnel.contact_id, tunnel.client_payload = contact_id, raw
        self._tunnels[(routing_id, tunnel_id)] = tunnel
        self._plans[connection] = ("contact", tunnel)
        return None

    def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        plan = self._plans.get(connection)
        if plan is None:
            return None
        kind, tunnel = plan
        if response.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
            self._plans.pop(connection, None)
            if isinstance(tunnel, _Tunnel) and kind in ("new", "contact"):
                self._tunnels.pop((tunnel.routing_id, tunnel.tunnel_id), None)
            elif isinstance(tunnel, _Tunnel):
                tunnel.claimed = False
            return None
        if kind == "new" and isinstance(tunnel, _Tunnel):
            response.headers[ROUTING_ID_HEADER] = tunnel.routing_id.hex().upper()
        return None

    # -- WebSocket phase --------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        plan = self._plans.pop(ws, None)
        if plan is None:
            await ws.close(1011, "no tunnel")
            return
        kind, target = plan
        if kind == "listen":
            assert isinstance(target, bytes)
            await self._run_listener(ws, target)
            return
        assert isinstance(target, _Tunnel)
        if kind == "new":
            await self._run_waiting(ws, target)
        elif kind == "contact":
            await self._run_contact(ws, target)
        else:
            await self._run_joining(ws, target)

    async def _run_contact(self, ws: ServerConnection, tunnel: _Tunnel) -> None:
        """A linked desktop: queue a notice for the phone, then wait for it like /new does."""
        assert tunnel.contact_id is not None
        try:
            self._contacts[tunnel.contact_id].queue.put_nowait(tunnel)
        except asyncio.QueueFull:
            self._tunnels.pop((tunnel.routing_id, tunnel.tunnel_id), None)
            await ws.close(1013, "too many pending contacts")
            return
        await self._run_waiting(ws, tunnel)

    async def _run_listener(self, ws: ServerConnection, contact_id: bytes) -> None:
        """Push contact notices to a linked phone; a newer listener replaces an older one."""
        contact = self._contacts.setdefault(contact_id, _Contact())
        previous, contact.listener = contact.listener, ws
        if previous is not None:
            await previous.close(1000, "replaced")
        getter: asyncio.Future[_Tunnel] | None = None
        reader: asyncio.Future[object] | None = None
        try:
            while True:
                getter = getter or asyncio.ensure_future(contact.queue.get())
                reader = reader or asyncio.ensure_future(ws.recv())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    tunnel, getter = getter.result(), None
                    if self._tunnels.get((tunnel.routing_id, tunnel.tunnel_id)) is not tunnel:
                        continue  # the desktop gave up meanwhile
                    notice = ContactNotice(
                        tunnel.routing_id, tunnel.tunnel_id, tunnel.client_payload
                    )
                    try:
                        await ws.send(notice.to_cbor())
                    except ConnectionClosed:
                        with contextlib.suppress(asyncio.QueueFull):
                            contact.queue.put_nowait(tunnel)  # for the phone's next listener
                        return
                if reader in done:
                    try:
                        message = reader.result()
                    except ConnectionClosed:
                        return
                    reader = None
                    if isinstance(message, bytes) and len(message) == TUNNEL_ID_LEN:
                        self._decline(contact_id, message)
        finally:
            if getter is not None:
                if getter.done() and not getter.cancelled():
                    with contextlib.suppress(asyncio.QueueFull):
                        contact.queue.put_nowait(getter.result())
                else:
                    getter.cancel()
            if reader is not None:
                reader.cancel()
            if contact.listener is ws:
                contact.listener = None

    def _decline(self, contact_id: bytes, tunnel_id: bytes) -> None:
        for tunnel in self._tunnels.values():
            if tunnel.contact_id == contact_id and tunnel.tunnel_id == tunnel_id:
                if not tunnel.peer.done():
                    tunnel.peer.cancel()  # the waiting desktop is closed with "declined"
                return

    async def _run_waiting(self, ws: ServerConnection, tunnel: _Tunnel) -> None:
        """The first side of a tunnel (phone on /new, desktop on /contact) until the other joins."""
        tunnel.started = True
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            await asyncio.wait(
                {tunnel.peer, closed},
                timeout=self.pair_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not tunnel.peer.done():
                log.info("tunnel %s: no peer joined", tunnel.routing_id.hex())
                self._tunnels.pop((tunnel.routing_id, tunnel.tunnel_id), None)
                await ws.close(1000, "no peer")
                return
            if tunnel.peer.cancelled():
                log.info("tunnel %s: the phone declined the contact", tunnel.routing_id.hex())
                await ws.close(1000, "declined")
                return
            desktop = tunnel.peer.result()
            await self._relay(ws, desktop)
        finally:
            closed.cancel()
            self._tunnels.pop((tunnel.routing_id, tunnel.tunnel_id), None)
            if not tunnel.peer.done():
                tunnel.peer.cancel()
            tunnel.done.set()

    async def _run_joining(self, ws: ServerConnection, tunnel: _Tunnel) -> None:
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

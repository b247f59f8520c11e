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
  A contact id becomes known when a phone listens on it, and is forgotten ``contact_ttl``
  after its last listener left (desktops then get 410).

Every WebSocket must offer the ``fido.cable`` subprotocol. The server sees only ciphertext.

Limits (``TunnelServer`` argument, default). ``fido-emu tunnel-server`` takes each as an option
named with dashes (``--pair-timeout``), except the last three; docs/tunnel-server.md says why:

- ``pair_timeout`` (60 s): a waiting side (phone on /new, desktop on /contact) that nobody
  joins is closed and its slot freed.
- ``idle_timeout`` (300 s): a paired tunnel with no frame either way is closed.
- ``max_tunnels`` (256) open or reserved tunnels in all, ``max_tunnels_per_client`` (16)
  opened by one client; more get 503.
- ``max_contacts`` (1024) known contact ids, ``max_contacts_per_client`` (16) registered by
  one client. When full, the contact id idle longest (no listener) is forgotten first; only
  when every one has a listener does a new listener get 503.
- ``contact_ttl`` (86400 s): how long a contact id stays known after its last listener left.
- ``max_message_size`` (64 KiB): larger frames close the connection (1009).
- ``MAX_QUEUED_CONTACTS`` (16) desktops waiting for one phone; more are closed (1013).
- ``open_timeout`` (10 s) for the HTTP upgrade; WebSocket pings every 20 s drop a peer that
  does not answer within 20 s (websockets' defaults).

"One client" is the peer's IP address; for a loopback peer on Linux also the user owning its
socket (read from ``/proc/net/tcp``), because every local process shares 127.0.0.1 and
processes of one user can stop each other anyway. Every per-connection structure (handshake
plans, reserved tunnels, claims, newly registered contact ids) is freed as soon as the
connection is lost, whether or not its WebSocket handshake completed.
Real browsers only talk to their assigned domains over TLS; this server is for tests and labs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import ssl as ssl_module
import struct
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

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


@dataclass(eq=False)
class _Tunnel:
    routing_id: bytes
    tunnel_id: bytes
    owner: Hashable  # the client that opened it, for the per-client cap
    peer: asyncio.Future[ServerConnection]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    claimed: bool = False  # the joining side has been let in
    contact_id: bytes | None = None  # set for tunnels opened by /cable/contact
    client_payload: bytes = b""


@dataclass(eq=False)
class _Contact:
    """A linked phone's contact id: desktops waiting for it and its listening socket, if any."""

    owner: Hashable
    last_seen: float  # when its last listener left (or it was registered)
    pending: deque[_Tunnel] = field(default_factory=deque)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    listener: ServerConnection | None = None


@dataclass
class _Plan:
    """What an accepted HTTP request will do once its WebSocket is up."""

    kind: str  # new | connect | contact | listen
    tunnel: _Tunnel | None = None
    contact_id: bytes = b""
    new_contact: bool = False  # the listen request registered the contact id


def _parse_hex(value: str, size: int) -> bytes | None:
    if len(value) != 2 * size or not _HEX.match(value):
        return None
    return bytes.fromhex(value)


def _proc_net_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    """An address as ``/proc/net/tcp*`` prints it: 32-bit words in host order, hex port."""
    packed = ip.packed
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{w:08X}" for w in words) + f":{port:04X}"


def peer_uid(remote: Any, local: Any) -> int | None:
    """The uid owning the other end of a loopback TCP connection (Linux), else None."""
    try:
        peer, ours = ipaddress.ip_address(remote[0]), ipaddress.ip_address(local[0])
    except (TypeError, IndexError, ValueError):
        return None
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    if isinstance(ours, ipaddress.IPv6Address) and ours.ipv4_mapped is not None:
        ours = ours.ipv4_mapped
    if not peer.is_loopback:
        return None
    # the peer's own socket: its local address is our remote one and vice versa
    want = (_proc_net_address(peer, remote[1]), _proc_net_address(ours, local[1]))
    table = "/proc/net/tcp" if peer.version == 4 else "/proc/net/tcp6"
    try:
        with open(table, encoding="ascii") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) > 7 and (fields[1], fields[2]) == want:
                    return int(fields[7])
    except (OSError, ValueError):
        pass
    return None


def default_client_key(connection: ServerConnection) -> Hashable:
    """Who is asking, for the per-client caps: the peer's IP (plus its uid on loopback)."""
    remote, local = connection.remote_address, connection.local_address
    host = str(remote[0]) if remote else "?"
    return host, peer_uid(remote, local) if remote and local else None


class TunnelServer:
    """The server's state; ``start``/``close`` or ``async with`` it. Limits: module docstring."""

    def __init__(
        self,
        *,
        pair_timeout: float = 60.0,
        idle_timeout: float = 300.0,
        max_tunnels: int = 256,
        max_tunnels_per_client: int = 16,
        max_message_size: int = 64 * 1024,
        routing_ids: Callable[[], bytes] = lambda: os.urandom(3),
        max_contacts: int = 1024,
        max_contacts_per_client: int = 16,
        contact_ttl: float = 86400.0,
        open_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        client_key: Callable[[ServerConnection], Hashable] = default_client_key,
    ) -> None:
        self.pair_timeout = pair_timeout
        self.idle_timeout = idle_timeout
        self.max_tunnels = max_tunnels
        self.max_tunnels_per_client = max_tunnels_per_client
        self.max_message_size = max_message_size
        self.max_contacts = max_contacts
        self.max_contacts_per_client = max_contacts_per_client
        self.contact_ttl = contact_ttl
        self.open_timeout = open_timeout
        self._routing_ids = routing_ids
        self._clock = clock
        self._client_key = client_key
        self._tunnels: dict[tuple[bytes, bytes], _Tunnel] = {}
        self._tunnels_by_client: Counter[Hashable] = Counter()
        self._contacts: dict[bytes, _Contact] = {}
        self._plans: dict[ServerConnection, _Plan] = {}
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
            open_timeout=self.open_timeout,
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

    @property
    def contact_count(self) -> int:
        return len(self._contacts)

    @property
    def listener_count(self) -> int:
        return sum(c.listener is not None for c in self._contacts.values())

    @property
    def handshake_count(self) -> int:
        """Accepted requests whose WebSocket has not started yet."""
        return len(self._plans)

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

    # -- bookkeeping ------------------------------------------------------------------------

    def _tunnel_refusal(self, owner: Hashable) -> str | None:
        if len(self._tunnels) >= self.max_tunnels:
            return "too many tunnels\n"
        if self._tunnels_by_client[owner] >= self.max_tunnels_per_client:
            return "too many tunnels from this client\n"
        return None

    def _reserve(self, tunnel: _Tunnel) -> None:
        self._tunnels[(tunnel.routing_id, tunnel.tunnel_id)] = tunnel
        self._tunnels_by_client[tunnel.owner] += 1

    def _release(self, tunnel: _Tunnel) -> None:
        """Free a tunnel's slot (idempotent) and let a joined peer go."""
        key = (tunnel.routing_id, tunnel.tunnel_id)
        if self._tunnels.get(key) is tunnel:
            del self._tunnels[key]
            self._tunnels_by_client[tunnel.owner] -= 1
            if self._tunnels_by_client[tunnel.owner] <= 0:
                del self._tunnels_by_client[tunnel.owner]
        if not tunnel.peer.done():
            tunnel.peer.cancel()
        tunnel.done.set()

    def _live(self, tunnel: _Tunnel) -> bool:
        return self._tunnels.get((tunnel.routing_id, tunnel.tunnel_id)) is tunnel

    def _plan(self, connection: ServerConnection, plan: _Plan) -> None:
        """Remember what the connection will do; undo it if the connection dies first."""
        self._plans[connection] = plan
        connection.connection_lost_waiter.add_done_callback(lambda _: self._abandon(connection))

    def _abandon(self, connection: ServerConnection) -> None:
        plan = self._plans.pop(connection, None)
        if plan is None:
            return  # its handler took it over (and frees it), or it was already undone
        log.debug("tunnel server: %s handshake abandoned", plan.kind)
        tunnel = plan.tunnel
        if plan.kind in ("new", "contact") and tunnel is not None:
            self._release(tunnel)
        elif plan.kind == "connect" and tunnel is not None:
            if not tunnel.peer.done():
                tunnel.claimed = False
        elif plan.kind == "listen" and plan.new_contact:
            contact = self._contacts.get(plan.contact_id)
            if contact is not None and contact.listener is None and not contact.pending:
                del self._contacts[plan.contact_id]

    def _expire_contacts(self) -> None:
        limit = self._clock() - self.contact_ttl
        for contact_id, contact in list(self._contacts.items()):
            if contact.listener is None and contact.last_seen <= limit:
                self._forget(contact_id)

    def _forget(self, contact_id: bytes) -> None:
        contact = self._contacts.pop(contact_id)
        for tunnel in contact.pending:
            self._release(tunnel)  # its desktop is closed; it will get 410 next time

    def _make_room(self, owner: Hashable) -> str | None:
        """Room for one more contact id from ``owner``: drop the idlest if full, else refuse."""
        for mine_only, limit in ((True, self.max_contacts_per_client), (False, self.max_contacts)):
            candidates = [
                (c.last_seen, cid)
                for cid, c in self._contacts.items()
                if not mine_only or c.owner == owner
            ]
            if len(candidates) < limit:
                continue
            idle = [(seen, cid) for seen, cid in candidates if self._contacts[cid].listener is None]
            if not idle:
                return "too many contacts\n"
            self._forget(min(idle)[1])
        return None

    # -- HTTP phase -------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        protocols = ",".join(request.headers.get_all("Sec-WebSocket-Protocol"))
        if SUBPROTOCOL not in [p.strip() for p in protocols.split(",")]:
            return connection.respond(HTTPStatus.BAD_REQUEST, "fido.cable subprotocol required\n")
        if match := _NEW.match(path):
            tunnel_id = _parse_hex(match[1], 16)
            if tunnel_id is None:
                return connection.respond(HTTPStatus.BAD_REQUEST, "bad tunnel id\n")
            owner = self._client_key(connection)
            if refusal := self._tunnel_refusal(owner):
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, refusal)
            for _ in range(16):
                routing_id = self._routing_ids()
                if (routing_id, tunnel_id) not in self._tunnels:
                    break
            else:
                return connection.respond(HTTPStatus.CONFLICT, "tunnel exists\n")
            loop = asyncio.get_running_loop()
            tunnel = _Tunnel(routing_id, tunnel_id, owner, loop.create_future())
            self._reserve(tunnel)
            self._plan(connection, _Plan("new", tunnel))
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
            self._plan(connection, _Plan("connect", tunnel))
            return None
        if match := _CONTACT.match(path):
            return self._plan_contact(connection, request, match[1])
        if match := _LISTEN.match(path):
            return self._plan_listen(connection, match[1])
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")

    def _plan_listen(self, connection: ServerConnection, encoded: str) -> Response | None:
        try:
            contact_id = unb64url(encoded)
        except LinkingError:
            return connection.respond(HTTPStatus.BAD_REQUEST, "bad contact id\n")
        if not 0 < len(contact_id) <= MAX_CONTACT_ID_LEN:
            return connection.respond(HTTPStatus.BAD_REQUEST, "bad contact id\n")
        self._expire_contacts()
        new = contact_id not in self._contacts
        if new:
            owner = self._client_key(connection)
            if refusal := self._make_room(owner):
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, refusal)
            self._contacts[contact_id] = _Contact(owner, self._clock())
        self._plan(connection, _Plan("listen", contact_id=contact_id, new_contact=new))
        return None

    def _plan_contact(
        self, connection: ServerConnection, request: Request, encoded: str
    ) -> Response | None:
        try:
            contact_id = unb64url(encoded)
        except LinkingError:
            return connection.respond(HTTPStatus.BAD_REQUEST, "bad contact id\n")
        self._expire_contacts()
        if contact_id not in self._contacts:
            return connection.respond(HTTPStatus.GONE, "unknown contact id\n")
        try:
            raw = bytes.fromhex(request.headers.get(CLIENT_PAYLOAD_HEADER, ""))
            ClientPayload.from_cbor(raw)
        except (LinkingError, ValueError):
            return connection.respond(HTTPStatus.BAD_REQUEST, "bad client payload\n")
        owner = self._client_key(connection)
        if refusal := self._tunnel_refusal(owner):
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, refusal)
        routing_id, tunnel_id = self._routing_ids(), os.urandom(TUNNEL_ID_LEN)
        loop = asyncio.get_running_loop()
        tunnel = _Tunnel(routing_id, tunnel_id, owner, loop.create_future())
        tunnel.contact_id, tunnel.client_payload = contact_id, raw
        self._reserve(tunnel)
        self._plan(connection, _Plan("contact", tunnel))
        return None

    def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        plan = self._plans.get(connection)
        if plan is None:
            return None
        if response.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
            self._abandon(connection)
        elif plan.kind == "new" and plan.tunnel is not None:
            response.headers[ROUTING_ID_HEADER] = plan.tunnel.routing_id.hex().upper()
        return None

    # -- WebSocket phase --------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        plan = self._plans.pop(ws, None)
        if plan is None:
            await ws.close(1011, "no tunnel")
            return
        if plan.kind == "listen":
            await self._run_listener(ws, plan.contact_id)
            return
        assert plan.tunnel is not None
        if plan.kind == "new":
            await self._run_waiting(ws, plan.tunnel)
        elif plan.kind == "contact":
            await self._run_contact(ws, plan.tunnel)
        else:
            await self._run_joining(ws, plan.tunnel)

    async def _run_contact(self, ws: ServerConnection, tunnel: _Tunnel) -> None:
        """A linked desktop: queue a notice for the phone, then wait for it like /new does."""
        assert tunnel.contact_id is not None
        contact = self._contacts.get(tunnel.contact_id)
        reason = "contact id forgotten" if contact is None else None
        if contact is not None:
            # desktops that gave up meanwhile do not count
            contact.pending = deque(t for t in contact.pending if self._live(t))
            if len(contact.pending) >= MAX_QUEUED_CONTACTS:
                reason = "too many pending contacts"
        if contact is None or reason is not None:
            self._release(tunnel)
            await ws.close(1013, reason)
            return
        contact.pending.append(tunnel)
        contact.changed.set()
        await self._run_waiting(ws, tunnel)

    async def _run_listener(self, ws: ServerConnection, contact_id: bytes) -> None:
        """Push contact notices to a linked phone; a newer listener replaces an older one."""
        contact = self._contacts.get(contact_id)
        if contact is None:  # forgotten between the request and now
            await ws.close(1013, "try again")
            return
        previous, contact.listener = contact.listener, ws
        if previous is not None:
            await previous.close(1000, "replaced")
        reader: asyncio.Future[Any] = asyncio.ensure_future(ws.recv())
        changed: asyncio.Future[Any] | None = None
        try:
            while contact.listener is ws:
                while contact.pending:
                    tunnel = contact.pending.popleft()
                    if not self._live(tunnel):
                        continue  # the desktop gave up meanwhile
                    notice = ContactNotice(
                        tunnel.routing_id, tunnel.tunnel_id, tunnel.client_payload
                    )
                    try:
                        await ws.send(notice.to_cbor())
                    except ConnectionClosed:
                        contact.pending.appendleft(tunnel)  # for the phone's next listener
                        return
                contact.changed.clear()
                changed = asyncio.ensure_future(contact.changed.wait())
                await asyncio.wait({reader, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if reader.done():
                    try:
                        message = reader.result()
                    except ConnectionClosed:
                        return
                    if isinstance(message, bytes) and len(message) == TUNNEL_ID_LEN:
                        self._decline(contact_id, message)
                    reader = asyncio.ensure_future(ws.recv())
        finally:
            reader.cancel()
            if changed is not None:
                changed.cancel()
            if contact.listener is ws:
                contact.listener = None
                contact.last_seen = self._clock()

    def _decline(self, contact_id: bytes, tunnel_id: bytes) -> None:
        for tunnel in self._tunnels.values():
            if tunnel.contact_id == contact_id and tunnel.tunnel_id == tunnel_id:
                if not tunnel.peer.done():
                    tunnel.peer.cancel()  # the waiting desktop is closed with "declined"
                return

    async def _run_waiting(self, ws: ServerConnection, tunnel: _Tunnel) -> None:
        """The first side of a tunnel (phone on /new, desktop on /contact) until the other joins."""
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            await asyncio.wait(
                {tunnel.peer, closed},
                timeout=self.pair_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not tunnel.peer.done():
                log.info("tunnel %s: no peer joined", tunnel.routing_id.hex())
                self._release(tunnel)
                await ws.close(1000, "no peer")
                return
            if tunnel.peer.cancelled():
                log.info("tunnel %s: no peer (declined or gone)", tunnel.routing_id.hex())
                await ws.close(1000, "declined")
                return
            desktop = tunnel.peer.result()
            await self._relay(ws, desktop)
        finally:
            closed.cancel()
            self._release(tunnel)

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
    ready: Callable[[TunnelServer], None] | None = None,
    **limits: Any,
) -> None:
    """Run a tunnel server until cancelled (``fido-emu tunnel-server``).

    ``limits`` are :class:`TunnelServer` keyword arguments (see the module docstring).
    """
    server = TunnelServer(**limits)
    await server.start(host, port, ssl)
    log.info("caBLE tunnel server listening on %s:%d", host, server.port)
    if ready is not None:
        ready(server)
    try:
        await asyncio.Future()
    finally:
        await server.close()

"""The phone's side of hybrid: scan a QR code, advertise over BLE, answer CTAP through a tunnel.

With a :class:`~transports.hybrid.linking.PhoneLinking` the phone also offers state-assisted
linking when the QR code asks for it, and :func:`serve_linked` answers linked desktops that
reconnect through the tunnel server without a QR code.

The BLE radio is abstract here: ``advertise`` receives the 20-byte service data to send under
UUID 0xFFF9. It may return an async context manager, which is held until the handshake is done
(:class:`~transports.hybrid.ble_advertiser.HybridAdvertiser` does this over BlueZ); tests just
hand the bytes to the client.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl as ssl_module
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from authenticator.core.ports import CommandContext, CtapHandler
from transports.hybrid import advert, keys
from transports.hybrid.crypter import Crypter, CrypterError
from transports.hybrid.domains import ROUTING_ID_HEADER, connect_url, new_tunnel_url, tunnel_base
from transports.hybrid.linking import (
    ClientPayload,
    ContactNotice,
    LinkingError,
    PhoneLinking,
    linked_eid_key,
    listen_url,
    new_linked_eid,
    update_message,
)
from transports.hybrid.messages import Frame, MessageError, MessageType, PostHandshake, ctap_frame
from transports.hybrid.noise import HandshakeError, Responder
from transports.hybrid.qr import QrPayload
from transports.hybrid.tunnel_client import open_tunnel, recv_binary

log = logging.getLogger(__name__)

Advertiser = Callable[[bytes], Awaitable[None] | AbstractAsyncContextManager[Any] | None]
GET_INFO = b"\x04"


class HybridError(Exception):
    """The hybrid session could not be set up."""


async def _advertise(stack: AsyncExitStack, callback: Advertiser, data: bytes) -> None:
    """Run the callback; an async context manager it returns stays entered until the
    handshake is over (a real radio stops advertising then)."""
    result = callback(data)
    if isinstance(result, AbstractAsyncContextManager):
        await stack.enter_async_context(result)
    elif inspect.isawaitable(result):
        await result


async def run_authenticator(
    qr: QrPayload | str,
    handler: CtapHandler,
    advertise: Advertiser,
    *,
    tunnel_url: str | None = None,
    tunnel_server_id: int = 0,
    ssl: ssl_module.SSLContext | None = None,
    handshake_timeout: float = 120.0,
    linking: PhoneLinking | None = None,
    linking_in_update: bool = False,
) -> None:
    """Serve one hybrid session end to end; returns when the desktop shuts the tunnel down.

    ``tunnel_url`` overrides the tunnel server's base URL (e.g. ``ws://127.0.0.1:8080``);
    the advert still names ``tunnel_server_id`` so the desktop's URL override must match.
    With ``linking``, linking info goes to a desktop whose QR code says it supports linking:
    in the post-handshake message (key 2), or with ``linking_in_update`` in an UPDATE frame
    right after it, as current Android Chrome does.
    """
    payload = qr if isinstance(qr, QrPayload) else QrPayload.from_url(qr)
    secret = payload.secret
    peer_identity = payload.identity_key()
    base = tunnel_url or tunnel_base(tunnel_server_id)
    ws = await open_tunnel(new_tunnel_url(base, keys.tunnel_id(secret)), ssl=ssl)
    try:
        header = ws.response.headers.get(ROUTING_ID_HEADER) if ws.response else None
        routing_id = bytes.fromhex(header) if header else b""
        if len(routing_id) != 3:
            raise HybridError("tunnel server sent no valid routing id")
        plaintext = advert.Eid.new(routing_id, tunnel_server_id).to_bytes()
        responder = Responder(keys.psk(secret, plaintext), peer_identity=peer_identity)
        async with AsyncExitStack() as advertising:
            await _advertise(
                advertising, advertise, advert.encrypt(keys.eid_key(secret), plaintext)
            )
            try:
                async with asyncio.timeout(handshake_timeout):
                    message = await recv_binary(ws)
                response, result = responder.respond(message)
            except (HandshakeError, ValueError, TimeoutError, ConnectionClosed) as exc:
                raise HybridError(f"handshake failed: {exc!r}") from exc
            await ws.send(response)  # answer first: stopping the advert is a D-Bus round trip
        crypter = Crypter(read_key=result.read_key, write_key=result.write_key)

        link_info = None
        if linking is not None and payload.supports_linking:
            link_info = linking.offer(peer_identity, result.handshake_hash)
            log.info("hybrid: offering linking to the desktop")
        in_post = None if linking_in_update else link_info
        await _post_handshake(ws, crypter, handler, in_post)
        if linking_in_update and link_info is not None:
            frame = Frame(MessageType.UPDATE, update_message(link_info)).to_bytes()
            await ws.send(crypter.encrypt(frame))
        await _serve(ws, crypter, handler)
    finally:
        await ws.close()


async def _post_handshake(
    ws: ClientConnection,
    crypter: Crypter,
    handler: CtapHandler,
    linking_info: dict[Any, Any] | None = None,
) -> None:
    info = await handler.handle_cbor(GET_INFO, CommandContext(transport="hybrid"))
    if not info or info[0] != 0:
        raise HybridError("authenticator getInfo failed")
    post = PostHandshake(get_info=info[1:], linking_info=linking_info)
    await ws.send(crypter.encrypt(post.to_cbor()))


async def serve_linked(
    linking: PhoneLinking,
    handler: CtapHandler,
    advertise: Advertiser,
    *,
    tunnel_url: str | None = None,
    tunnel_server_id: int = 0,
    ssl: ssl_module.SSLContext | None = None,
    handshake_timeout: float = 60.0,
    sessions: int | None = None,
    on_listening: Callable[[], None] | None = None,
) -> int:
    """Wait for linked desktops on our tunnel server's ``/cable/listen`` and serve each one.

    Sessions run one after another (the authenticator does one command at a time anyway).
    Contacts naming a pairing id this phone never issued are declined. Returns the number of
    sessions served once ``sessions`` is reached; otherwise runs until cancelled or the
    server closes the listening socket.
    """
    base = tunnel_url or tunnel_base(tunnel_server_id)
    served = 0
    ws = await open_tunnel(listen_url(base, linking.contact_id), ssl=ssl)
    try:
        if on_listening is not None:
            on_listening()
        while sessions is None or served < sessions:
            try:
                notice = ContactNotice.from_cbor(await recv_binary(ws))
                request = ClientPayload.from_cbor(notice.client_payload)
            except ConnectionClosed:
                log.info("hybrid: tunnel server closed the listening socket")
                break
            except (LinkingError, ValueError) as exc:
                log.warning("hybrid: ignoring a bad contact notice: %s", exc)
                continue
            if not linking.knows(request.pairing_id):
                log.warning("hybrid: declining a contact for an unknown pairing")
                await ws.send(notice.tunnel_id)
                continue
            try:
                await _run_linked(
                    linking, request, notice, handler, advertise, base, ssl, handshake_timeout
                )
                served += 1
            except (HybridError, OSError, ConnectionClosed) as exc:
                log.warning("hybrid: linked session failed: %r", exc)
    finally:
        await ws.close()
    return served


async def _run_linked(
    linking: PhoneLinking,
    request: ClientPayload,
    notice: ContactNotice,
    handler: CtapHandler,
    advertise: Advertiser,
    base: str,
    ssl: ssl_module.SSLContext | None,
    handshake_timeout: float,
) -> None:
    """One linked session: join the tunnel, advertise, answer NKpsk0 as the known identity."""
    secret = linking.paired_secret(request.pairing_id)
    try:
        ws = await open_tunnel(connect_url(base, notice.routing_id, notice.tunnel_id), ssl=ssl)
    except Exception as exc:  # e.g. 404: the desktop gave up before we joined
        raise HybridError(f"cannot join the tunnel: {exc!r}") from exc
    try:
        plaintext = new_linked_eid()
        responder = Responder(keys.psk(secret, plaintext), identity=linking.identity_key)
        async with AsyncExitStack() as advertising:
            service_data = advert.encrypt(linked_eid_key(secret, request.client_nonce), plaintext)
            await _advertise(advertising, advertise, service_data)
            try:
                async with asyncio.timeout(handshake_timeout):
                    message = await recv_binary(ws)
                response, result = responder.respond(message)
            except (HandshakeError, ValueError, TimeoutError, ConnectionClosed) as exc:
                raise HybridError(f"linked handshake failed: {exc!r}") from exc
            await ws.send(response)
        crypter = Crypter(read_key=result.read_key, write_key=result.write_key)
        log.info("hybrid: linked desktop connected (request %s)", request.request_type)
        await _post_handshake(ws, crypter, handler)
        await _serve(ws, crypter, handler)
    finally:
        await ws.close()


async def _serve(ws: ClientConnection, crypter: Crypter, handler: CtapHandler) -> None:
    """Answer CTAP frames one at a time until shutdown or the tunnel closes."""
    try:
        while True:
            raw = await recv_binary(ws)
            try:
                frame = Frame.from_bytes(crypter.decrypt(raw))
            except (CrypterError, MessageError) as exc:
                log.warning("hybrid: dropping tunnel after a bad message: %s", exc)
                return
            if frame.type == MessageType.SHUTDOWN:
                log.info("hybrid: desktop shut the tunnel down")
                return
            if frame.type != MessageType.CTAP:
                continue  # linking updates and JSON are not ours to answer
            if not frame.payload:
                continue
            ctx = CommandContext(transport="hybrid")
            response = await handler.handle_cbor(frame.payload, ctx)
            await ws.send(crypter.encrypt(ctap_frame(response)))
    except ConnectionClosed:
        log.info("hybrid: tunnel closed")

"""The phone's side of hybrid: scan a QR code, advertise over BLE, answer CTAP through a tunnel.

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

from authenticator.ports import CommandContext, CtapHandler
from transports.hybrid import advert, keys
from transports.hybrid.crypter import Crypter, CrypterError
from transports.hybrid.domains import ROUTING_ID_HEADER, new_tunnel_url, tunnel_base
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
) -> None:
    """Serve one hybrid session end to end; returns when the desktop shuts the tunnel down.

    ``tunnel_url`` overrides the tunnel server's base URL (e.g. ``ws://127.0.0.1:8080``);
    the advert still names ``tunnel_server_id`` so the desktop's URL override must match.
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

        info = await handler.handle_cbor(GET_INFO, CommandContext(transport="hybrid"))
        if not info or info[0] != 0:
            raise HybridError("authenticator getInfo failed")
        await ws.send(crypter.encrypt(PostHandshake(get_info=info[1:]).to_cbor()))
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

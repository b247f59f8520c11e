"""Opening one half of a tunnel as a WebSocket client (shared by both roles)."""

from __future__ import annotations

import ssl as ssl_module

from websockets.asyncio.client import ClientConnection, connect

from transports.hybrid.domains import SUBPROTOCOL

MAX_MESSAGE_SIZE = 64 * 1024


async def open_tunnel(
    url: str, *, ssl: ssl_module.SSLContext | None = None, timeout: float = 10.0
) -> ClientConnection:
    kwargs = {"ssl": ssl} if url.startswith("wss:") and ssl is not None else {}
    return await connect(
        url,
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        open_timeout=timeout,
        max_size=MAX_MESSAGE_SIZE,
        compression=None,
        proxy=None,  # tunnels are direct; an HTTP proxy in the environment must not catch them
        **kwargs,
    )


async def recv_binary(ws: ClientConnection) -> bytes:
    message = await ws.recv()
    if isinstance(message, str):
        raise ValueError("tunnel carried a text frame")
    return message

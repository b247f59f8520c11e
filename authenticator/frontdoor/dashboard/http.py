"""A deliberately small HTTP/1.1 server on asyncio streams.

Why not aiohttp: the dashboard serves a handful of JSON routes, static files and one
Server-Sent-Events stream, usually on a Raspberry Pi; the stdlib keeps ``fido-emu run
--dashboard`` free of a compiled dependency. One request per connection
(``Connection: close``), bodies only with Content-Length, bounded header and body sizes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger("fido_emu.dashboard")

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 64


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    @property
    def cookies(self) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(self.headers.get("cookie", ""))
        except CookieError:
            return {}
        return {k: m.value for k, m in jar.items()}

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise HttpError(400, f"invalid JSON: {e}") from None


Stream = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: Stream | None = None  # written after the headers (SSE)


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(value).encode())


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


Handler = Callable[[Request], Awaitable[Response]]

# Sent with every response: no framing, no sniffing, no referrer (a ?token= must not
# leak), nothing cached, scripts only from our own origin (rpIds and user names shown
# in the page come from remote clients).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class HttpServer:
    """Calls ``handler`` for each request; keeps track of connections to end them on close."""

    def __init__(self, handler: Handler, max_body: int = 64 * 1024) -> None:
        self.handler = handler
        self.max_body = max_body
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.Task] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(
            self._client, host, port, limit=MAX_HEADER_BYTES
        )
        sock = self._server.sockets[0].getsockname()
        return sock[0], sock[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            try:
                request = await asyncio.wait_for(self._read(reader), timeout=15)
            except HttpError as e:
                await self._write(writer, error_response(e.status, str(e)))
                return
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            try:
                response = await self.handler(request)
            except HttpError as e:
                response = error_response(e.status, str(e))
            except Exception:
                log.exception("dashboard: %s %s failed", request.method, request.path)
                response = error_response(500, "internal error")
            await self._write(writer, response)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> Request:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HttpError(431, "request header too large") from None
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            raise HttpError(400, "bad request line") from None
        if not version.startswith("HTTP/1."):
            raise HttpError(505, "HTTP/1.x only")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or len(headers) >= MAX_HEADERS:
                raise HttpError(400, "bad header")
            key, value = name.strip().lower(), value.strip()
            if key in headers:
                value = headers[key] + ("; " if key == "cookie" else ", ") + value
            headers[key] = value
        if "transfer-encoding" in headers:
            raise HttpError(411, "send a Content-Length")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise HttpError(400, "bad Content-Length") from None
        if length < 0 or length > self.max_body:
            raise HttpError(413, f"body larger than {self.max_body} bytes")
        body = await reader.readexactly(length) if length else b""
        parts = urlsplit(target)
        return Request(
            method=method.upper(),
            path=unquote(parts.path) or "/",
            query=dict(parse_qsl(parts.query)),
            headers=headers,
            body=body,
        )

    async def _write(self, writer: asyncio.StreamWriter, response: Response) -> None:
        reason = HTTPStatus(response.status).phrase
        headers = {
            **SECURITY_HEADERS,
            "Content-Type": response.content_type,
            "Connection": "close",
            **response.headers,
        }
        if response.stream is None:
            headers["Content-Length"] = str(len(response.body))
        head = f"HTTP/1.1 {response.status} {reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        writer.write(head.encode("latin-1") + b"\r\n")
        if response.stream is None:
            writer.write(response.body)
            await writer.drain()
        else:
            await writer.drain()
            await response.stream(writer)

"""The HTTP layer of the dashboard and of ``fido-emu serve``: aiohttp with our limits.

Why aiohttp (see docs/dashboard.md for the measurements): a maintained HTTP/1.1 parser
(llhttp), keep-alive, chunked bodies, flow control on unread bodies and streaming responses,
with wheels for x86-64 and arm64. What it does not give, this module adds:

* every request is checked (Host, token, CSRF, declared size) *before* its body is read;
  a refused request is answered and its connection closed, its body never buffered;
* a cap on open connections, taken from the process's file-descriptor limit so a flood can
  never exhaust descriptors (the surplus is answered 503 and closed at once);
* an idle timeout that also bounds a slow request head, a timeout on reading a body, and a
  log that says one line per client error, rate limited, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

from aiohttp import web

log = logging.getLogger("fido_emu.dashboard")

MAX_HEADER_BYTES = 8 * 1024  # one header line / field
MAX_HEADERS = 64
IDLE_TIMEOUT = 15.0  # no complete request head for this long: the connection is closed
BODY_TIMEOUT = 15.0  # a declared body must arrive within this
MAX_CONNECTIONS = 128  # lowered further when the descriptor limit is small


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
    match: dict[str, str] = field(default_factory=dict)  # path parameters
    raw_path: str = ""  # still percent-encoded: a path parameter may hold "/" (base64)

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

    def json_object(self) -> dict:
        body = self.json()
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        return body


Send = Callable[[bytes], Awaitable[None]]
Stream = Callable[[Send], Awaitable[None]]


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: Stream | None = None  # written after the headers (SSE)
    close: bool = False  # close the connection after this response


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(value).encode())


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


Handler = Callable[[Request], Awaitable[Response]]
# called with the request head (empty body): None to go on, else the response to send
# without reading the body; and the largest body the request may carry
PreCheck = Callable[[Request], Response | None]
BodyLimit = Callable[[Request], int]

# Sent with every response: no framing, no sniffing, no referrer (a ?token= must not
# leak), nothing cached, scripts only from our own origin (rpIds and user names shown
# in the page come from remote clients).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class RateLimitedLog(logging.Filter):
    """At most ``burst`` records per ``period`` seconds pass, and never a traceback: a
    flood of bad clients must not become a flood of log lines (issue 13, D7)."""

    def __init__(self, burst: int = 10, period: float = 10.0) -> None:
        super().__init__()
        self.burst, self.period = burst, period
        self.window_start, self.count, self.dropped = 0.0, 0, 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self.window_start >= self.period:
            if self.dropped:
                record.msg = f"{record.msg} ({self.dropped} similar messages suppressed)"
            self.window_start, self.count, self.dropped = now, 0, 0
        self.count += 1
        if self.count > self.burst:
            self.dropped += 1
            return False
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.msg}: {type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        record.exc_info = None
        record.exc_text = None
        if record.levelno >= logging.ERROR and record.name == "fido_emu.http":
            record.levelno, record.levelname = logging.WARNING, "WARNING"  # a client's fault
        return True


_wire_log = logging.getLogger("fido_emu.http")  # aiohttp's protocol errors end up here
_wire_log.addFilter(RateLimitedLog())


class _AcceptErrors(logging.Filter):
    """asyncio logs each failed accept() (EMFILE) with a traceback: one line per 10 s."""

    def __init__(self) -> None:
        super().__init__()
        self.limit = RateLimitedLog(burst=1, period=10.0)

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("socket.accept() out of system resource"):
            return self.limit.filter(record)
        return True


_accept_filter = _AcceptErrors()
BACKLOG = 32  # asyncio accepts up to this many at once before any protocol runs


def connection_cap(requested: int = MAX_CONNECTIONS) -> int:
    """Connections we accept at once: leave room under RLIMIT_NOFILE for the store, the
    transports and the listening sockets."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return requested
    return max(4, min(requested, (soft - 64 - 2 * BACKLOG) // 2))


class _Refuse(asyncio.Protocol):
    """Over the connection cap: a short 503 and close, nothing read, nothing kept."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Content-Length: 35\r\nConnection: close\r\n\r\n"
            b'{"error": "too many connections"}\r\n'
        )
        transport.close()


class HttpServer:
    """Calls ``handler`` for each request that passes ``pre_check``, within the limits."""

    def __init__(
        self,
        handler: Handler,
        *,
        pre_check: PreCheck | None = None,
        body_limit: BodyLimit | None = None,
        max_body: int = 64 * 1024,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
        name: str = "dashboard",
    ) -> None:
        self.handler = handler
        self.pre_check = pre_check
        self.max_body = max_body
        self.body_limit = body_limit or (lambda req: self.max_body)
        self.max_connections = connection_cap(max_connections)
        self.idle_timeout = idle_timeout
        self.name = name
        self.refused_connections = 0
        self._runner: web.AppRunner | None = None
        self._server: asyncio.base_events.Server | None = None
        self._streams: set[web.StreamResponse] = set()

    @property
    def open_connections(self) -> int:
        return len(self._runner.server.connections) if self._runner and self._runner.server else 0

    async def start(self, host: str, port: int) -> tuple[str, int]:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self.idle_timeout,
            max_line_size=MAX_HEADER_BYTES,
            max_field_size=MAX_HEADER_BYTES,
            max_headers=MAX_HEADERS,
            lingering_time=0,
            logger=_wire_log,
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None

        def factory() -> asyncio.Protocol:
            if len(server.connections) >= self.max_connections:
                self.refused_connections += 1
                if self.refused_connections in (1, 10, 100, 1000) or not self.refused_connections % 10000:
                    log.warning("%s: %d connections refused (cap %d)", self.name,
                                self.refused_connections, self.max_connections)
                return _Refuse()
            return server()

        loop = asyncio.get_running_loop()
        if _accept_filter not in logging.getLogger("asyncio").filters:
            logging.getLogger("asyncio").addFilter(_accept_filter)
        self._server = await loop.create_server(factory, host, port, backlog=BACKLOG)
        sock = self._server.sockets[0].getsockname()
        return sock[0], sock[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            if self._runner.server is not None:
                await self._runner.server.shutdown(1.0)
            await self._runner.cleanup()
        if self._server is not None:
            await self._server.wait_closed()

    async def _dispatch(self, raw: web.Request) -> web.StreamResponse:
        headers: dict[str, str] = {}
        for key, value in raw.headers.items():
            k = key.lower()
            if k in headers:
                value = headers[k] + ("; " if k == "cookie" else ", ") + value
            headers[k] = value
        req = Request(
            method=raw.method.upper(),
            path=raw.path or "/",
            raw_path=raw.raw_path.split("?", 1)[0],
            query={k: v for k, v in raw.query.items()},
            headers=headers,
        )
        try:
            refused = self.pre_check(req) if self.pre_check else None
            if refused is None:
                limit = self.body_limit(req)
                if raw.body_exists and raw.content_length is None:
                    refused = error_response(411, "send a Content-Length")
                elif (raw.content_length or 0) > limit:
                    refused = error_response(413, f"body larger than {limit} bytes")
            if refused is not None:
                refused.close = True  # the unread body is never buffered: drop the connection
                return await self._send(raw, refused)
            if raw.body_exists:
                try:
                    async with asyncio.timeout(BODY_TIMEOUT):
                        req.body = await raw.read()
                except TimeoutError:
                    return await self._send(raw, Response(408, b"", close=True))
            response = await self.handler(req)
        except HttpError as e:
            response = error_response(e.status, str(e))
        except web.HTTPException:
            raise
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("%s: %s %s failed", self.name, req.method, req.path)
            response = error_response(500, "internal error")
        return await self._send(raw, response)

    async def _send(self, raw: web.Request, response: Response) -> web.StreamResponse:
        headers = {**SECURITY_HEADERS, **response.headers}
        if response.stream is None:
            out = web.Response(
                status=response.status, body=response.body, headers=headers,
                content_type=None,
            )
            out.headers["Content-Type"] = response.content_type
            if response.close:
                out.force_close()
            return out
        stream = web.StreamResponse(status=response.status, headers=headers)
        stream.headers["Content-Type"] = response.content_type
        stream.force_close()  # an event stream ends with its connection
        try:
            await stream.prepare(raw)
        except ConnectionError:
            prepared = False
        else:
            prepared = True
        self._streams.add(stream)

        async def send(data: bytes) -> None:
            if not prepared:  # the stream still runs once, so its clean-up does too
                raise ConnectionError("client gone")
            async with asyncio.timeout(10):  # a reader that stopped reading is dropped
                await stream.write(data)

        try:
            await response.stream(send)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self._streams.discard(stream)
        return stream

"""Helpers of the dashboard suites: a raw asyncio HTTP client (so tests control every header,
Host and Origin included) and python-fido2 ceremonies. A module, not conftest.py, so the
tests import it by a name no other conftest shadows."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.server import Fido2Server
from fido2.webauthn import PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity

ORIGIN = "https://example.com"
RP = PublicKeyCredentialRpEntity(id="example.com", name="Example")


class Pin(UserInteraction):
    def __init__(self, pin: str | None) -> None:
        self.pin = pin

    def request_pin(self, permissions, rp_id):
        return self.pin

    def request_uv(self, permissions, rp_id):
        return True


def register(device: Any, user: str, pin: str | None = None) -> bytes:
    """A discoverable makeCredential verified by Fido2Server; returns the credential id."""
    client = Fido2Client(device, DefaultClientDataCollector(ORIGIN), Pin(pin))
    server = Fido2Server(RP)
    entity = PublicKeyCredentialUserEntity(id=user.encode(), name=user, display_name=user.title())
    options, state = server.register_begin(
        entity, resident_key_requirement="required",
        user_verification="required" if pin else "discouraged",
    )
    auth_data = server.register_complete(state, client.make_credential(options.public_key))
    assert auth_data.credential_data is not None
    return auth_data.credential_data.credential_id


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


async def http(
    target: Any,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str | None] | None = None,
    host: str = "127.0.0.1",
) -> Reply:
    """One request to ``target`` (a port, or a server with ``port`` and ``token``: then the
    token header goes along). POSTs carry the page's CSRF header and Origin unless
    ``headers`` says otherwise (a value of None removes a header)."""
    port = target if isinstance(target, int) else target.port
    token = None if isinstance(target, int) else target.token
    if isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode() if body is not None else b""
    h: dict[str, str | None] = {"Host": f"{host}:{port}", "Content-Length": str(len(data))}
    if token:
        h["X-Fido-Emu-Token"] = token
    if method == "POST":
        h.update({
            "Content-Type": "application/json",
            "X-Fido-Emu-Csrf": "1",
            "Origin": f"http://{host}:{port}",
        })
    h.update(headers or {})
    reader, writer = await asyncio.open_connection(host, port)
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items() if v is not None)
    writer.write(head.encode() + b"\r\n" + data)
    await writer.drain()
    raw = await asyncio.wait_for(read_response(reader), timeout=30)
    writer.close()
    head_bytes, _, payload = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    out = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        out[k.strip().lower()] = v.strip()
    return Reply(status, out, payload)


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One response: up to Content-Length, or to EOF (the server may keep the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = None
    for line in head.decode("latin-1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    if length is None:
        return head + await reader.read()
    return head + await reader.readexactly(length)

"""Linked devices from a shell: ``hybrid qr --link`` + ``hybrid scan --link``, then
``hybrid serve-linked`` + ``hybrid connect --pairing`` sign in again without a QR code."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys

from transports.hybrid.linking import STATE_NAME, unb64url
from transports.hybrid.tunnel_server import TunnelServer


async def _cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "authenticator.frontdoor.cli", "hybrid", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _line_with(stream: asyncio.StreamReader | None, marker: bytes) -> bytes:
    assert stream is not None
    while True:
        line = await asyncio.wait_for(stream.readline(), 60)
        assert line, f"stream ended before {marker!r}"
        if marker in line:
            return line


async def _relay_advert(phone: asyncio.subprocess.Process, desktop: asyncio.subprocess.Process):
    line = await _line_with(phone.stderr, b"BLE advert")
    assert desktop.stdin is not None
    desktop.stdin.write(line.decode().rsplit(" ", 1)[1].encode())
    await desktop.stdin.drain()


async def test_link_with_a_qr_code_then_sign_in_with_the_pairing(tmp_path) -> None:
    store, pairing_file = tmp_path / "phone.db", tmp_path / "pairing.json"
    phone_opts = ["--store", str(store), "--profile", "synced-passkey", "--presence", "auto"]
    async with TunnelServer() as server:
        url = server.url()
        desktop = await _cli(
            "qr", "--link", "--save-pairing", str(pairing_file), "--request", "mc",
            "--tunnel-url", url, "--timeout", "60",
        )  # fmt: skip
        assert desktop.stdout is not None
        qr_text = (await asyncio.wait_for(desktop.stdout.readline(), 60)).decode().strip()
        assert qr_text.startswith("FIDO:/")
        phone = await _cli(
            "scan", qr_text, "--link", "--name", "CLI phone", "--tunnel-url", url, *phone_opts
        )
        await _relay_advert(phone, desktop)
        registered = json.loads(await asyncio.wait_for(desktop.stdout.readline(), 60))
        assert registered["verified"] is True
        assert await asyncio.wait_for(desktop.wait(), 30) == 0
        assert await asyncio.wait_for(phone.wait(), 30) == 0

        saved = json.loads(pairing_file.read_text())
        assert saved["name"] == "CLI phone" and saved["tunnelUrl"] == url
        assert stat.S_IMODE(os.stat(pairing_file).st_mode) == 0o600

        phone = await _cli("serve-linked", "--tunnel-url", url, "--sessions", "1", *phone_opts)
        await _line_with(phone.stderr, b"waiting for linked desktops")
        await asyncio.sleep(0.2)  # the listening socket is registered once it is up
        desktop = await _cli("connect", "--pairing", str(pairing_file), "--timeout", "60")
        await _relay_advert(phone, desktop)
        assert desktop.stdout is not None
        signed_in = json.loads(await asyncio.wait_for(desktop.stdout.readline(), 60))
        assert signed_in["credentialId"] == registered["credentialId"]
        assert await asyncio.wait_for(desktop.wait(), 30) == 0
        assert await asyncio.wait_for(phone.wait(), 30) == 0

    import sqlite3

    with sqlite3.connect(store) as db:  # the linking state is sealed, never plaintext
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        dump = "\n".join(db.iterdump())
    assert tables and STATE_NAME in dump
    secret = unb64url(json.loads(pairing_file.read_text())["secret"])
    assert secret.hex() not in dump.lower()


async def test_serve_linked_needs_a_linked_store(tmp_path) -> None:
    proc = await _cli(
        "serve-linked", "--tunnel-url", "ws://127.0.0.1:9", "--store", str(tmp_path / "x.db")
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and b"hybrid scan --link" in err

"""`fido-emu hybrid scan` as the phone, driven by our desktop role and Fido2Client."""

from __future__ import annotations

import asyncio
import sys

from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.server import Fido2Server
from fido2.webauthn import PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity

from transports.hybrid.client_role import HybridClient, HybridCtapDevice
from transports.hybrid.tunnel_server import TunnelServer

RP = PublicKeyCredentialRpEntity(id="example.com", name="Example")


async def test_hybrid_scan_registers_a_passkey(tmp_path):
    store = tmp_path / "phone.db"
    async with TunnelServer() as server:
        client = HybridClient(tunnel_url=server.url(), request_type="mc")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "authenticator.frontdoor.cli", "hybrid", "scan", client.qr_url,
            "--tunnel-url", server.url(), "--store", str(store), "--profile", "synced-passkey",
            "--presence", "auto",
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert b"BLE advert" in line, line
        advert = bytes.fromhex(line.decode().rsplit(" ", 1)[1])
        device = await asyncio.to_thread(HybridCtapDevice.open, client, advert)
        rp = Fido2Server(RP)
        user = PublicKeyCredentialUserEntity(id=b"u", name="alice", display_name="Alice")
        options, state = rp.register_begin(user, resident_key_requirement="required")
        fido = await asyncio.to_thread(Fido2Client, device, DefaultClientDataCollector("https://example.com"))
        response = await asyncio.to_thread(fido.make_credential, options.public_key)
        auth_data = rp.register_complete(state, response)
        assert auth_data.is_backed_up() and auth_data.is_user_verified()
        assert fido.info.transports == ["hybrid", "internal"]  # what the desktop records
        await asyncio.to_thread(device.close)
        assert await asyncio.wait_for(proc.wait(), 30) == 0

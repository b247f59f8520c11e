"""Fido2Client makeCredential + getAssertion over hybrid against the real core."""

from __future__ import annotations

import asyncio

from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.server import Fido2Server
from fido2.webauthn import (
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from authenticator import Authenticator
from transports.hybrid.authenticator_role import run_authenticator
from transports.hybrid.client_role import HybridClient, HybridCtapDevice
from transports.hybrid.tunnel_server import TunnelServer

RP = PublicKeyCredentialRpEntity(id="example.com", name="Example")
USER = PublicKeyCredentialUserEntity(id=b"user-1", name="alice", display_name="Alice")


async def _session(server: TunnelServer, core: Authenticator, request_type: str):
    client = HybridClient(tunnel_url=server.url(), request_type=request_type)
    adverts: asyncio.Queue[bytes] = asyncio.Queue()
    phone = asyncio.create_task(
        run_authenticator(client.qr_url, core, adverts.put_nowait, tunnel_url=server.url())
    )
    advert = await asyncio.wait_for(adverts.get(), 5)
    device = await asyncio.to_thread(HybridCtapDevice.open, client, advert)
    return phone, device


async def test_register_and_authenticate_over_hybrid() -> None:
    core = Authenticator()
    rp_server = Fido2Server(RP)
    collector = DefaultClientDataCollector("https://example.com")
    async with TunnelServer() as server:
        phone, device = await _session(server, core, "mc")
        try:
            options, state = rp_server.register_begin(
                USER,
                resident_key_requirement=ResidentKeyRequirement.DISCOURAGED,
                user_verification=UserVerificationRequirement.DISCOURAGED,
            )
            client = await asyncio.to_thread(Fido2Client, device, collector)  # calls getInfo
            response = await asyncio.to_thread(client.make_credential, options.public_key)
            auth_data = rp_server.register_complete(state, response)
        finally:
            await asyncio.to_thread(device.close)
        await asyncio.wait_for(phone, 5)

        # a second QR code / tunnel, as a browser would do for the sign-in
        phone, device = await _session(server, core, "ga")
        try:
            credentials = [auth_data.credential_data]
            options, state = rp_server.authenticate_begin(
                credentials, user_verification=UserVerificationRequirement.DISCOURAGED
            )
            client = await asyncio.to_thread(Fido2Client, device, collector)  # calls getInfo
            selection = await asyncio.to_thread(client.get_assertion, options.public_key)
            result = rp_server.authenticate_complete(state, credentials, selection.get_response(0))
            assert result.credential_id == auth_data.credential_data.credential_id
        finally:
            await asyncio.to_thread(device.close)
        await asyncio.wait_for(phone, 5)

"""State-assisted linking on loopback: QR session with linking, then reconnects by contact id."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.server import Fido2Server
from fido2.webauthn import (
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from authenticator import Authenticator
from transports.hybrid import keys
from transports.hybrid.authenticator_role import run_authenticator, serve_linked
from transports.hybrid.client_role import (
    HybridClient,
    HybridClientError,
    HybridCtapDevice,
    PairingGoneError,
    connect_linked,
)
from transports.hybrid.domains import SUBPROTOCOL, connect_url
from transports.hybrid.linking import (
    CLIENT_PAYLOAD_HEADER,
    STATE_NAME,
    ClientPayload,
    ContactNotice,
    LinkingError,
    LinkStore,
    Pairing,
    PhoneLinking,
    contact_url,
    listen_url,
    signature_key,
)
from transports.hybrid.tunnel_client import open_tunnel, recv_binary
from transports.hybrid.tunnel_server import TunnelServer

RP = PublicKeyCredentialRpEntity(id="example.com", name="Example")
USER = PublicKeyCredentialUserEntity(id=b"user-1", name="alice", display_name="Alice")
ORIGIN = "https://example.com"


def _advert_pipe() -> tuple[Callable[[bytes], None], Callable[[], AsyncIterator[bytes]]]:
    """Phone adverts -> desktop, across event loops (the sync device runs its own)."""
    pipe: queue.Queue[bytes] = queue.Queue()

    async def adverts() -> AsyncIterator[bytes]:
        while True:
            yield await asyncio.to_thread(pipe.get, True, 10)

    return pipe.put, adverts


async def _qr_session(
    server: TunnelServer, core: Authenticator, linking: PhoneLinking | None, **phone: Any
) -> tuple[asyncio.Task[None], HybridClient, bytes]:
    client = HybridClient(tunnel_url=server.url(), request_type="mc", link=True)
    adverts: asyncio.Queue[bytes] = asyncio.Queue()
    task = asyncio.create_task(
        run_authenticator(
            client.qr_url, core, adverts.put_nowait, tunnel_url=server.url(), linking=linking,
            **phone,
        )
    )  # fmt: skip
    return task, client, await asyncio.wait_for(adverts.get(), 5)


async def _listen(
    server: TunnelServer, core: Authenticator, linking: PhoneLinking, advertise: Any, **kw: Any
) -> asyncio.Task[int]:
    listening = asyncio.Event()
    task = asyncio.create_task(
        serve_linked(
            linking, core, advertise, tunnel_url=server.url(), on_listening=listening.set, **kw
        )
    )
    await asyncio.wait_for(listening.wait(), 5)  # the contact id is known from here on
    return task


async def test_link_then_sign_in_without_a_qr_code() -> None:
    core = Authenticator()
    linking = LinkStore(core).load(name="Test phone")
    assert linking is not None
    rp = Fido2Server(RP)
    collector = DefaultClientDataCollector(ORIGIN)
    async with TunnelServer() as server:
        # 1. QR code with linking: register a passkey; the desktop gets a pairing
        phone, client, advert = await _qr_session(server, core, linking)
        device = await asyncio.to_thread(HybridCtapDevice.open, client, advert)
        try:
            options, state = rp.register_begin(
                USER,
                resident_key_requirement=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.DISCOURAGED,
            )
            fido = await asyncio.to_thread(Fido2Client, device, collector)
            response = await asyncio.to_thread(fido.make_credential, options.public_key)
            auth_data = rp.register_complete(state, response)
        finally:
            await asyncio.to_thread(device.close)
        await asyncio.wait_for(phone, 5)

        pairing = client.pairing
        assert pairing is not None and pairing.name == "Test phone"
        assert pairing.peer_public_key == keys.uncompressed(linking.identity_key.public_key())
        assert linking.knows(pairing.pairing_id) and len(pairing.pairing_id) == 8
        assert pairing.secret not in repr(pairing).encode()
        saved = json.loads(json.dumps(pairing.to_json()))

        # the phone's linking state is sealed in its store: no secret in plaintext
        blob = core.store.get_state(STATE_NAME)
        assert blob is not None
        for secret in (linking.root_secret, linking.contact_id, pairing.secret):
            assert secret not in blob
        reloaded = LinkStore(core).load()
        assert reloaded is not None and reloaded.knows(pairing.pairing_id)
        assert reloaded.root_secret == linking.root_secret

        # 2. later: the phone waits for linked desktops, the desktop reconnects by contact id
        advertise, adverts = _advert_pipe()
        listener = await _listen(server, core, reloaded, advertise, sessions=1)
        linked = await asyncio.to_thread(
            HybridCtapDevice.open_linked, Pairing.from_json(saved), adverts, timeout=10
        )
        try:
            options, state = rp.authenticate_begin(
                [auth_data.credential_data],
                user_verification=UserVerificationRequirement.DISCOURAGED,
            )
            fido = await asyncio.to_thread(Fido2Client, linked, collector)
            result = await asyncio.to_thread(fido.get_assertion, options.public_key)
            response = result.get_response(0)
            rp.authenticate_complete(state, [auth_data.credential_data], response)
        finally:
            await asyncio.to_thread(linked.close)
        assert await asyncio.wait_for(listener, 5) == 1


async def test_linking_info_in_an_update_frame() -> None:
    """Current Android Chrome sends linking info in an UPDATE frame after the post-handshake."""
    core = Authenticator()
    linking = PhoneLinking.new()
    async with TunnelServer() as server:
        phone, client, advert = await _qr_session(server, core, linking, linking_in_update=True)
        session = await client.connect(advert)
        assert session.post_handshake.linking_info is None and session.pairing is None
        assert (await session.call(b"\x04"))[0] == 0  # reads the UPDATE frame on the way
        assert session.pairing is not None and client.pairing is session.pairing
        assert linking.knows(session.pairing.pairing_id)
        await session.close()
        await asyncio.wait_for(phone, 5)


async def test_no_linking_unless_the_qr_asks() -> None:
    core = Authenticator()
    linking = PhoneLinking.new()
    async with TunnelServer() as server:
        client = HybridClient(tunnel_url=server.url())  # QR key 4 = false
        adverts: asyncio.Queue[bytes] = asyncio.Queue()
        phone = asyncio.create_task(
            run_authenticator(
                client.qr_url, core, adverts.put_nowait, tunnel_url=server.url(), linking=linking
            )
        )
        session = await client.connect(await asyncio.wait_for(adverts.get(), 5))
        assert session.pairing is None and not linking.pairing_ids
        await session.close()
        await asyncio.wait_for(phone, 5)


class _ForgingLinking(PhoneLinking):
    """Sends linking info with a broken signature."""

    def offer(self, peer_identity: ec.EllipticCurvePublicKey, hh: bytes) -> dict[int, Any]:
        info = super().offer(peer_identity, hh)
        info[6] = bytes([info[6][0] ^ 1]) + info[6][1:]
        return info


async def test_tampered_linking_signature_is_rejected() -> None:
    base = PhoneLinking.new()
    forging = _ForgingLinking(base.root_secret, base.contact_id)
    async with TunnelServer() as server:
        phone, client, advert = await _qr_session(server, Authenticator(), forging)
        with pytest.raises(HybridClientError, match="linking"):
            await client.connect(advert, timeout=5)
        assert client.pairing is None
        await asyncio.wait_for(phone, 5)


def _linking_info(
    desktop: ec.EllipticCurvePrivateKey, hh: bytes
) -> tuple[PhoneLinking, dict[int, Any]]:
    linking = PhoneLinking.new("phone")
    return linking, linking.offer(desktop.public_key(), hh)


def test_pairing_parse_checks_every_field() -> None:
    desktop = ec.generate_private_key(ec.SECP256R1())
    hh = os.urandom(32)
    linking, info = _linking_info(desktop, hh)

    def parse(info: Any, *, identity: ec.EllipticCurvePrivateKey = desktop, h: bytes = hh):
        return Pairing.from_linking_info(
            info, local_identity=identity, handshake_hash=h, tunnel_server_id=0
        )

    pairing = parse(info)
    assert (pairing.contact_id, pairing.secret) == (info[1], info[3])
    assert pairing.secret == linking.paired_secret(info[2])
    assert Pairing.from_json(pairing.to_json()) == pairing
    with pytest.raises(LinkingError):
        parse(info, h=os.urandom(32))  # another handshake
    with pytest.raises(LinkingError):
        parse(info, identity=ec.generate_private_key(ec.SECP256R1()))  # another desktop
    other_phone = PhoneLinking.new()
    forged = {**info, 4: keys.uncompressed(other_phone.identity_key.public_key())}
    with pytest.raises(LinkingError):
        parse(forged)  # someone else's identity key with this phone's signature
    for key in (1, 2, 3, 4, 5, 6):
        with pytest.raises(LinkingError):
            parse({k: v for k, v in info.items() if k != key})
    with pytest.raises(LinkingError):
        parse({**info, 4: info[4][:33]})  # Chromium wants the 65-byte form
    with pytest.raises(LinkingError):
        parse([1, 2])
    # the HMAC key is ECDH between the two identities: both sides compute it
    assert signature_key(linking.identity_key, desktop.public_key(), hh) == info[6]
    assert signature_key(desktop, linking.identity_key.public_key(), hh) == info[6]


def test_paired_secret_depends_on_contact_id_and_pairing_id() -> None:
    linking = PhoneLinking.new()
    a, b = linking.paired_secret(b"\x01" * 8), linking.paired_secret(b"\x02" * 8)
    assert a != b and len(a) == 32
    per_contact = keys.derive(linking.root_secret, linking.contact_id, 6, 32)
    assert a == keys.derive(per_contact, b"\x01" * 8, 4, 32)
    seed = keys.derive(linking.root_secret, b"", 5, 32)
    assert keys.uncompressed(linking.identity_key.public_key()) == keys.uncompressed(
        keys.p256_from_seed(seed).public_key()
    )
    linking.unlink_all()
    assert linking.paired_secret(b"\x01" * 8) != a and not linking.pairing_ids


def test_link_store_survives_reload_but_not_a_factory_reset() -> None:
    core = Authenticator()
    first = LinkStore(core).load()
    assert first is not None and "root" not in repr(first)
    first.offer(ec.generate_private_key(ec.SECP256R1()).public_key(), bytes(32))
    again = LinkStore(core).load()
    assert again is not None and again.pairing_ids == first.pairing_ids
    core.factory_reset()
    assert LinkStore(core).load(create=False) is None
    fresh = LinkStore(core).load()
    assert fresh is not None and fresh.root_secret != first.root_secret


async def _linked_setup(server: TunnelServer, core: Authenticator) -> tuple[PhoneLinking, Pairing]:
    linking = PhoneLinking.new()
    phone, client, advert = await _qr_session(server, core, linking)
    session = await client.connect(advert)
    await session.close()
    await asyncio.wait_for(phone, 5)
    assert client.pairing is not None
    return linking, client.pairing


async def test_contact_for_an_unknown_pairing_id_is_declined() -> None:
    core = Authenticator()
    async with TunnelServer() as server:
        linking, pairing = await _linked_setup(server, core)
        seen: list[bytes] = []
        listener = await _listen(server, core, linking, seen.append)
        stranger = replace(pairing, pairing_id=os.urandom(8))
        with pytest.raises(HybridClientError, match="declined"):
            await connect_linked(stranger, _never(), timeout=5)
        assert not seen  # the phone never joined, so it never advertised
        # the real pairing still works on the same listener
        adverts: asyncio.Queue[bytes] = asyncio.Queue()
        await _stop(listener)
        listener = await _listen(server, core, linking, adverts.put_nowait, sessions=1)
        session = await connect_linked(pairing, _from_queue(adverts), timeout=5)
        assert (await session.call(b"\x04"))[0] == 0
        await session.close()
        assert await asyncio.wait_for(listener, 5) == 1


async def test_tampered_pairing_fails_the_linked_handshake() -> None:
    core = Authenticator()
    async with TunnelServer() as server:
        linking, pairing = await _linked_setup(server, core)
        adverts: asyncio.Queue[bytes] = asyncio.Queue()
        listener = await _listen(server, core, linking, adverts.put_nowait, handshake_timeout=5)
        impostor_key = keys.uncompressed(PhoneLinking.new().identity_key.public_key())
        wrong_key = replace(pairing, peer_public_key=impostor_key)
        with pytest.raises(HybridClientError):
            await connect_linked(wrong_key, _from_queue(adverts), timeout=5)
        wrong_secret = replace(pairing, secret=os.urandom(32))
        with pytest.raises(TimeoutError):  # its EID key matches no advert
            await connect_linked(wrong_secret, _from_queue(adverts), timeout=1)
        await _stop(listener)


async def test_unknown_contact_id_is_gone_and_bad_payloads_rejected() -> None:
    core = Authenticator()
    async with TunnelServer() as server:
        linking, pairing = await _linked_setup(server, core)
        with pytest.raises(PairingGoneError):  # no phone ever listened on it
            await connect_linked(pairing, _never(), timeout=5)
        listener = await _listen(server, core, linking, lambda _: None)
        with pytest.raises(InvalidStatus) as info:  # the client payload header is required
            await connect(contact_url(server.url(), pairing.contact_id), subprotocols=[SUBPROTOCOL])  # type: ignore[list-item]
        assert info.value.response.status_code == 400
        await _stop(listener)


def test_client_payload_and_notice_round_trip() -> None:
    payload = ClientPayload(os.urandom(8), os.urandom(16), "mc")
    assert ClientPayload.from_header(payload.to_header()) == payload
    assert payload.to_header().isupper()
    with pytest.raises(LinkingError):
        ClientPayload.from_cbor(ClientPayload(b"x", b"short").to_cbor())
    notice = ContactNotice(b"abc", os.urandom(16), payload.to_cbor())
    assert ContactNotice.from_cbor(notice.to_cbor()) == notice
    with pytest.raises(LinkingError):
        ContactNotice.from_cbor(b"\xa0")


async def _never() -> AsyncIterator[bytes]:
    await asyncio.Event().wait()
    yield b""


async def _from_queue(q: asyncio.Queue[bytes]) -> AsyncIterator[bytes]:
    while True:
        yield await q.get()


async def _stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_server_queues_a_contact_until_the_phone_listens_again() -> None:
    contact_id = os.urandom(16)
    payload = ClientPayload(os.urandom(8), os.urandom(16), "ga")
    async with TunnelServer() as server:
        first = await open_tunnel(listen_url(server.url(), contact_id))
        await first.close()  # the phone goes away; its contact id stays known
        desktop_ws = await connect(
            contact_url(server.url(), contact_id),
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers={CLIENT_PAYLOAD_HEADER: payload.to_header()},
        )
        phone = await open_tunnel(listen_url(server.url(), contact_id))
        notice = ContactNotice.from_cbor(await asyncio.wait_for(recv_binary(phone), 5))
        assert ClientPayload.from_cbor(notice.client_payload) == payload
        joined = await open_tunnel(connect_url(server.url(), notice.routing_id, notice.tunnel_id))
        await joined.send(b"from the phone")
        assert await asyncio.wait_for(desktop_ws.recv(), 5) == b"from the phone"
        for ws in (joined, desktop_ws, phone):
            await ws.close()

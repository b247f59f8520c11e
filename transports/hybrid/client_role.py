"""The desktop's side of hybrid: show a QR code, find the phone's advert, talk CTAP to it.

:class:`HybridClient` holds the QR secret and identity; :meth:`HybridClient.connect` takes an
advert (from a BLE scanner, or straight from a test) and returns an async
:class:`HybridSession`. :class:`HybridCtapDevice` wraps a session as a python-fido2
``CtapDevice`` (sync), running the session on its own event-loop thread.

With ``link=True`` the QR code offers state-assisted linking; a phone that accepts sends
linking info, which becomes :attr:`HybridClient.pairing` (see
:mod:`transports.hybrid.linking`). :func:`connect_linked` (and
:meth:`HybridCtapDevice.open_linked`) later reach that phone again without a QR code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl as ssl_module
import threading
import time
from collections.abc import AsyncIterable, Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from threading import Event
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.ctap import STATUS, CtapDevice, CtapError
from fido2.hid import CAPABILITY, CTAPHID
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from transports.hybrid import advert, keys
from transports.hybrid.crypter import Crypter, CrypterError
from transports.hybrid.domains import SUBPROTOCOL, connect_url, tunnel_base
from transports.hybrid.linking import (
    CLIENT_NONCE_LEN,
    CLIENT_PAYLOAD_HEADER,
    ClientPayload,
    LinkingError,
    Pairing,
    contact_url,
    linked_eid_key,
)
from transports.hybrid.messages import (
    SHUTDOWN,
    Frame,
    MessageError,
    MessageType,
    PostHandshake,
    ctap_frame,
)
from transports.hybrid.noise import HandshakeError, Initiator
from transports.hybrid.qr import REQUEST_GET_ASSERTION, QrPayload, new_payload
from transports.hybrid.tunnel_client import MAX_MESSAGE_SIZE, open_tunnel, recv_binary

LinkParser = Callable[[Any], Pairing]


class HybridClientError(Exception):
    """The phone could not be reached or misbehaved."""


class PairingGoneError(HybridClientError):
    """The tunnel server answered 410 for the contact id: forget this pairing (as Chromium)."""


class HybridClient:
    """One QR code's worth of state (a fresh secret and identity key per code)."""

    def __init__(
        self,
        *,
        request_type: str = REQUEST_GET_ASSERTION,
        identity: ec.EllipticCurvePrivateKey | None = None,
        secret: bytes | None = None,
        tunnel_url: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        link: bool = False,
    ) -> None:
        self.identity = identity or ec.generate_private_key(ec.SECP256R1())
        self.secret = secret or os.urandom(16)
        self.payload: QrPayload = new_payload(
            self.identity, self.secret, request_type=request_type, supports_linking=link
        )
        self.tunnel_url = tunnel_url
        self.ssl = ssl
        self._eid_key = keys.eid_key(self.secret)
        self._session: HybridSession | None = None

    @property
    def pairing(self) -> Pairing | None:
        """The verified linking info the phone sent in the last session, if any."""
        return self._session.pairing if self._session is not None else None

    @property
    def qr_url(self) -> str:
        return self.payload.to_url()

    def match_advert(self, data: bytes) -> tuple[bytes, advert.Eid] | None:
        """The advert's plaintext and fields if it is the phone answering *our* QR code."""
        try:
            return advert.open_advert(self._eid_key, data)
        except advert.AdvertError:
            return None

    async def connect(
        self, adverts: bytes | AsyncIterable[bytes], *, timeout: float = 30.0
    ) -> HybridSession:
        async with asyncio.timeout(timeout):
            found = await _find_advert(adverts, self.match_advert)
        plaintext, eid = found
        base = self.tunnel_url or tunnel_base(eid.tunnel_server_id)
        url = connect_url(base, eid.routing_id, keys.tunnel_id(self.secret))
        ws = await open_tunnel(url, ssl=self.ssl)
        try:
            initiator = Initiator(keys.psk(self.secret, plaintext), identity=self.identity)
            await ws.send(initiator.start())
            async with asyncio.timeout(timeout):
                result = initiator.finish(await recv_binary(ws))
                crypter = Crypter(read_key=result.read_key, write_key=result.write_key)
                post = PostHandshake.from_cbor(crypter.decrypt(await recv_binary(ws)))

            def parse_link(info: Any) -> Pairing:
                return Pairing.from_linking_info(
                    info,
                    local_identity=self.identity,
                    handshake_hash=result.handshake_hash,
                    tunnel_server_id=eid.tunnel_server_id,
                    tunnel_url=self.tunnel_url,
                )

            session = HybridSession(ws, crypter, post, result.handshake_hash, parse_link)
        except (HandshakeError, CrypterError, MessageError, ConnectionClosed) as exc:
            await ws.close()
            raise HybridClientError(f"handshake with the phone failed: {exc!r}") from exc
        except BaseException:
            await ws.close()
            raise
        self._session = session
        return session


async def _find_advert(
    adverts: bytes | AsyncIterable[bytes], match: Callable[[bytes], Any | None]
) -> Any:
    """The first advert ``match`` accepts, as ``match`` returns it."""
    if isinstance(adverts, bytes | bytearray):
        found = match(bytes(adverts))
        if found is None:
            raise HybridClientError("advert does not belong to this phone")
        return found
    try:
        async for data in adverts:
            found = match(data)
            if found is not None:
                return found
    finally:
        aclose = getattr(adverts, "aclose", None)
        if aclose is not None:
            await aclose()  # e.g. stop a BLE scan as soon as the phone is found
    raise HybridClientError("no matching advert seen")


async def connect_linked(
    pairing: Pairing,
    adverts: bytes | AsyncIterable[bytes] | Callable[[], AsyncIterable[bytes]],
    *,
    request_type: str = REQUEST_GET_ASSERTION,
    tunnel_url: str | None = None,
    ssl: ssl_module.SSLContext | None = None,
    timeout: float = 30.0,
) -> HybridSession:
    """Reach a linked phone without a QR code (Chromium's paired ``FidoTunnelDevice``).

    Opens ``/cable/contact/<contact id>`` with a fresh client nonce; the phone joins and
    advertises under an EID key derived from the pairing secret and that nonce; its decrypted
    advert salts the NKpsk0 PSK. ``adverts`` may be a factory, called only once the contact
    request is accepted (e.g. start a BLE scan then). A 410 raises :class:`PairingGoneError`;
    a declined contact (unknown pairing) closes the tunnel and raises HybridClientError.
    """
    nonce = os.urandom(CLIENT_NONCE_LEN)
    request = ClientPayload(pairing.pairing_id, nonce, request_type)
    base = tunnel_url or pairing.tunnel_url or tunnel_base(pairing.tunnel_server_id)
    kwargs = {"ssl": ssl} if base.startswith("wss:") and ssl is not None else {}
    try:
        ws = await connect(
            contact_url(base, pairing.contact_id),
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers={CLIENT_PAYLOAD_HEADER: request.to_header()},
            open_timeout=min(timeout, 10.0),
            max_size=MAX_MESSAGE_SIZE,
            compression=None,
            proxy=None,
            **kwargs,
        )
    except InvalidStatus as exc:
        if exc.response.status_code == 410:
            raise PairingGoneError("the tunnel server no longer knows this pairing") from exc
        raise HybridClientError(f"contact refused: HTTP {exc.response.status_code}") from exc
    eid_key = linked_eid_key(pairing.secret, nonce)

    def match(data: bytes) -> bytes | None:
        try:
            plaintext = advert.decrypt(eid_key, data)
        except advert.AdvertError:
            return None
        return plaintext if plaintext[0] == 0 else None

    try:
        async with asyncio.timeout(timeout):
            source = adverts() if callable(adverts) else adverts
            finder = asyncio.ensure_future(_find_advert(source, match))
            closed = asyncio.ensure_future(ws.wait_closed())
            try:
                await asyncio.wait({finder, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
                if not finder.done():
                    finder.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await finder
            if not finder.done() or finder.cancelled():
                reason = ws.close_reason or "closed"
                raise HybridClientError(f"tunnel closed before the phone answered: {reason}")
            plaintext = finder.result()
            initiator = Initiator(
                keys.psk(pairing.secret, plaintext), peer_identity=pairing.peer_key()
            )
            await ws.send(initiator.start())
            result = initiator.finish(await recv_binary(ws))
            crypter = Crypter(read_key=result.read_key, write_key=result.write_key)
            post = PostHandshake.from_cbor(crypter.decrypt(await recv_binary(ws)))
    except (HandshakeError, CrypterError, MessageError, LinkingError, ConnectionClosed) as exc:
        await ws.close()
        raise HybridClientError(f"linked handshake with the phone failed: {exc!r}") from exc
    except BaseException:
        await ws.close()
        raise
    return HybridSession(ws, crypter, post, result.handshake_hash)


class HybridSession:
    """An open, encrypted tunnel to the phone: CTAP requests in, responses out, one at a time."""

    def __init__(
        self,
        ws: ClientConnection,
        crypter: Crypter,
        post: PostHandshake,
        handshake_hash: bytes,
        parse_link: LinkParser | None = None,
    ) -> None:
        self._ws = ws
        self._crypter = crypter
        self.post_handshake = post
        self.handshake_hash = handshake_hash
        self._lock = asyncio.Lock()
        self._parse_link = parse_link
        #: verified linking info (QR sessions only): from the post-handshake message, or
        #: from an UPDATE frame that arrives later (current Android Chrome)
        self.pairing: Pairing | None = None
        if post.linking_info is not None and parse_link is not None:
            try:
                self.pairing = parse_link(post.linking_info)
            except LinkingError as exc:  # Chromium drops the connection too
                raise MessageError(f"invalid linking info: {exc}") from exc

    def _update(self, payload: bytes) -> None:
        """An UPDATE frame: {1: linking info} (key 0 is padding); malformed ones are fatal."""
        try:
            body = cbor2.loads(payload)
        except Exception as exc:
            raise HybridClientError("update frame is not CBOR") from exc
        if not isinstance(body, dict):
            raise HybridClientError("update frame is not a map")
        if 1 in body and self._parse_link is not None:
            try:
                self.pairing = self._parse_link(body[1])
            except LinkingError as exc:
                raise HybridClientError(f"invalid linking info: {exc}") from exc

    @property
    def get_info(self) -> bytes:
        """The phone's getInfo CBOR, as sent in the post-handshake message."""
        return self.post_handshake.get_info

    async def call(self, request: bytes) -> bytes:
        """Command byte + CBOR -> status byte + CBOR."""
        async with self._lock:
            await self._ws.send(self._crypter.encrypt(ctap_frame(request)))
            while True:
                try:
                    frame = Frame.from_bytes(self._crypter.decrypt(await recv_binary(self._ws)))
                except ConnectionClosed as exc:
                    raise HybridClientError("tunnel closed") from exc
                except (CrypterError, MessageError) as exc:
                    raise HybridClientError(f"bad message from the phone: {exc}") from exc
                if frame.type == MessageType.CTAP:
                    return frame.payload
                if frame.type == MessageType.SHUTDOWN:
                    raise HybridClientError("phone shut the tunnel down")
                if frame.type == MessageType.UPDATE:
                    self._update(frame.payload)
                # UPDATE (linking) and JSON frames are not answers; keep waiting

    async def close(self) -> None:
        try:
            await self._ws.send(self._crypter.encrypt(SHUTDOWN))
        except ConnectionClosed:
            pass
        await self._ws.close()


async def _cancel_other_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class _LoopThread:
    """A private event loop on a daemon thread, for sync callers such as python-fido2."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="hybrid", daemon=True)
        self._thread.start()

    def submit(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        try:  # e.g. bleak's bus monitor, left behind by a BLE scan; quiet, not "destroyed"
            self.submit(_cancel_other_tasks()).result(timeout=5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


class HybridCtapDevice(CtapDevice):
    """A hybrid session as a python-fido2 device, so ``Ctap2``/``Fido2Client`` work over it."""

    def __init__(
        self, session: HybridSession, loop: _LoopThread, *, call_timeout: float = 300.0
    ) -> None:
        self._session = session
        self._loop = loop
        self.call_timeout = call_timeout

    @classmethod
    def open(
        cls,
        client: HybridClient,
        adverts: bytes | Callable[[], AsyncIterable[bytes]],
        *,
        timeout: float = 30.0,
    ) -> HybridCtapDevice:
        """Blocking connect. ``adverts`` is an advert, or a factory of an async iterator of
        adverts (it is called on the device's own loop, e.g. to start a BLE scan there)."""
        loop = _LoopThread()
        source = adverts if isinstance(adverts, bytes | bytearray) else adverts()
        try:
            session = loop.submit(client.connect(source, timeout=timeout)).result(timeout + 15)
        except BaseException:
            loop.stop()
            raise
        return cls(session, loop)

    @classmethod
    def open_linked(
        cls,
        pairing: Pairing,
        adverts: bytes | Callable[[], AsyncIterable[bytes]],
        *,
        request_type: str = REQUEST_GET_ASSERTION,
        tunnel_url: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        timeout: float = 30.0,
    ) -> HybridCtapDevice:
        """Blocking :func:`connect_linked`; ``adverts`` as in :meth:`open`."""
        loop = _LoopThread()
        coro = connect_linked(
            pairing, adverts, request_type=request_type, tunnel_url=tunnel_url, ssl=ssl,
            timeout=timeout,
        )  # fmt: skip
        try:
            session = loop.submit(coro).result(timeout + 15)
        except BaseException:
            loop.stop()
            raise
        return cls(session, loop)

    @property
    def pairing(self) -> Pairing | None:
        return self._session.pairing

    @property
    def get_info(self) -> bytes:
        return self._session.get_info

    @property
    def capabilities(self) -> int:
        return CAPABILITY.CBOR | CAPABILITY.NMSG

    def call(
        self,
        cmd: int,
        data: bytes = b"",
        event: Event | None = None,
        on_keepalive: Callable[[STATUS], None] | None = None,
    ) -> bytes:
        if cmd != CTAPHID.CBOR:
            raise CtapError(CtapError.ERR.INVALID_COMMAND)
        future = self._loop.submit(self._session.call(bytes(data)))
        deadline = time.monotonic() + self.call_timeout
        while True:
            try:
                return future.result(timeout=0.1)
            except FutureTimeout:
                if event is not None and event.is_set():
                    future.cancel()
                    raise CtapError(CtapError.ERR.KEEPALIVE_CANCEL) from None
                if time.monotonic() > deadline:
                    future.cancel()
                    raise CtapError(CtapError.ERR.TIMEOUT) from None
            except HybridClientError as exc:
                raise CtapError(CtapError.ERR.OTHER) from exc

    def close(self) -> None:
        if self._loop.loop.is_closed():
            return
        try:
            self._loop.submit(self._session.close()).result(timeout=5)
        except Exception:  # closing is best effort; the tunnel may already be gone
            pass
        finally:
            self._loop.stop()

    @classmethod
    def list_devices(cls) -> Iterator[CtapDevice]:
        return iter(())  # hybrid devices are reached via a QR code, not enumerated

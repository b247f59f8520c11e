"""The desktop's side of hybrid: show a QR code, find the phone's advert, talk CTAP to it.

:class:`HybridClient` holds the QR secret and identity; :meth:`HybridClient.connect` takes an
advert (from a BLE scanner, or straight from a test) and returns an async
:class:`HybridSession`. :class:`HybridCtapDevice` wraps a session as a python-fido2
``CtapDevice`` (sync), running the session on its own event-loop thread.
"""

from __future__ import annotations

import asyncio
import os
import ssl as ssl_module
import threading
import time
from collections.abc import AsyncIterable, Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from threading import Event
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from fido2.ctap import STATUS, CtapDevice, CtapError
from fido2.hid import CAPABILITY, CTAPHID
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from transports.hybrid import advert, keys
from transports.hybrid.crypter import Crypter, CrypterError
from transports.hybrid.domains import connect_url, tunnel_base
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
from transports.hybrid.tunnel_client import open_tunnel, recv_binary


class HybridClientError(Exception):
    """The phone could not be reached or misbehaved."""


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
    ) -> None:
        self.identity = identity or ec.generate_private_key(ec.SECP256R1())
        self.secret = secret or os.urandom(16)
        self.payload: QrPayload = new_payload(self.identity, self.secret, request_type=request_type)
        self.tunnel_url = tunnel_url
        self.ssl = ssl
        self._eid_key = keys.eid_key(self.secret)

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
            found = await self._find(adverts)
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
        except (HandshakeError, CrypterError, MessageError, ConnectionClosed) as exc:
            await ws.close()
            raise HybridClientError(f"handshake with the phone failed: {exc!r}") from exc
        except BaseException:
            await ws.close()
            raise
        return HybridSession(ws, crypter, post, result.handshake_hash)

    async def _find(self, adverts: bytes | AsyncIterable[bytes]) -> tuple[bytes, advert.Eid]:
        if isinstance(adverts, bytes | bytearray):
            found = self.match_advert(bytes(adverts))
            if found is None:
                raise HybridClientError("advert does not belong to this QR code")
            return found
        try:
            async for data in adverts:
                found = self.match_advert(data)
                if found is not None:
                    return found
        finally:
            aclose = getattr(adverts, "aclose", None)
            if aclose is not None:
                await aclose()  # e.g. stop a BLE scan as soon as the phone is found
        raise HybridClientError("no matching advert seen")


class HybridSession:
    """An open, encrypted tunnel to the phone: CTAP requests in, responses out, one at a time."""

    def __init__(
        self, ws: ClientConnection, crypter: Crypter, post: PostHandshake, handshake_hash: bytes
    ) -> None:
        self._ws = ws
        self._crypter = crypter
        self.post_handshake = post
        self.handshake_hash = handshake_hash
        self._lock = asyncio.Lock()

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

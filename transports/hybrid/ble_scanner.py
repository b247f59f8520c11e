"""The desktop's BLE side of hybrid: listen for phones' caBLE v2 adverts with bleak.

A phone answering a QR code broadcasts 20 bytes of encrypted EID as service data under 0xFFF9
(FIDO) or 0xFDE2 (Google: older Chromium, iOS 16). Which phone it is cannot be told before
decrypting, so the scanner hands every candidate to :meth:`HybridClient.connect`, which keeps
the one that authenticates under its QR secret. Nothing is connected to: the advert alone
carries the tunnel's routing id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from transports.ble.central import _adapter_kwargs
from transports.ble.uuids import uuid16
from transports.hybrid.advert import ADVERT_LEN, SERVICE_UUID_FIDO, SERVICE_UUID_GOOGLE

log = logging.getLogger(__name__)

HYBRID_SERVICE_UUIDS = (SERVICE_UUID_FIDO, SERVICE_UUID_GOOGLE)


class AdvertScanner:
    """An async iterator of raw hybrid adverts (service-data bytes), scanning while iterated.

    The scan starts on the first ``__anext__`` (so on the consumer's event loop) and stops on
    :meth:`aclose` or when the iterating task is cancelled. Each distinct advert is yielded
    once; BlueZ re-reports unchanged data, and stale cache entries would otherwise repeat.
    """

    def __init__(
        self, adapter: str | None = None, *, uuids: Iterable[int] = HYBRID_SERVICE_UUIDS
    ) -> None:
        self.adapter = adapter
        self._wanted = {uuid16(u) for u in uuids}
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._seen: set[bytes] = set()
        self._scanner: BleakScanner | None = None
        self._closed = False

    def _on_advert(self, device: BLEDevice, adv: AdvertisementData) -> None:
        for uuid, data in adv.service_data.items():
            raw = bytes(data)
            if uuid.lower() in self._wanted and len(raw) >= ADVERT_LEN and raw not in self._seen:
                self._seen.add(raw)
                log.debug("hybrid BLE: advert from %s under %s", device.address, uuid)
                self._queue.put_nowait(raw)

    async def start(self) -> None:
        if self._scanner is None and not self._closed:
            scanner = BleakScanner(
                detection_callback=self._on_advert, **_adapter_kwargs(self.adapter)
            )
            await scanner.start()
            self._scanner = scanner
            log.info("hybrid BLE: scanning on %s", self.adapter or "the default adapter")

    async def aclose(self) -> None:
        self._closed = True
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            try:
                await scanner.stop()
            except Exception as e:  # the adapter may be gone; nothing left to stop
                log.debug("hybrid BLE: stopping the scan failed: %s", e)

    def __aiter__(self) -> AdvertScanner:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        try:
            await self.start()
            return await self._queue.get()
        except BaseException:
            await asyncio.shield(self.aclose())
            raise

    async def __aenter__(self) -> AdvertScanner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def scan_adverts(
    adapter: str | None = None, *, uuids: Iterable[int] = HYBRID_SERVICE_UUIDS
) -> AdvertScanner:
    """Adverts seen on ``adapter`` ("hci1"; default adapter if None), for HybridClient.connect."""
    return AdvertScanner(adapter, uuids=uuids)


__all__ = ["HYBRID_SERVICE_UUIDS", "AdvertScanner", "scan_adverts"]

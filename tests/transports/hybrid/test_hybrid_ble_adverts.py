"""Host-side checks of the hybrid BLE glue (no radio): the advertise context manager's lifetime
in run_authenticator, the scanner's filtering, advert selection, and the CLI's fallback."""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import asynccontextmanager

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from authenticator import Authenticator
from transports.ble.uuids import uuid16
from transports.hybrid.authenticator_role import run_authenticator
from transports.hybrid.ble_advertiser import HybridAdvertiser
from transports.hybrid.ble_scanner import AdvertScanner
from transports.hybrid.client_role import HybridClient
from transports.hybrid.tunnel_server import TunnelServer

FIDO, GOOGLE = uuid16(0xFFF9), uuid16(0xFDE2)


def _adv(service_data: dict[str, bytes]) -> AdvertisementData:
    return AdvertisementData(
        local_name=None,
        manufacturer_data={},
        service_data=service_data,
        service_uuids=[],
        tx_power=None,
        rssi=-50,
        platform_data=(),
    )


def _device() -> BLEDevice:
    return BLEDevice("AA:BB:CC:DD:EE:FF", None, {})


async def test_advertising_lasts_until_the_handshake_is_done() -> None:
    events: list[str] = []
    adverts: asyncio.Queue[bytes] = asyncio.Queue()

    @asynccontextmanager
    async def radio(data: bytes):
        events.append("start")
        adverts.put_nowait(data)
        try:
            yield
        finally:
            events.append("stop")

    async with TunnelServer() as server:
        client = HybridClient(tunnel_url=server.url(), request_type="mc")
        phone = asyncio.create_task(
            run_authenticator(client.qr_url, Authenticator(), radio, tunnel_url=server.url())
        )
        scanner = _Fake([b"\x00" * 20, await asyncio.wait_for(adverts.get(), 5)])
        session = await client.connect(scanner, timeout=10)
        assert scanner.closed, "the scan must stop once the phone is found"
        await session.call(b"\x04")  # getInfo: the tunnel works after the advert stopped
        assert events == ["start", "stop"]
        await session.close()
        await asyncio.wait_for(phone, 5)


class _Fake:
    """An advert source with aclose, like AdvertScanner."""

    def __init__(self, items: list[bytes]) -> None:
        self.items, self.closed = items, False

    def __aiter__(self) -> _Fake:
        return self

    async def __anext__(self) -> bytes:
        if not self.items:
            await asyncio.Event().wait()
        return self.items.pop(0)

    async def aclose(self) -> None:
        self.closed = True


async def test_scanner_keeps_hybrid_service_data_once() -> None:
    scanner = AdvertScanner("hci1")
    scanner._scanner = object()  # type: ignore[assignment]  # pretend the scan runs
    advert = bytes(range(20))
    scanner._on_advert(_device(), _adv({FIDO: advert}))
    scanner._on_advert(_device(), _adv({FIDO: advert}))  # BlueZ re-reports: once is enough
    scanner._on_advert(_device(), _adv({uuid16(0xFFFD): advert}))  # FIDO BLE, not hybrid
    scanner._on_advert(_device(), _adv({GOOGLE: b"short"}))
    scanner._on_advert(_device(), _adv({GOOGLE.upper(): advert[::-1] + b"\xa0"}))
    assert await scanner.__anext__() == advert
    assert await scanner.__anext__() == advert[::-1] + b"\xa0"  # CTAP 2.3 suffix kept
    assert scanner._queue.empty()
    scanner._scanner = None
    await scanner.aclose()
    with pytest.raises(StopAsyncIteration):
        await scanner.__anext__()


def test_advertiser_rejects_other_uuids_and_lengths() -> None:
    with pytest.raises(ValueError):
        HybridAdvertiser(service_uuid=0xFFFD)
    with pytest.raises(ValueError):
        HybridAdvertiser(interval_ms=5)
    adv = HybridAdvertiser()

    async def enter() -> None:
        async with adv(b"\x00" * 19):
            pass

    with pytest.raises(ValueError):
        asyncio.run(enter())
    with pytest.raises(RuntimeError):  # not opened
        asyncio.run(_enter_open(adv))


async def _enter_open(adv: HybridAdvertiser) -> None:
    async with adv(b"\x00" * 20):
        pass


async def test_cli_ble_falls_back_to_printing(tmp_path) -> None:
    """No such adapter (or no BlueZ at all): the advert is printed and the session still works."""
    async with TunnelServer() as server:
        client = HybridClient(tunnel_url=server.url(), request_type="mc")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "authenticator.frontdoor.cli", "hybrid", "scan", client.qr_url,
            "--tunnel-url", server.url(), "--store", str(tmp_path / "p.db"),
            "--presence", "auto", "--ble", "--adapter", "hci99",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert b"BLE unavailable" in line, line
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert b"BLE advert" in line, line
        session = await client.connect(bytes.fromhex(line.decode().rsplit(" ", 1)[1]))
        assert (await session.call(b"\x04"))[0] == 0
        await session.close()
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_cli_qr_and_scan_register_then_sign_in(tmp_path) -> None:
    """`hybrid qr` (desktop) and `hybrid scan` (phone) together, the advert pasted between them."""
    store = str(tmp_path / "phone.db")
    results = []
    async with TunnelServer() as server:
        for request in ("mc", "ga"):
            desktop = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "authenticator.frontdoor.cli", "hybrid", "qr", "--request", request,
                "--tunnel-url", server.url(), "--timeout", "60",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert desktop.stdin and desktop.stdout
            qr = (await asyncio.wait_for(desktop.stdout.readline(), 60)).decode().strip()
            assert qr.startswith("FIDO:/"), qr
            phone = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "authenticator.frontdoor.cli", "hybrid", "scan", qr,
                "--tunnel-url", server.url(), "--store", store, "--profile", "synced-passkey",
                "--presence", "auto", stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert phone.stderr is not None
            line = await asyncio.wait_for(phone.stderr.readline(), 60)
            desktop.stdin.write(line)  # the whole "BLE advert (...): <hex>" line
            await desktop.stdin.drain()
            out = await asyncio.wait_for(desktop.stdout.readline(), 60)
            results.append(json.loads(out))
            assert await asyncio.wait_for(desktop.wait(), 30) == 0
            assert await asyncio.wait_for(phone.wait(), 30) == 0
    registered, signed_in = results
    assert registered["verified"] and registered["userVerified"] and registered["backupEligible"]
    assert signed_in["credentialId"] == registered["credentialId"]

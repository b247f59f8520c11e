"""Guest side of test_ble_vm.py: bleak central on the other btvirt controller, python-fido2 on top.

Prints "CHECK ok <name> (<seconds>)" per passed check and "ALL CHECKS PASSED" at the end.
``exercise`` is also run on the host against a loopback link (test_ble_central.py).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable

from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import STATUS, CtapDevice, CtapError
from fido2.ctap2 import Ctap2
from fido2.hid import CTAPHID

Check = Callable[[str, float], None]


def _check(name: str, started: float) -> None:
    print(f"CHECK ok {name} ({time.monotonic() - started:.1f} s)", flush=True)


class _Recorder:
    """Wraps a device to record the keepalive statuses python-fido2 passes through."""

    def __init__(self, dev: CtapDevice) -> None:
        self.statuses: list[int] = []
        self._dev = dev
        self._call = dev.call

        def call(cmd, data=b"", event=None, on_keepalive=None):  # type: ignore[no-untyped-def]
            def cb(status):  # type: ignore[no-untyped-def]
                self.statuses.append(int(status))
                if on_keepalive is not None:
                    on_keepalive(status)

            return self._call(cmd, data, event, cb)

        dev.call = call  # type: ignore[method-assign]


def exercise(dev: CtapDevice, check: Check = _check) -> None:
    """getInfo, discoverable makeCredential + getAssertion (signature verified), PING, CANCEL."""
    recorder = _Recorder(dev)
    t = time.monotonic()
    info = Ctap2(dev).get_info()
    assert "FIDO_2_0" in info.versions, info.versions
    check("ctap2 getInfo over BLE", t)

    client = Fido2Client(dev, DefaultClientDataCollector("https://example.com"), UserInteraction())
    t = time.monotonic()
    reg = client.make_credential(
        {
            "rp": {"id": "example.com", "name": "Example"},
            "user": {"id": b"alice-id", "name": "alice", "displayName": "Alice"},
            "challenge": os.urandom(32),
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
            "authenticatorSelection": {
                "residentKey": "required",
                "userVerification": "discouraged",
            },
        }
    )
    cred = reg.response.attestation_object.auth_data.credential_data
    assert cred is not None
    assert STATUS.UPNEEDED in recorder.statuses, recorder.statuses
    check("Fido2Client makeCredential (discoverable) with KEEPALIVE UPNEEDED", t)

    t = time.monotonic()
    selection = client.get_assertion(
        {"rpId": "example.com", "challenge": os.urandom(32), "userVerification": "discouraged"}
    )
    assertion = selection.get_response(0)
    resp = assertion.response
    assert assertion.raw_id == cred.credential_id
    cred.public_key.verify(bytes(resp.authenticator_data) + resp.client_data.hash, resp.signature)
    check("Fido2Client getAssertion (discoverable), signature verified", t)

    t = time.monotonic()
    payload = os.urandom(1024)
    assert dev.call(CTAPHID.PING, payload) == payload
    check("PING 1 KB echoed", t)

    t = time.monotonic()
    event = threading.Event()
    seen: list[int] = []

    def on_keepalive(status: int) -> None:
        seen.append(int(status))
        if status == STATUS.UPNEEDED:
            event.set()  # the authenticator waits for a touch: cancel it now

    try:
        Ctap2(dev).make_credential(
            os.urandom(32),
            {"id": "cancel.example", "name": "Cancel"},
            {"id": b"bob", "name": "bob"},
            [{"type": "public-key", "alg": -7}],
            event=event,
            on_keepalive=on_keepalive,
        )
    except CtapError as e:
        assert e.code == CtapError.ERR.KEEPALIVE_CANCEL, e
    else:
        raise AssertionError("makeCredential was not cancelled")
    assert STATUS.UPNEEDED in seen, seen
    check("CANCEL during UPNEEDED -> KEEPALIVE_CANCEL", t)

    t = time.monotonic()
    info = Ctap2(dev).get_info()  # the link is usable after a cancel
    check("getInfo after cancel", t)


def main(adapter: str, name: str) -> int:
    from transports.ble.central import BleCtapDevice, scan

    t = time.monotonic()
    found = None
    while found is None and time.monotonic() - t < 120:
        for item in asyncio.run(scan(5.0, adapter)):
            print(f"scan: {item}", flush=True)
            if item.name == name:
                found = item
    assert found is not None, "peripheral never seen"
    assert found.pairing_mode, "pairing-mode flag missing from the advertisement"
    _check(f"scan found {found.address} {found.name!r} in pairing mode", t)

    t = time.monotonic()
    dev = None
    for attempt in range(1, 4):  # pairing can time out on an emulated radio under TCG load
        try:
            dev = BleCtapDevice(found.device, adapter=adapter, pair=True, response_timeout=60.0)
            break
        except Exception as e:  # noqa: BLE001 - report and retry, like a browser would
            print(f"connect/pair attempt {attempt} failed: {e!r}", flush=True)
            time.sleep(3)
            for item in asyncio.run(scan(5.0, adapter)):
                if item.name == name:
                    found = item
    assert dev is not None, "could not connect and pair in 3 attempts"
    print(f"device: {dev!r} info={dev.device_info}", flush=True)
    assert dev.device_info.get("manufacturer") == "fido-emulator", dev.device_info
    _check(f"connect + pair + revision FIDO2 + cpl {dev.cpl}", t)
    try:
        exercise(dev)
    finally:
        dev.close()
    print("CENTRAL DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "hci1", "fido-emu-vm"))

"""Guest side of test_hybrid_ble_vm.py: the desktop role, with the phone as a subprocess.

For each QR code: make a fresh HybridClient, start ``fido-emu hybrid scan <QR> --ble --adapter
hci0`` (the phone), find its advert with a bleak scan on hci1 (the only way the desktop learns
the routing id), run the Noise handshake through the loopback tunnel server, and drive
python-fido2's Fido2Client over the tunnel, verified by Fido2Server.

Usage: vm_hybrid_desktop.py TUNNEL_URL OUTDIR. Prints "CHECK ok <name> (<seconds>)".
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.server import Fido2Server
from fido2.webauthn import (
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from transports.hybrid.ble_scanner import scan_adverts
from transports.hybrid.client_role import HybridClient, HybridCtapDevice

RP = PublicKeyCredentialRpEntity(id="example.com", name="Example")
USER = PublicKeyCredentialUserEntity(id=b"alice-id", name="alice", display_name="Alice")
PHONE_ADAPTER, DESKTOP_ADAPTER = "hci0", "hci1"
STORE = "/tmp/phone.db"
T0 = time.monotonic()


def check(name: str, started: float) -> None:
    print(
        f"CHECK ok {name} ({time.monotonic() - started:.1f} s, t={time.monotonic() - T0:.0f})",
        flush=True,
    )


def active_adverts(adapter: str) -> str:
    """bluetoothd's count of registered advertisements on ``adapter`` ("y 1")."""
    out = subprocess.run(
        ["busctl", "--system", "get-property", "org.bluez", f"/org/bluez/{adapter}",
         "org.bluez.LEAdvertisingManager1", "ActiveInstances"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.stdout.strip() or out.stderr.strip()


def start_phone(qr: str, tunnel_url: str, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "authenticator.frontdoor.cli", "hybrid", "scan", qr,
        "--tunnel-url", tunnel_url, "--ble", "--adapter", PHONE_ADAPTER,
        "--presence", "auto", "--store", STORE, "--profile", "synced-passkey",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


def open_over_ble(client: HybridClient, tunnel_url: str, log: Path):
    phone = start_phone(client.qr_url, tunnel_url, log)
    try:
        device = HybridCtapDevice.open(client, lambda: scan_adverts(DESKTOP_ADAPTER), timeout=900.0)
    except BaseException:
        phone.kill()
        print(log.read_text(errors="replace"), flush=True)
        raise
    return phone, device


def finish(phone: subprocess.Popen[bytes], device: HybridCtapDevice, log: Path) -> None:
    device.close()
    try:
        code = phone.wait(300)
    except subprocess.TimeoutExpired:
        phone.kill()
        code = -9
    text = log.read_text(errors="replace")
    print(f"--- phone log {log.name} ---\n{text}--- end ---", flush=True)
    assert code == 0, f"phone exited {code}"
    assert "advertising over BLE on /org/bluez/hci0" in text, "phone did not use the radio"


def main(tunnel_url: str, outdir: str) -> int:
    out = Path(outdir)
    rp = Fido2Server(RP)
    collector = DefaultClientDataCollector("https://example.com")

    # 1) registration: a discoverable passkey, from a "mc" QR code
    t = time.monotonic()
    client = HybridClient(tunnel_url=tunnel_url, request_type="mc")
    log = out / "phone-mc.log"
    phone, device = open_over_ble(client, tunnel_url, log)
    check("advert received over BLE on hci1, tunnel handshake done (mc QR)", t)
    t = time.monotonic()
    adverts = active_adverts(PHONE_ADAPTER)
    print(f"hci0 ActiveInstances after the handshake: {adverts}", flush=True)
    assert adverts == "y 0", adverts
    check("phone stopped advertising after the handshake", t)
    try:
        t = time.monotonic()
        options, state = rp.register_begin(
            USER,
            resident_key_requirement=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        fido = Fido2Client(device, collector, UserInteraction())
        response = fido.make_credential(options.public_key)
        auth_data = rp.register_complete(state, response)
        assert auth_data.credential_data is not None
        assert auth_data.is_backed_up() and auth_data.is_user_verified()
        check("Fido2Client makeCredential (discoverable passkey) verified by Fido2Server", t)
    finally:
        finish(phone, device, log)
    credentials = [auth_data.credential_data]

    # 2) sign-in: a second QR code ("ga"), a discoverable (empty allowList) assertion
    t = time.monotonic()
    client = HybridClient(tunnel_url=tunnel_url, request_type="ga")
    log = out / "phone-ga.log"
    phone, device = open_over_ble(client, tunnel_url, log)
    check("second QR: advert over BLE, handshake done (ga QR)", t)
    try:
        t = time.monotonic()
        options, state = rp.authenticate_begin(
            user_verification=UserVerificationRequirement.PREFERRED
        )
        fido = Fido2Client(device, collector, UserInteraction())
        selection = fido.get_assertion(options.public_key)
        assertion = selection.get_response(0)
        result = rp.authenticate_complete(state, credentials, assertion)
        assert result.credential_id == credentials[0].credential_id
        check("Fido2Client getAssertion (discoverable) verified by Fido2Server", t)
    finally:
        finish(phone, device, log)
    print("DESKTOP DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

"""`fido-emu run --transport udp` as a separate process, driven by python-fido2 over UDP."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.ctap2 import ClientPin, Ctap2
from fido2.server import Fido2Server
from fido2.webauthn import PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity

from tests.conftest import PinInteraction
from transports.udp import UdpCtapHidConnection, open_udp_device


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port: int, reply: int, deadline: float = 30.0):
    end = time.monotonic() + deadline
    while True:
        try:
            return open_udp_device(("127.0.0.1", port), ("127.0.0.1", reply), timeout=2.0)
        except Exception:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def test_run_serves_udp_power_cycles_and_stops(tmp_path):
    port, reply = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "authenticator.frontdoor.cli", "run", "--transport", "udp",
         "--udp-port", str(port), "--presence", "auto", "--allow-reboot-report",
         "--store", str(tmp_path / "s.db")],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        dev = connect(port, reply)
        ClientPin(Ctap2(dev)).set_pin("4321")
        client = Fido2Client(dev, DefaultClientDataCollector("https://example.com"), PinInteraction("4321"))
        server = Fido2Server(PublicKeyCredentialRpEntity(id="example.com", name="Ex"))
        user = PublicKeyCredentialUserEntity(id=b"u", name="alice", display_name="Alice")
        options, state = server.register_begin(user, resident_key_requirement="required")
        auth_data = server.register_complete(state, client.make_credential(options.public_key))
        # 3 wrong PINs block PIN use until a power cycle (SIGUSR1), then the right one works
        pin = ClientPin(Ctap2(dev))
        for _ in range(3):
            try:
                pin.get_pin_token("0000")
            except Exception:
                pass
        assert pin.get_pin_retries()[1] is True  # powerCycleState
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        dev.close()
        dev = connect(port, reply)
        client = Fido2Client(dev, DefaultClientDataCollector("https://example.com"), PinInteraction("4321"))
        options, state = server.authenticate_begin([auth_data.credential_data])
        selection = client.get_assertion(options.public_key)
        server.authenticate_complete(state, [auth_data.credential_data], selection.get_response(0))
        assert dev.ping(b"x" * 7609) == b"x" * 7609
        dev.close()
        # the solo1 simulator's reboot report power-cycles too
        conn = UdpCtapHidConnection(("127.0.0.1", port), ("127.0.0.1", reply))
        conn.send_reboot()
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "makeCredential rp=example.com status=OK" in err
    assert "4321" not in err
    assert "power cycle" in err

"""One truth across processes (issue 13, D10-D12): a running authenticator sees what the
CLI (another process on the same store) changed, and never writes stale state back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from hashlib import sha256

import cbor2
import pytest

from authenticator import Authenticator, Config
from storage.base import CounterRangeError
from storage.sqlite import SqliteStore

CDH = sha256(b"cd").digest()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "authenticator.frontdoor.cli", *args],
        capture_output=True, text=True, timeout=120,
    )


def call(auth: Authenticator, cmd: int, params: dict | None = None) -> tuple[int, object]:
    raw = asyncio.run(auth.handle_cbor(bytes([cmd]) + (cbor2.dumps(params) if params else b"")))
    return raw[0], (cbor2.loads(raw[1:]) if len(raw) > 1 else None)


def make_rk(auth: Authenticator, user: bytes) -> tuple[int, object]:
    return call(auth, 0x01, {
        1: CDH, 2: {"id": "example.com"}, 3: {"id": user, "name": user.decode()},
        4: [{"type": "public-key", "alg": -7}], 7: {"rk": True},
    })


def test_d10_always_uv_set_by_the_cli_is_seen_and_never_reverted(tmp_path):
    path = tmp_path / "s.db"
    server = Authenticator(Config(), SqliteStore(path))
    status, info = call(server, 0x04)
    assert status == 0 and info[4]["alwaysUv"] is False
    assert make_rk(server, b"before")[0] == 0

    done = cli("config", "always-uv", "on", "--store", str(path))
    assert done.returncode == 0, done.stderr

    # a stale copy saving another setting must not turn alwaysUv back off
    server.settings.min_pin_length = 6
    server.settings.save()
    assert SqliteStore(path).get_state("config.settings") is not None
    status, info = call(server, 0x04)
    assert status == 0 and info[4]["alwaysUv"] is True
    assert info[0x0D] == 6  # minPINLength kept too
    assert make_rk(server, b"after")[0] != 0  # makeCredential without UV is refused now


def test_d12_a_cli_reset_gives_the_running_server_the_new_device_key(tmp_path):
    path = tmp_path / "s.db"
    server = Authenticator(Config(), SqliteStore(path))
    assert make_rk(server, b"old")[0] == 0

    done = cli("reset", "--yes", "--store", str(path))
    assert done.returncode == 0, done.stderr

    status, att = make_rk(server, b"new")
    assert status == 0
    status, resp = call(server, 0x02, {1: "example.com", 2: CDH})
    assert status == 0 and resp[4]["id"] == b"new" and resp.get(5) in (None, 1)
    server.store.close()

    # after a restart the credential registered after the reset still signs
    restarted = Authenticator(Config(), SqliteStore(path))
    status, resp = call(restarted, 0x02, {1: "example.com", 2: CDH})
    assert status == 0, hex(status)
    assert resp[4]["id"] == b"new"


def test_d4_an_out_of_range_counter_import_changes_nothing(tmp_path):
    path = tmp_path / "s.db"
    auth = Authenticator(Config(), SqliteStore(path))
    auth.counters.set(b"cred", 100)
    with pytest.raises(ValueError) as err:
        auth.counters.set(b"cred", 2**63)
    assert isinstance(err.value, CounterRangeError) and "\n" not in str(err.value)
    auth.store.close()
    assert SqliteStore(path).load_counter(b"cred") == 100


def test_d4_an_import_with_a_counter_beyond_32_bits_writes_nothing(tmp_path):
    """Before: the first credential was stored, then the counter write failed halfway."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from authenticator.rp_testing.cdp_bridge import apply_export

    def cdp(user: bytes, count: int) -> dict:
        der = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "credentialId": base64.b64encode(user * 4).decode(), "rpId": "example.com",
            "privateKey": base64.b64encode(der).decode(), "userHandle": base64.b64encode(user).decode(),
            "isResidentCredential": True, "signCount": count,
        }

    path = tmp_path / "s.db"
    auth = Authenticator(Config(), SqliteStore(path))
    with pytest.raises(CounterRangeError):
        apply_export(auth, [cdp(b"good", 100), cdp(b"huge", 2**63)])
    assert auth.store.count_discoverable() == 0
    apply_export(auth, [cdp(b"good", 100)])
    assert auth.store.count_discoverable() == 1


def test_a_pin_changed_by_the_cli_ends_the_running_servers_token(tmp_path):
    from fido2.ctap import CtapError
    from fido2.ctap2 import Ctap2
    from fido2.ctap2.credman import CredentialManagement
    from fido2.ctap2.pin import ClientPin

    from transports.inprocess import InProcessDevice

    path = tmp_path / "s.db"
    server = Authenticator(Config(), SqliteStore(path))
    dev = InProcessDevice(server)
    ctap = Ctap2(dev)
    client_pin = ClientPin(ctap)
    client_pin.set_pin("123456")
    token = client_pin.get_pin_token("123456", ClientPin.PERMISSION.CREDENTIAL_MGMT)
    credman = CredentialManagement(ctap, client_pin.protocol, token)
    assert credman.get_metadata()[1] == 0  # the token works

    done = cli("pin", "change", "--store", str(path), "--pin", "123456", "--new-pin", "654321")
    assert done.returncode == 0, done.stderr

    with pytest.raises(CtapError) as err:
        credman.get_metadata()
    assert err.value.code == CtapError.ERR.PIN_AUTH_INVALID
    # getPinToken writes (retries back to 8): our own writes do not end the new token
    token = client_pin.get_pin_token("654321", ClientPin.PERMISSION.CREDENTIAL_MGMT)
    assert CredentialManagement(ctap, client_pin.protocol, token).get_metadata()[1] == 0
    dev.close()

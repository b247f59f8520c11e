"""``fido-emu info|pin|credentials|config|reset`` and ``fido-emu attestation``, end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fido2.mds3 import MetadataStatement

from authenticator import Authenticator
from authenticator.frontdoor.cli import main
from storage.sqlite import open_store
from transports.inprocess import LoopThread

PIN = "1234"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "store.db"
    monkeypatch.setenv("FIDO_EMU_STORE", str(path))
    monkeypatch.delenv("FIDO_EMU_PIN", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def create_credential(capsys, store: Path, rp: str, name: str, tmp_path: Path) -> None:
    options = {
        "rp": {"id": rp, "name": rp},
        "user": {"id": "dTE" if name == "alice" else "dTI", "name": name, "displayName": name.title()},
        "challenge": "AAAAAAAAAAAAAAAAAAAAAA",
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
        "authenticatorSelection": {"residentKey": "required"},
    }
    path = tmp_path / f"{rp}-{name}.json"
    path.write_text(json.dumps({"publicKey": options}))
    status, _, err = run(
        capsys, "webauthn", "create", "--origin", f"https://{rp}", "--options", str(path), "--pin", PIN
    )
    assert status == 0, err


def test_pin_lifecycle(capsys, store: Path) -> None:
    status, out, _ = run(capsys, "info", "--create")  # a fresh store: read verbs need --create
    assert status == 0 and "not set" in out
    # a short PIN is refused for being short (not because one is set), and nothing changes
    before = store.read_bytes()
    status, _, err = run(capsys, "pin", "set", "--new-pin", "12")
    assert status == 1 and "4 to 63 characters" in err and "already" not in err
    assert len(err.strip().splitlines()) == 1
    assert store.read_bytes() == before
    assert json.loads(run(capsys, "info", "--json")[1])["info"]["options"]["clientPin"] is False
    assert run(capsys, "pin", "set", "--new-pin", PIN)[0] == 0
    status, _, err = run(capsys, "pin", "set", "--new-pin", "5678")
    assert status == 1 and "already set" in err
    status, _, err = run(capsys, "pin", "verify", "--pin", "0000")
    assert status == 1 and "PIN_INVALID" in err
    status, out, _ = run(capsys, "pin", "retries", "--json")
    assert json.loads(out) == {"retries": 7, "power_cycle_required": False}
    assert run(capsys, "pin", "verify", "--pin", PIN)[0] == 0
    assert run(capsys, "pin", "change", "--pin", PIN, "--new-pin", "4321")[0] == 0
    status, out, _ = run(capsys, "info", "--json")
    data = json.loads(out)
    assert data["info"]["options"]["clientPin"] is True and data["pin_retries"] == 8
    status, _, err = run(capsys, "pin", "verify")  # no PIN given, no terminal
    assert status == 1 and "FIDO_EMU_PIN" in err
    status, _, err = run(capsys, "pin", "set", "--new-pin", "5678")
    assert status == 1 and "already set" in err


def test_credentials(capsys, store: Path, tmp_path: Path, monkeypatch) -> None:
    assert run(capsys, "pin", "set", "--new-pin", PIN)[0] == 0
    create_credential(capsys, store, "a.example", "alice", tmp_path)
    create_credential(capsys, store, "a.example", "bob", tmp_path)
    create_credential(capsys, store, "b.example", "alice", tmp_path)
    monkeypatch.setenv("FIDO_EMU_PIN", PIN)
    status, out, _ = run(capsys, "credentials", "list")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["RP", "ID"] and len(lines) == 4
    status, out, _ = run(capsys, "credentials", "list", "--json", "--rp", "a.example")
    creds = json.loads(out)
    assert {c["user_name"] for c in creds} == {"alice", "bob"}
    bob = next(c for c in creds if c["user_name"] == "bob")
    with monkeypatch.context() as m:  # --rp goes straight to that RP: no walk over every RP
        def no_walk(self):  # type: ignore[no-untyped-def]
            raise AssertionError("credentials list --rp enumerated every RP")

        m.setattr("fido2.ctap2.CredentialManagement.enumerate_rps", no_walk)
        status, out, _ = run(capsys, "credentials", "list", "--json", "--rp", "a.example")
        assert status == 0 and json.loads(out) == creds
        status, out, _ = run(capsys, "credentials", "list", "--json", "--rp", "nobody.example")
        assert status == 0 and json.loads(out) == []

    assert run(capsys, "credentials", "update", bob["credential_id"], "--name", "robert")[0] == 0
    status, out, _ = run(capsys, "credentials", "list", "--json")
    assert "robert" in {c["user_name"] for c in json.loads(out)}

    status, _, err = run(capsys, "credentials", "delete", bob["credential_id"])
    assert status == 1 and "--yes" in err
    assert run(capsys, "credentials", "delete", bob["credential_id"], "--yes")[0] == 0
    status, out, _ = run(capsys, "credentials", "list", "--json")
    assert len(json.loads(out)) == 2
    status, _, err = run(capsys, "credentials", "delete", "ffff", "--yes")
    assert status == 1 and "no credential" in err
    status, _, err = run(capsys, "credentials", "list", "--pin", "0000")
    assert status == 1 and "PIN_INVALID" in err


def test_config_and_reset(capsys, store: Path, monkeypatch) -> None:
    assert run(capsys, "config", "always-uv", "on")[0] == 0  # no PIN yet: no token needed
    assert json.loads(run(capsys, "info", "--json")[1])["info"]["options"]["alwaysUv"] is True
    assert run(capsys, "pin", "set", "--new-pin", PIN)[0] == 0
    monkeypatch.setenv("FIDO_EMU_PIN", PIN)
    assert run(capsys, "config", "always-uv", "off")[0] == 0
    assert run(capsys, "config", "enterprise-attestation")[0] == 0
    assert run(capsys, "config", "min-pin-length", "6", "--rp-id", "example.com")[0] == 0
    data = json.loads(run(capsys, "info", "--json")[1])["info"]
    assert data["options"]["alwaysUv"] is False and data["options"]["ep"] is True
    assert data["min_pin_length"] == 6 and data["force_pin_change"] is True
    status, _, err = run(capsys, "config", "always-uv", "on")
    assert status == 1 and "pin change" in err
    status, _, err = run(capsys, "reset")
    assert status == 2 and "--yes" in err
    assert run(capsys, "reset", "--yes")[0] == 0
    assert "not set" in run(capsys, "info")[1]


def test_attestation_init_and_metadata(capsys, store: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    status, _, err = run(capsys, "attestation", "metadata", "--dir", str(ca))
    assert status == 3 and "attestation init" in err  # a file that cannot be read
    status, out, _ = run(capsys, "attestation", "init", "--dir", str(ca), "--country", "DE")
    assert status == 0 and "created" in out
    assert (ca / "root-ca.pem").exists() and oct((ca / "root-ca.key").stat().st_mode)[-3:] == "600"
    assert "reused" in run(capsys, "attestation", "init", "--dir", str(ca))[1]
    out_file = tmp_path / "metadata.json"
    status, _, _ = run(capsys, "attestation", "metadata", "--dir", str(ca), "--out", str(out_file))
    assert status == 0
    statement = MetadataStatement.from_dict(json.loads(out_file.read_text()))
    assert statement.attestation_types == ["basic_full"]
    store_ = open_store(store)
    auth = Authenticator(store=store_)
    from authenticator.core.attestation import load_batch

    assert load_batch(auth) is not None
    store_.close()


def test_udp_device(capsys, store: Path) -> None:
    from transports import udp
    auth = Authenticator()
    loop = LoopThread()
    transport = udp.UdpTransport(auth, listen=("127.0.0.1", 0), reply_to=None)
    loop.run(transport.start()).result()
    try:
        host, port = transport.address
        device = ["--device", f"udp:{host}:{port}", "--udp-local", "0"]
        assert run(capsys, "pin", "set", "--new-pin", PIN, *device)[0] == 0
        assert auth.pin.is_set
        status, out, _ = run(capsys, "pin", "retries", *device)
        assert status == 0 and "8 retries" in out
    finally:
        loop.run(transport.close()).result()
        loop.stop()
    status, _, err = run(capsys, "info", "--device", "usb:1")
    assert status == 1 and "udp:HOST:PORT" in err


def test_bad_store(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db"
    bad.write_bytes(os.urandom(64))
    status, _, err = run(capsys, "info", "--store", str(bad))
    assert status == 3 and "error" in err  # 3: store or I/O

"""The `fido-emu webauthn` contract, checked by python-fido2's Fido2Server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fido2.server import Fido2Server
from fido2.webauthn import (
    AuthenticationResponse,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
)

RP = PublicKeyCredentialRpEntity(name="Example", id="example.com")
ORIGIN = "https://example.com"


def fido_emu(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "authenticator.frontdoor.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=120,
    )


def store_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def register(server: Fido2Server, store: Path, **kw):
    user = PublicKeyCredentialUserEntity(id=b"uid-1", name="alice", display_name="Alice")
    options, state = server.register_begin(user, **kw)
    out = fido_emu("webauthn", "create", "--origin", ORIGIN, "--store", str(store), stdin=json.dumps(dict(options)))
    assert out.returncode == 0, out.stderr
    return out, state


def test_create_then_get_verifies(tmp_path):
    store = tmp_path / "s.db"
    server = Fido2Server(RP, attestation="direct")
    out, state = register(server, store, resident_key_requirement="required")
    reg = json.loads(out.stdout)
    # RegistrationResponseJSON shape, base64url without padding
    for key in ("id", "rawId", "type", "response", "authenticatorAttachment", "clientExtensionResults"):
        assert key in reg
    for key in ("clientDataJSON", "attestationObject", "transports", "publicKey", "publicKeyAlgorithm", "authenticatorData"):
        assert key in reg["response"]
    assert "=" not in reg["response"]["attestationObject"]
    auth_data = server.register_complete(state, RegistrationResponse.from_dict(reg))
    # publicKey is SPKI of the credential key
    from cryptography.hazmat.primitives.serialization import load_der_public_key
    from fido2.utils import websafe_decode

    spki = load_der_public_key(websafe_decode(reg["response"]["publicKey"]))
    assert spki.public_numbers().x.to_bytes(32, "big") == auth_data.credential_data.public_key[-2]

    # discoverable sign-in: empty allowCredentials, wrapped options this time
    options, state = server.authenticate_begin(None, user_verification="discouraged")
    opts_file = tmp_path / "get.json"
    opts_file.write_text(json.dumps(dict(options)))
    out = fido_emu("webauthn", "get", "--origin", ORIGIN, "--store", str(store), "--options", str(opts_file))
    assert out.returncode == 0, out.stderr
    resp = json.loads(out.stdout)
    assert resp["response"]["userHandle"] == "dWlkLTE"
    server.authenticate_complete(state, [auth_data.credential_data], AuthenticationResponse.from_dict(resp))


@pytest.mark.parametrize(
    ("case", "status", "name"),
    [
        ("origin-mismatch", 1, "SecurityError"),
        ("bad-json", 2, "SyntaxError"),  # not WebAuthn input at all: a usage error
        ("no-credential", 1, "NotAllowedError"),
        ("not-an-object", 1, "TypeError"),
    ],
)
def test_errors_are_one_line_and_leave_store_untouched(tmp_path, case, status, name):
    store = tmp_path / "s.db"
    server = Fido2Server(RP, attestation="none")
    register(server, store, resident_key_requirement="required")
    before = store_bytes(store)
    if case == "origin-mismatch":
        options, _ = server.authenticate_begin(None)
        out = fido_emu("webauthn", "get", "--origin", "https://evil.example", "--store", str(store), stdin=json.dumps(dict(options)))
    elif case == "bad-json":
        out = fido_emu("webauthn", "create", "--origin", ORIGIN, "--store", str(store), stdin="{not json")
    elif case == "not-an-object":
        out = fido_emu("webauthn", "create", "--origin", ORIGIN, "--store", str(store), stdin="[1,2]")
    else:
        other = Fido2Server(PublicKeyCredentialRpEntity(name="o", id="other.example"))
        options, _ = other.authenticate_begin(None)
        out = fido_emu("webauthn", "get", "--origin", "https://other.example", "--store", str(store), stdin=json.dumps(dict(options)))
    assert out.returncode == status, out.stderr  # the README's exit-code table
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fido-emu: error: {name}:"), out.stderr
    assert "Traceback" not in out.stderr
    if case != "no-credential":
        assert store_bytes(store) == before


def test_demo_runs():
    out = fido_emu("demo")
    assert out.returncode == 0, out.stderr
    assert "verified by Fido2Server" in out.stdout

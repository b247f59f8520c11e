"""CXF 1.0 export/import: a passkey moves between stores and signs in at py_webauthn.

The RP is py_webauthn (an independent verifier): it registers the passkey on store A and
verifies sign-ins on store B after `fido-emu credentials export`/`import` (run as the CLI
would be, in a subprocess). Counter rule: exported only at counter 0; imported passkeys
sign with 0 for good; a file carrying a non-zero counter is refused and nothing changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.structs import AuthenticatorSelectionCriteria, ResidentKeyRequirement

from authenticator import Authenticator, Config
from authenticator.core.presence import AutoApprove
from authenticator.rp_testing.webauthn import WebAuthnClient
from storage.sqlite import open_store
from transports.inprocess import InProcessDevice

RP_ID, ORIGIN = "cxf.example", "https://cxf.example"
PASS = "correct horse battery staple"


def cli(*args: str, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "authenticator.frontdoor.cli", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


class Rp:
    """py_webauthn as the relying party."""

    def __init__(self) -> None:
        self.public_key = b""
        self.count = 0
        self.cred_id = b""

    def register(self, client: WebAuthnClient, user: str) -> None:
        opts = generate_registration_options(
            rp_id=RP_ID, rp_name="CXF RP", user_name=user, user_id=user.encode(),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED),
        )
        resp = client.create(json.loads(options_to_json(opts)))
        v = verify_registration_response(
            credential=resp, expected_challenge=opts.challenge, expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
        )
        self.public_key, self.count, self.cred_id = (
            v.credential_public_key, v.sign_count, v.credential_id)

    def login(self, client: WebAuthnClient) -> int:
        opts = generate_authentication_options(rp_id=RP_ID)  # discoverable: no allow list
        resp = client.get(json.loads(options_to_json(opts)))
        v = verify_authentication_response(
            credential=resp, expected_challenge=opts.challenge, expected_rp_id=RP_ID,
            expected_origin=ORIGIN, credential_public_key=self.public_key,
            credential_current_sign_count=self.count, require_user_verification=False,
        )
        assert v.credential_id == self.cred_id
        self.count = v.new_sign_count
        return v.new_sign_count


def client_for(store_spec: str, env: dict):
    old = {k: os.environ.get(k) for k in ("FIDO_EMU_KEY_FILE",)}
    os.environ["FIDO_EMU_KEY_FILE"] = env["FIDO_EMU_KEY_FILE"]
    try:
        store = open_store(store_spec)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    auth = Authenticator(Config.for_profile("security-key"), store, AutoApprove())
    return store, WebAuthnClient(InProcessDevice(auth), ORIGIN)


@pytest.fixture
def env(tmp_path) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[4]),
        "FIDO_EMU_KEY_FILE": str(tmp_path / "fleet.key"),
        "FIDO_EMU_CXF_PASSPHRASE": PASS,
        "FIDO_EMU_PIN": "",
    }


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "b.db")
    return request.getfixturevalue("postgres_url")


def test_round_trip_signs_in_at_py_webauthn_with_counter_zero(tmp_path, env, target):
    a = str(tmp_path / "a.db")
    rp = Rp()
    store, client = client_for(a, env)
    rp.register(client, "alice")
    store.close()
    out = tmp_path / "alice.cxf"
    cli("credentials", "export", "--format", "cxf", "--rp", RP_ID, "-o", str(out),
        "--store", a, env=env)
    text = out.read_text()
    assert json.loads(text)["format"] == "fido-emu/cxf-encrypted/v1"
    assert "alice" not in text  # encrypted at rest: no user name, no key
    assert out.stat().st_mode & 0o777 == 0o600

    cli("credentials", "import", str(out), "--store", target, env=env)
    store, client = client_for(target, env)
    try:
        assert rp.login(client) == 0
        assert rp.login(client) == 0  # imported passkeys stay at 0 (CXF rule)
        [rec] = store.credentials_for_rp(rp_hash := __import__("hashlib").sha256(
            RP_ID.encode()).digest())
        assert rec.backup_eligible and rec.backup_state and rec.user_name == "alice"
        assert rp_hash == rec.rp_id_hash
    finally:
        store.close()


def test_used_passkey_is_not_exported_and_the_user_is_told(tmp_path, env):
    a = str(tmp_path / "a.db")
    rp = Rp()
    store, client = client_for(a, env)
    rp.register(client, "bob")
    assert rp.login(client) >= 1  # a security key counts
    store.close()
    out = tmp_path / "bob.cxf"
    proc = cli("credentials", "export", "--plaintext", "-o", str(out), "--store", a, env=env)
    assert "not exported" in proc.stderr and "bob @ cxf.example" in proc.stderr
    doc = json.loads(out.read_text())
    assert doc["version"] == {"major": 1, "minor": 0}
    assert doc["accounts"][0]["items"] == []


def test_plaintext_items_follow_the_cxf_passkey_fields(tmp_path, env):
    from cryptography.hazmat.primitives import serialization

    from authenticator.frontdoor.cli.cxf import unb64u

    a = str(tmp_path / "a.db")
    rp = Rp()
    store, client = client_for(a, env)
    rp.register(client, "carol")
    store.close()
    out = tmp_path / "c.cxf"
    cli("credentials", "export", "--plaintext", "-o", str(out), "--store", a, env=env)
    [item] = json.loads(out.read_text())["accounts"][0]["items"]
    [cred] = item["credentials"]
    assert cred["type"] == "passkey" and cred["rpId"] == RP_ID
    assert unb64u(cred["credentialId"], "id") == rp.cred_id
    assert cred["username"] == "carol" and unb64u(cred["userHandle"], "h") == b"carol"
    key = serialization.load_der_private_key(unb64u(cred["key"], "key"), None)
    from webauthn.helpers import decode_credential_public_key, decoded_public_key_to_cryptography

    def spki(public) -> bytes:
        return public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    rp_key = decoded_public_key_to_cryptography(decode_credential_public_key(rp.public_key))
    assert spki(key.public_key()) == spki(rp_key)  # the key the RP registered


def test_non_zero_counter_file_is_refused_and_nothing_changes(tmp_path, env):
    a = str(tmp_path / "a.db")
    rp = Rp()
    store, client = client_for(a, env)
    rp.register(client, "dave")
    store.close()
    out = tmp_path / "d.cxf"
    cli("credentials", "export", "--plaintext", "-o", str(out), "--store", a, env=env)
    doc = json.loads(out.read_text())
    doc["accounts"][0]["items"][0]["credentials"][0]["counter"] = 7
    bad = tmp_path / "bad.cxf"
    bad.write_text(json.dumps(doc))
    b = str(tmp_path / "b.db")
    proc = cli("credentials", "import", str(bad), "--store", b, env=env, ok=False)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert "signature counter 7" in line and "nothing imported" in line
    store = open_store(b)
    assert store.count_discoverable() == 0
    store.close()


def test_wrong_passphrase_and_bad_fields_are_one_line_errors(tmp_path, env):
    a = str(tmp_path / "a.db")
    rp = Rp()
    store, client = client_for(a, env)
    rp.register(client, "erin")
    store.close()
    out = tmp_path / "e.cxf"
    cli("credentials", "export", "-o", str(out), "--store", a, env=env)
    b = str(tmp_path / "b.db")
    proc = cli("credentials", "import", str(out), "--store", b,
               env={**env, "FIDO_EMU_CXF_PASSPHRASE": "wrong"}, ok=False)
    assert proc.returncode == 1 and "wrong passphrase" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    bad = tmp_path / "f.cxf"
    bad.write_text(json.dumps({"version": {"major": 1, "minor": 0}, "accounts": [{"items": [
        {"credentials": [{"type": "passkey", "credentialId": "AAAA", "rpId": RP_ID,
                          "username": "x", "userDisplayName": "", "userHandle": "eA",
                          "key": "bm90IGEga2V5"}]}]}]}))
    proc = cli("credentials", "import", str(bad), "--store", b, env=env, ok=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "fido-emu: error: CXF: accounts[0].items[0].credentials[0].key is not an "
        "unencrypted PKCS#8 private key"
    ]


def test_export_needs_the_pin_when_one_is_set(tmp_path, env):
    a = str(tmp_path / "a.db")
    rp = Rp()
    store, client = client_for(a, env)
    rp.register(client, "fay")
    store.close()
    cli("pin", "set", "--new-pin", "2468", "--store", a, env=env)
    out = tmp_path / "f.cxf"
    proc = cli("credentials", "export", "--plaintext", "-o", str(out), "--store", a,
               env=env, ok=False)
    assert proc.returncode == 1 and "PIN" in proc.stderr and not out.exists()
    proc = cli("credentials", "export", "--plaintext", "-o", str(out), "--store", a,
               "--pin", "1111", env=env, ok=False)
    assert proc.returncode == 1 and "PIN_INVALID" in proc.stderr and not out.exists()
    cli("credentials", "export", "--plaintext", "-o", str(out), "--store", a, "--pin", "2468",
        env=env)
    assert len(json.loads(out.read_text())["accounts"][0]["items"]) == 1


def test_prf_outputs_survive_export_and_import(tmp_path, env, target):
    """hmacCredentials travel: the imported passkey gives the same PRF (hmac-secret)
    outputs as the original, so data an RP encrypted under them stays readable."""
    from webauthn.helpers import bytes_to_base64url

    a = str(tmp_path / "a.db")
    store, client = client_for(a, env)
    opts = json.loads(options_to_json(generate_registration_options(
        rp_id=RP_ID, rp_name="CXF RP", user_name="gil", user_id=b"gil",
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED))))
    salt = bytes_to_base64url(b"s" * 32)
    opts["extensions"] = {"prf": {"eval": {"first": salt}}}  # outputs at create (hmac-secret-mc)
    made = client.create({"publicKey": opts})
    assert made["clientExtensionResults"]["prf"]["enabled"] is True
    before = made["clientExtensionResults"]["prf"]["results"]["first"]
    store.close()  # never signed: counter 0, exportable

    def prf(c: WebAuthnClient) -> str:
        got = c.get({"publicKey": {"rpId": RP_ID, "challenge": bytes_to_base64url(b"c" * 32),
                                   "extensions": {"prf": {"eval": {"first": salt}}}}})
        return got["clientExtensionResults"]["prf"]["results"]["first"]

    out = tmp_path / "g.cxf"
    cli("credentials", "export", "-o", str(out), "--store", a, env=env)
    cli("credentials", "import", str(out), "--store", target, env=env)
    store, client = client_for(target, env)
    try:
        assert prf(client) == before
    finally:
        store.close()

"""The bridge's import/export logic against a fake CDP peer: runs without a browser."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.cose import ES256
from fido2.server import Fido2Server
from fido2.webauthn import AttestedCredentialData, PublicKeyCredentialRpEntity

from authenticator import Authenticator, Config
from authenticator.rp_testing.cdp_bridge import SyncCdpBridge, virtual_authenticator_options
from authenticator.rp_testing.webauthn import WebAuthnClient
from storage.memory import MemoryStore
from transports.inprocess import InProcessDevice

RP_ID = "localhost"
ORIGIN = "http://localhost:8080"


class FakeChromium:
    """Just enough of the WebAuthn domain: keeps added credentials, returns them."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.options: dict[str, Any] = {}
        self.creds: list[dict[str, Any]] = []

    def __call__(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(method)
        if method == "WebAuthn.addVirtualAuthenticator":
            self.options = params["options"]
            return {"authenticatorId": "va-1"}
        if method == "WebAuthn.addCredential":
            self.creds.append(dict(params["credential"]))
        if method == "WebAuthn.getCredentials":
            return {"credentials": self.creds}
        return {}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("profile", "transport", "uv", "be"),
    [("security-key", "usb", False, False), ("platform", "internal", True, False),
     ("synced-passkey", "cable", True, True)],
)
def test_options_follow_profile(profile, transport, uv, be):
    opts = virtual_authenticator_options(Authenticator(Config.for_profile(profile)))
    assert (opts["transport"], opts["hasUserVerification"], opts["defaultBackupEligibility"]) == (
        transport, uv, be)
    assert opts["protocol"] == "ctap2" and opts["ctap2Version"] == "ctap2_1"


def test_browser_credential_round_trip_through_our_core():
    """A credential 'created in the browser' (foreign id, PKCS#8 key) is sealed into our
    store, signs through our core, verifies with python-fido2's server, and goes back to
    the browser with its counter."""
    auth = Authenticator(Config.for_profile("security-key"), MemoryStore())
    chromium = FakeChromium()
    bridge = SyncCdpBridge(auth, chromium)
    bridge.attach()
    assert chromium.calls == ["WebAuthn.enable", "WebAuthn.addVirtualAuthenticator"]

    key = ec.generate_private_key(ec.SECP256R1())
    cred_id = b"\x01" + os.urandom(15)  # looks like our self-contained version byte
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    chromium.creds.append({"credentialId": _b64(cred_id), "isResidentCredential": False,
                           "rpId": RP_ID, "privateKey": _b64(pkcs8), "signCount": 7})
    result = bridge.export()
    assert result.added == [cred_id] and result.counters == {cred_id: 7}
    assert pkcs8 not in auth.store.get_credential(cred_id).sealed_key

    server = Fido2Server(PublicKeyCredentialRpEntity(name="t", id=RP_ID))
    attested = AttestedCredentialData.create(
        bytes(16), cred_id, ES256.from_cryptography_key(key.public_key()))
    options, state = server.authenticate_begin([attested])
    device = InProcessDevice(auth)
    try:
        response = WebAuthnClient(device, ORIGIN).get(dict(options))
    finally:
        device.close()
    server.authenticate_complete(state, [attested], response)
    assert response["rawId"]
    cred = auth.credentials.resolve(cred_id, hashlib.sha256(RP_ID.encode()).digest())
    count = auth.counters.peek(cred_id)
    assert cred is not None and count > 7  # moved on from the browser's value

    # back to a new tab: same key, counter continues
    chromium2 = FakeChromium()
    bridge2 = SyncCdpBridge(auth, chromium2)
    bridge2.attach()
    bridge2.add_credential(cred_id, RP_ID)
    (sent,) = chromium2.creds
    assert sent["privateKey"] == _b64(pkcs8) and sent["signCount"] == count


def test_export_never_lowers_counters():
    auth = Authenticator(Config.for_profile("platform"), MemoryStore())
    chromium = FakeChromium()
    bridge = SyncCdpBridge(auth, chromium)
    bridge.attach()
    key = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    cred = {"credentialId": _b64(os.urandom(16)), "isResidentCredential": True, "rpId": RP_ID,
            "privateKey": _b64(pkcs8), "signCount": 5, "userHandle": _b64(b"user-1"),
            "userName": "kim"}
    chromium.creds.append(cred)
    bridge.export()
    cred["signCount"] = 3
    assert bridge.export().counters == {}
    (record,) = auth.store.credentials_for_rp(hashlib.sha256(RP_ID.encode()).digest())
    assert record.user_id == b"user-1" and record.user_name == "kim"
    assert auth.counters.peek(record.credential_id) == 5

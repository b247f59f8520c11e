"""Shared fixtures: an in-process authenticator and python-fido2's client and server.

The server verifies every attestation statement with python-fido2's own verifiers
(:class:`StrictAttestation`), and :func:`verify_cose_signature` checks signatures with
``cryptography`` straight from the COSE key: neither uses our code to judge our output.
"""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID
from fido2.attestation import (
    AttestationType,
    AttestationVerifier,
    FidoU2FAttestation,
    NoneAttestation,
    PackedAttestation,
    UntrustedAttestation,
    verify_x509_chain,
)
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.server import Fido2Server
from fido2.webauthn import PublicKeyCredentialRpEntity

from authenticator import Authenticator, Config
from storage.memory import MemoryStore
from transports.inprocess import InProcessDevice

# postgres_cluster / postgres_url: one throwaway PostgreSQL per session (tests/storage/pg_server.py)
pytest_plugins = ["tests.storage.pg_server"]

ORIGIN = "https://example.com"
RP = PublicKeyCredentialRpEntity(name="Example RP", id="example.com")


def _placeholder_root() -> bytes:
    """A certificate python-fido2 "chains" self/none attestation to: a one-element chain is
    not verified, so its only job is to be a parseable DER certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self attestation")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


_SELF_ROOT = _placeholder_root()


class StrictAttestation(AttestationVerifier):
    """python-fido2's packed / fido-u2f / none verifiers; x5c must chain to one of ``roots``
    (our ``attestation init`` root), self and none are accepted only when ``allow_self``.

    ``results`` records each verified statement's type, so tests can tell self from basic."""

    def __init__(self, roots: list[bytes] | tuple[bytes, ...] = (), allow_self: bool = True):
        super().__init__([PackedAttestation(), FidoU2FAttestation(), NoneAttestation()])
        self.roots = list(roots)
        self.allow_self = allow_self
        self.results: list[AttestationType] = []

    def ca_lookup(self, result, auth_data):
        self.results.append(result.attestation_type)
        if result.attestation_type in (AttestationType.SELF, AttestationType.NONE):
            return _SELF_ROOT if self.allow_self else None
        for root in self.roots:
            try:
                verify_x509_chain(list(result.trust_path) + [root])
            except Exception:
                continue
            return root
        raise UntrustedAttestation("x5c does not chain to a trusted root")


def cose_public_key(cose: dict):
    """A ``cryptography`` public key from a COSE_Key map (RFC 9053), parsed here."""
    kty = cose[1]
    if kty == 2:  # EC2
        curve = {1: ec.SECP256R1(), 2: ec.SECP384R1()}[cose[-1]]
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(cose[-2], "big"), int.from_bytes(cose[-3], "big"), curve
        )
        return numbers.public_key()
    if kty == 1:  # OKP
        assert cose[-1] == 6, "only Ed25519"
        return ed25519.Ed25519PublicKey.from_public_bytes(cose[-2])
    if kty == 3:  # RSA
        return rsa.RSAPublicNumbers(
            int.from_bytes(cose[-2], "big"), int.from_bytes(cose[-1], "big")
        ).public_key()
    raise AssertionError(f"unknown kty {kty}")


def verify_cose_signature(cose: dict, data: bytes, signature: bytes) -> None:
    """Raises cryptography's InvalidSignature unless ``signature`` signs ``data``."""
    alg, key = cose[3], cose_public_key(cose)
    if alg == -7:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif alg == -35:
        key.verify(signature, data, ec.ECDSA(hashes.SHA384()))
    elif alg == -8:
        key.verify(signature, data)
    elif alg == -257:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise AssertionError(f"unknown alg {alg}")


class PinInteraction(UserInteraction):
    def __init__(self, pin: str | None = None) -> None:
        self.pin = pin

    def request_pin(self, permissions, rp_id):
        return self.pin

    def request_uv(self, permissions, rp_id):
        return True


@pytest.fixture
def make_device():
    devices = []

    def factory(config: Config | None = None, store=None, presence=None, **kw):
        auth = Authenticator(config or Config(), store or MemoryStore(), presence, **kw)
        dev = InProcessDevice(auth)
        devices.append(dev)
        return auth, dev

    yield factory
    for d in devices:
        d.close()


@pytest.fixture
def make_client():
    def factory(dev, pin: str | None = None, origin: str = ORIGIN) -> Fido2Client:
        return Fido2Client(dev, DefaultClientDataCollector(origin), PinInteraction(pin))

    return factory


@pytest.fixture
def attestation_verifier() -> StrictAttestation:
    return StrictAttestation()


@pytest.fixture
def server(attestation_verifier: StrictAttestation) -> Fido2Server:
    return Fido2Server(RP, attestation="direct", verify_attestation=attestation_verifier)


from tests.vm.conftest import vm  # noqa: E402,F401  (the qemu guest fixture, for every suite)

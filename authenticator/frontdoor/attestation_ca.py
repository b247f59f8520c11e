"""A private attestation CA: a root and FIDO batch certificates issued under it.

``packed`` attestation with x5c needs a batch certificate that meets the WebAuthn "packed
attestation certificate requirements" (§8.2.1): version 3, subject C/O/OU="Authenticator
Attestation"/CN, basicConstraints CA=false, and the id-fido-gen-ce-aaguid extension. The
root goes to a directory (and into the metadata statement, so RPs can trust it); the batch
key and chain go into the authenticator's store, sealed like every other secret.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

from authenticator.core import attestation

if TYPE_CHECKING:
    from authenticator.core import Authenticator

OID_FIDO_AAGUID = ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
ROOT_CERT_FILE = "root-ca.pem"
ROOT_KEY_FILE = "root-ca.key"


@dataclass
class Subject:
    country: str = "US"
    organization: str = "fido-emulator"
    common_name: str = "fido-emulator"


@dataclass
class Root:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def _name(subject: Subject, ou: str, cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, subject.country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject.organization),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _validity(builder: x509.CertificateBuilder, years: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(
        now + datetime.timedelta(days=365 * years)
    )


def create_root(subject: Subject | None = None, years: int = 30) -> Root:
    subject = subject or Subject()
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(subject, "Attestation CA", f"{subject.common_name} Attestation Root CA")
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return Root(key, _validity(builder, years).sign(key, hashes.SHA256()))


def issue_batch(
    root: Root, aaguid: bytes, subject: Subject | None = None, years: int = 20
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A batch (leaf) attestation certificate for one AAGUID."""
    subject = subject or Subject()
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject, "Authenticator Attestation", f"{subject.common_name} Batch"))
        .issuer_name(root.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()),
            critical=False,
        )
        # the AAGUID as an OCTET STRING wrapped in the extension's OCTET STRING
        .add_extension(
            x509.UnrecognizedExtension(OID_FIDO_AAGUID, b"\x04\x10" + aaguid), critical=False
        )
    )
    return key, _validity(builder, years).sign(root.key, hashes.SHA256())


def write_root(root: Root, directory: Path) -> tuple[Path, Path]:
    """root-ca.pem (public) and root-ca.key (mode 0600, created without a readable window)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / ROOT_CERT_FILE, directory / ROOT_KEY_FILE
    cert_path.write_bytes(root.cert.public_bytes(serialization.Encoding.PEM))
    pem = root.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def load_root(directory: Path) -> Root | None:
    cert_path, key_path = directory / ROOT_CERT_FILE, directory / ROOT_KEY_FILE
    if not cert_path.exists() or not key_path.exists():
        return None
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC key")
    return Root(key, cert)


def install(auth: Authenticator, root: Root, subject: Subject | None = None) -> x509.Certificate:
    """Issue a batch certificate for the authenticator's AAGUID and store key + chain."""
    key, cert = issue_batch(root, auth.config.aaguid, subject)
    attestation.save_batch(auth, key, [cert.public_bytes(serialization.Encoding.DER)])
    return cert


def init(auth: Authenticator, directory: Path, subject: Subject | None = None) -> Root:
    """Reuse the root in ``directory`` (or create one there), then install a batch cert."""
    root = load_root(directory)
    if root is None:
        root = create_root(subject)
        write_root(root, directory)
    install(auth, root, subject)
    return root


def installed_root_der(directory: Path) -> bytes | None:
    cert_path = directory / ROOT_CERT_FILE
    if not cert_path.exists():
        return None
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.public_bytes(serialization.Encoding.DER)

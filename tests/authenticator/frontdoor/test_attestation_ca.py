"""Attestation CA, packed x5c, enterprise attestation and MDS3 metadata, checked by python-fido2."""

from __future__ import annotations

import json
import os
import stat
import uuid

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID
from fido2.attestation import AttestationVerifier, UntrustedAttestation
from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.ctap2 import Ctap2
from fido2.ctap2.config import Config as CtapConfig
from fido2.mds3 import MdsAttestationVerifier, MetadataBlobPayload, MetadataStatement
from fido2.server import Fido2Server

from authenticator import Authenticator, Config
from authenticator.frontdoor import attestation_ca, metadata
from transports.inprocess import InProcessDevice

RP = {"id": "example.com", "name": "Example"}


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator(Config(attestation="packed"))


class RootVerifier(AttestationVerifier):
    def __init__(self, root_der: bytes) -> None:
        super().__init__()
        self.root = root_der

    def ca_lookup(self, result, auth_data):
        return self.root


def register(dev: InProcessDevice, verifier=None, **extra):
    server = Fido2Server(RP, attestation="direct", verify_attestation=verifier)
    options, state = server.register_begin(
        {"id": b"u1", "name": "alice"}, user_verification="discouraged"
    )
    client = Fido2Client(dev, DefaultClientDataCollector("https://example.com"))
    reg = client.make_credential({**dict(options.public_key), **extra})
    server.register_complete(state, reg)
    return reg.response.attestation_object, reg.response.client_data.hash


def test_certificates(auth: Authenticator, tmp_path) -> None:
    root = attestation_ca.init(auth, tmp_path / "ca")
    key_file = tmp_path / "ca" / attestation_ca.ROOT_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert root.cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca

    from authenticator.core.attestation import load_batch

    batch = load_batch(auth)
    assert batch is not None and len(batch.chain) == 1
    cert = x509.load_der_x509_certificate(batch.chain[0])
    assert cert.version == x509.Version.v3
    subject = {a.oid: a.value for a in cert.subject}
    assert subject[NameOID.ORGANIZATIONAL_UNIT_NAME] == "Authenticator Attestation"
    assert {NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME} <= set(subject)
    bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
    assert bc.critical and not bc.value.ca
    ext = cert.extensions.get_extension_for_oid(attestation_ca.OID_FIDO_AAGUID)
    assert not ext.critical and ext.value.value == b"\x04\x10" + auth.config.aaguid

    again = attestation_ca.init(auth, tmp_path / "ca")  # the root is reused
    assert again.der == root.der


def test_packed_x5c_verified(auth: Authenticator, dev: InProcessDevice, tmp_path) -> None:
    root = attestation_ca.init(auth, tmp_path)
    att, cdh = register(dev, RootVerifier(root.der))
    assert att.fmt == "packed" and len(att.att_stmt["x5c"]) == 1
    other = attestation_ca.create_root()
    with pytest.raises(UntrustedAttestation):
        RootVerifier(other.der).verify_attestation(att, cdh)


def test_packed_without_batch_is_self(dev: InProcessDevice) -> None:
    att, _ = register(dev)
    assert att.fmt == "packed" and "x5c" not in att.att_stmt


def test_metadata_statement_and_mds_verifier(auth: Authenticator, dev: InProcessDevice, tmp_path) -> None:
    root = attestation_ca.init(auth, tmp_path)
    stmt = metadata.statement(auth, [root.der])
    json.dumps(stmt)  # JSON-ready
    parsed = MetadataStatement.from_dict(stmt)
    assert bytes(parsed.aaguid) == auth.config.aaguid
    assert parsed.attestation_root_certificates == [root.der]
    assert parsed.protocol_family == "fido2"
    info = parsed.authenticator_get_info
    assert info["aaguid"] == uuid.UUID(bytes=auth.config.aaguid).hex
    assert "FIDO_2_1" in info["versions"]

    verifier = MdsAttestationVerifier(MetadataBlobPayload.from_dict(metadata.blob_payload([stmt])))
    att, cdh = register(dev, verifier)
    entry = verifier.find_entry(att, cdh)
    assert entry is not None and entry.metadata_statement.description == stmt["description"]

    # metadata naming another root does not vouch for our chain
    wrong = metadata.statement(auth, [attestation_ca.create_root().der])
    bad = MdsAttestationVerifier(MetadataBlobPayload.from_dict(metadata.blob_payload([wrong])))
    with pytest.raises(UntrustedAttestation):
        bad.verify_attestation(att, cdh)


def test_enterprise_attestation(tmp_path) -> None:
    auth = Authenticator(Config(enterprise_rp_ids=("corp.example",)))
    attestation_ca.init(auth, tmp_path)
    dev = InProcessDevice(auth)
    ctap = Ctap2(dev)
    params = dict(
        user={"id": b"u"}, key_params=[{"type": "public-key", "alg": -7}], enterprise_attestation=1
    )
    with pytest.raises(Exception):  # noqa: B017 - disabled until authenticatorConfig enables it
        ctap.make_credential(os.urandom(32), {"id": "corp.example"}, **params)
    assert ctap.get_info().options["ep"] is False
    CtapConfig(ctap).enable_enterprise_attestation()
    assert Ctap2(dev).get_info().options["ep"] is True
    r = ctap.make_credential(os.urandom(32), {"id": "corp.example"}, **params)
    assert r.ep_att is True and "x5c" in r.att_stmt
    r = ctap.make_credential(os.urandom(32), {"id": "other.example"}, **params)
    assert not r.ep_att and "x5c" not in r.att_stmt  # not on the list: ordinary attestation
    r = ctap.make_credential(
        os.urandom(32), {"id": "other.example"}, **{**params, "enterprise_attestation": 2}
    )
    assert r.ep_att is True and "x5c" in r.att_stmt  # platform-managed: any RP
    dev.close()

"""Attestation CA, packed x5c, enterprise attestation and MDS3 metadata, checked by python-fido2."""

from __future__ import annotations

import json
import os
import stat
import uuid

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID
from fido2.attestation import AttestationType, UntrustedAttestation
from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.ctap2 import Ctap2
from fido2.ctap2.config import Config as CtapConfig
from fido2.mds3 import MdsAttestationVerifier, MetadataBlobPayload, MetadataStatement
from fido2.server import Fido2Server

from authenticator import Authenticator, Config
from authenticator.frontdoor import attestation_ca, metadata
from tests.conftest import StrictAttestation
from transports.inprocess import InProcessDevice

RP = {"id": "example.com", "name": "Example"}


@pytest.fixture
def auth(make_auth) -> Authenticator:
    return make_auth(Config(attestation="packed"))


def RootVerifier(root_der: bytes) -> StrictAttestation:  # noqa: N802 - reads as a class
    """python-fido2's verifiers; x5c must chain to our root; self attestation refused."""
    return StrictAttestation([root_der], allow_self=False)


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
    verifier = RootVerifier(root.der)
    att, cdh = register(dev, verifier)
    assert att.fmt == "packed" and len(att.att_stmt["x5c"]) == 1
    assert verifier.results == [AttestationType.BASIC]
    other = attestation_ca.create_root()
    with pytest.raises(UntrustedAttestation):
        RootVerifier(other.der).verify_attestation(att, cdh)


def test_packed_without_batch_is_self(dev: InProcessDevice) -> None:
    verifier = StrictAttestation()
    att, cdh = register(dev, verifier)
    assert att.fmt == "packed" and "x5c" not in att.att_stmt
    assert verifier.results == [AttestationType.SELF]
    with pytest.raises(UntrustedAttestation):  # a verifier that wants a chain refuses it
        StrictAttestation(allow_self=False).verify_attestation(att, cdh)


@pytest.mark.parametrize("batch", [True, False])
def test_fido_u2f_attestation(auth: Authenticator, dev: InProcessDevice, tmp_path, batch) -> None:
    """CTAP1 registration as an RP sees it: python-fido2 builds the fido-u2f statement and
    verifies its signature; with a batch certificate it chains to our root."""
    from fido2.ctap1 import Ctap1
    from fido2.webauthn import AttestationObject

    root = attestation_ca.init(auth, tmp_path) if batch else attestation_ca.create_root()
    app_param, client_param = os.urandom(32), os.urandom(32)
    reg = Ctap1(dev).register(client_param, app_param)
    att = AttestationObject.from_ctap1(app_param, reg)
    assert att.fmt == "fido-u2f"
    verifier = RootVerifier(root.der)
    if batch:
        verifier.verify_attestation(att, client_param)
        assert verifier.results == [AttestationType.BASIC]
    else:  # a per-device self-signed certificate: signature fine, not our root
        with pytest.raises(UntrustedAttestation):
            verifier.verify_attestation(att, client_param)
    from fido2.attestation import InvalidSignature

    with pytest.raises(InvalidSignature):  # the signature covers the challenge
        RootVerifier(root.der).verify_attestation(att, os.urandom(32))


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


def test_enterprise_attestation(make_auth, tmp_path) -> None:
    from fido2.ctap import CtapError
    from fido2.webauthn import AttestationObject

    auth = make_auth(Config(enterprise_rp_ids=("corp.example",)))
    root = attestation_ca.init(auth, tmp_path)
    dev = InProcessDevice(auth)
    ctap = Ctap2(dev)
    params = dict(
        user={"id": b"u"}, key_params=[{"type": "public-key", "alg": -7}], enterprise_attestation=1
    )

    def make(rp_id: str, **extra):
        cdh = os.urandom(32)
        r = ctap.make_credential(cdh, {"id": rp_id}, **{**params, **extra})
        verifier = StrictAttestation([root.der])
        verifier.verify_attestation(AttestationObject.create(r.fmt, r.auth_data, r.att_stmt), cdh)
        return r, verifier.results

    with pytest.raises(CtapError) as e:  # disabled until authenticatorConfig enables it
        ctap.make_credential(os.urandom(32), {"id": "corp.example"}, **params)
    assert e.value.code == CtapError.ERR.INVALID_PARAMETER
    assert ctap.get_info().options["ep"] is False
    CtapConfig(ctap).enable_enterprise_attestation()
    assert Ctap2(dev).get_info().options["ep"] is True
    r, results = make("corp.example")
    assert r.ep_att is True and results == [AttestationType.BASIC]
    r, results = make("other.example")  # not on the list: ordinary (self) attestation
    assert not r.ep_att and results == [AttestationType.SELF]
    r, results = make("other.example", enterprise_attestation=2)  # platform-managed: any RP
    assert r.ep_att is True and results == [AttestationType.BASIC]
    dev.close()

"""Registration and sign-in verified by python-fido2's Fido2Client and Fido2Server."""

from __future__ import annotations

import itertools

import pytest
from fido2.client import ClientError
from fido2.webauthn import (
    AuthenticatorData,
    PublicKeyCredentialUserEntity,
)

from authenticator import Config

USER = PublicKeyCredentialUserEntity(id=b"user-1", name="alice", display_name="Alice")


def register(server, client, user=USER, **kw):
    options, state = server.register_begin(user, **kw)
    result = client.make_credential(options["publicKey"])
    return server.register_complete(state, result), result


def authenticate(server, client, creds, allow=True, **kw):
    options, state = server.authenticate_begin(creds if allow else None, **kw)
    selection = client.get_assertion(options["publicKey"])
    response = selection.get_response(0)
    server.authenticate_complete(state, creds, response)
    return response, selection


@pytest.mark.parametrize(
    "rk,uv,allow",
    list(itertools.product(["required", "discouraged"], ["required", "preferred", "discouraged"], [True, False])),
)
def test_register_and_sign_in_with_pin(make_device, make_client, server, rk, uv, allow):
    """Every rk × uv × allowCredentials combination, with a PIN set (UV via PIN)."""
    from fido2.ctap2 import ClientPin, Ctap2

    auth, dev = make_device()
    ClientPin(Ctap2(dev)).set_pin("123456")
    client = make_client(dev, pin="123456")
    auth_data, _ = register(server, client, resident_key_requirement=rk, user_verification=uv)
    assert auth_data.is_user_present()
    assert auth_data.is_user_verified() == (uv != "discouraged" or rk == "required")
    if rk == "discouraged" and not allow:
        with pytest.raises(ClientError):
            authenticate(server, client, [auth_data.credential_data], allow=False, user_verification=uv)
        return
    response, _ = authenticate(
        server, client, [auth_data.credential_data], allow=allow, user_verification=uv
    )
    data = response.response.authenticator_data
    assert data.is_user_present()
    assert data.is_user_verified() == (uv != "discouraged")
    if rk == "required":
        assert response.response.user_handle == USER.id


@pytest.mark.parametrize("alg", [-7, -8, -35, -257])
def test_each_algorithm(make_device, make_client, server, attestation_verifier, alg):
    from fido2.attestation import AttestationType

    from tests.conftest import verify_cose_signature

    server.allowed_algorithms = [p for p in server.allowed_algorithms if p.alg == alg]
    _, dev = make_device()
    client = make_client(dev)
    auth_data, result = register(server, client, user_verification="discouraged")
    assert auth_data.credential_data.public_key[3] == alg
    att = result.response.attestation_object
    assert att.fmt == "packed" and att.att_stmt["alg"] == alg
    # the server's verifier checked the self-attestation signature (python-fido2)
    assert attestation_verifier.results == [AttestationType.SELF]
    response, _ = authenticate(
        server, client, [auth_data.credential_data], user_verification="discouraged"
    )
    verify_cose_signature(
        dict(auth_data.credential_data.public_key),
        bytes(response.response.authenticator_data) + response.response.client_data.hash,
        response.response.signature,
    )


@pytest.mark.parametrize(
    "profile,be,bs,counter_moves",
    [("security-key", False, False, True), ("synced-passkey", True, True, False), ("platform", False, False, True)],
)
def test_profiles_flags_and_counters(make_device, make_client, server, profile, be, bs, counter_moves):
    auth, dev = make_device(Config.for_profile(profile))
    client = make_client(dev)
    uv = "preferred" if auth.config.builtin_uv else "discouraged"
    auth_data, result = register(
        server, client, resident_key_requirement="required", user_verification=uv
    )
    assert auth_data.is_backup_eligible() == be
    assert auth_data.is_backed_up() == bs
    fmt = result.response.attestation_object.fmt
    assert fmt == ("packed" if profile == "security-key" else "none")
    if auth.config.builtin_uv:
        assert auth_data.is_user_verified()
    counters = []
    for _ in range(3):
        response, _ = authenticate(
            server, client, [auth_data.credential_data], allow=False, user_verification=uv
        )
        data = response.response.authenticator_data
        assert data.is_backup_eligible() == be and data.is_backed_up() == bs
        counters.append(data.counter)
    if counter_moves:
        assert counters == sorted(counters) and len(set(counters)) == 3
    else:
        assert counters == [0, 0, 0]


def test_exclude_credentials(make_device, make_client, server):
    _, dev = make_device()
    client = make_client(dev)
    auth_data, _ = register(server, client, user_verification="discouraged")
    options, _ = server.register_begin(
        USER, credentials=[auth_data.credential_data], user_verification="discouraged"
    )
    with pytest.raises(ClientError) as e:
        client.make_credential(options["publicKey"])
    assert e.value.code == ClientError.ERR.DEVICE_INELIGIBLE


def test_same_user_replaces_discoverable_credential(make_device, make_client, server):
    auth, dev = make_device()
    client = make_client(dev)
    kw = dict(resident_key_requirement="required", user_verification="discouraged")
    first, _ = register(server, client, **kw)
    second, _ = register(server, client, **kw)
    assert first.credential_data.credential_id != second.credential_data.credential_id
    records = auth.store.credentials_for_rp(first.rp_id_hash)
    assert [r.credential_id for r in records] == [second.credential_data.credential_id]
    with pytest.raises(ClientError):
        authenticate(server, client, [first.credential_data], user_verification="discouraged")


def test_discovery_newest_first_and_get_next_assertion(make_device, make_client, server):
    _, dev = make_device()
    client = make_client(dev)
    creds = []
    for i in range(3):
        user = PublicKeyCredentialUserEntity(id=f"user-{i}".encode(), name=f"u{i}", display_name=f"U{i}")
        auth_data, _ = register(
            server, client, user=user, resident_key_requirement="required",
            user_verification="discouraged",
        )
        creds.append(auth_data.credential_data)
    options, state = server.authenticate_begin(None, user_verification="discouraged")
    selection = client.get_assertion(options["publicKey"])
    responses = [selection.get_response(i) for i in range(len(selection.get_assertions()))]
    assert [r.response.user_handle for r in responses] == [b"user-2", b"user-1", b"user-0"]
    for r in responses:
        server.authenticate_complete(state, creds, r)


def test_silent_assertion_clears_up(make_device):
    from hashlib import sha256

    from fido2.ctap2 import Ctap2

    _, dev = make_device()
    ctap = Ctap2(dev)
    rp = {"id": "example.com", "name": "Ex"}
    att = ctap.make_credential(
        sha256(b"c").digest(), rp, {"id": b"u"}, [{"type": "public-key", "alg": -7}]
    )
    cred_id = att.auth_data.credential_data.credential_id
    res = ctap.get_assertion(
        "example.com", sha256(b"d").digest(), [{"type": "public-key", "id": cred_id}], options={"up": False}
    )
    data = AuthenticatorData(res.auth_data)
    assert not data.is_user_present()
    pub = att.auth_data.credential_data.public_key
    pub.verify(res.auth_data + sha256(b"d").digest(), res.signature)  # raises if invalid


def test_select_account_on_device_returns_one_user_selected(make_device):
    from hashlib import sha256

    import cbor2
    from fido2.ctap2 import Ctap2

    auth, dev = make_device(Config(select_account_on_device=True))
    ctap = Ctap2(dev)
    for i in range(2):
        ctap.make_credential(
            sha256(b"c").digest(), {"id": "example.com"}, {"id": bytes([i]), "name": f"u{i}"},
            [{"type": "public-key", "alg": -7}], options={"rk": True},
        )
    raw = dev.call(0x10, b"\x02" + cbor2.dumps({1: "example.com", 2: sha256(b"d").digest()}))
    resp = cbor2.loads(raw[1:])
    assert resp[6] is True and 5 not in resp and resp[4]["id"] == b"\x01"

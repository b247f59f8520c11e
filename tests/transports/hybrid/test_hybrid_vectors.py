"""Every hybrid known-answer vector in hybrid_ble_vectors.json (copied from shared/vectors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from transports.hybrid import advert, crypter, domains, keys, messages, noise, qr

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "hybrid_ble_vectors.json").read_text()
)
HYBRID_KINDS = {
    "qr_digits_encode",
    "qr_digits_decode_invalid",
    "qr_digits_rule",
    "qr_parse",
    "qr_parse_invalid",
    "hkdf_derive",
    "hkdf_rule",
    "advert_decrypt",
    "eid_parse",
    "advert_encrypt",
    "advert_rule",
    "tunnel_domain",
    "tunnel_url",
    "noise_rule",
    "noise_handshake",
    "p256_from_seed",
    "pairing_signature",
    "crypter_encrypt",
    "crypter_nonce",
    "crypter_padding",
    "padded_cbor_map",
    "post_handshake_decode",
    "crypter_session",
    "tunnel_frame",
    "tunnel_rule",
}
BY_NAME = {v["name"]: v for v in VECTORS}


def of(kind: str) -> list[Any]:
    return [pytest.param(v, id=v["name"]) for v in VECTORS if v["kind"] == kind]


def test_every_kind_is_covered() -> None:
    kinds = {v["kind"] for v in VECTORS}
    assert kinds - HYBRID_KINDS == {k for k in kinds if k.startswith("ble_")}


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def private_key(hex_scalar: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int(hex_scalar, 16), ec.SECP256R1())


# --- QR -----------------------------------------------------------------------------------


@pytest.mark.parametrize("v", of("qr_digits_encode"))
def test_qr_digits_encode(v: dict[str, Any]) -> None:
    data, digits = h(v["inputs"]["bytes_hex"]), v["expected"]["digits"]
    assert qr.bytes_to_digits(data) == digits
    assert qr.digits_to_bytes(digits) == data


@pytest.mark.parametrize("v", of("qr_digits_decode_invalid"))
def test_qr_digits_decode_invalid(v: dict[str, Any]) -> None:
    with pytest.raises(qr.QrError) as err:
        qr.digits_to_bytes(v["inputs"]["digits"])
    assert str(err.value) == v["expected"]["reason"]


@pytest.mark.parametrize("v", of("qr_digits_rule"))
def test_qr_digits_rule(v: dict[str, Any]) -> None:
    assert (qr.CHUNK_BYTES, qr.CHUNK_DIGITS) == (
        v["inputs"]["chunk_bytes"],
        v["inputs"]["chunk_digits"],
    )
    for n, digits in v["expected"]["partial_chunk_digits_by_tail_bytes"].items():
        assert qr.PARTIAL_CHUNK_DIGITS[int(n)] == digits
        assert len(qr.bytes_to_digits(b"\xff" * int(n))) == digits
    valid_tails = set(qr.PARTIAL_CHUNK_DIGITS)
    for tail in range(qr.CHUNK_DIGITS):
        if tail not in valid_tails:
            with pytest.raises(qr.QrError):
                qr.digits_to_bytes("0" * tail)


def _map_from_vector(raw: dict[str, Any]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for key, value in raw.items():
        k = int(key)
        out[k] = h(value) if k in (0, 1) and isinstance(value, str) else value
    return out


@pytest.mark.parametrize("v", of("qr_parse"))
def test_qr_parse(v: dict[str, Any]) -> None:
    url, exp = v["inputs"]["url"], v["expected"]
    payload = qr.QrPayload.from_url(url)
    cbor = h(exp.get("cbor_hex") or v["inputs"]["cbor_hex"])
    assert qr.digits_to_bytes(url[len(qr.PREFIX) :]) == cbor
    assert payload.to_cbor() == cbor
    assert payload.to_url() == url  # re-encodes byte-identically
    if "map" in exp:
        assert cbor2.loads(cbor) == _map_from_vector(exp["map"])
        assert payload.identity_uncompressed() == h(exp["peer_identity_uncompressed_hex"])
        assert payload.public_key == h(exp["map"]["0"])
        assert payload.secret == h(exp["map"]["1"])
        assert payload.num_known_domains == exp["map"]["2"]
        assert payload.timestamp == exp["map"]["3"]
        assert payload.supports_linking is exp["map"]["4"]
        assert payload.operation == exp["map"]["5"]
    else:
        assert cbor2.loads(cbor) == _map_from_vector(v["inputs"]["cbor_map"])
        assert exp["valid"] is True
        assert payload.num_known_domains == exp["num_known_domains"]
        assert payload.supports_linking == exp["supports_linking"]
        assert payload.operation == exp["request_type"]


@pytest.mark.parametrize("v", of("qr_parse_invalid"))
def test_qr_parse_invalid(v: dict[str, Any]) -> None:
    with pytest.raises(qr.QrError):
        qr.QrPayload.from_url(v["inputs"]["url"])
    if "cbor_hex" in v["inputs"]:
        with pytest.raises(qr.QrError):
            qr.QrPayload.from_cbor(h(v["inputs"]["cbor_hex"]))


def test_qr_prefix_is_case_insensitive() -> None:
    url = BY_NAME["qr_chrome_desktop"]["inputs"]["url"]
    assert qr.QrPayload.from_url("fido:/" + url[6:]).secret == qr.QrPayload.from_url(url).secret


def test_qr_new_payload_round_trips_and_renders(tmp_path: Path) -> None:
    identity = ec.generate_private_key(ec.SECP256R1())
    payload = qr.new_payload(identity, b"\x07" * 16, request_type="mc", timestamp=1)
    back = qr.QrPayload.from_url(payload.to_url())
    assert back == payload
    assert sorted(cbor2.loads(payload.to_cbor())) == [0, 1, 2, 3, 4, 5]
    text = qr.render(payload.to_url(), str(tmp_path / "qr.png"))
    assert text and (tmp_path / "qr.png").stat().st_size > 0


# --- HKDF and keys ------------------------------------------------------------------------


@pytest.mark.parametrize("v", of("hkdf_derive"))
def test_hkdf_derive(v: dict[str, Any]) -> None:
    i = v["inputs"]
    out = keys.derive(h(i["secret_hex"]), h(i["salt_hex"]), i["purpose"], i["length"])
    assert out == h(v["expected"]["output_hex"])


@pytest.mark.parametrize("v", of("hkdf_rule"))
def test_hkdf_rule(v: dict[str, Any]) -> None:
    exp = v["expected"]
    assert keys.Purpose.EID_KEY == exp["EIDKey"]
    assert keys.Purpose.TUNNEL_ID == exp["TunnelID"]
    assert keys.Purpose.PSK == exp["PSK"]
    assert keys.Purpose.PAIRED_SECRET == exp["PairedSecret"]
    assert keys.Purpose.IDENTITY_KEY_SEED == exp["IdentityKeySeed"]
    assert keys.Purpose.PER_CONTACT_ID_SECRET == exp["PerContactIDSecret"]
    secret = b"\x01" * 16
    assert len(keys.eid_key(secret)) == exp["lengths"]["EIDKey"]
    assert len(keys.tunnel_id(secret)) == exp["lengths"]["TunnelID"]
    assert len(keys.psk(secret, b"\x00" * 16)) == exp["lengths"]["PSK"]


@pytest.mark.parametrize("v", of("p256_from_seed"))
def test_p256_from_seed(v: dict[str, Any]) -> None:
    key = keys.p256_from_seed(h(v["inputs"]["seed_hex"]))
    exp = v["expected"]
    assert key.private_numbers().private_value == int(exp["priv_hex"], 16)
    assert keys.uncompressed(key.public_key()) == h(exp["pub_uncompressed_hex"])
    assert qr.compress_public_key(key.public_key()) == h(exp["pub_compressed_hex"])


@pytest.mark.parametrize("v", of("pairing_signature"))
def test_pairing_signature(v: dict[str, Any]) -> None:
    i = v["inputs"]
    authenticator = keys.p256_from_seed(h(i["authenticator_seed_hex"]))
    client = keys.p256_from_seed(h(i["client_seed_hex"]))
    hh = h(i["handshake_hash_hex"])
    sig = keys.pairing_signature(authenticator, client.public_key(), hh)
    assert sig == h(v["expected"]["signature_hex"])
    # symmetric ECDH: the client can check it with its own private key
    assert keys.pairing_signature(client, authenticator.public_key(), hh) == sig


# --- advert -------------------------------------------------------------------------------


@pytest.mark.parametrize("v", of("advert_decrypt"))
def test_advert_decrypt(v: dict[str, Any]) -> None:
    i, exp = v["inputs"], v["expected"]
    secret = h(i["qr_secret_hex"])
    plaintext, eid = advert.open_advert(keys.eid_key(secret), h(i["advert_hex"]))
    assert plaintext == h(exp["plaintext_hex"])
    assert eid.tunnel_server_id == exp["tunnel_server_id"]
    assert eid.routing_id == h(exp["routing_id_hex"])
    assert eid.nonce == h(exp["nonce_hex"])
    base = domains.tunnel_base(eid.tunnel_server_id)
    tid = keys.tunnel_id(secret)
    assert domains.connect_url(base, eid.routing_id, tid) == exp["connect_url"]
    assert domains.new_tunnel_url(base, tid) == exp["new_tunnel_url"]
    # the PSK salt is the decrypted plaintext (see hkdf_psk_known_session)
    psk_vec = BY_NAME["hkdf_psk_known_session"]
    assert keys.psk(secret, plaintext) == h(psk_vec["expected"]["output_hex"])
    # a flipped bit anywhere fails the tag check
    bad = bytearray(h(i["advert_hex"]))
    bad[3] ^= 1
    with pytest.raises(advert.AdvertError):
        advert.decrypt(keys.eid_key(secret), bytes(bad))


@pytest.mark.parametrize("v", of("eid_parse"))
def test_eid_parse(v: dict[str, Any]) -> None:
    plaintext, exp = h(v["inputs"]["plaintext_hex"]), v["expected"]
    if exp["valid"]:
        eid = advert.Eid.from_bytes(plaintext)
        assert eid.tunnel_server_id == exp["tunnel_server_id"]
        assert eid.routing_id == h(exp["routing_id_hex"])
        assert eid.nonce == h(exp["nonce_hex"])
        assert eid.to_bytes() == plaintext
    else:
        with pytest.raises(advert.AdvertError):
            advert.Eid.from_bytes(plaintext)


@pytest.mark.parametrize("v", of("advert_encrypt"))
def test_advert_encrypt(v: dict[str, Any]) -> None:
    i, exp = v["inputs"], v["expected"]
    key = h(i["eid_key_hex"])
    if "qr_secret_hex" in i:
        assert keys.eid_key(h(i["qr_secret_hex"])) == key
    if "plaintext_hex" in i:
        plaintext = h(i["plaintext_hex"])
    else:
        eid = advert.Eid(h(i["nonce_hex"]), h(i["routing_id_hex"]), i["tunnel_server_id"])
        plaintext = eid.to_bytes()
        assert plaintext == h(exp["plaintext_hex"])
    sealed = advert.encrypt(key, plaintext)
    assert sealed == h(exp["advert_hex"])
    assert advert.decrypt(key, sealed) == plaintext
    # a CTAP 2.3 suffix after the 20 bytes is ignored for decryption
    assert advert.decrypt(key, sealed + h("a101191234")) == plaintext
    if "new_tunnel_url" in exp:
        base = domains.tunnel_base(i["tunnel_server_id"])
        tid = keys.tunnel_id(h(i["qr_secret_hex"]))
        assert domains.new_tunnel_url(base, tid) == exp["new_tunnel_url"]
        assert domains.connect_url(base, h(i["routing_id_hex"]), tid) == exp["connect_url"]


@pytest.mark.parametrize("v", of("advert_rule"))
def test_advert_rule(v: dict[str, Any]) -> None:
    assert advert.SERVICE_UUID_FIDO == 0xFFF9 and advert.SERVICE_UUID_GOOGLE == 0xFDE2
    key = bytes(range(64))
    plaintext = bytes(16)
    sealed = advert.encrypt(key, plaintext)
    assert len(sealed) == advert.ADVERT_LEN == 20
    # decrypt order: the tag is checked first, then byte 0 and the server id
    bad_reserved = advert.encrypt(key, b"\x01" + bytes(15))
    assert advert.decrypt(key, bad_reserved)[0] == 1
    with pytest.raises(advert.AdvertError):
        advert.open_advert(key, bad_reserved)
    unassigned = advert.encrypt(key, bytes(14) + (7).to_bytes(2, "little"))
    with pytest.raises(advert.AdvertError):
        advert.open_advert(key, unassigned)


# --- tunnel domains and URLs --------------------------------------------------------------


@pytest.mark.parametrize("v", of("tunnel_domain"))
def test_tunnel_domain(v: dict[str, Any]) -> None:
    assert domains.tunnel_domain(v["inputs"]["id"]) == v["expected"]["domain"]


@pytest.mark.parametrize("v", of("tunnel_url"))
def test_tunnel_url(v: dict[str, Any]) -> None:
    i, exp = v["inputs"], v["expected"]
    tid = h(i["tunnel_id_hex"])
    if "domain_id" in i:
        url = domains.new_tunnel_url(domains.tunnel_base(i["domain_id"]), tid)
        assert exp["url_contains"] in url and url.endswith(exp["path"])
        return
    rid = h(i["routing_id_hex"])
    base = f"{i['scheme']}://{i['authority']}"
    assert domains.new_tunnel_url(base, tid) == exp["new"]
    assert domains.connect_url(base, rid, tid) == exp["connect"]
    assert domains.connect_url(domains.tunnel_base(0), rid, tid) == exp["connect_id0"]
    assert domains.connect_url(domains.tunnel_base(1), rid, tid) == exp["connect_id1"]


# --- Noise --------------------------------------------------------------------------------


@pytest.mark.parametrize("v", of("noise_rule"))
def test_noise_rule(v: dict[str, Any]) -> None:
    exp = v["expected"]
    kn = noise.SymmetricState(noise.Pattern.KN.protocol_name)
    nk = noise.SymmetricState(noise.Pattern.NK.protocol_name)
    assert kn.h == kn.ck == h(exp["KNpsk0_initial_h_ck_hex"])
    assert nk.h == nk.ck == h(exp["NKpsk0_initial_h_ck_hex"])
    plain_nk = noise.SymmetricState(b"Noise_NK_P256_AESGCM_SHA256")
    assert plain_nk.h == h(exp["NK_nopsk_initial_hex (Chromium enclave/kNK)"])
    assert noise.Pattern.KN.prologue == h(exp["prologue"]["KNpsk0 (QR-initiated)"])
    assert noise.Pattern.NK.prologue == h(exp["prologue"]["NKpsk0 (paired/state-assisted)"])
    assert noise.MESSAGE_LEN == 81


@pytest.mark.parametrize("v", of("noise_handshake"))
def test_noise_handshake(v: dict[str, Any]) -> None:
    i, exp = v["inputs"], v["expected"]
    psk = h(i["psk_hex"])
    e_i, e_r = (
        private_key(i["initiator_ephemeral_priv_hex"]),
        private_key(i["responder_ephemeral_priv_hex"]),
    )
    if i["pattern"] == "KNpsk0":
        identity = keys.p256_from_seed(h(i["initiator_identity_seed_hex"]))
        assert identity.private_numbers().private_value == int(i["initiator_identity_priv_hex"], 16)
        assert keys.uncompressed(identity.public_key()) == h(i["initiator_identity_pub_hex"])
        initiator = noise.Initiator(psk, identity=identity, ephemeral=e_i)
        responder = noise.Responder(psk, peer_identity=identity.public_key(), ephemeral=e_r)
    else:
        identity = private_key(i["responder_identity_priv_hex"])
        assert keys.uncompressed(identity.public_key()) == h(i["responder_identity_pub_hex"])
        initiator = noise.Initiator(psk, peer_identity=identity.public_key(), ephemeral=e_i)
        responder = noise.Responder(psk, identity=identity, ephemeral=e_r)
    assert initiator.pattern.prologue == h(i["prologue_hex"])
    msg1 = initiator.start()
    assert msg1 == h(exp["initiator_message_hex"])
    msg2, r_result = responder.respond(msg1)
    assert msg2 == h(exp["responder_message_hex"])
    i_result = initiator.finish(msg2)
    assert i_result.handshake_hash == r_result.handshake_hash == h(exp["handshake_hash_hex"])
    assert i_result.write_key == r_result.read_key == h(exp["initiator_write_key_hex"])
    assert i_result.read_key == r_result.write_key == h(exp["initiator_read_key_hex"])


# --- post-handshake crypter ---------------------------------------------------------------


@pytest.mark.parametrize("v", of("crypter_encrypt"))
def test_crypter_encrypt(v: dict[str, Any]) -> None:
    i, exp = v["inputs"], v["expected"]
    construction = crypter.Construction(i["construction"])
    key, plaintext = h(i["key_hex"]), h(i["plaintext_hex"])
    if "padded_hex" in exp:
        assert crypter.pad(plaintext) == h(exp["padded_hex"])
    writer = crypter.Crypter(read_key=bytes(32), write_key=key, construction=construction)
    writer.write_seq = i["seq"]
    assert writer.encrypt(plaintext) == h(exp["ciphertext_hex"])
    reader = crypter.Crypter(read_key=key, write_key=bytes(32), construction=construction)
    reader.read_seq = i["seq"]
    assert reader.decrypt(h(exp["ciphertext_hex"])) == plaintext
    # the other construction must not accept it, unless asked to detect (webauthn-rs style)
    other = (
        crypter.Construction.OLD
        if construction is crypter.Construction.NEW
        else crypter.Construction.NEW
    )
    with pytest.raises(crypter.CrypterError):
        crypter.Crypter(key, bytes(32), other).decrypt(h(exp["ciphertext_hex"]))
    detecting = crypter.Crypter(key, bytes(32), other, detect=True)
    assert detecting.decrypt(h(exp["ciphertext_hex"])) == plaintext
    assert detecting.construction is construction


@pytest.mark.parametrize("v", of("crypter_nonce"))
def test_crypter_nonce(v: dict[str, Any]) -> None:
    seq, exp = v["inputs"]["seq"], v["expected"]
    assert crypter.nonce(seq, crypter.Construction.NEW) == h(exp["new_hex"])
    assert crypter.nonce(seq, crypter.Construction.OLD) == h(exp["old_hex"])


@pytest.mark.parametrize("v", of("crypter_padding"))
def test_crypter_padding(v: dict[str, Any]) -> None:
    message, padded = h(v["inputs"]["message_hex"]), h(v["expected"]["padded_hex"])
    assert crypter.pad(message) == padded
    assert crypter.unpad(padded) == message


@pytest.mark.parametrize("v", of("padded_cbor_map"))
def test_padded_cbor_map(v: dict[str, Any]) -> None:
    i, exp = v["inputs"], v["expected"]
    if "cbor_hex" in i:
        cbor = h(i["cbor_hex"])
    else:
        cbor = cbor2.dumps({1: bytes(512)}, canonical=True)
        assert cbor.hex().startswith(i["cbor_hex_prefix"]) and len(cbor) == i["cbor_len"]
    padded = messages.pad_revision0(cbor)
    assert len(padded) == exp["length"]
    if "padded_hex" in exp:
        assert padded == h(exp["padded_hex"])
    else:
        assert padded[-2:] == h(exp["padding_u16le_hex"])
    assert messages.unpad_revision0(padded) == cbor


@pytest.mark.parametrize("v", of("post_handshake_decode"))
def test_post_handshake_decode(v: dict[str, Any]) -> None:
    data, exp = h(v["inputs"]["plaintext_hex"]), v["expected"]
    assert sorted(cbor2.loads(data)) == exp["outer_keys"]
    message = messages.PostHandshake.from_cbor(data)
    assert message.linking_info == exp["getinfo"]["linking_info"]
    info = cbor2.loads(message.get_info)
    gi = exp["getinfo"]
    assert info[1] == gi["versions"]
    assert info.get(2) == gi.get("extensions")
    assert info[3] == h(gi["aaguid"])
    assert info[4] == gi["options"]
    assert info[9] == gi["transports"]
    assert message.to_cbor() == data


@pytest.mark.parametrize("v", of("crypter_session"))
def test_crypter_session(v: dict[str, Any]) -> None:
    i, exp = v["inputs"], v["expected"]
    handshake = BY_NAME[i["handshake_vector"]]["expected"]
    assert i["initiator_write_key_hex"] == handshake["initiator_write_key_hex"]
    assert i["responder_write_key_hex"] == handshake["initiator_read_key_hex"]
    r_key, i_key = h(i["responder_write_key_hex"]), h(i["initiator_write_key_hex"])
    phone = crypter.Crypter(read_key=i_key, write_key=r_key)
    desktop = crypter.Crypter(read_key=r_key, write_key=i_key)
    post = phone.encrypt(h(i["post_handshake_plaintext_hex"]))
    assert post == h(exp["post_handshake_ciphertext_hex (responder seq 0)"])
    assert messages.PostHandshake.from_cbor(desktop.decrypt(post)).get_info
    for frame_hex, ct_hex in zip(
        i["initiator_frames_hex"], exp["initiator_ciphertexts_hex (seq 0, 1)"], strict=True
    ):
        ciphertext = desktop.encrypt(h(frame_hex))
        assert ciphertext == h(ct_hex)
        assert phone.decrypt(ciphertext) == h(frame_hex)
    # replaying a message fails: each direction's counter has moved on
    with pytest.raises(crypter.CrypterError):
        phone.decrypt(h(exp["initiator_ciphertexts_hex (seq 0, 1)"][0]))


@pytest.mark.parametrize("v", of("tunnel_frame"))
def test_tunnel_frame(v: dict[str, Any]) -> None:
    data, exp = h(v["inputs"]["bytes_hex"]), v["expected"]
    frame = messages.Frame.from_bytes(data)
    assert frame.type == exp["message_type"]
    assert frame.payload == h(exp["payload_hex"])
    assert frame.to_bytes() == data


@pytest.mark.parametrize("v", of("tunnel_rule"))
def test_tunnel_rule(v: dict[str, Any]) -> None:
    exp = v["expected"]
    assert {str(t.value) for t in messages.MessageType} == set(exp["types"])
    assert domains.SUBPROTOCOL == exp["subprotocol"]
    assert domains.ROUTING_ID_HEADER in exp["routing_id_header"]
    assert messages.SHUTDOWN == b"\x00"
    assert messages.ctap_frame(b"\x04") == b"\x01\x04"

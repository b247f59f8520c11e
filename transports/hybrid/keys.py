"""Key derivation for hybrid: everything comes from the 16-byte QR secret via HKDF-SHA256.

info is the purpose as a u32 little-endian; salt is empty except for the PSK (salt = the
16-byte decrypted advert) and a paired device's EID key (salt = the client nonce).
"""

from __future__ import annotations

import hmac
from enum import IntEnum
from hashlib import sha256

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class Purpose(IntEnum):
    EID_KEY = 1
    TUNNEL_ID = 2
    PSK = 3
    PAIRED_SECRET = 4
    IDENTITY_KEY_SEED = 5
    PER_CONTACT_ID_SECRET = 6


LENGTHS = {Purpose.EID_KEY: 64, Purpose.TUNNEL_ID: 16, Purpose.PSK: 32}


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt or None, info).derive(ikm)


def derive(secret: bytes, salt: bytes, purpose: int, length: int | None = None) -> bytes:
    """HKDF-SHA256(IKM=secret, salt, info=u32le(purpose)); length defaults per purpose."""
    if length is None:
        length = LENGTHS.get(Purpose(purpose), 32)
    return hkdf_sha256(secret, salt, purpose.to_bytes(4, "little"), length)


def eid_key(secret: bytes) -> bytes:
    return derive(secret, b"", Purpose.EID_KEY, 64)


def tunnel_id(secret: bytes) -> bytes:
    return derive(secret, b"", Purpose.TUNNEL_ID, 16)


def psk(secret: bytes, advert_plaintext: bytes) -> bytes:
    """The Noise PSK; salt is the 16-byte *decrypted* advert, not the 20 bytes on the air."""
    return derive(secret, advert_plaintext, Purpose.PSK, 32)


def p256_from_seed(seed: bytes) -> ec.EllipticCurvePrivateKey:
    """Deterministic P-256 key from a seed, as BoringSSL's EC_KEY_derive_from_secret.

    Chromium derives its QR identity key this way from a stored 32-byte seed.
    """
    wide = hkdf_sha256(seed, b"", b"derive EC key P-256", 48)
    scalar = int.from_bytes(wide, "big") % P256_ORDER
    return ec.derive_private_key(scalar, ec.SECP256R1())


def uncompressed(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def ecdh(private: ec.EllipticCurvePrivateKey, public: ec.EllipticCurvePublicKey) -> bytes:
    return private.exchange(ec.ECDH(), public)


def pairing_signature(
    authenticator_identity: ec.EllipticCurvePrivateKey,
    client_identity: ec.EllipticCurvePublicKey,
    handshake_hash: bytes,
) -> bytes:
    """Proves the phone's linking info came from the handshake it sent it over."""
    shared = ecdh(authenticator_identity, client_identity)
    return hmac.new(shared, handshake_hash, sha256).digest()

"""The 20-byte BLE advert (EID) that tells the desktop where the phone's tunnel is.

Plaintext (16 bytes) = 0x00 ‖ nonce[10] ‖ routing id[3] ‖ tunnel-server id u16le; on the air:
AES-256 of that one block under eid_key[:32] ‖ HMAC-SHA256(eid_key[32:], ciphertext)[:4].
Broadcast as service data under 0xFFF9 (FIDO) or 0xFDE2 (Google, older Chromium / iOS 16).
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from hashlib import sha256

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from transports.hybrid.domains import is_known_domain_id

ADVERT_LEN = 20
PLAINTEXT_LEN = 16
TAG_LEN = 4
SERVICE_UUID_FIDO = 0xFFF9
SERVICE_UUID_GOOGLE = 0xFDE2


class AdvertError(ValueError):
    """An advert that is not ours, or is malformed."""


@dataclass(frozen=True)
class Eid:
    nonce: bytes  # 10 random bytes
    routing_id: bytes  # 3 bytes chosen by the tunnel server
    tunnel_server_id: int  # 0, 1 or a hashed-domain id >= 256

    def to_bytes(self) -> bytes:
        if len(self.nonce) != 10 or len(self.routing_id) != 3:
            raise ValueError("nonce must be 10 bytes and routing id 3 bytes")
        return b"\x00" + self.nonce + self.routing_id + self.tunnel_server_id.to_bytes(2, "little")

    @classmethod
    def from_bytes(cls, plaintext: bytes) -> Eid:
        if len(plaintext) != PLAINTEXT_LEN:
            raise AdvertError("EID plaintext must be 16 bytes")
        if plaintext[0] != 0:
            raise AdvertError("reserved byte 0 != 0")
        server_id = int.from_bytes(plaintext[14:16], "little")
        if not is_known_domain_id(server_id):
            raise AdvertError(f"unknown tunnel server id {server_id}")
        return cls(plaintext[1:11], plaintext[11:14], server_id)

    @classmethod
    def new(cls, routing_id: bytes, tunnel_server_id: int = 0) -> Eid:
        return cls(os.urandom(10), routing_id, tunnel_server_id)


def _aes(key: bytes) -> Cipher:
    return Cipher(algorithms.AES(key[:32]), modes.ECB())  # one block only: ECB is exact here


def encrypt(eid_key: bytes, plaintext: bytes) -> bytes:
    if len(plaintext) != PLAINTEXT_LEN:
        raise ValueError("EID plaintext must be 16 bytes")
    encryptor = _aes(eid_key).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    tag = hmac.new(eid_key[32:64], ciphertext, sha256).digest()[:TAG_LEN]
    return ciphertext + tag


def decrypt(eid_key: bytes, advert: bytes) -> bytes:
    """Checks the tag, then decrypts; bytes past 20 (a CTAP 2.3 CBOR suffix) are ignored."""
    if len(advert) < ADVERT_LEN:
        raise AdvertError("advert shorter than 20 bytes")
    ciphertext, tag = advert[:PLAINTEXT_LEN], advert[PLAINTEXT_LEN:ADVERT_LEN]
    expected = hmac.new(eid_key[32:64], ciphertext, sha256).digest()[:TAG_LEN]
    if not hmac.compare_digest(tag, expected):
        raise AdvertError("advert tag mismatch")
    decryptor = _aes(eid_key).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()


def open_advert(eid_key: bytes, advert: bytes) -> tuple[bytes, Eid]:
    """Decrypt and parse: the 16-byte plaintext (PSK salt) and its fields."""
    plaintext = decrypt(eid_key, advert)
    return plaintext, Eid.from_bytes(plaintext)

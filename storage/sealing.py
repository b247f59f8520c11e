"""Sealing key material under the device secret.

Private keys are never stored or carried in the clear: they are AES-256-GCM sealed under
keys derived (HKDF-SHA256) from the 32-byte device secret, with an AAD that binds each
blob to its purpose (and a credential id to its rpIdHash).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

NONCE_LEN = 12
TAG_LEN = 16


class SealError(Exception):
    """A sealed blob failed authentication (wrong device, tampered, or wrong RP)."""


def derive(secret: bytes, purpose: str, length: int = 32) -> bytes:
    return HKDF(hashes.SHA256(), length, salt=None, info=b"fido-emu/" + purpose.encode()).derive(
        secret
    )


class Sealer:
    """AES-GCM under one purpose-specific key."""

    def __init__(self, secret: bytes, purpose: str) -> None:
        self._aead = AESGCM(derive(secret, purpose))

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes = b"") -> bytes:
        if len(blob) < NONCE_LEN + TAG_LEN:
            raise SealError("too short")
        try:
            return self._aead.decrypt(blob[:NONCE_LEN], blob[NONCE_LEN:], aad)
        except Exception as e:  # InvalidTag
            raise SealError("authentication failed") from e


class DeviceKeys:
    """Every key the core derives from the device secret, in one place."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("device secret must be 32 bytes")
        self.key_handles = Sealer(secret, "key-handle")
        self.records = Sealer(secret, "record")
        self.state = Sealer(secret, "state")
        self._cred_random = derive(secret, "cred-random")
        self._large_blob = derive(secret, "large-blob-key")

    def cred_random(self, credential_id: bytes, with_uv: bool) -> bytes:
        """hmac-secret CredRandom: stable per credential, distinct with and without UV."""
        return hmac.new(
            self._cred_random, (b"\x01" if with_uv else b"\x00") + credential_id, hashlib.sha256
        ).digest()

    def large_blob_key(self, credential_id: bytes) -> bytes:
        return hmac.new(self._large_blob, credential_id, hashlib.sha256).digest()


@lru_cache(maxsize=8)
def passphrase_key(passphrase: str, salt: bytes) -> bytes:
    """Key-file wrapping key from a passphrase (scrypt, interactive-strength parameters)."""
    return Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(passphrase.encode())

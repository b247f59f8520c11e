"""Post-handshake encryption of tunnel messages (one counter per direction).

Current Chromium ("new construction", standard Noise): AES-256-GCM, nonce = 8 zero bytes ‖
u32 big-endian counter, no AAD. Older Chromium ("old construction"): nonce = u32 little-endian
counter ‖ 8 zero bytes, AAD = 0x02. webauthn-rs starts old and switches to new when the first
decrypt fails; ``detect`` does the same here for interop with old peers.
Plaintexts are padded: (len + 1) rounded up to a multiple of 32, last byte = zero-byte count.
"""

from __future__ import annotations

from enum import Enum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PAD_GRANULARITY = 32
MAX_SEQUENCE = (1 << 24) - 1  # Chromium refuses to go further


class Construction(Enum):
    NEW = "new"
    OLD = "old"


class CrypterError(ValueError):
    """A tunnel message that failed to decrypt or unpad."""


def pad(message: bytes) -> bytes:
    padded_len = -(-(len(message) + 1) // PAD_GRANULARITY) * PAD_GRANULARITY
    zeros = padded_len - len(message) - 1
    return message + b"\x00" * zeros + bytes([zeros])


def unpad(padded: bytes) -> bytes:
    if not padded:
        raise CrypterError("empty padded message")
    zeros = padded[-1]
    if zeros + 1 > len(padded):
        raise CrypterError("bad padding")
    return padded[: len(padded) - zeros - 1]


def nonce(seq: int, construction: Construction = Construction.NEW) -> bytes:
    if construction is Construction.NEW:
        return b"\x00" * 8 + seq.to_bytes(4, "big")
    return seq.to_bytes(4, "little") + b"\x00" * 8


def _aad(construction: Construction) -> bytes | None:
    return None if construction is Construction.NEW else b"\x02"


class Crypter:
    """Encrypts what we send with ``write_key`` and decrypts what we get with ``read_key``."""

    def __init__(
        self,
        read_key: bytes,
        write_key: bytes,
        construction: Construction = Construction.NEW,
        *,
        detect: bool = False,
    ) -> None:
        self._read = AESGCM(read_key)
        self._write = AESGCM(write_key)
        self.construction = construction
        self._detect = detect
        self.read_seq = 0
        self.write_seq = 0

    def encrypt(self, message: bytes) -> bytes:
        if self.write_seq > MAX_SEQUENCE:
            raise CrypterError("sequence number exhausted")
        c = self.construction
        out = self._write.encrypt(nonce(self.write_seq, c), pad(message), _aad(c))
        self.write_seq += 1
        return out

    def decrypt(self, ciphertext: bytes) -> bytes:
        if self.read_seq > MAX_SEQUENCE:
            raise CrypterError("sequence number exhausted")
        choices = [self.construction]
        if self._detect and self.read_seq == 0:
            other = Construction.OLD if self.construction is Construction.NEW else Construction.NEW
            choices.append(other)
        for construction in choices:
            try:
                padded = self._read.decrypt(
                    nonce(self.read_seq, construction), ciphertext, _aad(construction)
                )
            except InvalidTag:
                continue
            self.construction = construction
            self._detect = False
            self.read_seq += 1
            return unpad(padded)
        raise CrypterError("tunnel message failed to decrypt")

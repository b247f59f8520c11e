"""The two Noise handshakes hybrid uses, over P-256 / AES-256-GCM / SHA-256 (``cryptography``).

- ``Noise_KNpsk0``: QR-initiated. The desktop (initiator) has a static identity whose public key
  the phone (responder) read from the QR code. Prologue 0x01.
- ``Noise_NKpsk0``: linked/paired. The phone (responder) has the static identity the desktop
  stored earlier. Prologue 0x00.

The 31-byte protocol name, NUL-padded to 32, *is* the initial h and ck (it is not hashed, as the
Noise spec says for names of at most HASHLEN bytes). Each message is e(65) ‖ tag(16).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from transports.hybrid.keys import ecdh, hkdf_sha256, uncompressed

POINT_LEN = 65
TAG_LEN = 16
MESSAGE_LEN = POINT_LEN + TAG_LEN


class Pattern(Enum):
    KN = (b"Noise_KNpsk0_P256_AESGCM_SHA256", b"\x01")
    NK = (b"Noise_NKpsk0_P256_AESGCM_SHA256", b"\x00")

    @property
    def protocol_name(self) -> bytes:
        return self.value[0]

    @property
    def prologue(self) -> bytes:
        return self.value[1]


class HandshakeError(ValueError):
    """The peer's handshake message did not authenticate or was malformed."""


class SymmetricState:
    """Noise's h/ck/k bookkeeping (handshake phase only)."""

    def __init__(self, protocol_name: bytes) -> None:
        if len(protocol_name) > 32:
            raise ValueError("protocol names longer than 32 bytes are hashed; not used here")
        self.h = protocol_name.ljust(32, b"\x00")
        self.ck = self.h
        self.k: bytes | None = None
        self.n = 0

    def mix_hash(self, data: bytes) -> None:
        self.h = sha256(self.h + data).digest()

    def mix_key(self, ikm: bytes) -> None:
        out = hkdf_sha256(ikm, self.ck, b"", 64)
        self.ck, self.k, self.n = out[:32], out[32:], 0

    def mix_key_and_hash(self, ikm: bytes) -> None:
        out = hkdf_sha256(ikm, self.ck, b"", 96)
        self.ck = out[:32]
        self.mix_hash(out[32:64])
        self.k, self.n = out[64:], 0

    def _nonce(self) -> bytes:
        # Standard Noise: 4 zero bytes ‖ u64 BE. Chromium puts a u32 BE in the first four
        # bytes instead, but n is always 0 in these handshakes, so both agree.
        return b"\x00" * 4 + self.n.to_bytes(8, "big")

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        assert self.k is not None
        ciphertext = AESGCM(self.k).encrypt(self._nonce(), plaintext, self.h)
        self.n += 1
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        assert self.k is not None
        try:
            plaintext = AESGCM(self.k).decrypt(self._nonce(), ciphertext, self.h)
        except InvalidTag as exc:
            raise HandshakeError("handshake message failed to authenticate") from exc
        self.n += 1
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[bytes, bytes]:
        out = hkdf_sha256(b"", self.ck, b"", 64)
        return out[:32], out[32:]


@dataclass(frozen=True)
class HandshakeResult:
    """Keys for :class:`transports.hybrid.crypter.Crypter` and the transcript hash."""

    read_key: bytes
    write_key: bytes
    handshake_hash: bytes


def _generate() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _load_point(data: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
    except ValueError as exc:
        raise HandshakeError("invalid ephemeral point") from exc


def _start(
    pattern: Pattern, static_public: ec.EllipticCurvePublicKey, psk: bytes
) -> SymmetricState:
    if len(psk) != 32:
        raise ValueError("PSK must be 32 bytes")
    state = SymmetricState(pattern.protocol_name)
    state.mix_hash(pattern.prologue)
    state.mix_hash(uncompressed(static_public))  # pre-message: the one known static key
    state.mix_key_and_hash(psk)
    return state


class Initiator:
    """The desktop's side. KN: pass ``identity`` (our QR key). NK: pass ``peer_identity``."""

    def __init__(
        self,
        psk: bytes,
        *,
        identity: ec.EllipticCurvePrivateKey | None = None,
        peer_identity: ec.EllipticCurvePublicKey | None = None,
        ephemeral: ec.EllipticCurvePrivateKey | None = None,
    ) -> None:
        if (identity is None) == (peer_identity is None):
            raise ValueError("give exactly one of identity (KN) or peer_identity (NK)")
        self.pattern = Pattern.KN if identity is not None else Pattern.NK
        self.identity = identity
        self.peer_identity = peer_identity
        self.ephemeral = ephemeral or _generate()
        static = identity.public_key() if identity is not None else peer_identity
        assert static is not None
        self._state = _start(self.pattern, static, psk)

    def start(self) -> bytes:
        """Message 1: -> psk, e (, es for NK)."""
        state = self._state
        e_pub = uncompressed(self.ephemeral.public_key())
        state.mix_hash(e_pub)
        state.mix_key(e_pub)
        if self.peer_identity is not None:
            state.mix_key(ecdh(self.ephemeral, self.peer_identity))
        return e_pub + state.encrypt_and_hash(b"")

    def finish(self, response: bytes) -> HandshakeResult:
        """Message 2: <- e, ee (, se for KN)."""
        if len(response) != MESSAGE_LEN:
            raise HandshakeError(f"handshake response must be {MESSAGE_LEN} bytes")
        state = self._state
        e_peer_bytes = response[:POINT_LEN]
        e_peer = _load_point(e_peer_bytes)
        state.mix_hash(e_peer_bytes)
        state.mix_key(e_peer_bytes)
        state.mix_key(ecdh(self.ephemeral, e_peer))
        if self.identity is not None:
            state.mix_key(ecdh(self.identity, e_peer))
        if state.decrypt_and_hash(response[POINT_LEN:]) != b"":
            raise HandshakeError("unexpected handshake payload")
        k1, k2 = state.split()
        return HandshakeResult(read_key=k2, write_key=k1, handshake_hash=state.h)


class Responder:
    """The phone's side. KN: pass ``peer_identity`` (from the QR). NK: pass ``identity``."""

    def __init__(
        self,
        psk: bytes,
        *,
        identity: ec.EllipticCurvePrivateKey | None = None,
        peer_identity: ec.EllipticCurvePublicKey | None = None,
        ephemeral: ec.EllipticCurvePrivateKey | None = None,
    ) -> None:
        if (identity is None) == (peer_identity is None):
            raise ValueError("give exactly one of peer_identity (KN) or identity (NK)")
        self.pattern = Pattern.KN if peer_identity is not None else Pattern.NK
        self.identity = identity
        self.peer_identity = peer_identity
        self.ephemeral = ephemeral or _generate()
        static = peer_identity if peer_identity is not None else identity.public_key()
        self._state = _start(self.pattern, static, psk)

    def respond(self, message: bytes) -> tuple[bytes, HandshakeResult]:
        """Process message 1, build message 2, and split."""
        if len(message) != MESSAGE_LEN:
            raise HandshakeError(f"handshake message must be {MESSAGE_LEN} bytes")
        state = self._state
        e_peer_bytes = message[:POINT_LEN]
        e_peer = _load_point(e_peer_bytes)
        state.mix_hash(e_peer_bytes)
        state.mix_key(e_peer_bytes)
        if self.identity is not None:
            state.mix_key(ecdh(self.identity, e_peer))
        if state.decrypt_and_hash(message[POINT_LEN:]) != b"":
            raise HandshakeError("unexpected handshake payload")
        e_pub = uncompressed(self.ephemeral.public_key())
        state.mix_hash(e_pub)
        state.mix_key(e_pub)
        state.mix_key(ecdh(self.ephemeral, e_peer))
        if self.peer_identity is not None:
            state.mix_key(ecdh(self.ephemeral, self.peer_identity))
        response = e_pub + state.encrypt_and_hash(b"")
        k1, k2 = state.split()
        return response, HandshakeResult(read_key=k1, write_key=k2, handshake_hash=state.h)

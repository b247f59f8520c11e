"""The hybrid QR code: ``FIDO:/`` + decimal digits carrying a small CBOR map.

Digits: every 7 bytes are read as a little-endian integer and written as 17 zero-padded decimal
digits (a QR code's numeric mode is denser than its byte mode); a tail of 1..6 bytes uses
3, 5, 8, 10, 13 or 15 digits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PREFIX = "FIDO:/"
CHUNK_BYTES = 7
CHUNK_DIGITS = 17
#: digits used by a tail chunk of n bytes (index n); 0 bytes -> 0 digits.
PARTIAL_CHUNK_DIGITS = (0, 3, 5, 8, 10, 13, 15)
_ASCII_DIGITS = frozenset("0123456789")

#: Current Chromium advertises two assigned tunnel-server domains.
DEFAULT_KNOWN_DOMAINS = 2
REQUEST_GET_ASSERTION = "ga"
REQUEST_MAKE_CREDENTIAL = "mc"


class QrError(ValueError):
    """A QR string or payload that a real client would reject."""


def bytes_to_digits(data: bytes) -> str:
    out = []
    for offset in range(0, len(data), CHUNK_BYTES):
        chunk = data[offset : offset + CHUNK_BYTES]
        width = CHUNK_DIGITS if len(chunk) == CHUNK_BYTES else PARTIAL_CHUNK_DIGITS[len(chunk)]
        out.append(str(int.from_bytes(chunk, "little")).zfill(width))
    return "".join(out)


def digits_to_bytes(digits: str) -> bytes:
    """Inverse of :func:`bytes_to_digits`; rejects non-ASCII digits, bad lengths, overflow."""
    if not set(digits) <= _ASCII_DIGITS:
        raise QrError("non-digit")
    full, tail = divmod(len(digits), CHUNK_DIGITS)
    if tail not in PARTIAL_CHUNK_DIGITS:
        raise QrError("invalid length")
    out = bytearray()
    for index in range(full + (1 if tail else 0)):
        piece = digits[index * CHUNK_DIGITS : (index + 1) * CHUNK_DIGITS]
        size = CHUNK_BYTES if len(piece) == CHUNK_DIGITS else PARTIAL_CHUNK_DIGITS.index(len(piece))
        value = int(piece)
        if value >= 1 << (8 * size):
            raise QrError("out of range")
        out += value.to_bytes(size, "little")
    return bytes(out)


def compress_public_key(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


def load_public_key(encoded: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 point from X9.62 (compressed or not); QrError if it is not on the curve."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), encoded)
    except ValueError as exc:
        raise QrError("invalid P-256 point") from exc


@dataclass
class QrPayload:
    """The CBOR map in the QR code (keys 0..5; anything else kept verbatim in ``extra``).

    Key 6 is disputed (webauthn-rs: bool "supports non-discoverable mc"; libwebauthn / CTAP 2.3:
    array of transport channels), so it stays raw in ``extra``.
    """

    public_key: bytes  # 0: compressed P-256 identity key of the desktop
    secret: bytes  # 1: 16-byte QR secret
    known_domains: int | None = None  # 2: how many assigned tunnel domains the desktop knows
    timestamp: int | None = None  # 3: seconds since the epoch
    supports_linking: bool | None = None  # 4: state-assisted linking offered
    request_type: str | None = None  # 5: as sent; see :attr:`operation`
    extra: dict[int, Any] = field(default_factory=dict)

    @property
    def operation(self) -> str:
        """The operation, "ga" or "mc": a missing or unknown request type means getAssertion."""
        if self.request_type == REQUEST_MAKE_CREDENTIAL:
            return REQUEST_MAKE_CREDENTIAL
        return REQUEST_GET_ASSERTION

    @property
    def num_known_domains(self) -> int:
        return self.known_domains or 0

    def identity_key(self) -> ec.EllipticCurvePublicKey:
        return load_public_key(self.public_key)

    def identity_uncompressed(self) -> bytes:
        return self.identity_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def to_cbor(self) -> bytes:
        body: dict[int, Any] = {0: self.public_key, 1: self.secret}
        if self.known_domains is not None:
            body[2] = self.known_domains
        if self.timestamp is not None:
            body[3] = self.timestamp
        if self.supports_linking is not None:
            body[4] = self.supports_linking
        if self.request_type is not None:
            body[5] = self.request_type
        body.update(self.extra)
        return cbor2.dumps(body, canonical=True)

    def to_url(self) -> str:
        return PREFIX + bytes_to_digits(self.to_cbor())

    @classmethod
    def from_cbor(cls, data: bytes) -> QrPayload:
        try:
            body = cbor2.loads(data)
        except Exception as exc:  # cbor2 raises several types on garbage
            raise QrError("invalid CBOR") from exc
        if not isinstance(body, dict):
            raise QrError("CBOR is not a map")
        public_key, secret = body.get(0), body.get(1)
        if not isinstance(public_key, bytes) or len(public_key) != 33:
            raise QrError("key 0 must be a 33-byte compressed P-256 point")
        load_public_key(public_key)
        if not isinstance(secret, bytes) or len(secret) != 16:
            raise QrError("key 1 must be a 16-byte secret")
        known = body.get(2)
        if known is not None and (not _is_int(known) or known < 0):
            raise QrError("key 2 must be an unsigned integer")
        timestamp = body.get(3)
        if timestamp is not None and not _is_int(timestamp):
            raise QrError("key 3 must be an integer")
        linking = body.get(4)
        if linking is not None and not isinstance(linking, bool):
            raise QrError("key 4 must be a boolean")
        request_type = body.get(5)
        if request_type is not None and not isinstance(request_type, str):
            raise QrError("key 5 must be a string")
        extra = {k: v for k, v in body.items() if k not in (0, 1, 2, 3, 4, 5)}
        return cls(public_key, secret, known, timestamp, linking, request_type, extra)

    @classmethod
    def from_url(cls, url: str) -> QrPayload:
        if url[: len(PREFIX)].upper() != PREFIX:
            raise QrError("bad prefix")
        digits = url[len(PREFIX) :]
        if not digits:
            raise QrError("empty payload")
        return cls.from_cbor(digits_to_bytes(digits))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def new_payload(
    identity: ec.EllipticCurvePrivateKey,
    secret: bytes,
    *,
    request_type: str = REQUEST_GET_ASSERTION,
    supports_linking: bool = False,
    known_domains: int = DEFAULT_KNOWN_DOMAINS,
    timestamp: int | None = None,
) -> QrPayload:
    """The payload a desktop shows, laid out like current Chromium's (keys 0..5)."""
    return QrPayload(
        public_key=compress_public_key(identity.public_key()),
        secret=secret,
        known_domains=known_domains,
        timestamp=int(time.time()) if timestamp is None else timestamp,
        supports_linking=supports_linking,
        request_type=request_type,
    )


def render(url: str, path: str | None = None, *, scale: int = 4) -> str:
    """Terminal text of the QR code, and an image file too when ``path`` is given (segno)."""
    try:
        import segno
    except ImportError as exc:  # optional extra: pip install fido-emulator[hybrid]
        raise RuntimeError("rendering QR codes needs the 'segno' package") from exc
    # Upper case keeps the whole string in QR alphanumeric mode, like browsers do.
    qr = segno.make(url.upper(), error="l", micro=False)
    if path is not None:
        qr.save(path, scale=scale)
    import io

    buffer = io.StringIO()
    qr.terminal(out=buffer, compact=True)
    return buffer.getvalue()

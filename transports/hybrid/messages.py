"""What travels inside the encrypted tunnel once the handshake is done.

First the phone sends the post-handshake message, CBOR {1: getInfo bytes, 2: linking info
(optional), 3: features (optional, e.g. ["ctap", "dc"])}. After that every message (protocol
revision >= 1) is a type byte + payload: 0 shutdown, 1 CTAP (command byte + CBOR one way, status
byte + CBOR back), 2 update (new linking info), 3 JSON (Chromium only).
Parsing this framing is protocol plumbing; the CTAP CBOR inside stays opaque.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import cbor2

REVISION0_GRANULARITY = 512


class MessageType(IntEnum):
    SHUTDOWN = 0
    CTAP = 1
    UPDATE = 2
    JSON = 3


class MessageError(ValueError):
    """A tunnel message that does not follow the framing."""


@dataclass(frozen=True)
class Frame:
    type: int
    payload: bytes = b""

    def to_bytes(self) -> bytes:
        return bytes([self.type]) + self.payload

    @classmethod
    def from_bytes(cls, data: bytes) -> Frame:
        if not data:
            raise MessageError("empty tunnel message")
        return cls(data[0], data[1:])


def ctap_frame(message: bytes) -> bytes:
    return Frame(MessageType.CTAP, message).to_bytes()


SHUTDOWN = Frame(MessageType.SHUTDOWN).to_bytes()


@dataclass
class PostHandshake:
    get_info: bytes  # the authenticatorGetInfo response CBOR, without the status byte
    linking_info: dict[Any, Any] | None = None
    features: list[str] | None = None
    extra: dict[int, Any] = field(default_factory=dict)

    def to_cbor(self) -> bytes:
        body: dict[int, Any] = {1: self.get_info}
        if self.linking_info is not None:
            body[2] = self.linking_info
        if self.features is not None:
            body[3] = self.features
        body.update(self.extra)
        return cbor2.dumps(body, canonical=True)

    @classmethod
    def from_cbor(cls, data: bytes) -> PostHandshake:
        try:
            body = cbor2.loads(data)
        except Exception as exc:
            raise MessageError("post-handshake message is not CBOR") from exc
        if not isinstance(body, dict) or not isinstance(body.get(1), bytes):
            raise MessageError("post-handshake message lacks getInfo (key 1)")
        linking = body.get(2)
        if linking is not None and not isinstance(linking, dict):
            raise MessageError("linking info (key 2) must be a map")
        features = body.get(3)
        if features is not None and not isinstance(features, list):
            raise MessageError("features (key 3) must be an array")
        # key 0 is padding in some implementations (libwebauthn accepts it): ignore it.
        extra = {k: v for k, v in body.items() if k not in (0, 1, 2, 3)}
        return cls(body[1], linking, features, extra)


def pad_revision0(cbor: bytes) -> bytes:
    """Revision-0 padding of a CBOR map: zeros then a u16le zero count, to a multiple of 512."""
    total = -(-(len(cbor) + 2) // REVISION0_GRANULARITY) * REVISION0_GRANULARITY
    zeros = total - len(cbor) - 2
    return cbor + b"\x00" * zeros + zeros.to_bytes(2, "little")


def unpad_revision0(padded: bytes) -> bytes:
    if len(padded) < 2:
        raise MessageError("too short for revision-0 padding")
    zeros = int.from_bytes(padded[-2:], "little")
    if zeros + 2 > len(padded):
        raise MessageError("bad revision-0 padding")
    return padded[: len(padded) - zeros - 2]

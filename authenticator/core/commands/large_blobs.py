"""authenticatorLargeBlobs (0x0C), CTAP 2.1 §6.10.

The serialized large-blob array (CBOR array ‖ LEFT(SHA-256(array), 16)) is one opaque
state blob in the store. Writes arrive in fragments; they collect in a volatile pending
buffer and replace the stored array only once complete and integrity-checked, so a
failed or abandoned write never leaves a half-written array behind.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from hashlib import sha256
from typing import TYPE_CHECKING

from authenticator.core.errors import ERR, CtapStatusError
from authenticator.core.params import opt_bytes, opt_int
from authenticator.core.pin_state import PERM_LBW, PinState

if TYPE_CHECKING:
    from authenticator.core.device import Call, Device

STATE = "largeBlobs.array"
# the empty CBOR array h'80' followed by LEFT(SHA-256(h'80'), 16)
INITIAL = b"\x80" + sha256(b"\x80").digest()[:16]


@dataclass
class PendingWrite:
    """A write in progress: the announced total length and the fragments so far."""

    expected_length: int
    data: bytearray = field(default_factory=bytearray)


def read_array(dev: Device) -> bytes:
    return dev.store.get_state(STATE) or INITIAL


def max_fragment(dev: Device) -> int:
    return dev.config.max_msg_size - 64


def _uint(params: dict, key: int) -> int | None:
    value = opt_int(params, key)
    if value is not None and value < 0:
        raise CtapStatusError(ERR.INVALID_PARAMETER, f"{key} must not be negative")
    return value


async def handle(dev: Device, params: dict, call: Call) -> dict | None:
    if not dev.config.resident_keys:
        raise CtapStatusError(ERR.INVALID_COMMAND, "largeBlobs not offered")
    get = _uint(params, 0x01)
    fragment = opt_bytes(params, 0x02)
    offset = _uint(params, 0x03)
    length = _uint(params, 0x04)
    if offset is None:
        raise CtapStatusError(ERR.INVALID_PARAMETER, "offset missing")
    if (get is None) == (fragment is None):
        raise CtapStatusError(ERR.INVALID_PARAMETER, "exactly one of get and set")

    if get is not None:
        if length is not None:
            raise CtapStatusError(ERR.INVALID_PARAMETER, "length is only for set")
        if get > max_fragment(dev):
            raise CtapStatusError(ERR.INVALID_LENGTH, "get exceeds maxFragmentLength")
        array = read_array(dev)
        if offset > len(array):
            raise CtapStatusError(ERR.INVALID_PARAMETER, "offset beyond the array")
        return {0x01: array[offset : offset + get]}

    assert fragment is not None
    if len(fragment) > max_fragment(dev):
        raise CtapStatusError(ERR.INVALID_LENGTH, "set exceeds maxFragmentLength")
    pending = dev.large_blob_pending
    if offset == 0:
        if length is None:
            raise CtapStatusError(ERR.INVALID_PARAMETER, "length missing at offset 0")
        if length > dev.config.max_large_blob_array:
            raise CtapStatusError(ERR.LARGE_BLOB_STORAGE_FULL)
        if length < 17:
            raise CtapStatusError(ERR.INVALID_PARAMETER, "array shorter than its hash")
        expected = length
    else:
        if length is not None:
            raise CtapStatusError(ERR.INVALID_PARAMETER, "length only at offset 0")
        if pending is None or offset != len(pending.data):
            raise CtapStatusError(ERR.INVALID_SEQ, "offset is not the next expected one")
        expected = pending.expected_length

    if dev.pin.is_set or dev.settings.always_uv:
        pin_param = opt_bytes(params, 0x05)
        if pin_param is None:
            raise CtapStatusError(ERR.PUAT_REQUIRED)
        protocol = PinState.protocol(params, 0x06)
        message = b"\xff" * 32 + b"\x0c\x00" + struct.pack("<I", offset) + sha256(fragment).digest()
        dev.pin.verify(protocol, pin_param, message, PERM_LBW, None)

    if offset + len(fragment) > expected:
        raise CtapStatusError(ERR.INVALID_PARAMETER, "fragment runs past the announced length")
    if offset == 0:
        pending = dev.large_blob_pending = PendingWrite(expected)
    assert pending is not None
    pending.data += fragment
    if len(pending.data) < pending.expected_length:
        return None
    dev.large_blob_pending = None
    data = bytes(pending.data)
    if sha256(data[:-16]).digest()[:16] != data[-16:]:
        raise CtapStatusError(ERR.INTEGRITY_FAILURE)
    dev.store.set_state(STATE, data)
    return None

"""FIDO BLE framing, free of I/O: split messages into control-point fragments and put them back.

Initial fragment: CMD(1, high bit set) ‖ length u16 big-endian ‖ data[:cpl-3];
continuation: SEQ(0x00..0x7F, wrapping) ‖ data[:cpl-1]; cpl = fidoControlPointLength (20..512).
The reassembler never raises on bad input: it answers with the BLE ERROR code the spec asks for,
and always returns to a clean state, so the next well-formed message goes through.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum

MIN_CONTROL_POINT_LENGTH = 20
MAX_CONTROL_POINT_LENGTH = 512
MAX_LENGTH_FIELD = 0xFFFF
SEQ_MODULUS = 0x80
DEFAULT_TIMEOUT = 3.0  # seconds between fragments before ERR_REQ_TIMEOUT


class BleCommand(IntEnum):
    PING = 0x81
    KEEPALIVE = 0x82
    MSG = 0x83
    CANCEL = 0xBE
    ERROR = 0xBF


class BleError(IntEnum):
    INVALID_CMD = 0x01
    INVALID_PAR = 0x02
    INVALID_LEN = 0x03
    INVALID_SEQ = 0x04
    REQ_TIMEOUT = 0x05
    BUSY = 0x06
    OTHER = 0x7F


#: What a client may send to an authenticator (KEEPALIVE and ERROR only flow the other way).
CLIENT_COMMANDS = frozenset({BleCommand.PING, BleCommand.MSG, BleCommand.CANCEL})
ALL_COMMANDS = frozenset(BleCommand)


def max_message_len(cpl: int) -> int:
    """Largest message that fits one initial plus 128 continuation fragments (SEQ runs once)."""
    return min(MAX_LENGTH_FIELD, (cpl - 3) + SEQ_MODULUS * (cpl - 1))


def fragment(cmd: int, data: bytes, cpl: int) -> list[bytes]:
    """Split one message into control-point writes/notifications of at most ``cpl`` bytes.

    Below the spec minimum of 20 only the arithmetic is checked (a vector uses cpl 4).
    """
    if not 0x80 <= cmd <= 0xFF:
        raise ValueError(f"command byte must have its high bit set: {cmd:#x}")
    if cpl < 4:
        raise ValueError(f"control point length too small: {cpl}")
    if len(data) > MAX_LENGTH_FIELD:
        raise ValueError(f"message too long for BLE framing: {len(data)}")
    first = cpl - 3
    frames = [bytes([cmd]) + len(data).to_bytes(2, "big") + data[:first]]
    rest = data[first:]
    step = cpl - 1
    for index, offset in enumerate(range(0, len(rest), step)):
        frames.append(bytes([index % SEQ_MODULUS]) + rest[offset : offset + step])
    return frames


def error_fragment(code: BleError) -> bytes:
    """The single fragment an authenticator sends to report a framing error."""
    return bytes([BleCommand.ERROR, 0, 1, code])


@dataclass(frozen=True)
class BleMessage:
    """A whole reassembled message."""

    cmd: int
    data: bytes


@dataclass(frozen=True)
class BleFrameError:
    """A framing error to answer with ``error_fragment(code)``; the partial message is gone."""

    code: BleError


FeedResult = BleMessage | BleFrameError | None


class Reassembler:
    """Collects fragments into messages, one message at a time.

    ``commands`` is what this side accepts (authenticator side: PING, MSG, CANCEL; client
    side: everything). ``clock`` is injectable so timeouts are testable without sleeping.
    Policy where the spec is silent: a new initial fragment while one is pending replaces it
    (the client gave up on the old one); a stray continuation is ERR_INVALID_SEQ.
    """

    def __init__(
        self,
        cpl: int = MIN_CONTROL_POINT_LENGTH,
        *,
        commands: Iterable[int] = ALL_COMMANDS,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        max_len: int | None = None,
    ) -> None:
        self.cpl = cpl
        self.commands = frozenset(int(c) for c in commands)
        self.timeout = timeout
        self.clock = clock
        self.max_len = max_message_len(cpl) if max_len is None else max_len
        self._reset()

    def _reset(self) -> None:
        self._cmd: int | None = None
        self._expected = 0
        self._buffer = bytearray()
        self._seq = 0
        self._last = 0.0

    @property
    def pending(self) -> bool:
        return self._cmd is not None

    def _fail(self, code: BleError) -> BleFrameError:
        self._reset()
        return BleFrameError(code)

    def expire(self) -> BleFrameError | None:
        """The owner's timer ran out: drop the partial message (REQ_TIMEOUT), if there is one."""
        return self._fail(BleError.REQ_TIMEOUT) if self._cmd is not None else None

    def check_timeout(self) -> BleFrameError | None:
        """Call periodically: a partial message idle longer than ``timeout`` is dropped."""
        if self._cmd is not None and self.clock() - self._last > self.timeout:
            return self._fail(BleError.REQ_TIMEOUT)
        return None

    def feed(self, frame: bytes) -> FeedResult:
        """One control-point write -> a whole message, an error to report, or None (need more)."""
        frame = bytes(frame)
        if not frame:
            return None  # an empty write carries nothing; ignore it
        if len(frame) > self.cpl:
            return self._fail(BleError.INVALID_LEN)
        if frame[0] & 0x80:
            return self._initial(frame)
        timed_out = self.check_timeout()
        if timed_out is not None:
            return timed_out
        return self._continuation(frame)

    def _initial(self, frame: bytes) -> FeedResult:
        self._reset()
        cmd = frame[0]
        if cmd not in self.commands:
            return self._fail(BleError.INVALID_CMD)
        if len(frame) < 3:
            return self._fail(BleError.INVALID_LEN)
        length = int.from_bytes(frame[1:3], "big")
        data = frame[3:]
        if length > self.max_len or len(data) > length:
            return self._fail(BleError.INVALID_LEN)
        if len(data) == length:
            return BleMessage(cmd, data)
        self._cmd = cmd
        self._expected = length
        self._buffer = bytearray(data)
        self._last = self.clock()
        return None

    def _continuation(self, frame: bytes) -> FeedResult:
        if self._cmd is None or frame[0] != self._seq:
            return self._fail(BleError.INVALID_SEQ)
        self._buffer += frame[1:]
        if len(self._buffer) > self._expected:
            return self._fail(BleError.INVALID_LEN)
        self._seq = (self._seq + 1) % SEQ_MODULUS
        self._last = self.clock()
        if len(self._buffer) < self._expected:
            return None
        message = BleMessage(self._cmd, bytes(self._buffer))
        self._reset()
        return message

"""FIDO BLE transport (CTAP "Bluetooth Smart / Bluetooth Low Energy" binding).

Only the I/O-free framing lives here so far; the GATT peripheral (BlueZ over D-Bus) comes later.
"""

from transports.ble.framing import (
    MAX_CONTROL_POINT_LENGTH,
    MIN_CONTROL_POINT_LENGTH,
    BleCommand,
    BleError,
    BleFrameError,
    BleMessage,
    Reassembler,
    error_fragment,
    fragment,
    max_message_len,
)

__all__ = [
    "MAX_CONTROL_POINT_LENGTH",
    "MIN_CONTROL_POINT_LENGTH",
    "BleCommand",
    "BleError",
    "BleFrameError",
    "BleMessage",
    "Reassembler",
    "error_fragment",
    "fragment",
    "max_message_len",
]

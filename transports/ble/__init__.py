"""FIDO BLE transport (CTAP "Bluetooth Smart / Bluetooth Low Energy" binding).

framing: I/O-free fragmentation/reassembly; session: the authenticator's protocol logic per link
(no D-Bus); peripheral: the GATT server on BlueZ (dbus-fast); central: a bleak client exposed
as a python-fido2 CtapDevice. peripheral/central need the [ble] extra and are not imported here.
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

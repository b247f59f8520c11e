"""GATT UUIDs of the FIDO service (CTAP 2.x "Bluetooth" binding) and Device Information."""

from __future__ import annotations


def uuid16(value: int) -> str:
    """A 16-bit Bluetooth SIG UUID in its 128-bit form, as BlueZ and bleak spell UUIDs."""
    return f"0000{value:04x}-0000-1000-8000-00805f9b34fb"


FIDO_SERVICE = uuid16(0xFFFD)
CONTROL_POINT = "f1d0fff1-deaa-ecee-b42f-c9ba7ed623bb"
STATUS = "f1d0fff2-deaa-ecee-b42f-c9ba7ed623bb"
CONTROL_POINT_LENGTH = "f1d0fff3-deaa-ecee-b42f-c9ba7ed623bb"
SERVICE_REVISION_BITFIELD = "f1d0fff4-deaa-ecee-b42f-c9ba7ed623bb"

DEVICE_INFORMATION = uuid16(0x180A)
MODEL_NUMBER = uuid16(0x2A24)
FIRMWARE_REVISION = uuid16(0x2A26)
SOFTWARE_REVISION = uuid16(0x2A28)
MANUFACTURER_NAME = uuid16(0x2A29)

#: Service data flags under the FIDO service UUID in advertisements.
SERVICE_DATA_PAIRING_MODE = 0x80
SERVICE_DATA_PASSKEY_ENTRY = 0x40

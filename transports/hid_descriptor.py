"""The FIDO HID report descriptor and USB identity, shared by the UHID and gadget transports.

Hosts find security keys by this descriptor, not by VID/PID: systemd's udev tags a hidraw
node whose top collection is usage page 0xF1D0 / usage 0x01 as a security token and grants the
logged-in user access; browsers and libfido2 filter on the same usage.
"""

from __future__ import annotations

FIDO_USAGE_PAGE = 0xF1D0
FIDO_USAGE_CTAPHID = 0x01
REPORT_LENGTH = 64

# pid.codes' shared vendor id. 0x1209:0x000A lies in the pid.codes *test* range
# (0x0001-0x0010, "for private testing"), which is honest for an emulator; it is not unique, so
# deployments that need a distinct id configure their own. Never reuse SoloKeys' 0x5070/0xBEEE.
DEFAULT_VID = 0x1209
DEFAULT_PID = 0x000A


def report_descriptor(report_length: int = REPORT_LENGTH) -> bytes:
    """One application collection with a ``report_length``-byte input and output report.

    No report ids: host-side reports carry no id byte, which is what every FIDO client expects.
    """
    if not 1 <= report_length <= 255:
        raise ValueError("report_length must fit one byte")
    item = bytes  # each line below is one HID short item: prefix byte + little-endian data
    return b"".join(
        [
            item([0x06, FIDO_USAGE_PAGE & 0xFF, FIDO_USAGE_PAGE >> 8]),  # Usage Page (FIDO)
            item([0x09, FIDO_USAGE_CTAPHID]),  # Usage (CTAPHID)
            item([0xA1, 0x01]),  # Collection (Application)
            item([0x09, 0x20]),  # Usage (Input Report Data)
            item([0x15, 0x00]),  # Logical Minimum (0)
            item([0x26, 0xFF, 0x00]),  # Logical Maximum (255)
            item([0x75, 0x08]),  # Report Size (8 bits)
            item([0x95, report_length]),  # Report Count
            item([0x81, 0x02]),  # Input (Data, Variable, Absolute)
            item([0x09, 0x21]),  # Usage (Output Report Data)
            item([0x15, 0x00]),  # Logical Minimum (0)
            item([0x26, 0xFF, 0x00]),  # Logical Maximum (255)
            item([0x75, 0x08]),  # Report Size (8 bits)
            item([0x95, report_length]),  # Report Count
            item([0x91, 0x02]),  # Output (Data, Variable, Absolute)
            item([0xC0]),  # End Collection
        ]
    )


FIDO_REPORT_DESCRIPTOR = report_descriptor()

"""In the guest: read the gadget's USB descriptors with pyusb, as a laptop would see a Pi."""

import sys

import usb.core

dev = usb.core.find(idVendor=0x1209)
if dev is None:
    sys.exit("no 0x1209 device on the bus")
cfg = dev.get_active_configuration()
intf = cfg[(0, 0)]
assert intf.bInterfaceClass == 3, intf.bInterfaceClass  # HID
eps = list(intf)
assert sorted(e.bmAttributes & 3 for e in eps) == [3, 3], "two interrupt endpoints"
assert all(e.wMaxPacketSize == 64 for e in eps), [e.wMaxPacketSize for e in eps]
# The HID report descriptor as the host kernel read it from the device (usbhid owns the
# interface, so a usbfs GET_DESCRIPTOR would be refused with EBUSY).
import glob  # noqa: E402

paths = [p for p in glob.glob("/sys/class/hidraw/hidraw*/device/report_descriptor")]
data = b""
for path in paths:
    uevent = open(path.replace("report_descriptor", "uevent")).read().upper()
    if "1209" in uevent:
        data = open(path, "rb").read()
assert data.startswith(b"\x06\xd0\xf1\x09\x01"), data.hex()  # usage page 0xF1D0, usage 1
print("descriptors ok:", hex(dev.idVendor), hex(dev.idProduct), "class", intf.bInterfaceClass, data.hex())

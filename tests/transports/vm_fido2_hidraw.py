"""In the guest: python-fido2's own HID stack (CtapHidDevice over /dev/hidraw) against us."""

from hashlib import sha256

from fido2.ctap2 import Ctap2
from fido2.hid import CtapHidDevice

devices = list(CtapHidDevice.list_devices())
assert devices, "python-fido2 found no FIDO HID device"
dev = devices[0]
payload = bytes(range(256)) * 29 + bytes(range(185))  # 7609 bytes, the CTAPHID maximum
assert len(payload) == 7609 and dev.ping(payload) == payload
ctap = Ctap2(dev)
cdh = sha256(b"guest").digest()
att = ctap.make_credential(
    cdh, {"id": "example.com"}, {"id": b"u", "name": "u"}, [{"type": "public-key", "alg": -7}],
    options={"rk": True},
)
cred = att.auth_data.credential_data
res = ctap.get_assertion("example.com", cdh)
cred.public_key.verify(res.auth_data + cdh, res.signature)
print("python-fido2 over hidraw ok:", dev.descriptor.path)

"""CTAP1/U2F (FIDO U2F Raw Message Formats v1.2) over ISO 7816-4 APDUs.

Key handles are self-contained credential ids (see ``credentials.py``) sealed with the
application parameter as rpIdHash, so a browser's ``appid`` extension can later use them
through CTAP2 getAssertion with rpIdHash = SHA-256(appId).

User presence follows the U2F convention rather than blocking the APDU: the first
REGISTER/AUTHENTICATE starts a presence request and, unless it is answered within a short
grace period, returns SW_CONDITIONS_NOT_SATISFIED (6985). The client keeps retrying; the
touch, once given, is latched for :data:`TOUCH_VALIDITY` seconds and consumed by the next
request that needs it. An approving ``Presence`` (tests, CI) answers within the grace
period, so those flows complete on the first APDU.
"""

from __future__ import annotations

import asyncio
import datetime
import struct
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from authenticator.core import attestation, keys
from authenticator.core.presence import PresenceRequest

if TYPE_CHECKING:
    from authenticator.core.credentials import Credential
    from authenticator.core.device import Call, Device

SW_NO_ERROR = b"\x90\x00"
SW_CONDITIONS_NOT_SATISFIED = b"\x69\x85"
SW_WRONG_DATA = b"\x6a\x80"
SW_WRONG_LENGTH = b"\x67\x00"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_CLA_NOT_SUPPORTED = b"\x6e\x00"
SW_UNKNOWN = b"\x6f\x00"

INS_REGISTER, INS_AUTHENTICATE, INS_VERSION = 0x01, 0x02, 0x03
CHECK_ONLY, ENFORCE_PRESENCE, DONT_ENFORCE = 0x07, 0x03, 0x08

PRESENCE_GRACE = 0.25  # seconds a REGISTER/AUTHENTICATE waits before answering 6985
TOUCH_VALIDITY = 10.0  # seconds a given touch stays usable by the retrying client

STATE_CERT = "u2f.cert"
STATE_KEY = "u2f.key"


class ApduError(Exception):
    def __init__(self, sw: bytes) -> None:
        super().__init__(sw.hex())
        self.sw = sw


@dataclass
class Apdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes


def parse_apdu(raw: bytes) -> Apdu:
    """Short or extended-length command APDU (cases 1-4); Le is accepted and ignored.

    Also accepts the extended form with Lc = 0 followed by Le that python-fido2 and
    browsers send for VERSION.
    """
    if len(raw) < 4:
        raise ApduError(SW_WRONG_LENGTH)
    cla, ins, p1, p2 = raw[:4]
    body = raw[4:]
    data = b""
    if not body:
        pass  # case 1
    elif len(body) == 1:
        pass  # case 2S: Le only
    elif body[0] == 0 and len(body) >= 3:  # extended
        lc = int.from_bytes(body[1:3], "big")
        rest = body[3:]
        if len(rest) == 0:
            pass  # case 2E: the three bytes were Le
        elif len(rest) in (lc, lc + 2):
            data = rest[:lc]
        else:
            raise ApduError(SW_WRONG_LENGTH)
    else:  # short
        lc = body[0]
        rest = body[1:]
        if len(rest) not in (lc, lc + 1) or lc == 0:
            raise ApduError(SW_WRONG_LENGTH)
        data = rest[:lc]
    return Apdu(cla, ins, p1, p2, data)


# -- presence, U2F style ---------------------------------------------------------------------
@dataclass
class _Touch:
    task: asyncio.Future
    started: float
    answered: float | None = None


_touches: weakref.WeakKeyDictionary[Device, _Touch] = weakref.WeakKeyDictionary()


async def _presence(dev: Device, call: Call, what: str) -> bool:
    """True when a touch is available now (and consume it); False: answer 6985."""
    now = dev.clock()
    touch = _touches.get(dev)
    if touch is not None:
        stale_answer = touch.answered is not None and now - touch.answered > TOUCH_VALIDITY
        stale_wait = touch.answered is None and now - touch.started > dev.config.presence_timeout
        if stale_answer or stale_wait:
            touch.task.cancel()
            touch = None
    if touch is None:
        request = PresenceRequest(what, None, None, call.ctx.transport)
        task = asyncio.ensure_future(dev.presence.request_presence(request))
        touch = _touches[dev] = _Touch(task, now)

        def answered(_: asyncio.Future, t: _Touch = touch) -> None:
            t.answered = dev.clock()

        task.add_done_callback(answered)
    if not touch.task.done():
        await asyncio.wait({touch.task}, timeout=PRESENCE_GRACE)
    if not touch.task.done():
        return False
    del _touches[dev]
    return not touch.task.cancelled() and touch.task.exception() is None and touch.task.result()


# -- attestation --------------------------------------------------------------------------
def u2f_attestation(dev: Device) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """The batch certificate if one is installed, else a per-device self-signed one."""
    batch = attestation.load_batch(dev)
    if batch is not None:
        return batch.key, batch.chain[0]
    cert = dev.store.get_state(STATE_CERT)
    key = attestation.load_sealed_key(dev, STATE_KEY) if cert is not None else None
    if cert is not None and key is not None:
        return key, cert
    from cryptography import x509  # only for a first U2F registration: keep start-up light
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fido-emulator U2F attestation")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365 * 20))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    attestation.save_sealed_key(dev, STATE_KEY, key)
    dev.store.set_state(STATE_CERT, cert)
    return key, cert


# -- commands -----------------------------------------------------------------------------
def _public_point(dev: Device, cred: Credential) -> bytes:
    return (
        dev.credentials.private_key(cred)
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


async def _register(dev: Device, call: Call, apdu: Apdu) -> bytes:
    if len(apdu.data) != 64:
        raise ApduError(SW_WRONG_LENGTH)
    challenge, app = apdu.data[:32], apdu.data[32:]
    if not await _presence(dev, call, "U2F register"):
        raise ApduError(SW_CONDITIONS_NOT_SATISFIED)
    cred, _, _, _ = dev.credentials.create(
        alg=keys.ES256,
        rp_id="",
        rp_id_hash=app,
        discoverable=False,
        cred_protect=1,
        backup_eligible=False,
        backup_state=False,
        hmac_secret=False,
        cred_blob=None,
        large_blob_key=False,
        rp_name=None,
        user=None,
        now=dev.wall_clock(),
        u2f=True,
    )
    public = _public_point(dev, cred)
    att_key, cert = u2f_attestation(dev)
    signed = b"\x00" + app + challenge + cred.id + public
    sig = dev.faults.signature(att_key.sign(signed, ec.ECDSA(hashes.SHA256())))
    call.notes["credential_id"] = cred.id
    return b"\x05" + public + bytes([len(cred.id)]) + cred.id + cert + sig + SW_NO_ERROR


async def _authenticate(dev: Device, call: Call, apdu: Apdu) -> bytes:
    data = apdu.data
    if len(data) < 65 or len(data) != 65 + data[64]:
        raise ApduError(SW_WRONG_LENGTH)
    challenge, app, handle = data[:32], data[32:64], data[65:]
    cred = dev.credentials.resolve(handle, app)
    # CTAP2 credentials are usable here too when they are ES256 and need no UV
    if cred is None or cred.algorithm != keys.ES256 or cred.cred_protect >= 3:
        raise ApduError(SW_WRONG_DATA)
    if apdu.p1 == CHECK_ONLY:
        raise ApduError(SW_CONDITIONS_NOT_SATISFIED)
    if apdu.p1 not in (ENFORCE_PRESENCE, DONT_ENFORCE):
        raise ApduError(SW_WRONG_DATA)
    user_present = False
    if apdu.p1 == ENFORCE_PRESENCE:
        if not await _presence(dev, call, "U2F authenticate"):
            raise ApduError(SW_CONDITIONS_NOT_SATISFIED)
        user_present = True
    flags = dev.faults.flags(0x01 if user_present else 0x00)
    counter = struct.pack(">I", dev.next_counter(cred) & 0xFFFFFFFF)
    sig = dev.faults.signature(dev.credentials.sign(cred, app + bytes([flags]) + counter + challenge))
    return bytes([flags]) + counter + sig + SW_NO_ERROR


async def handle(dev: Device, raw: bytes, call: Call) -> bytes:
    try:
        apdu = parse_apdu(raw)
        if apdu.cla != 0x00:
            return SW_CLA_NOT_SUPPORTED
        if not dev.config.u2f:
            return SW_INS_NOT_SUPPORTED
        if apdu.ins == INS_VERSION:
            if apdu.data:
                return SW_WRONG_LENGTH
            return b"U2F_V2" + SW_NO_ERROR
        if apdu.ins == INS_REGISTER:
            call.command = "U2F register"
            return await _register(dev, call, apdu)
        if apdu.ins == INS_AUTHENTICATE:
            call.command = "U2F authenticate"
            return await _authenticate(dev, call, apdu)
        return SW_INS_NOT_SUPPORTED
    except ApduError as e:
        return e.sw

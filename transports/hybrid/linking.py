"""State-assisted linking ("linked devices"): a desktop that scanned once reconnects without a QR.

Formats follow Chromium (``v2_authenticator.cc``, ``cable_discovery_data.cc``,
``fido_tunnel_device.cc``):

- Linking info, sent by the phone after a QR handshake whose QR had key 4 = true (as key 2 of
  the post-handshake message, or in an UPDATE frame {0: padding, 1: info} as current Android
  Chrome does): {1: contact id, 2: pairing id (8 bytes), 3: paired secret (32 bytes),
  4: the phone's identity key (65-byte *uncompressed* X9.62), 5: name, 6: signature}. The
  signature is HMAC-SHA256 keyed by ECDH(phone identity, desktop QR identity) over the
  handshake hash: it proves the phone holds the identity key, and binds the info to this
  handshake. (It is not keyed by the link secret.)
- The phone derives everything from one 32-byte root secret: identity seed =
  Derive(root, "", 5); per-contact secret = Derive(root, contact id, 6); paired secret =
  Derive(per-contact secret, pairing id, 4). Changing the contact id unlinks every desktop.
- Reconnecting: the desktop opens ``/cable/contact/<base64url contact id>`` with the header
  ``X-caBLE-Client-Payload`` = hex of CBOR {1: pairing id, 2: 16-byte client nonce,
  3: "ga"/"mc"}. The phone, once told, joins via ``/cable/connect/<routing id>/<tunnel id>``,
  broadcasts an advert under EID key Derive(paired secret, client nonce, 1) whose plaintext is
  0x00 ‖ 15 random bytes, and both run ``Noise_NKpsk0`` with PSK = Derive(paired secret,
  that plaintext, 3), the desktop knowing the phone's identity key. So even a linked
  connection proves proximity with a BLE advert (current Chromium waits for it).
- How the phone is told is not standard: Google's tunnel server wakes the phone with a cloud
  (FCM) message whose token is hidden in the contact id. Our tunnel server instead lets the
  phone hold ``/cable/listen/<base64url contact id>`` open and pushes :class:`ContactNotice`
  messages down it; the phone may answer a notice with its 16-byte tunnel id to decline it.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from hashlib import sha256
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec

from transports.hybrid import keys
from transports.hybrid.keys import Purpose

log = logging.getLogger(__name__)

CLIENT_PAYLOAD_HEADER = "X-caBLE-Client-Payload"
PAIRING_ID_LEN = 8
CLIENT_NONCE_LEN = 16
ROOT_SECRET_LEN = 32
PAIRED_SECRET_LEN = 32
CONTACT_ID_LEN = 16
MAX_CONTACT_ID_LEN = 512
TUNNEL_ID_LEN = 16
#: name of the sealed blob in the authenticator's state store
STATE_NAME = "hybrid.linking"
#: Chromium pads the UPDATE frame's plaintext to 512 bytes to hide the info's size
UPDATE_PADDING_TARGET = 512


class LinkingError(ValueError):
    """Linking data that is malformed or does not verify."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """Strict unpadded base64url; LinkingError otherwise."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise LinkingError("bad base64url") from exc
    if b64url(data) != text:
        raise LinkingError("non-canonical base64url")
    return data


def contact_url(base: str, contact_id: bytes) -> str:
    return f"{base.rstrip('/')}/cable/contact/{b64url(contact_id)}"


def listen_url(base: str, contact_id: bytes) -> str:
    """Our tunnel server's stand-in for FCM (see the module docstring)."""
    return f"{base.rstrip('/')}/cable/listen/{b64url(contact_id)}"


def linked_eid_key(paired_secret: bytes, client_nonce: bytes) -> bytes:
    return keys.derive(paired_secret, client_nonce, Purpose.EID_KEY, 64)


def new_linked_eid() -> bytes:
    """A linked advert's plaintext: byte 0 reserved (0), the rest random."""
    return b"\x00" + os.urandom(15)


def signature_key(
    private: ec.EllipticCurvePrivateKey, public: ec.EllipticCurvePublicKey, handshake_hash: bytes
) -> bytes:
    """HMAC-SHA256(ECDH(private, public), handshake hash); the same from either side."""
    return hmac.new(keys.ecdh(private, public), handshake_hash, sha256).digest()


# -- the desktop's request ----------------------------------------------------------------------


@dataclass(frozen=True)
class ClientPayload:
    """What the desktop tells the phone (through the tunnel server) when it reconnects."""

    pairing_id: bytes
    client_nonce: bytes
    request_type: str = "ga"

    def to_cbor(self) -> bytes:
        body = {1: self.pairing_id, 2: self.client_nonce, 3: self.request_type}
        return cbor2.dumps(body, canonical=True)

    def to_header(self) -> str:
        return self.to_cbor().hex().upper()  # base::HexEncode is upper case

    @classmethod
    def from_cbor(cls, data: bytes) -> ClientPayload:
        try:
            body = cbor2.loads(data)
        except Exception as exc:
            raise LinkingError("client payload is not CBOR") from exc
        if not isinstance(body, dict):
            raise LinkingError("client payload is not a map")
        pairing_id, nonce, request_type = body.get(1), body.get(2), body.get(3)
        if not isinstance(pairing_id, bytes) or not pairing_id:
            raise LinkingError("client payload lacks a pairing id")
        if not isinstance(nonce, bytes) or len(nonce) != CLIENT_NONCE_LEN:
            raise LinkingError("client nonce must be 16 bytes")
        if not isinstance(request_type, str):
            raise LinkingError("client payload lacks a request type")
        return cls(pairing_id, nonce, request_type)

    @classmethod
    def from_header(cls, value: str) -> ClientPayload:
        try:
            raw = bytes.fromhex(value)
        except ValueError as exc:
            raise LinkingError("client payload is not hex") from exc
        return cls.from_cbor(raw)


@dataclass(frozen=True)
class ContactNotice:
    """Our tunnel server -> listening phone: where to join, and the desktop's payload."""

    routing_id: bytes
    tunnel_id: bytes
    client_payload: bytes

    def to_cbor(self) -> bytes:
        return cbor2.dumps(
            {1: self.routing_id, 2: self.tunnel_id, 3: self.client_payload}, canonical=True
        )

    @classmethod
    def from_cbor(cls, data: bytes) -> ContactNotice:
        try:
            body = cbor2.loads(data)
        except Exception as exc:
            raise LinkingError("contact notice is not CBOR") from exc
        if not isinstance(body, dict):
            raise LinkingError("contact notice is not a map")
        routing_id, tunnel_id, payload = body.get(1), body.get(2), body.get(3)
        if not isinstance(routing_id, bytes) or len(routing_id) != 3:
            raise LinkingError("contact notice: bad routing id")
        if not isinstance(tunnel_id, bytes) or len(tunnel_id) != TUNNEL_ID_LEN:
            raise LinkingError("contact notice: bad tunnel id")
        if not isinstance(payload, bytes):
            raise LinkingError("contact notice: bad client payload")
        return cls(routing_id, tunnel_id, payload)


# -- the phone's state ----------------------------------------------------------------------------


@dataclass
class PhoneLinking:
    """The phone's linking secrets: a root secret, its contact id, the pairing ids it issued.

    Everything here is secret; :class:`LinkStore` keeps it sealed in the authenticator's store.
    ``on_change`` (not persisted) is called after a new pairing id is issued.
    """

    root_secret: bytes
    contact_id: bytes
    name: str = "fido-emulator"
    pairing_ids: list[bytes] = field(default_factory=list)
    on_change: Callable[[PhoneLinking], None] | None = field(default=None, repr=False)

    def __repr__(self) -> str:  # never print the secrets
        return f"PhoneLinking(name={self.name!r}, links={len(self.pairing_ids)})"

    @classmethod
    def new(cls, name: str = "fido-emulator") -> PhoneLinking:
        return cls(os.urandom(ROOT_SECRET_LEN), os.urandom(CONTACT_ID_LEN), name)

    @cached_property
    def identity_key(self) -> ec.EllipticCurvePrivateKey:
        seed = keys.derive(self.root_secret, b"", Purpose.IDENTITY_KEY_SEED, 32)
        return keys.p256_from_seed(seed)

    def paired_secret(self, pairing_id: bytes) -> bytes:
        """Chromium's two steps, so that a new contact id invalidates every old link."""
        per_contact = keys.derive(
            self.root_secret, self.contact_id, Purpose.PER_CONTACT_ID_SECRET, 32
        )
        return keys.derive(per_contact, pairing_id, Purpose.PAIRED_SECRET, PAIRED_SECRET_LEN)

    def knows(self, pairing_id: bytes) -> bool:
        return any(hmac.compare_digest(pairing_id, known) for known in self.pairing_ids)

    def offer(
        self, peer_identity: ec.EllipticCurvePublicKey, handshake_hash: bytes
    ) -> dict[int, Any]:
        """Issue a fresh pairing for the desktop at the other end of this handshake."""
        pairing_id = os.urandom(PAIRING_ID_LEN)
        self.pairing_ids.append(pairing_id)
        if self.on_change is not None:
            self.on_change(self)
        return {
            1: self.contact_id,
            2: pairing_id,
            3: self.paired_secret(pairing_id),
            4: keys.uncompressed(self.identity_key.public_key()),
            5: self.name,
            6: signature_key(self.identity_key, peer_identity, handshake_hash),
        }

    def unlink_all(self) -> None:
        """A new contact id: every issued pairing stops working (as Chromium's unlink)."""
        self.contact_id = os.urandom(CONTACT_ID_LEN)
        self.pairing_ids.clear()
        if self.on_change is not None:
            self.on_change(self)

    def to_cbor(self) -> bytes:
        body = {1: self.root_secret, 2: self.contact_id, 3: self.name, 4: list(self.pairing_ids)}
        return cbor2.dumps(body, canonical=True)

    @classmethod
    def from_cbor(cls, data: bytes) -> PhoneLinking:
        body = cbor2.loads(data)
        root, contact, name, ids = body[1], body[2], body[3], body[4]
        if not isinstance(root, bytes) or len(root) != ROOT_SECRET_LEN:
            raise LinkingError("bad root secret")
        return cls(root, contact, name, [bytes(i) for i in ids])


class LinkStore:
    """Keeps a :class:`PhoneLinking` sealed (AES-GCM under the device key) in the state store."""

    def __init__(self, auth: Any) -> None:
        self._auth = auth

    def load(self, *, create: bool = True, name: str | None = None) -> PhoneLinking | None:
        """The stored linking state; a new one (saved) if there is none and ``create``.

        After a factory reset the device key changes and the old blob no longer opens: that
        counts as no state, so linked desktops must scan a QR code again.
        """
        from storage.sealing import SealError

        blob = self._auth.store.get_state(STATE_NAME)
        linking = None
        if blob is not None:
            try:
                sealer = self._auth.device_keys.state
                linking = PhoneLinking.from_cbor(sealer.open(blob, STATE_NAME.encode()))
            except (SealError, LinkingError, KeyError, ValueError, TypeError):
                log.warning("hybrid: stored linking state unreadable; starting afresh")
        if linking is None:
            if not create:
                return None
            linking = PhoneLinking.new(name or "fido-emulator")
            self.save(linking)
        elif name is not None and name != linking.name:
            linking.name = name
            self.save(linking)
        linking.on_change = self.save
        return linking

    def save(self, linking: PhoneLinking) -> None:
        sealed = self._auth.device_keys.state.seal(linking.to_cbor(), STATE_NAME.encode())
        self._auth.store.set_state(STATE_NAME, sealed)


# -- the desktop's record ---------------------------------------------------------------------------


@dataclass
class Pairing:
    """What a desktop keeps about a linked phone (``secret`` is a secret: store it 0600).

    ``tunnel_server_id`` comes from the QR session's advert, as Chromium stores the domain;
    ``tunnel_url`` records a base-URL override (our loopback server) when one was used.
    """

    tunnel_server_id: int
    contact_id: bytes
    pairing_id: bytes
    secret: bytes
    peer_public_key: bytes  # 65-byte uncompressed X9.62
    name: str
    tunnel_url: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"Pairing(name={self.name!r}, server={self.tunnel_server_id})"

    def peer_key(self) -> ec.EllipticCurvePublicKey:
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), self.peer_public_key
            )
        except ValueError as exc:
            raise LinkingError("pairing's public key is not a P-256 point") from exc

    @classmethod
    def from_linking_info(
        cls,
        info: Any,
        *,
        local_identity: ec.EllipticCurvePrivateKey,
        handshake_hash: bytes,
        tunnel_server_id: int,
        tunnel_url: str | None = None,
    ) -> Pairing:
        """Validate linking info as Chromium's ``Pairing::Parse``: types, key, signature."""
        if not isinstance(info, dict):
            raise LinkingError("linking info is not a map")
        fields = [info.get(k) for k in (1, 2, 3, 4, 6)]
        name = info.get(5)
        if not isinstance(name, str) or not all(isinstance(f, bytes) for f in fields):
            raise LinkingError("linking info lacks a field or has the wrong type")
        contact_id, pairing_id, secret, public_key, signature = fields
        if len(public_key) != 65 or not contact_id or not pairing_id or not secret:
            raise LinkingError("linking info has a bad size")
        pairing = cls(
            tunnel_server_id, contact_id, pairing_id, secret, public_key, name, tunnel_url
        )
        expected = signature_key(local_identity, pairing.peer_key(), handshake_hash)
        if not hmac.compare_digest(expected, signature):
            raise LinkingError("linking signature does not verify")
        return pairing

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "tunnelServerId": self.tunnel_server_id,
            "tunnelUrl": self.tunnel_url,
            "contactId": b64url(self.contact_id),
            "pairingId": b64url(self.pairing_id),
            "secret": b64url(self.secret),
            "peerPublicKey": b64url(self.peer_public_key),
            "name": self.name,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pairing:
        try:
            if data.get("version") != 1:
                raise LinkingError("unknown pairing version")
            pairing = cls(
                tunnel_server_id=int(data["tunnelServerId"]),
                contact_id=unb64url(data["contactId"]),
                pairing_id=unb64url(data["pairingId"]),
                secret=unb64url(data["secret"]),
                peer_public_key=unb64url(data["peerPublicKey"]),
                name=str(data["name"]),
                tunnel_url=data.get("tunnelUrl"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LinkingError(f"bad pairing record: {exc}") from exc
        pairing.peer_key()
        return pairing


def update_message(info: dict[int, Any]) -> bytes:
    """An UPDATE frame's CBOR carrying linking info, padded to 512 bytes like Chromium's."""
    bare = len(cbor2.dumps({1: info}, canonical=True))
    padding = max(0, UPDATE_PADDING_TARGET - 16 - 1 - 3 - bare)
    return cbor2.dumps({0: bytes(padding), 1: info}, canonical=True)

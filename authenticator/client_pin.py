"""authenticatorClientPIN (0x06): PIN/UV auth protocols 1 and 2, tokens and lockouts.

The PIN itself is never kept: only LEFT(SHA-256(PIN), 16), sealed under the device key.
Retries are decremented durably *before* a PIN hash is compared, so pulling the plug
mid-attempt never buys an extra guess.
"""

from __future__ import annotations

import hmac
import os
import struct
from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec
from fido2.ctap2.pin import PinProtocolV1, PinProtocolV2

from authenticator.errors import ERR, CtapStatusError
from authenticator.params import opt_bytes, opt_int, opt_map, opt_str, req_int

if TYPE_CHECKING:
    from authenticator.core import Authenticator, Call

PERM_MC, PERM_GA, PERM_CM, PERM_BE, PERM_LBW, PERM_ACFG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
SUPPORTED_PERMISSIONS = PERM_MC | PERM_GA | PERM_CM | PERM_LBW | PERM_ACFG

PROTOCOLS = {1: PinProtocolV1(), 2: PinProtocolV2()}

GET_PIN_RETRIES, GET_KEY_AGREEMENT, SET_PIN, CHANGE_PIN = 1, 2, 3, 4
GET_PIN_TOKEN, GET_TOKEN_USING_UV, GET_UV_RETRIES = 5, 6, 7
GET_TOKEN_USING_PIN = 9

STATE_PIN = "pin.hash"
STATE_PIN_RETRIES = "pin.retries"
STATE_PIN_LENGTH = "pin.codepoints"
STATE_UV_RETRIES = "uv.retries"


@dataclass
class Token:
    """The pinUvAuthToken's state (CTAP 2.1 §6.5.2.1)."""

    value: bytes
    permissions: int
    rp_id: str | None
    issued: float
    user_present: bool
    user_verified: bool = True


class PinState:
    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth
        self._key_agreement = ec.generate_private_key(ec.SECP256R1())
        self.token: Token | None = None
        self.consecutive_mismatches = 0
        self.uv_consecutive = 0

    # -- persistent state ---------------------------------------------------------------
    def _get_int(self, name: str, default: int) -> int:
        raw = self.auth.store.get_state(name)
        return default if raw is None else struct.unpack(">i", raw)[0]

    def _set_int(self, name: str, value: int) -> None:
        self.auth.store.set_state(name, struct.pack(">i", value))

    @property
    def is_set(self) -> bool:
        return self.auth.store.get_state(STATE_PIN) is not None

    @property
    def retries(self) -> int:
        return self._get_int(STATE_PIN_RETRIES, self.auth.config.max_pin_retries)

    @property
    def uv_retries(self) -> int:
        return self._get_int(STATE_UV_RETRIES, self.auth.config.max_uv_retries)

    @property
    def pin_code_points(self) -> int:
        return self._get_int(STATE_PIN_LENGTH, 0)

    def _pin_hash(self) -> bytes | None:
        sealed = self.auth.store.get_state(STATE_PIN)
        if sealed is None:
            return None
        return self.auth.device_keys.state.open(sealed, STATE_PIN.encode())

    def _store_pin(self, pin_hash: bytes, code_points: int) -> None:
        sealed = self.auth.device_keys.state.seal(pin_hash, STATE_PIN.encode())
        self.auth.store.set_state(STATE_PIN, sealed)
        self._set_int(STATE_PIN_RETRIES, self.auth.config.max_pin_retries)
        self._set_int(STATE_PIN_LENGTH, code_points)

    # -- volatile state -----------------------------------------------------------------
    def power_cycle(self) -> None:
        self._key_agreement = ec.generate_private_key(ec.SECP256R1())
        self.token = None
        self.consecutive_mismatches = 0
        self.uv_consecutive = 0

    def regenerate_key_agreement(self) -> None:
        self._key_agreement = ec.generate_private_key(ec.SECP256R1())

    def key_agreement_cose(self) -> dict:
        n = self._key_agreement.public_key().public_numbers()
        return {1: 2, 3: -25, -1: 1, -2: n.x.to_bytes(32, "big"), -3: n.y.to_bytes(32, "big")}

    def shared_secret(self, protocol: int, peer: object) -> bytes:
        """ECDH with the platform's key, then the protocol's KDF."""
        if not isinstance(peer, dict):
            raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, "keyAgreement is not a map")
        x, y = peer.get(-2), peer.get(-3)
        if peer.get(1) != 2 or peer.get(-1) != 1 or not isinstance(x, bytes) or not isinstance(y, bytes):
            raise CtapStatusError(ERR.INVALID_PARAMETER, "keyAgreement is not a P-256 key")
        if len(x) != 32 or len(y) != 32:
            raise CtapStatusError(ERR.INVALID_PARAMETER, "keyAgreement has bad coordinates")
        try:
            pub = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
            ).public_key()
            z = self._key_agreement.exchange(ec.ECDH(), pub)
        except ValueError as e:
            raise CtapStatusError(ERR.INVALID_PARAMETER, "keyAgreement not on the curve") from e
        return PROTOCOLS[protocol].kdf(z)

    def new_token(self, permissions: int, rp_id: str | None, user_present: bool) -> bytes:
        value = os.urandom(32)
        self.token = Token(value, permissions, rp_id, self.auth.clock(), user_present)
        return value

    def invalidate_tokens(self) -> None:
        self.token = None

    def uv_succeeded(self) -> None:
        self.uv_consecutive = 0
        self._set_int(STATE_UV_RETRIES, self.auth.config.max_uv_retries)

    def uv_failed(self) -> None:
        self._set_int(STATE_UV_RETRIES, max(0, self.uv_retries - 1))

    # -- used by other commands ---------------------------------------------------------
    @staticmethod
    def protocol(params: dict, key: int) -> int:
        value = opt_int(params, key)
        if value is None:
            raise CtapStatusError(ERR.MISSING_PARAMETER, "pinUvAuthProtocol missing")
        if value not in PROTOCOLS:
            raise CtapStatusError(ERR.INVALID_PARAMETER, "unsupported pinUvAuthProtocol")
        return value

    def verify(
        self,
        protocol: int,
        param: bytes,
        message: bytes,
        permission: int,
        rp_id: str | None = None,
        bind_rp: bool = True,
    ) -> Token:
        """Check pinUvAuthParam against the live token, its permissions and rpId."""
        token = self.token
        if token is None:
            raise CtapStatusError(ERR.PIN_AUTH_INVALID, "no pinUvAuthToken")
        expected = PROTOCOLS[protocol].authenticate(token.value, message)
        if not hmac.compare_digest(expected, param):
            raise CtapStatusError(ERR.PIN_AUTH_INVALID, "pinUvAuthParam mismatch")
        if self.auth.clock() - token.issued > self.auth.config.pin_token_lifetime:
            self.token = None
            raise CtapStatusError(ERR.PIN_TOKEN_EXPIRED)
        if not token.permissions & permission:
            raise CtapStatusError(ERR.PIN_AUTH_INVALID, "token lacks the permission")
        if rp_id is not None:
            if token.rp_id is not None and token.rp_id != rp_id:
                raise CtapStatusError(ERR.PIN_AUTH_INVALID, "token bound to another rpId")
            if token.rp_id is None and bind_rp:
                token.rp_id = rp_id
        return token

    def token_used(self) -> None:
        """After a mc/ga with the token: its presence has been spent (CTAP 2.1 §6.5.2.1)."""
        if self.token is not None:
            self.token.user_present = False

    def _check_pin_hash(self, protocol: int, shared: bytes, pin_hash_enc: bytes) -> None:
        """Compare an encrypted PIN hash; retries and lockouts per CTAP 2.1 §6.5.5.5."""
        if self.retries <= 0:
            raise CtapStatusError(ERR.PIN_BLOCKED)
        if self.consecutive_mismatches >= 3:
            raise CtapStatusError(ERR.PIN_AUTH_BLOCKED)
        self._set_int(STATE_PIN_RETRIES, self.retries - 1)  # durable before comparing
        try:
            candidate = PROTOCOLS[protocol].decrypt(shared, pin_hash_enc)
        except ValueError:
            candidate = b""
        stored = self._pin_hash()
        if stored is None or not hmac.compare_digest(candidate[:16], stored) or len(candidate) != 16:
            self.regenerate_key_agreement()
            self.consecutive_mismatches += 1
            if self.retries <= 0:
                raise CtapStatusError(ERR.PIN_BLOCKED)
            if self.consecutive_mismatches >= 3:
                raise CtapStatusError(ERR.PIN_AUTH_BLOCKED)
            raise CtapStatusError(ERR.PIN_INVALID)
        self.consecutive_mismatches = 0
        self._set_int(STATE_PIN_RETRIES, self.auth.config.max_pin_retries)

    def _decrypt_new_pin(self, protocol: int, shared: bytes, new_pin_enc: bytes) -> tuple[bytes, int]:
        expected_len = 64 if protocol == 1 else 80
        if len(new_pin_enc) != expected_len:
            raise CtapStatusError(ERR.INVALID_PARAMETER, "newPinEnc has the wrong length")
        padded = PROTOCOLS[protocol].decrypt(shared, new_pin_enc)
        pin = padded.split(b"\x00", 1)[0]
        if len(pin) > 63:
            raise CtapStatusError(ERR.PIN_POLICY_VIOLATION, "PIN longer than 63 bytes")
        try:
            code_points = len(pin.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise CtapStatusError(ERR.PIN_POLICY_VIOLATION, "PIN is not UTF-8") from e
        if code_points < self.auth.settings.min_pin_length:
            raise CtapStatusError(ERR.PIN_POLICY_VIOLATION, "PIN shorter than the minimum")
        return sha256(pin).digest()[:16], code_points


async def handle(auth: Authenticator, params: dict, call: Call) -> dict | None:
    if not auth.config.client_pin and not auth.config.builtin_uv:
        raise CtapStatusError(ERR.INVALID_COMMAND, "clientPIN not offered")
    sub = req_int(params, 0x02)
    pin = auth.pin
    if sub == GET_PIN_RETRIES:
        return {0x03: pin.retries, 0x04: pin.consecutive_mismatches >= 3}
    if sub == GET_UV_RETRIES:
        if not auth.config.builtin_uv:
            raise CtapStatusError(ERR.INVALID_SUBCOMMAND)
        return {0x05: pin.uv_retries}
    protocol = PinState.protocol(params, 0x01)
    if sub == GET_KEY_AGREEMENT:
        return {0x01: pin.key_agreement_cose()}
    if sub not in (SET_PIN, CHANGE_PIN, GET_PIN_TOKEN, GET_TOKEN_USING_UV, GET_TOKEN_USING_PIN):
        raise CtapStatusError(ERR.INVALID_SUBCOMMAND)
    if 0x03 not in params:
        raise CtapStatusError(ERR.MISSING_PARAMETER, "keyAgreement missing")
    key_agreement = opt_map(params, 0x03)
    proto = PROTOCOLS[protocol]

    if sub == SET_PIN:
        if not auth.config.client_pin:
            raise CtapStatusError(ERR.INVALID_SUBCOMMAND)
        param, new_pin_enc = opt_bytes(params, 0x04), opt_bytes(params, 0x05)
        if param is None or new_pin_enc is None:
            raise CtapStatusError(ERR.MISSING_PARAMETER)
        if pin.is_set:
            raise CtapStatusError(ERR.NOT_ALLOWED, "PIN already set")
        shared = pin.shared_secret(protocol, key_agreement)
        if not hmac.compare_digest(proto.authenticate(shared, new_pin_enc), param):
            raise CtapStatusError(ERR.PIN_AUTH_INVALID)
        pin_hash, code_points = pin._decrypt_new_pin(protocol, shared, new_pin_enc)
        pin._store_pin(pin_hash, code_points)
        auth.settings.set_force_change(False)
        return None

    if sub == CHANGE_PIN:
        if not auth.config.client_pin:
            raise CtapStatusError(ERR.INVALID_SUBCOMMAND)
        param, new_pin_enc = opt_bytes(params, 0x04), opt_bytes(params, 0x05)
        pin_hash_enc = opt_bytes(params, 0x06)
        if param is None or new_pin_enc is None or pin_hash_enc is None:
            raise CtapStatusError(ERR.MISSING_PARAMETER)
        if not pin.is_set:
            raise CtapStatusError(ERR.PIN_NOT_SET)
        if pin.retries <= 0:
            raise CtapStatusError(ERR.PIN_BLOCKED)
        shared = pin.shared_secret(protocol, key_agreement)
        if not hmac.compare_digest(proto.authenticate(shared, new_pin_enc + pin_hash_enc), param):
            raise CtapStatusError(ERR.PIN_AUTH_INVALID)
        pin._check_pin_hash(protocol, shared, pin_hash_enc)
        pin_hash, code_points = pin._decrypt_new_pin(protocol, shared, new_pin_enc)
        if auth.settings.force_change_pin and hmac.compare_digest(pin_hash, pin._pin_hash() or b""):
            raise CtapStatusError(ERR.PIN_POLICY_VIOLATION, "new PIN must differ")
        pin._store_pin(pin_hash, code_points)
        auth.settings.set_force_change(False)
        pin.invalidate_tokens()
        return None

    if sub == GET_TOKEN_USING_UV:
        permissions = opt_int(params, 0x09)
        rp_id = opt_str(params, 0x0A)
        if not auth.config.builtin_uv:
            raise CtapStatusError(ERR.NOT_ALLOWED, "no built-in UV")
        _check_permissions(auth, permissions, rp_id)
        shared = pin.shared_secret(protocol, key_agreement)
        call.rp_id = rp_id
        await auth.builtin_uv(call, rp_id)
        token = pin.new_token(permissions or 0, rp_id, user_present=True)
        return {0x02: proto.encrypt(shared, token)}

    # getPinToken / getPinUvAuthTokenUsingPinWithPermissions
    pin_hash_enc = opt_bytes(params, 0x06)
    if pin_hash_enc is None:
        raise CtapStatusError(ERR.MISSING_PARAMETER, "pinHashEnc missing")
    if sub == GET_PIN_TOKEN:
        if 0x09 in params or 0x0A in params:
            raise CtapStatusError(ERR.INVALID_PARAMETER, "getPinToken takes no permissions")
        permissions, rp_id = PERM_MC | PERM_GA, None
    else:
        permissions = opt_int(params, 0x09)
        rp_id = opt_str(params, 0x0A)
        _check_permissions(auth, permissions, rp_id)
    if not pin.is_set:
        raise CtapStatusError(ERR.PIN_NOT_SET)
    shared = pin.shared_secret(protocol, key_agreement)
    pin._check_pin_hash(protocol, shared, pin_hash_enc)
    if auth.settings.force_change_pin:
        raise CtapStatusError(ERR.PIN_POLICY_VIOLATION, "PIN change required")
    token = pin.new_token(permissions or 0, rp_id, user_present=False)
    call.rp_id = rp_id
    return {0x02: proto.encrypt(shared, token)}


def _check_permissions(auth: Authenticator, permissions: int | None, rp_id: str | None) -> None:
    if permissions is None:
        raise CtapStatusError(ERR.MISSING_PARAMETER, "permissions missing")
    if permissions == 0:
        raise CtapStatusError(ERR.INVALID_PARAMETER, "no permissions requested")
    if permissions & ~SUPPORTED_PERMISSIONS:
        raise CtapStatusError(ERR.UNAUTHORIZED_PERMISSION)
    if permissions & (PERM_MC | PERM_GA) and rp_id is None:
        raise CtapStatusError(ERR.MISSING_PARAMETER, "rpId required for mc/ga")
    if permissions & PERM_LBW and not auth.config.resident_keys:
        raise CtapStatusError(ERR.UNAUTHORIZED_PERMISSION)

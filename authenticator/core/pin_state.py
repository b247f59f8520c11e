"""PIN and built-in UV state: the PIN hash, retries, lockouts and the pinUvAuthToken.

The PIN itself is never kept: only LEFT(SHA-256(PIN), 16), sealed under the device key.
Retries are decremented durably *before* a PIN hash is compared, so pulling the plug
mid-attempt never buys an extra guess. The clientPIN command (commands/client_pin.py) and
every command that checks a pinUvAuthParam use this object.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec

from authenticator.core.errors import ERR, CtapStatusError
from authenticator.core.params import opt_int

if TYPE_CHECKING:
    from authenticator.core.config import Config
    from storage.base import CredentialStore
    from storage.sealing import DeviceKeys

PERM_MC, PERM_GA, PERM_CM, PERM_BE, PERM_LBW, PERM_ACFG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
SUPPORTED_PERMISSIONS = PERM_MC | PERM_GA | PERM_CM | PERM_LBW | PERM_ACFG
# CTAP 2.1 §6.5.5.7.1 (backwards compatibility): getPinToken's token gets mc and ga, and cm
# since we implement credential management, so that FIDO_2_1_PRE clients (which only know
# getPinToken) can use credentialManagement (0x41 / 0x0A)
LEGACY_PERMISSIONS = PERM_MC | PERM_GA | PERM_CM

class _Protocols(dict):
    """PIN/UV auth protocols 1 and 2 (python-fido2's), built on first use: importing
    fido2.ctap2 costs ~100 ms of start-up that a CLI call without a PIN need not pay."""

    def _fill(self) -> None:
        if not dict.__len__(self):
            from fido2.ctap2.pin import PinProtocolV1, PinProtocolV2

            dict.update(self, {1: PinProtocolV1(), 2: PinProtocolV2()})

    def __getitem__(self, key):
        self._fill()
        return dict.__getitem__(self, key)

    def __contains__(self, key) -> bool:
        self._fill()
        return dict.__contains__(self, key)

    def __iter__(self):
        self._fill()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._fill()
        return dict.__len__(self)

    def get(self, key, default=None):
        self._fill()
        return dict.get(self, key, default)

    def keys(self):
        self._fill()
        return dict.keys(self)

    def items(self):
        self._fill()
        return dict.items(self)


PROTOCOLS = _Protocols()

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
    legacy: bool = False  # from getPinToken (0x05): a CTAP 2.0 / 2.1-PRE client's token


class PinState:
    def __init__(
        self,
        store: CredentialStore,
        config: Config,
        device_keys: DeviceKeys,
        clock: Callable[[], float],
    ) -> None:
        self.store, self.config, self.device_keys, self.clock = store, config, device_keys, clock
        self._key_agreement = ec.generate_private_key(ec.SECP256R1())
        self.token: Token | None = None
        self.consecutive_mismatches = 0
        self.uv_consecutive = 0

    # -- persistent state ---------------------------------------------------------------
    def _get_int(self, name: str, default: int) -> int:
        raw = self.store.get_state(name)
        return default if raw is None else struct.unpack(">i", raw)[0]

    def _set_int(self, name: str, value: int) -> None:
        self.store.set_state(name, struct.pack(">i", value))

    def _spend(self, name: str, default: int) -> bool:
        """Take one retry in a single store transaction (False: none left), so processes
        sharing the store cannot both spend the last one."""
        left = False

        def take(raw: bytes | None) -> bytes:
            nonlocal left
            value = default if raw is None else struct.unpack(">i", raw)[0]
            left = value > 0
            return struct.pack(">i", max(0, value - 1))

        self.store.update_state(name, take)
        return left

    @property
    def is_set(self) -> bool:
        return self.store.get_state(STATE_PIN) is not None

    @property
    def retries(self) -> int:
        return self._get_int(STATE_PIN_RETRIES, self.config.max_pin_retries)

    @property
    def uv_retries(self) -> int:
        return self._get_int(STATE_UV_RETRIES, self.config.max_uv_retries)

    @property
    def pin_code_points(self) -> int:
        return self._get_int(STATE_PIN_LENGTH, 0)

    def _pin_hash(self) -> bytes | None:
        sealed = self.store.get_state(STATE_PIN)
        if sealed is None:
            return None
        return self.device_keys.state.open(sealed, STATE_PIN.encode())

    def _store_pin(self, pin_hash: bytes, code_points: int) -> None:
        sealed = self.device_keys.state.seal(pin_hash, STATE_PIN.encode())
        self.store.set_state(STATE_PIN, sealed)
        self._set_int(STATE_PIN_RETRIES, self.config.max_pin_retries)
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

    def new_token(
        self, permissions: int, rp_id: str | None, user_present: bool, legacy: bool = False
    ) -> bytes:
        value = os.urandom(32)
        self.token = Token(value, permissions, rp_id, self.clock(), user_present, legacy=legacy)
        return value

    def invalidate_tokens(self) -> None:
        self.token = None

    def uv_succeeded(self) -> None:
        self.uv_consecutive = 0
        if self.uv_retries != self.config.max_uv_retries:  # no store write per ceremony
            self._set_int(STATE_UV_RETRIES, self.config.max_uv_retries)

    def uv_failed(self) -> None:
        self._spend(STATE_UV_RETRIES, self.config.max_uv_retries)

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
        if self.clock() - token.issued > self.config.pin_token_lifetime:
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
        if not self._spend(STATE_PIN_RETRIES, self.config.max_pin_retries):  # durable first
            raise CtapStatusError(ERR.PIN_BLOCKED)
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
        self._set_int(STATE_PIN_RETRIES, self.config.max_pin_retries)

    def _decrypt_new_pin(
        self, protocol: int, shared: bytes, new_pin_enc: bytes, min_pin_length: int
    ) -> tuple[bytes, int]:
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
        if code_points < min_pin_length:
            raise CtapStatusError(ERR.PIN_POLICY_VIOLATION, "PIN shorter than the minimum")
        return sha256(pin).digest()[:16], code_points



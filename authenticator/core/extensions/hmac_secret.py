"""hmac-secret and hmac-secret-mc: PRF outputs from a per-credential CredRandom.

Two CredRandoms per credential (with and without UV), derived from the device secret and
the credential id, so non-discoverable credentials need no storage for them.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from authenticator.core.errors import ERR, CtapStatusError
from authenticator.core.extensions.base import Extension, GaExt, McExt
from authenticator.core.pin_state import PROTOCOLS

IMPORTED = "cred_random"
"""``record.extra`` key of imported CredRandoms (CXF ``hmacCredentials``): withUV then
withoutUV, 32 bytes each, sealed under the device key (AAD: credential id + this name),
base64. An imported passkey keeps its PRF outputs."""


def cred_random(dev, cred: Any, uv: bool) -> bytes:
    record = getattr(cred, "record", None)
    sealed = record.extra.get(IMPORTED) if record is not None else None
    if sealed:
        import base64

        pair = dev.device_keys.records.open(
            base64.b64decode(sealed), cred.id + IMPORTED.encode()
        )
        return pair[:32] if uv else pair[32:64]
    return dev.device_keys.cred_random(cred.id, uv)


def _outputs(dev, cred: Any, uv: bool, value: Any) -> bytes:
    if not isinstance(value, dict):
        raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, "hmac-secret input must be a map")
    key_agreement, salt_enc, salt_auth = value.get(1), value.get(2), value.get(3)
    protocol = value.get(4, 1)
    if key_agreement is None or salt_enc is None or salt_auth is None:
        raise CtapStatusError(ERR.MISSING_PARAMETER, "hmac-secret input incomplete")
    if not isinstance(salt_enc, bytes) or not isinstance(salt_auth, bytes):
        raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE)
    if protocol not in PROTOCOLS:
        raise CtapStatusError(ERR.INVALID_PARAMETER, "unsupported pinUvAuthProtocol")
    proto = PROTOCOLS[protocol]
    shared = dev.pin.shared_secret(protocol, key_agreement)
    if not hmac.compare_digest(proto.authenticate(shared, salt_enc), salt_auth):
        raise CtapStatusError(ERR.PIN_AUTH_INVALID, "saltAuth mismatch")
    try:
        salts = proto.decrypt(shared, salt_enc)
    except ValueError as e:
        raise CtapStatusError(ERR.INVALID_LENGTH, "saltEnc is not block-aligned") from e
    if len(salts) not in (32, 64):
        raise CtapStatusError(ERR.INVALID_LENGTH, "salts must be 32 or 64 bytes")
    key = cred_random(dev, cred, uv)
    out = b"".join(
        hmac.new(key, salts[i : i + 32], hashlib.sha256).digest()
        for i in range(0, len(salts), 32)
    )
    return proto.encrypt(shared, out)


class HmacSecret(Extension):
    name = "hmac-secret"

    def configure(self, x: McExt, value: Any) -> None:
        if not isinstance(value, bool):
            raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, "hmac-secret must be a boolean")
        x.hmac_secret = value

    def at_make(self, x: McExt, value: Any) -> Any | None:
        return bool(value)

    def at_get(self, x: GaExt, value: Any) -> Any | None:
        if not x.cred.hmac_secret:
            return None
        if not x.up:
            raise CtapStatusError(ERR.UNSUPPORTED_OPTION, "hmac-secret needs user presence")
        return _outputs(x.dev, x.cred, x.uv, value)


class HmacSecretMc(Extension):
    """CTAP 2.2: PRF outputs already at makeCredential (WebAuthn prf eval at create)."""

    name = "hmac-secret-mc"

    def at_make(self, x: McExt, value: Any) -> Any | None:
        if x.cred is None or not x.hmac_secret:
            return None
        return _outputs(x.dev, x.cred, x.uv, value)

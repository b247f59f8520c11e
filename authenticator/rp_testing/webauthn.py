"""A WebAuthn client over any CtapDevice: L3 JSON options in, L3 JSON responses out.

It stands where a browser would: it checks the origin against the rpId, builds
clientDataJSON and speaks CTAP through python-fido2's ``Fido2Client``, then serialises
the result the way browsers' ``PublicKeyCredential.toJSON()`` does (base64url, no
padding, with ``publicKey``, ``publicKeyAlgorithm``, ``authenticatorData`` and
``transports`` on registrations).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from fido2.client import ClientError, DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapDevice
from fido2.utils import websafe_encode
from fido2.webauthn import (
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions,
)


class WebAuthnError(Exception):
    """What a browser would reject with (NotAllowedError, SecurityError, ...), in one line."""


class AutoInteraction(UserInteraction):
    """Scripting defaults: no questions; a PIN only if one was given."""

    def __init__(self, pin: str | None = None) -> None:
        self.pin = pin

    def prompt_up(self) -> None:
        pass

    def request_pin(self, permissions, rp_id):
        return self.pin

    def request_uv(self, permissions, rp_id) -> bool:
        return True


def _unwrap(options: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(options, Mapping):
        raise WebAuthnError("options must be a JSON object")
    if "publicKey" in options and isinstance(options["publicKey"], Mapping):
        return options["publicKey"]
    return options


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return websafe_encode(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _client_error(e: ClientError) -> WebAuthnError:
    """The DOMException a browser would raise, named as browsers name it."""
    from fido2.ctap import CtapError

    cause = f" ({e.cause})" if e.cause else ""
    if isinstance(e.cause, CtapError):
        code = e.cause.code
        if code == CtapError.ERR.CREDENTIAL_EXCLUDED:
            return WebAuthnError(f"InvalidStateError: credential already registered{cause}")
        if code == CtapError.ERR.UNSUPPORTED_ALGORITHM:
            return WebAuthnError(f"NotSupportedError: no supported algorithm{cause}")
        return WebAuthnError(f"NotAllowedError: the authenticator refused{cause}")
    messages = {
        ClientError.ERR.BAD_REQUEST: "SecurityError/TypeError: bad request",
        ClientError.ERR.DEVICE_INELIGIBLE: "NotAllowedError: no matching credential on the authenticator",
        ClientError.ERR.TIMEOUT: "NotAllowedError: timed out",
        ClientError.ERR.CONFIGURATION_UNSUPPORTED: "NotSupportedError: unsupported configuration",
    }
    return WebAuthnError(messages.get(e.code, f"NotAllowedError: {e.code.name}") + cause)


class WebAuthnClient:
    def __init__(
        self,
        device: CtapDevice,
        origin: str,
        *,
        pin: str | None = None,
        transports: list[str] | None = None,
        attachment: str | None = None,
        user_interaction: UserInteraction | None = None,
    ) -> None:
        self.origin = origin
        self.transports = transports or ["usb"]
        self.attachment = attachment
        self._client = Fido2Client(
            device,
            DefaultClientDataCollector(origin),
            user_interaction or AutoInteraction(pin),
        )

    def _browser_uv(self, options: Mapping[str, Any], create: bool) -> dict:
        """Like browsers, treat "preferred" UV as "discouraged" when the authenticator has
        no UV configured (python-fido2's client would refuse instead)."""
        opts = dict(options)
        info_opts = self._client.info.options
        if any(info_opts.get(k) for k in ("uv", "clientPin", "bioEnroll")):
            return opts
        if create:
            sel = dict(opts.get("authenticatorSelection") or {})
            if sel.get("userVerification", "preferred") == "preferred":
                sel["userVerification"] = "discouraged"
                opts["authenticatorSelection"] = sel
        elif opts.get("userVerification", "preferred") == "preferred":
            opts["userVerification"] = "discouraged"
        return opts

    def create(self, options: Mapping[str, Any]) -> dict:
        """navigator.credentials.create(): returns RegistrationResponseJSON."""
        try:
            parsed = PublicKeyCredentialCreationOptions.from_dict(
                self._browser_uv(_unwrap(options), True)
            )
        except (KeyError, TypeError, ValueError) as e:
            raise WebAuthnError(f"TypeError: invalid creation options: {e}") from e
        try:
            result = self._client.make_credential(parsed)
        except ClientError as e:
            raise _client_error(e) from e
        out = _jsonable(dict(result))
        att = result.response.attestation_object
        cred_data = att.auth_data.credential_data
        assert cred_data is not None
        response = out["response"]
        response["transports"] = list(self.transports)
        response["authenticatorData"] = websafe_encode(att.auth_data)
        response["publicKeyAlgorithm"] = cred_data.public_key[3]
        try:
            response["publicKey"] = websafe_encode(_cose_to_spki(cred_data.public_key))
        except (KeyError, ValueError):  # no SPKI form: omitted, as browsers do
            pass
        if self.attachment:
            out["authenticatorAttachment"] = self.attachment
        return out

    def get(self, options: Mapping[str, Any]) -> dict:
        """navigator.credentials.get(): returns AuthenticationResponseJSON."""
        try:
            parsed = PublicKeyCredentialRequestOptions.from_dict(
                self._browser_uv(_unwrap(options), False)
            )
        except (KeyError, TypeError, ValueError) as e:
            raise WebAuthnError(f"TypeError: invalid request options: {e}") from e
        try:
            selection = self._client.get_assertion(parsed)
        except ClientError as e:
            raise _client_error(e) from e
        result = selection.get_response(0)
        out = _jsonable(dict(result))
        if self.attachment:
            out["authenticatorAttachment"] = self.attachment
        return out


def _cose_to_spki(cose_key: Any) -> bytes:
    """The credential public key as SubjectPublicKeyInfo DER (what getPublicKey() returns)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    kty = cose_key[1]
    if kty == 2:
        curve = {1: ec.SECP256R1(), 2: ec.SECP384R1(), 3: ec.SECP521R1()}[cose_key[-1]]
        key = ec.EllipticCurvePublicNumbers(
            int.from_bytes(cose_key[-2], "big"), int.from_bytes(cose_key[-3], "big"), curve
        ).public_key()
    elif kty == 1:
        key = ed25519.Ed25519PublicKey.from_public_bytes(cose_key[-2])
    elif kty == 3:
        key = rsa.RSAPublicNumbers(
            int.from_bytes(cose_key[-2], "big"), int.from_bytes(cose_key[-1], "big")
        ).public_key()
    else:
        raise ValueError("unknown key type")
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

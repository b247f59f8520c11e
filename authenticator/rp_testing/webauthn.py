"""A WebAuthn client over any CtapDevice: L3 JSON options in, L3 JSON responses out.

It stands where a browser would and follows the WebAuthn Level 3 algorithms
(``parseCreationOptionsFromJSON``/``parseRequestOptionsFromJSON``, ``create()``,
``get()``): WebIDL conversion of every member (missing required member or a value that is
not an object/sequence where one is needed -> ``TypeError``; bad base64url ->
``EncodingError``), the spec's defaults, unknown enum values and transports ignored,
origin and rpId checks (registrable suffix, ``localhost``, related origins) -> ``SecurityError``,
then CTAP2 makeCredential/getAssertion built here as CBOR (empty strings stay empty text
strings), with PIN/UV through python-fido2's ``ClientPin`` only when UV is needed. Responses
are serialised like ``PublicKeyCredential.toJSON()``.

Every failure is a :class:`WebAuthnError` whose ``name`` is the DOMException name a
browser rejects with and whose text is one line naming the field and value at fault.

Deliberately not routed through python-fido2's ``Fido2Client``: it evaluates type hints on
every call (~0.3 ms) and maps empty strings to empty arrays on the way to CBOR.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import ipaddress
import json
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2

CTAPHID_CBOR = 0x10
MC, GA, GET_INFO = 0x01, 0x02, 0x04

# statuses named in messages (the full table is fido2.ctap.CtapError.ERR)
_CTAP_NAMES = {
    0x01: "INVALID_COMMAND", 0x02: "INVALID_PARAMETER", 0x03: "INVALID_LENGTH",
    0x11: "CBOR_UNEXPECTED_TYPE", 0x12: "INVALID_CBOR", 0x14: "MISSING_PARAMETER",
    0x15: "LIMIT_EXCEEDED", 0x19: "CREDENTIAL_EXCLUDED", 0x21: "PROCESSING",
    0x22: "INVALID_CREDENTIAL", 0x23: "USER_ACTION_PENDING", 0x24: "OPERATION_PENDING",
    0x25: "NO_OPERATIONS", 0x26: "UNSUPPORTED_ALGORITHM", 0x27: "OPERATION_DENIED",
    0x28: "KEY_STORE_FULL", 0x2B: "UNSUPPORTED_OPTION", 0x2C: "INVALID_OPTION",
    0x2D: "KEEPALIVE_CANCEL", 0x2E: "NO_CREDENTIALS", 0x2F: "USER_ACTION_TIMEOUT",
    0x30: "NOT_ALLOWED", 0x31: "PIN_INVALID", 0x32: "PIN_BLOCKED", 0x33: "PIN_AUTH_INVALID",
    0x34: "PIN_AUTH_BLOCKED", 0x35: "PIN_NOT_SET", 0x36: "PUAT_REQUIRED",
    0x37: "PIN_POLICY_VIOLATION", 0x39: "REQUEST_TOO_LARGE", 0x3A: "ACTION_TIMEOUT",
    0x3B: "UP_REQUIRED", 0x3C: "UV_BLOCKED", 0x3D: "INTEGRITY_FAILURE",
    0x3E: "INVALID_SUBCOMMAND", 0x3F: "UV_INVALID", 0x40: "UNAUTHORIZED_PERMISSION",
    0x7F: "OTHER",
}

TRANSPORTS = ("usb", "nfc", "ble", "smart-card", "hybrid", "internal")
HINTS = ("security-key", "client-device", "hybrid")
ATTESTATION = ("none", "indirect", "direct", "enterprise")
RESIDENT_KEY = ("discouraged", "preferred", "required")
USER_VERIFICATION = ("required", "preferred", "discouraged")
ATTACHMENT = ("platform", "cross-platform")
DEFAULT_ALGS = (-7, -257)  # L3: ES256 and RS256 when pubKeyCredParams is empty
TIMEOUT_MIN_MS, TIMEOUT_MAX_MS, TIMEOUT_DEFAULT_MS = 10_000, 600_000, 300_000  # Chromium's
MAX_RELATED_LABELS = 5


class WebAuthnError(Exception):
    """What a browser rejects with: ``name`` is the DOMException name (NotAllowedError,
    SecurityError, TypeError, EncodingError, NotSupportedError, InvalidStateError,
    SyntaxError); ``str()`` is one line, ``"Name: field 'value': why"``."""

    def __init__(self, name: str, message: str, ctap_status: int | None = None) -> None:
        message = " ".join(str(message).split())  # one line, whatever the input held
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message
        self.ctap_status = ctap_status


def _show(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=True) if not isinstance(value, bytes) else value.hex()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _missing(path: str) -> WebAuthnError:
    return WebAuthnError("TypeError", f"{path}: required member is missing")


# -- WebIDL conversions of JSON values (what the browser's bindings do) -------------------
_UNDEFINED = object()


def _js_number_string(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    if v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    return repr(v)


def to_dom_string(v: Any, path: str) -> str:
    """ECMAScript ToString, as WebIDL does for DOMString members."""
    if isinstance(v, str):
        # lone surrogates cannot reach UTF-8: browsers send U+FFFD
        return v.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _js_number_string(v)
    if isinstance(v, list):
        return ",".join("" if x is None else to_dom_string(x, path) for x in v)
    return "[object Object]"


def _to_number(v: Any) -> float:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float):
        return float(v)
    if v is None:
        return 0.0
    if isinstance(v, str | list):
        text = to_dom_string(v, "").strip()
        if text == "":
            return 0.0
        try:
            if text.lower().startswith(("0x", "0o", "0b")):
                return float(int(text, 0))
            if text in ("Infinity", "+Infinity", "-Infinity"):
                return math.inf if not text.startswith("-") else -math.inf
            if any(c.isalpha() and c not in "eE" for c in text):
                return math.nan
            return float(text)
        except ValueError:
            return math.nan
    return math.nan  # an object


def _to_int(v: Any, bits: int, signed: bool) -> int:
    """WebIDL ``long``/``unsigned long`` without [EnforceRange]: modulo 2^bits."""
    x = _to_number(v)
    if math.isnan(x) or math.isinf(x):
        return 0
    n = int(x) % (1 << bits)
    if signed and n >= 1 << (bits - 1):
        n -= 1 << bits
    return n


def to_boolean(v: Any) -> bool:
    if isinstance(v, float) and math.isnan(v):
        return False
    return v not in (None, False, 0, "") if not isinstance(v, list | dict) else True


def to_dictionary(v: Any, path: str) -> Mapping[str, Any]:
    """undefined/null -> empty dictionary; an object (or array) -> its members."""
    if v is _UNDEFINED or v is None:
        return {}
    if isinstance(v, Mapping):
        return v
    if isinstance(v, list):
        return {}  # an array is an object without these members
    raise WebAuthnError("TypeError", f"{path} {_show(v)}: is not an object")


def to_sequence(v: Any, path: str) -> list:
    if isinstance(v, list):
        return v
    raise WebAuthnError("TypeError", f"{path} {_show(v)}: is not a sequence (array)")


def _member(d: Mapping[str, Any], key: str) -> Any:
    return d.get(key, _UNDEFINED)


def _required(d: Mapping[str, Any], key: str, path: str) -> Any:
    v = d.get(key, _UNDEFINED)
    if v is _UNDEFINED:
        raise _missing(path)
    return v


_B64URL = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64url_decode(v: Any, path: str) -> bytes:
    """A Base64URLString member: base64url, unpadded (correct '=' padding tolerated)."""
    text = to_dom_string(v, path)
    raw = text.rstrip("=").encode("utf-8", "replace")
    padding = len(text) - len(raw)
    if (
        not set(raw) <= _B64URL
        or len(raw) % 4 == 1
        or (padding and (len(text) % 4 or padding > 2))
    ):
        raise WebAuthnError("EncodingError", f"{path} {_show(text)}: is not valid base64url")
    try:
        return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as e:
        raise WebAuthnError("EncodingError", f"{path} {_show(text)}: is not valid base64url") from e


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# -- origins and RP IDs -------------------------------------------------------------------
@dataclass(frozen=True)
class Origin:
    """A tuple origin: scheme, host (ASCII, lower case) and port (None = the default)."""

    scheme: str
    host: str
    port: int | None = None

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}" + (f":{self.port}" if self.port else "")

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host.strip("[]"))
            return True
        except ValueError:
            return False

    @property
    def is_localhost(self) -> bool:
        return self.host == "localhost" or self.host.endswith(".localhost")


def parse_origin(text: str, what: str = "origin") -> Origin:
    """A serialized origin (``https://example.com[:port]``); a trailing '/' is tolerated."""
    from urllib.parse import urlsplit

    if not isinstance(text, str) or not text:
        raise WebAuthnError("SecurityError", f"{what} {_show(text)}: is not an origin")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise WebAuthnError("SecurityError", f"{what} {_show(text)}: is not an origin ({e})") from e
    scheme = parts.scheme.lower()
    if (
        scheme not in ("https", "http")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise WebAuthnError(
            "SecurityError", f"{what} {_show(text)}: is not an origin (scheme://host[:port])"
        )
    host = _domain_to_ascii(parts.hostname, what)
    if port == {"https": 443, "http": 80}[scheme]:
        port = None
    return Origin(scheme, host, port)


def _domain_to_ascii(host: str, what: str) -> str:
    host = host.lower().rstrip(".") if host != "." else host
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as e:
        raise WebAuthnError("SecurityError", f"{what} host {_show(host)}: is not a valid domain") from e


_psl = None


def _public_suffixes():
    global _psl
    if _psl is None:
        from publicsuffixlist import PublicSuffixList

        _psl = PublicSuffixList()
    return _psl


def is_registrable_suffix(rp_id: str, host: str) -> bool:
    """HTML's "is a registrable domain suffix of or equal to" (with the Public Suffix List)."""
    if not rp_id or rp_id.startswith(".") or rp_id.endswith("."):
        return False
    if rp_id == host:
        return True
    try:
        ipaddress.ip_address(rp_id.strip("[]"))
        return False
    except ValueError:
        pass
    if not host.endswith("." + rp_id):
        return False
    if rp_id == "localhost":
        return True  # sub.localhost may use localhost, as browsers allow
    return not _public_suffixes().is_public(rp_id)


def registrable_label(host: str) -> str:
    """The label of a host's registrable domain: ``example`` for ``login.example.co.uk``."""
    if host == "localhost" or host.endswith(".localhost"):
        return "localhost"
    private = _public_suffixes().privatesuffix(host)
    return private.split(".")[0] if private else ""


def check_related_origins(origin: Origin, rp_id: str, document: Any) -> bool:
    """L3 §5.11: is ``origin`` listed in ``rp_id``'s /.well-known/webauthn ``origins``?"""
    if not isinstance(document, Mapping) or not isinstance(document.get("origins"), list):
        return False
    labels: list[str] = []
    for item in document["origins"]:
        try:
            other = parse_origin(item)
        except WebAuthnError:
            continue
        if other.is_ip:
            continue
        label = registrable_label(other.host)
        if not label:
            continue
        if len(labels) >= MAX_RELATED_LABELS and label not in labels:
            continue
        if other == origin:
            return True
        if len(labels) < MAX_RELATED_LABELS and label not in labels:
            labels.append(label)
    return False


def load_related_origins(path: str) -> dict[str, Any]:
    """``--related-origins FILE``: one /.well-known/webauthn document (``{"origins": [...]}``),
    or ``{"rpId": document, ...}`` for several RP IDs. Returns rpId (or "*") -> document."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, Mapping):
        raise ValueError("related origins must be a JSON object")
    if isinstance(data.get("origins"), list):
        return {"*": data}
    if all(isinstance(v, Mapping) and isinstance(v.get("origins"), list) for v in data.values()):
        return dict(data)
    raise ValueError('related origins must look like {"origins": ["https://...", ...]}')


# -- clientDataJSON -----------------------------------------------------------------------
_CCD_ESCAPED = re.compile(r'["\\\x00-\x1f]')


def _ccd_string(s: str) -> str:
    """L3 CCDToString: JSON string with exactly the escapes the spec allows."""
    if _CCD_ESCAPED.search(s) is None:  # the common case (base64url, origins): as is
        return '"' + s + '"'
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif c < 0x20:
            out.append(f"\\u{c:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def client_data_json(kind: str, challenge: bytes, origin: Origin, top: Origin | None) -> bytes:
    cross = top is not None and top != origin
    text = (
        '{"type":' + _ccd_string(kind)
        + ',"challenge":' + _ccd_string(b64url(challenge))
        + ',"origin":' + _ccd_string(str(origin))
        + ',"crossOrigin":' + ("true" if cross else "false")
    )
    if cross:
        text += ',"topOrigin":' + _ccd_string(str(top))
    return (text + "}").encode("utf-8")


# -- parsed options -------------------------------------------------------------------------
@dataclass
class Descriptor:
    id: bytes
    transports: list[str] = field(default_factory=list)


@dataclass
class CreationOptions:
    """PublicKeyCredentialCreationOptions after parseCreationOptionsFromJSON + create()'s
    defaults. Unknown enum values are already replaced by their defaults."""

    rp_name: str
    rp_id: str | None
    user_id: bytes
    user_name: str
    user_display_name: str
    challenge: bytes
    algorithms: list[int]
    timeout_ms: int | None = None
    exclude: list[Descriptor] = field(default_factory=list)
    attachment: str | None = None
    resident_key: str = "discouraged"
    user_verification: str = "preferred"
    hints: list[str] = field(default_factory=list)
    attestation: str = "none"
    attestation_formats: list[str] = field(default_factory=list)
    extensions: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestOptions:
    challenge: bytes
    rp_id: str | None = None
    timeout_ms: int | None = None
    allow: list[Descriptor] = field(default_factory=list)
    user_verification: str = "preferred"
    hints: list[str] = field(default_factory=list)
    extensions: dict[str, Any] = field(default_factory=dict)
    mediation: str = "optional"


def _unwrap(options: Any) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """CredentialCreationOptions/CredentialRequestOptions: ``{"publicKey": ...}`` or the
    bare PublicKey*OptionsJSON. Returns (publicKey, outer)."""
    if not isinstance(options, Mapping):
        raise WebAuthnError("TypeError", f"options {_show(options)}: is not an object")
    if "publicKey" in options:
        inner = options["publicKey"]
        if not isinstance(inner, Mapping):
            raise WebAuthnError("TypeError", f"publicKey {_show(inner)}: is not an object")
        return inner, options
    if "challenge" not in options and options.get("mediation") is not None:
        raise WebAuthnError("NotSupportedError", "publicKey: required member is missing")
    return options, {}


def _enum(v: Any, allowed: Sequence[str]) -> str | None:
    """A DOMString member typed by an enum: unknown values are ignored (None)."""
    return v if isinstance(v, str) and v in allowed else None


def _descriptors(v: Any, path: str) -> list[Descriptor]:
    out = []
    for i, item in enumerate(to_sequence(v, path)):
        p = f"{path}[{i}]"
        d = to_dictionary(item, p)
        raw_id = _required(d, "id", f"{p}.id")
        kind = to_dom_string(_required(d, "type", f"{p}.type"), f"{p}.type")
        cred_id = b64url_decode(raw_id, f"{p}.id")
        transports: list[str] = []
        if _member(d, "transports") is not _UNDEFINED:
            for j, t in enumerate(to_sequence(d["transports"], f"{p}.transports")):
                name = to_dom_string(t, f"{p}.transports[{j}]")
                if name in TRANSPORTS:
                    transports.append(name)  # unknown transports are ignored
        if kind == "public-key":  # other credential types are ignored
            out.append(Descriptor(cred_id, transports))
    return out


def _timeout(d: Mapping[str, Any]) -> int | None:
    v = _member(d, "timeout")
    return None if v is _UNDEFINED else _to_int(v, 32, signed=False)


def _hints(d: Mapping[str, Any]) -> list[str]:
    v = _member(d, "hints")
    if v is _UNDEFINED:
        return []
    seen = [to_dom_string(h, f"hints[{i}]") for i, h in enumerate(to_sequence(v, "hints"))]
    return [h for h in dict.fromkeys(seen) if h in HINTS]


def _extensions_json(d: Mapping[str, Any]) -> dict[str, Any]:
    return dict(to_dictionary(_member(d, "extensions"), "extensions"))


def parse_creation_options(options: Any) -> CreationOptions:
    """parseCreationOptionsFromJSON (L3 §5.1.9) plus create()'s own type checks."""
    pk, _ = _unwrap(options)
    rp = to_dictionary(_required(pk, "rp", "rp"), "rp")
    user = to_dictionary(_required(pk, "user", "user"), "user")
    # WebIDL reads dictionary members in lexicographic order; report the first missing one
    rp_name = to_dom_string(_required(rp, "name", "rp.name"), "rp.name")
    rp_id_raw = _member(rp, "id")
    rp_id = None if rp_id_raw is _UNDEFINED else to_dom_string(rp_id_raw, "rp.id")
    user_display = to_dom_string(
        _required(user, "displayName", "user.displayName"), "user.displayName"
    )
    user_id_raw = _required(user, "id", "user.id")
    user_name = to_dom_string(_required(user, "name", "user.name"), "user.name")
    challenge_raw = _required(pk, "challenge", "challenge")
    params_raw = _required(pk, "pubKeyCredParams", "pubKeyCredParams")
    params = []
    for i, item in enumerate(to_sequence(params_raw, "pubKeyCredParams")):
        p = f"pubKeyCredParams[{i}]"
        d = to_dictionary(item, p)
        alg = _to_int(_required(d, "alg", f"{p}.alg"), 32, signed=True)
        kind = to_dom_string(_required(d, "type", f"{p}.type"), f"{p}.type")
        params.append((kind, alg))
    challenge = b64url_decode(challenge_raw, "challenge")
    user_id = b64url_decode(user_id_raw, "user.id")
    exclude = []
    if _member(pk, "excludeCredentials") is not _UNDEFINED:
        exclude = _descriptors(pk["excludeCredentials"], "excludeCredentials")
    sel = to_dictionary(_member(pk, "authenticatorSelection"), "authenticatorSelection")
    attachment = _member(sel, "authenticatorAttachment")
    attachment = None if attachment is _UNDEFINED else _enum(
        to_dom_string(attachment, "authenticatorSelection.authenticatorAttachment"), ATTACHMENT
    )
    rk_raw = _member(sel, "residentKey")
    rk = None if rk_raw is _UNDEFINED else _enum(
        to_dom_string(rk_raw, "authenticatorSelection.residentKey"), RESIDENT_KEY
    )
    require_rk = to_boolean(sel.get("requireResidentKey", False))
    if rk is None:  # L3: absent or unknown -> from requireResidentKey
        rk = "required" if require_rk else "discouraged"
    uv_raw = _member(sel, "userVerification")
    uv = "preferred" if uv_raw is _UNDEFINED else (
        _enum(to_dom_string(uv_raw, "authenticatorSelection.userVerification"), USER_VERIFICATION)
        or "preferred"
    )
    att_raw = _member(pk, "attestation")
    attestation = "none" if att_raw is _UNDEFINED else (
        _enum(to_dom_string(att_raw, "attestation"), ATTESTATION) or "none"
    )
    formats = []
    if _member(pk, "attestationFormats") is not _UNDEFINED:
        formats = [
            to_dom_string(f, f"attestationFormats[{i}]")
            for i, f in enumerate(to_sequence(pk["attestationFormats"], "attestationFormats"))
        ]
    if not 1 <= len(user_id) <= 64:
        raise WebAuthnError(
            "TypeError", f"user.id {_show(user_id_raw)}: must be 1 to 64 bytes, not {len(user_id)}"
        )
    algorithms = [alg for kind, alg in params if kind == "public-key"]
    if params and not algorithms:
        raise WebAuthnError(
            "NotSupportedError",
            f"pubKeyCredParams {_show(params_raw)}: no entry of type 'public-key'",
        )
    return CreationOptions(
        rp_name=rp_name,
        rp_id=rp_id,
        user_id=user_id,
        user_name=user_name,
        user_display_name=user_display,
        challenge=challenge,
        algorithms=list(dict.fromkeys(algorithms)) or list(DEFAULT_ALGS),
        timeout_ms=_timeout(pk),
        exclude=exclude,
        attachment=attachment,
        resident_key=rk,
        user_verification=uv,
        hints=_hints(pk),
        attestation=attestation,
        attestation_formats=formats,
        extensions=_extensions_json(pk),
    )


def parse_request_options(options: Any) -> RequestOptions:
    """parseRequestOptionsFromJSON (L3 §5.1.10) plus get()'s own type checks."""
    pk, outer = _unwrap(options)
    challenge = b64url_decode(_required(pk, "challenge", "challenge"), "challenge")
    rp_id_raw = _member(pk, "rpId")
    allow = []
    if _member(pk, "allowCredentials") is not _UNDEFINED:
        allow = _descriptors(pk["allowCredentials"], "allowCredentials")
    uv_raw = _member(pk, "userVerification")
    uv = "preferred" if uv_raw is _UNDEFINED else (
        _enum(to_dom_string(uv_raw, "userVerification"), USER_VERIFICATION) or "preferred"
    )
    mediation = outer.get("mediation", "optional")
    return RequestOptions(
        challenge=challenge,
        rp_id=None if rp_id_raw is _UNDEFINED else to_dom_string(rp_id_raw, "rpId"),
        timeout_ms=_timeout(pk),
        allow=allow,
        user_verification=uv,
        hints=_hints(pk),
        extensions=_extensions_json(pk),
        mediation=mediation if isinstance(mediation, str) else "optional",
    )


# -- the authenticator's getInfo -------------------------------------------------------------
@dataclass
class Info:
    versions: list[str]
    extensions: list[str]
    options: dict[str, bool]
    pin_protocols: list[int]
    max_creds_in_list: int | None
    max_cred_id_length: int | None
    algorithms: list[int] | None
    transports: list[str] | None = None

    @classmethod
    def parse(cls, m: Mapping[int, Any]) -> Info:
        algs = m.get(0x0A)
        return cls(
            versions=list(m.get(0x01, [])),
            extensions=list(m.get(0x02, [])),
            options=dict(m.get(0x04, {})),
            pin_protocols=list(m.get(0x06, [])),
            max_creds_in_list=m.get(0x07),
            max_cred_id_length=m.get(0x08),
            algorithms=[a.get("alg") for a in algs] if algs else None,
            transports=[t for t in m.get(0x09) or [] if isinstance(t, str)] or None,
        )

    @property
    def uv_configured(self) -> bool:
        return bool(self.options.get("uv") or self.options.get("clientPin"))


# -- DOMException mapping --------------------------------------------------------------------
def ctap_error(status: int, command: str) -> WebAuthnError:
    """The DOMException a browser rejects with when the authenticator answers ``status``."""
    name = _CTAP_NAMES.get(status, f"0x{status:02X}")
    what = f"{command} answered CTAP2_ERR_{name} (0x{status:02X})"
    if status == 0x19:
        return WebAuthnError("InvalidStateError", f"excludeCredentials: {what}", status)
    if status == 0x26:
        return WebAuthnError("NotSupportedError", f"pubKeyCredParams: {what}", status)
    return WebAuthnError("NotAllowedError", what, status)


def _cbor_decode_from(data: bytes) -> tuple[Any, bytes]:
    """One CBOR item (cbor2's C decoder) and the bytes after it."""
    fp = io.BytesIO(data)
    value = cbor2.CBORDecoder(fp).decode()
    return value, data[fp.tell() :]


def _cbor_decode(data: bytes) -> Any:
    """Exactly one CBOR item: trailing bytes are an error, as in browsers' CBOR readers."""
    value, rest = _cbor_decode_from(data)
    if rest:
        raise ValueError(f"{len(rest)} bytes after the CBOR item")
    return value


def _cbor_encode(value: Any) -> bytes:
    """CTAP2 canonical CBOR (length-first key order)."""
    return cbor2.dumps(value, canonical=True)


class _Deadline(threading.Event):
    """The WebAuthn timeout as a cancel event that costs nothing until someone looks:
    set by :meth:`set` or once ``deadline`` (``time.monotonic``) has passed. Devices poll
    ``is_set()`` or block in ``wait()``; both see the deadline, so no timer thread is
    started per ceremony (starting one cost ~0.3 ms, most of a ceremony)."""

    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline

    def is_set(self) -> bool:
        return super().is_set() or time.monotonic() >= self.deadline

    isSet = is_set

    def wait(self, timeout: float | None = None) -> bool:
        remaining = self.deadline - time.monotonic()
        if timeout is None or timeout > remaining:
            timeout = max(remaining, 0.0)
        super().wait(timeout)
        return self.is_set()


class _Transport:
    """CTAP2 over a python-fido2 ``CtapDevice``: bytes out, (status, map) back."""

    def __init__(self, device: Any, cancel: threading.Event) -> None:
        self.device = device
        self.cancel = cancel

    def call(self, cmd: int, payload: Mapping[int, Any] | None, name: str) -> dict:
        data = bytes([cmd]) + (_cbor_encode(dict(payload)) if payload else b"")
        try:
            raw = self.device.call(CTAPHID_CBOR, data, self.cancel)
        except Exception as e:  # CtapError from the HID layer, OSError, timeouts
            code = getattr(e, "code", None)
            if isinstance(code, int):
                raise ctap_error(int(code), name) from e
            raise WebAuthnError("NotAllowedError", f"{name}: the authenticator is unreachable ({e})") from e
        if not raw:
            raise WebAuthnError("NotAllowedError", f"{name}: empty response from the authenticator")
        if raw[0] != 0:
            if self.cancel.is_set() and raw[0] == 0x2D:
                raise WebAuthnError("NotAllowedError", f"{name}: the operation timed out", 0x2D)
            raise ctap_error(raw[0], name)
        try:
            value = _cbor_decode(raw[1:]) if len(raw) > 1 else {}
        except Exception as e:
            raise WebAuthnError("NotAllowedError", f"{name}: the authenticator sent invalid CBOR") from e
        if not isinstance(value, dict):
            raise WebAuthnError("NotAllowedError", f"{name}: the authenticator's response is not a map")
        return value


class DirectDevice:
    """The core as a device for one synchronous caller (the CLI): commands run on a private
    event loop in the calling thread. Unlike ``transports.inprocess.InProcessDevice`` it
    starts no thread and imports nothing of python-fido2's HID stack, which keeps a
    ``fido-emu webauthn`` call cheap. Not for use inside a running event loop."""

    capabilities = 0x01 | 0x04  # WINK | CBOR, as python-fido2's Ctap2 expects

    def __init__(self, handler: Any, transport: str = "usb") -> None:
        import asyncio

        self.handler = handler
        self.transport = transport
        self._loop = asyncio.new_event_loop()

    def call(self, cmd: int, data: bytes = b"", event: threading.Event | None = None,
             on_keepalive: Any = None) -> bytes:
        import asyncio

        from authenticator.core.ports import CommandContext

        if cmd != CTAPHID_CBOR:
            raise WebAuthnError("NotSupportedError", f"CTAPHID command 0x{cmd:02X} over DirectDevice")

        async def run() -> bytes:
            ctx = CommandContext(transport=self.transport)
            task = asyncio.ensure_future(self.handler.handle_cbor(bytes(data), ctx))
            while not task.done():
                if event is not None and event.is_set():
                    ctx.cancel.set()
                await asyncio.wait({task}, timeout=0.05)
            return task.result()

        return self._loop.run_until_complete(run())

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.close()


# -- the client --------------------------------------------------------------------------------
class WebAuthnClient:
    """``navigator.credentials.create()/get()`` for one calling origin.

    ``origin`` is the caller's origin (the frame that calls WebAuthn); ``top_origin`` the
    top-level page's origin when the caller is an iframe (clientDataJSON then says
    ``crossOrigin: true`` and carries ``topOrigin``). Both can be overridden per call.
    ``related_origins`` maps an RP ID (or ``"*"``) to its ``/.well-known/webauthn``
    document. ``pin`` answers a PIN prompt; ``transports``/``attachment`` are what the
    browser reports for this authenticator.
    """

    def __init__(
        self,
        device: Any,
        origin: str,
        *,
        top_origin: str | None = None,
        pin: str | None = None,
        transports: Sequence[str] | None = None,
        attachment: str | None = None,
        related_origins: Mapping[str, Any] | None = None,
    ) -> None:
        self.device = device
        self.origin = origin
        self.top_origin = top_origin
        self.pin = pin
        self.transports = list(transports or [])  # empty: the authenticator's getInfo says
        self.attachment = attachment
        self.related_origins = dict(related_origins or {})
        self._checked_origins: dict[tuple[str, str | None], tuple[Origin, Origin | None]] = {}
        parse_origin(origin)  # fail early on a bad origin
        if top_origin is not None:
            parse_origin(top_origin, "top_origin")

    # -- origins --------------------------------------------------------------------------
    def _origins(self, origin: str | None, top_origin: str | None) -> tuple[Origin, Origin | None]:
        """The checked (caller, top) origins. Pure in its two strings, so remembered per
        client (parsing and checking cost ~10 µs a ceremony); refusals are not remembered
        and raise again."""
        key = (origin or self.origin, top_origin if top_origin is not None else self.top_origin)
        if not all(isinstance(k, str) for k in key if k is not None):
            return self._check_origins(*key)  # refused with the usual one-line error
        checked = self._checked_origins.get(key)
        if checked is None:
            checked = self._check_origins(*key)
            if len(self._checked_origins) >= 256:
                self._checked_origins.clear()
            self._checked_origins[key] = checked
        return checked

    def _check_origins(self, caller_text: str, top_text: str | None) -> tuple[Origin, Origin | None]:
        caller = parse_origin(caller_text)
        top = parse_origin(top_text, "top_origin") if top_text is not None else None
        for o, what in ((caller, "origin"), (top, "top_origin")):
            if o is None:
                continue
            if o.scheme == "http" and not o.is_localhost:
                raise WebAuthnError(
                    "SecurityError",
                    f"{what} {_show(str(o))}: not a secure context (https, or http://localhost)",
                )
        if caller.is_ip:
            raise WebAuthnError(
                "SecurityError", f"origin {_show(str(caller))}: an IP address is not a valid domain"
            )
        return caller, top

    def _rp_id(self, rp_id: str | None, origin: Origin, field_name: str) -> str:
        if rp_id is None:
            return origin.host  # the origin's effective domain
        candidate = rp_id.lower() if rp_id.isascii() else _domain_to_ascii(rp_id, field_name)
        if is_registrable_suffix(candidate, origin.host):
            return candidate
        doc = self.related_origins.get(candidate, self.related_origins.get("*"))
        if doc is not None and check_related_origins(origin, candidate, doc):
            return candidate
        raise WebAuthnError(
            "SecurityError",
            f"{field_name} {_show(rp_id)}: is not a registrable domain suffix of origin "
            f"{_show(str(origin))}" + (" nor a listed related origin" if doc is not None else ""),
        )

    # -- plumbing -------------------------------------------------------------------------
    def _start(self, timeout_ms: int | None, uv: str) -> _Transport:
        if timeout_ms is None:
            ms = TIMEOUT_DEFAULT_MS
        else:
            ms = min(max(timeout_ms, TIMEOUT_MIN_MS), TIMEOUT_MAX_MS)
        return _Transport(self.device, _Deadline(time.monotonic() + ms / 1000))

    def _want_uv(self, info: Info, uv: str, rk: bool, make: bool, field_name: str) -> bool:
        """Whether to verify the user, as browsers decide it."""
        if uv == "required" or info.options.get("alwaysUv"):
            if not info.uv_configured:
                raise WebAuthnError(
                    "NotAllowedError",
                    f"{field_name} 'required': the authenticator has no PIN set and no built-in UV",
                )
            return True
        if not info.uv_configured:
            return False
        if uv == "preferred":
            return True
        # discouraged: a discoverable credential, or an authenticator that insists, still needs it
        return make and (rk or not info.options.get("makeCredUvNotRqd"))

    def _uv_params(
        self, t: _Transport, info: Info, permission: int, rp_id: str, cdh: bytes, field_name: str
    ) -> tuple[dict[int, Any], dict[str, bool], Any]:
        """pinUvAuthParam/protocol (keys 8/9 or 6/7 later), or the uv option; plus the
        ClientPin used (for extensions needing the shared secret)."""
        from fido2.ctap import CtapError
        from fido2.ctap2 import ClientPin, Ctap2

        try:
            ctap = Ctap2(t.device)
            client_pin = ClientPin(ctap)
            if info.options.get("uv"):
                if info.options.get("pinUvAuthToken"):
                    token = client_pin.get_uv_token(
                        ClientPin.PERMISSION(permission), rp_id, t.cancel
                    )
                else:
                    return {}, {"uv": True}, client_pin
            else:
                if not self.pin:
                    raise WebAuthnError(
                        "NotAllowedError",
                        f"{field_name}: the authenticator has a PIN and none was given "
                        "(pin=, --pin or FIDO_EMU_PIN)",
                    )
                token = client_pin.get_pin_token(self.pin, ClientPin.PERMISSION(permission), rp_id)
        except CtapError as e:
            raise ctap_error(int(e.code), "clientPIN") from e
        proto = client_pin.protocol
        auth = {"param": proto.authenticate(token, cdh), "protocol": proto.VERSION, "token": token}
        return auth, {}, client_pin

    def _chunks(self, info: Info, creds: list[Descriptor]) -> list[list[Descriptor]]:
        limit = info.max_cred_id_length
        usable = [c for c in creds if limit is None or len(c.id) <= limit]
        size = info.max_creds_in_list or 1
        return [usable[i : i + size] for i in range(0, len(usable), size)]

    def _preflight(self, t: _Transport, rp_id: str, chunks: list[list[Descriptor]]) -> list[Descriptor]:
        """Silent (up=false) getAssertion per chunk, as browsers do for long lists:
        returns the first chunk's match, or []."""
        cdh = hashlib.sha256(b"preflight").digest()
        for chunk in chunks:
            try:
                resp = t.call(GA, {
                    1: rp_id, 2: cdh, 3: [_cbor_descriptor(c) for c in chunk], 5: {"up": False},
                }, "getAssertion")
            except WebAuthnError as e:
                if e.ctap_status == 0x2E:
                    continue
                raise
            cred_id = resp.get(1, {}).get("id") if len(chunk) > 1 else chunk[0].id
            return [c for c in chunk if c.id == cred_id] or chunk[:1]
        return []

    # -- the checks a browser makes before it talks to any authenticator --------------------
    def check_create(self, options: Any, *, origin: str | None = None, top_origin: str | None = None):
        """Everything create() checks before CTAP (no device needed): raises the
        WebAuthnError a browser would; returns (options, rpId, origin, top, extensions)."""
        caller, top = self._origins(origin, top_origin)
        opts = parse_creation_options(options)
        rp_id = self._rp_id(opts.rp_id, caller, "rp.id")
        return opts, rp_id, caller, top, _CreateExtensions(opts.extensions)

    def check_get(self, options: Any, *, origin: str | None = None, top_origin: str | None = None):
        """get()'s checks before CTAP; see :meth:`check_create`."""
        caller, top = self._origins(origin, top_origin)
        opts = parse_request_options(options)
        rp_id = self._rp_id(opts.rp_id, caller, "rpId")
        return opts, rp_id, caller, top, _GetExtensions(opts.extensions, opts.allow)

    # -- create() -------------------------------------------------------------------------
    def create(
        self, options: Any, *, origin: str | None = None, top_origin: str | None = None
    ) -> dict:
        """navigator.credentials.create(): CreationOptionsJSON -> RegistrationResponseJSON."""
        opts, rp_id, caller, top, ext = self.check_create(options, origin=origin, top_origin=top_origin)
        t = self._start(opts.timeout_ms, opts.user_verification)
        return self._create(t, opts, rp_id, caller, top, ext)

    def _create(self, t, opts: CreationOptions, rp_id, caller, top, ext) -> dict:
        info = Info.parse(t.call(GET_INFO, None, "getInfo"))
        if opts.attachment and self.attachment and opts.attachment != self.attachment:
            raise WebAuthnError(
                "NotAllowedError",
                f"authenticatorSelection.authenticatorAttachment {_show(opts.attachment)}: "
                f"this authenticator is {self.attachment}",
            )
        rk = opts.resident_key == "required" or (
            opts.resident_key == "preferred" and bool(info.options.get("rk"))
        )
        if rk and not info.options.get("rk"):
            raise WebAuthnError(
                "NotAllowedError",
                "authenticatorSelection.residentKey 'required': the authenticator cannot store "
                "discoverable credentials",
            )
        if info.algorithms is not None and not set(opts.algorithms) & set(info.algorithms):
            raise WebAuthnError(
                "NotSupportedError",
                f"pubKeyCredParams {_show(opts.algorithms)}: the authenticator supports "
                f"{_show(info.algorithms)}",
            )
        cdj = client_data_json("webauthn.create", opts.challenge, caller, top)
        cdh = hashlib.sha256(cdj).digest()
        want_uv = self._want_uv(info, opts.user_verification, rk, True, "authenticatorSelection.userVerification")
        auth, uv_opt, client_pin = ({}, {}, None)
        if want_uv:
            auth, uv_opt, client_pin = self._uv_params(t, info, 0x01, rp_id, cdh, "authenticatorSelection.userVerification")
        exclude_chunks = self._chunks(info, opts.exclude)
        exclude = exclude_chunks[0] if len(exclude_chunks) == 1 else (
            self._preflight(t, rp_id, exclude_chunks) if exclude_chunks else []
        )
        request: dict[int, Any] = {
            1: cdh,
            2: {"id": rp_id, "name": opts.rp_name},
            3: {"id": opts.user_id, "name": opts.user_name, "displayName": opts.user_display_name},
            4: [{"alg": a, "type": "public-key"} for a in opts.algorithms],
        }
        if exclude:
            request[5] = [_cbor_descriptor(c) for c in exclude]
        extensions = ext.authenticator_inputs(info, t, client_pin, rk)
        if extensions:
            request[6] = extensions
        options = {**({"rk": True} if rk else {}), **uv_opt}
        if options:
            request[7] = options
        if auth:
            request[8], request[9] = auth["param"], auth["protocol"]
        resp = t.call(MC, request, "makeCredential")
        return self._registration(resp, cdj, opts, rk, ext, info.transports)

    def _registration(
        self, resp: dict, cdj: bytes, opts: CreationOptions, rk: bool, ext,
        device_transports: Sequence[str] | None = None,
    ) -> dict:
        fmt, auth_data, att_stmt = resp.get(1), resp.get(2), resp.get(3)
        if not isinstance(fmt, str) or not isinstance(auth_data, bytes) or not isinstance(att_stmt, dict):
            raise WebAuthnError("NotAllowedError", "makeCredential: the authenticator's response lacks fmt/authData/attStmt")
        parsed = parse_auth_data(auth_data)
        if parsed.credential_id is None or parsed.public_key is None:
            raise WebAuthnError("NotAllowedError", "makeCredential: authData carries no attested credential")
        if opts.attestation == "none" and fmt != "none":
            # L3 §5.1.3: the client replaces the statement with "none" and zeroes the AAGUID
            auth_data = auth_data[:37] + bytes(16) + auth_data[53:]
            fmt, att_stmt = "none", {}
        att_obj = _cbor_encode({"fmt": fmt, "attStmt": att_stmt, "authData": auth_data})
        alg = parsed.public_key.get(3)
        response: dict[str, Any] = {
            "clientDataJSON": b64url(cdj),
            "attestationObject": b64url(att_obj),
            # getTransports(): what the caller says, else the authenticator's getInfo transports
            # (as browsers do), else usb
            "transports": sorted(set(self.transports or device_transports or ["usb"])),
            "authenticatorData": b64url(auth_data),
            "publicKeyAlgorithm": alg,
        }
        spki = cose_to_spki(parsed.public_key)
        if spki is not None:
            response["publicKey"] = b64url(spki)
        out: dict[str, Any] = {
            "id": b64url(parsed.credential_id),
            "rawId": b64url(parsed.credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": ext.create_outputs(resp, parsed, rk),
        }
        if self.attachment:
            out["authenticatorAttachment"] = self.attachment
        return out

    # -- get() ----------------------------------------------------------------------------
    def get(
        self, options: Any, *, origin: str | None = None, top_origin: str | None = None
    ) -> dict:
        """navigator.credentials.get(): RequestOptionsJSON -> AuthenticationResponseJSON."""
        opts, rp_id, caller, top, ext = self.check_get(options, origin=origin, top_origin=top_origin)
        t = self._start(opts.timeout_ms, opts.user_verification)
        return self._get(t, opts, rp_id, caller, top, ext)

    def _get(self, t, opts: RequestOptions, rp_id, caller, top, ext) -> dict:
        info = Info.parse(t.call(GET_INFO, None, "getInfo"))
        cdj = client_data_json("webauthn.get", opts.challenge, caller, top)
        cdh = hashlib.sha256(cdj).digest()
        allow: list[Descriptor] = []
        if opts.allow:
            chunks = self._chunks(info, opts.allow)
            allow = chunks[0] if len(chunks) == 1 else self._preflight(t, rp_id, chunks)
            if not allow and ext.appid is None:
                raise WebAuthnError(
                    "NotAllowedError",
                    f"allowCredentials: none of the {len(opts.allow)} credentials is on this authenticator",
                )
        want_uv = self._want_uv(info, opts.user_verification, False, False, "userVerification")
        auth, uv_opt, client_pin = ({}, {}, None)
        if want_uv:
            permission = 0x02 | (0x10 if ext.large_blob_write is not None else 0)
            auth, uv_opt, client_pin = self._uv_params(
                t, info, permission, rp_id, cdh, "userVerification"
            )
            ext.token = (client_pin, auth.get("token"))

        def request_for(rp: str, creds: list[Descriptor]) -> dict[int, Any]:
            request: dict[int, Any] = {1: rp, 2: cdh}
            if creds:
                request[3] = [_cbor_descriptor(c) for c in creds]
            extensions = ext.authenticator_inputs(info, t, client_pin)
            if extensions:
                request[4] = extensions
            if uv_opt:
                request[5] = dict(uv_opt)
            if auth:
                request[6], request[7] = auth["param"], auth["protocol"]
            return request

        used_appid = False
        if not opts.allow:
            resp = t.call(GA, request_for(rp_id, []), "getAssertion")
        elif allow:
            resp = t.call(GA, request_for(rp_id, allow), "getAssertion")
        else:
            # FIDO AppID extension: the U2F app id stands in for the rpId
            assert ext.appid is not None
            allow = self._preflight(t, ext.appid, self._chunks(info, opts.allow))
            if not allow:
                raise WebAuthnError(
                    "NotAllowedError",
                    f"allowCredentials: none of the {len(opts.allow)} credentials is on this "
                    "authenticator (nor under extensions.appid)",
                )
            resp = t.call(GA, request_for(ext.appid, allow), "getAssertion")
            used_appid = True
        return self._assertion(resp, cdj, allow, ext, used_appid, client_pin, info)

    def _assertion(self, resp, cdj, allow, ext, used_appid, client_pin, info) -> dict:
        auth_data, signature = resp.get(2), resp.get(3)
        if not isinstance(auth_data, bytes) or not isinstance(signature, bytes):
            raise WebAuthnError("NotAllowedError", "getAssertion: the response lacks authData/signature")
        cred = resp.get(1)
        cred_id = cred.get("id") if isinstance(cred, dict) else None
        if cred_id is None:
            if len(allow) != 1:
                raise WebAuthnError("NotAllowedError", "getAssertion: the response names no credential")
            cred_id = allow[0].id
        response: dict[str, Any] = {
            "clientDataJSON": b64url(cdj),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
        }
        user = resp.get(4)
        if isinstance(user, dict) and isinstance(user.get("id"), bytes):
            response["userHandle"] = b64url(user["id"])
        out: dict[str, Any] = {
            "id": b64url(cred_id),
            "rawId": b64url(cred_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": ext.get_outputs(resp, parse_auth_data(auth_data), cred_id, used_appid),
        }
        if self.attachment:
            out["authenticatorAttachment"] = self.attachment
        return out


def _cbor_descriptor(d: Descriptor) -> dict[str, Any]:
    return {"id": d.id, "type": "public-key"}


# -- authenticator data and keys ---------------------------------------------------------------
@dataclass
class AuthData:
    rp_id_hash: bytes
    flags: int
    counter: int
    aaguid: bytes | None = None
    credential_id: bytes | None = None
    public_key: dict | None = None
    extensions: dict | None = None


def parse_auth_data(data: bytes) -> AuthData:
    if len(data) < 37:
        raise WebAuthnError("NotAllowedError", "authenticator data is shorter than 37 bytes")
    out = AuthData(data[:32], data[32], int.from_bytes(data[33:37], "big"))
    rest = data[37:]
    try:
        if out.flags & 0x40:
            out.aaguid = rest[:16]
            n = int.from_bytes(rest[16:18], "big")
            out.credential_id = rest[18 : 18 + n]
            out.public_key, rest = _cbor_decode_from(rest[18 + n :])
        if out.flags & 0x80:
            out.extensions, rest = _cbor_decode_from(rest)
    except Exception as e:
        raise WebAuthnError("NotAllowedError", f"authenticator data is malformed ({e})") from e
    return out


def cose_to_spki(cose_key: Mapping[int, Any]) -> bytes | None:
    """The credential public key as SubjectPublicKeyInfo DER (getPublicKey()); None when
    the algorithm has no SPKI form here (browsers then return null)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        kty = cose_key[1]
        if kty == 2:
            curve = {1: ec.SECP256R1(), 2: ec.SECP384R1(), 3: ec.SECP521R1()}[cose_key[-1]]
            key: Any = ec.EllipticCurvePublicNumbers(
                int.from_bytes(cose_key[-2], "big"), int.from_bytes(cose_key[-3], "big"), curve
            ).public_key()
        elif kty == 1 and cose_key.get(-1) == 6:
            key = ed25519.Ed25519PublicKey.from_public_bytes(cose_key[-2])
        elif kty == 3:
            key = rsa.RSAPublicNumbers(
                int.from_bytes(cose_key[-2], "big"), int.from_bytes(cose_key[-1], "big")
            ).public_key()
        else:
            return None
    except (KeyError, ValueError, TypeError):
        return None
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- extensions --------------------------------------------------------------------------------
_PRF_LABEL = b"WebAuthn PRF\x00"
_CRED_PROTECT = {
    "userVerificationOptional": 1,
    "userVerificationOptionalWithCredentialIDList": 2,
    "userVerificationRequired": 3,
}


def _prf_values(v: Any, path: str) -> tuple[bytes, bytes | None]:
    d = to_dictionary(v, path)
    first = b64url_decode(_required(d, "first", f"{path}.first"), f"{path}.first")
    second_raw = _member(d, "second")
    second = None if second_raw is _UNDEFINED else b64url_decode(second_raw, f"{path}.second")
    return first, second


def _hmac_salts(first: bytes, second: bytes | None, prf: bool) -> bytes:
    if prf:
        first = hashlib.sha256(_PRF_LABEL + first).digest()
        second = hashlib.sha256(_PRF_LABEL + second).digest() if second is not None else None
    return first + (second or b"")


class _SharedSecret:
    """hmac-secret's salt encryption through python-fido2's ClientPin primitives."""

    def __init__(self, t: _Transport, client_pin: Any) -> None:
        from fido2.ctap2 import ClientPin, Ctap2

        self.client_pin = client_pin or ClientPin(Ctap2(t.device))
        self.key_agreement, self.secret = self.client_pin._get_shared_secret()

    def inputs(self, salts: bytes) -> dict[int, Any]:
        proto = self.client_pin.protocol
        enc = proto.encrypt(self.secret, salts)
        return {1: self.key_agreement, 2: enc, 3: proto.authenticate(self.secret, enc), 4: proto.VERSION}

    def outputs(self, value: bytes) -> tuple[bytes, bytes | None]:
        plain = self.client_pin.protocol.decrypt(self.secret, value)
        return plain[:32], (plain[32:64] or None)


class _CreateExtensions:
    """Client extension inputs of create(): parsed up front (type errors before any CTAP)."""

    def __init__(self, ext: Mapping[str, Any]) -> None:
        self.cred_props = to_boolean(ext.get("credProps", False))
        self.cred_protect: int | None = None
        self.enforce_protect = False
        if "credentialProtectionPolicy" in ext:
            self.cred_protect = _CRED_PROTECT.get(
                to_dom_string(ext["credentialProtectionPolicy"], "extensions.credentialProtectionPolicy")
            )
            self.enforce_protect = to_boolean(ext.get("enforceCredentialProtectionPolicy", False))
        self.cred_blob = None
        if "credBlob" in ext:
            self.cred_blob = b64url_decode(ext["credBlob"], "extensions.credBlob")
        self.min_pin_length = to_boolean(ext.get("minPinLength", False))
        self.hmac_create = to_boolean(ext.get("hmacCreateSecret", False))
        self.prf = False
        self.prf_eval: tuple[bytes, bytes | None] | None = None
        if "prf" in ext:
            prf = to_dictionary(ext["prf"], "extensions.prf")
            self.prf = True
            if _member(prf, "evalByCredential") not in (_UNDEFINED, None):
                raise WebAuthnError(
                    "NotSupportedError", "extensions.prf.evalByCredential: not allowed in create()"
                )
            if _member(prf, "eval") not in (_UNDEFINED, None):
                self.prf_eval = _prf_values(prf["eval"], "extensions.prf.eval")
        self.large_blob: str | None = None
        if "largeBlob" in ext:
            lb = to_dictionary(ext["largeBlob"], "extensions.largeBlob")
            if _member(lb, "read") is not _UNDEFINED or _member(lb, "write") is not _UNDEFINED:
                raise WebAuthnError(
                    "NotSupportedError", "extensions.largeBlob: read/write are for get() only"
                )
            support = _member(lb, "support")
            self.large_blob = (
                _enum(to_dom_string(support, "extensions.largeBlob.support"), ("required", "preferred"))
                if support is not _UNDEFINED else None
            ) or "preferred"
        self._secret: _SharedSecret | None = None

    def authenticator_inputs(self, info: Info, t: _Transport, client_pin: Any, rk: bool) -> dict:
        out: dict[str, Any] = {}
        if self.cred_protect is not None:
            if "credProtect" in info.extensions:
                out["credProtect"] = self.cred_protect
            elif self.enforce_protect and self.cred_protect > 1:
                raise WebAuthnError(
                    "NotAllowedError",
                    "extensions.enforceCredentialProtectionPolicy: the authenticator lacks credProtect",
                )
        if self.cred_blob is not None and "credBlob" in info.extensions and rk:
            out["credBlob"] = self.cred_blob
        if self.min_pin_length and "minPinLength" in info.extensions:
            out["minPinLength"] = True
        if (self.hmac_create or self.prf) and "hmac-secret" in info.extensions:
            out["hmac-secret"] = True
            if self.prf_eval is not None and "hmac-secret-mc" in info.extensions:
                self._secret = _SharedSecret(t, client_pin)
                out["hmac-secret-mc"] = self._secret.inputs(_hmac_salts(*self.prf_eval, prf=True))
        if self.large_blob is not None:
            if info.options.get("largeBlobs") and "largeBlobKey" in info.extensions:
                out["largeBlobKey"] = True
            elif self.large_blob == "required":
                raise WebAuthnError(
                    "NotAllowedError", "extensions.largeBlob.support 'required': not supported"
                )
        return out

    def create_outputs(self, resp: dict, data: AuthData, rk: bool) -> dict:
        out: dict[str, Any] = {}
        ext = data.extensions or {}
        if self.cred_props:
            out["credProps"] = {"rk": rk}
        if self.cred_blob is not None:
            out["credBlob"] = bool(ext.get("credBlob", False))
        if self.hmac_create:
            out["hmacCreateSecret"] = bool(ext.get("hmac-secret", False))
        if self.prf:
            prf: dict[str, Any] = {"enabled": bool(ext.get("hmac-secret", False))}
            if self._secret is not None and isinstance(ext.get("hmac-secret-mc"), bytes):
                first, second = self._secret.outputs(ext["hmac-secret-mc"])
                prf["results"] = {"first": b64url(first)}
                if self.prf_eval and self.prf_eval[1] is not None and second is not None:
                    prf["results"]["second"] = b64url(second)
            out["prf"] = prf
        if self.large_blob is not None:
            out["largeBlob"] = {"supported": isinstance(resp.get(5), bytes)}
        return out


class _GetExtensions:
    def __init__(self, ext: Mapping[str, Any], allow: list[Descriptor]) -> None:
        self.appid = None
        if "appid" in ext:
            appid = to_dom_string(ext["appid"], "extensions.appid")
            if not appid.startswith("https://"):
                raise WebAuthnError("SecurityError", f"extensions.appid {_show(appid)}: not an https URL")
            self.appid = appid
        self.get_cred_blob = to_boolean(ext.get("getCredBlob", False))
        self.hmac_get: tuple[bytes, bytes | None] | None = None
        if "hmacGetSecret" in ext:
            self.hmac_get = _prf_values(
                {"first": to_dictionary(ext["hmacGetSecret"], "extensions.hmacGetSecret").get("salt1", _UNDEFINED),
                 **({"second": ext["hmacGetSecret"]["salt2"]} if "salt2" in ext["hmacGetSecret"] else {})},
                "extensions.hmacGetSecret",
            )
        self.prf: tuple[bytes, bytes | None] | None = None
        self.prf_by_cred: dict[bytes, tuple[bytes, bytes | None]] = {}
        self.prf_requested = "prf" in ext
        if self.prf_requested:
            prf = to_dictionary(ext["prf"], "extensions.prf")
            if _member(prf, "eval") not in (_UNDEFINED, None):
                self.prf = _prf_values(prf["eval"], "extensions.prf.eval")
            by = _member(prf, "evalByCredential")
            if by not in (_UNDEFINED, None):
                by = to_dictionary(by, "extensions.prf.evalByCredential")
                if by and not allow:
                    raise WebAuthnError(
                        "NotSupportedError",
                        "extensions.prf.evalByCredential: needs a non-empty allowCredentials",
                    )
                ids = {d.id for d in allow}
                for key, value in by.items():
                    path = f"extensions.prf.evalByCredential[{_show(key)}]"
                    try:
                        cred_id = b64url_decode(key, path) if key else None
                    except WebAuthnError:
                        cred_id = None
                    if cred_id is None or cred_id not in ids:
                        raise WebAuthnError("SyntaxError", f"{path}: not a base64url id listed in allowCredentials")
                    self.prf_by_cred[cred_id] = _prf_values(value, path)
        self.large_blob_read = False
        self.large_blob_write: bytes | None = None
        if "largeBlob" in ext:
            lb = to_dictionary(ext["largeBlob"], "extensions.largeBlob")
            if _member(lb, "support") is not _UNDEFINED:
                raise WebAuthnError("NotSupportedError", "extensions.largeBlob.support: is for create() only")
            self.large_blob_read = to_boolean(lb.get("read", False))
            if _member(lb, "write") is not _UNDEFINED:
                self.large_blob_write = b64url_decode(lb["write"], "extensions.largeBlob.write")
            if self.large_blob_read and self.large_blob_write is not None:
                raise WebAuthnError("NotSupportedError", "extensions.largeBlob: read and write together")
            if self.large_blob_write is not None and len(allow) != 1:
                raise WebAuthnError(
                    "NotSupportedError", "extensions.largeBlob.write: needs exactly one allowCredentials entry"
                )
        self._secret: _SharedSecret | None = None
        self._salts: tuple[bytes, bytes | None] | None = None
        self._t: _Transport | None = None
        self._info: Info | None = None
        self._lb_key = False
        self.token: tuple[Any, bytes | None] = (None, None)

    def authenticator_inputs(self, info: Info, t: _Transport, client_pin: Any) -> dict:
        self._t, self._info = t, info
        out: dict[str, Any] = {}
        if self.get_cred_blob and "credBlob" in info.extensions:
            out["credBlob"] = True
        salts = None
        if self.prf_by_cred or self.prf:
            salts = self.prf  # evalByCredential needs the credential: single allowList entry
            if self.prf_by_cred:
                salts = next(iter(self.prf_by_cred.values())) if len(self.prf_by_cred) == 1 else self.prf
            if salts is not None:
                salts = (hashlib.sha256(_PRF_LABEL + salts[0]).digest(),
                         hashlib.sha256(_PRF_LABEL + salts[1]).digest() if salts[1] is not None else None)
        elif self.hmac_get is not None:
            salts = self.hmac_get
        if salts is not None and "hmac-secret" in info.extensions:
            if self._secret is None:
                self._secret = _SharedSecret(t, client_pin)
            self._salts = salts
            out["hmac-secret"] = self._secret.inputs(salts[0] + (salts[1] or b""))
        if (self.large_blob_read or self.large_blob_write is not None) and info.options.get("largeBlobs"):
            out["largeBlobKey"] = True
            self._lb_key = True
        return out

    def get_outputs(self, resp: dict, data: AuthData, cred_id: bytes, used_appid: bool) -> dict:
        out: dict[str, Any] = {}
        ext = data.extensions or {}
        if self.appid is not None:
            out["appid"] = used_appid
        if self.get_cred_blob:
            blob = ext.get("credBlob")
            out["getCredBlob"] = b64url(blob if isinstance(blob, bytes) else b"")
        secret_out = ext.get("hmac-secret")
        results = None
        if self._secret is not None and isinstance(secret_out, bytes) and self._salts:
            first, second = self._secret.outputs(secret_out)
            results = {"first": b64url(first)}
            if self._salts[1] is not None and second is not None:
                results["second"] = b64url(second)
        if self.prf_requested:
            out["prf"] = {"results": results} if results else {}
        elif self.hmac_get is not None and results:
            out["hmacGetSecret"] = {"output1": results["first"], **(
                {"output2": results["second"]} if "second" in results else {})}
        if self._lb_key:
            key = resp.get(7)
            out["largeBlob"] = self._large_blob(key if isinstance(key, bytes) else None)
        elif self.large_blob_read or self.large_blob_write is not None:
            out["largeBlob"] = {} if self.large_blob_read else {"written": False}
        return out

    def _large_blob(self, key: bytes | None) -> dict:
        from fido2.ctap2 import Ctap2
        from fido2.ctap2.blob import LargeBlobs

        if key is None or self._t is None:
            return {} if self.large_blob_read else {"written": False}
        try:
            client_pin, token = self.token
            if token is not None and self.large_blob_write is not None:
                blobs = LargeBlobs(Ctap2(self._t.device), client_pin.protocol, token)
            else:
                blobs = LargeBlobs(Ctap2(self._t.device))
            if self.large_blob_read:
                blob = blobs.get_blob(key)
                return {"blob": b64url(blob)} if blob is not None else {}
            blobs.put_blob(key, self.large_blob_write)
            return {"written": True}
        except Exception:
            return {} if self.large_blob_read else {"written": False}


__all__ = [
    "CreationOptions",
    "Origin",
    "RequestOptions",
    "WebAuthnClient",
    "WebAuthnError",
    "check_related_origins",
    "client_data_json",
    "is_registrable_suffix",
    "load_related_origins",
    "parse_creation_options",
    "parse_origin",
    "parse_request_options",
]

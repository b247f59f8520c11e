"""A table of malformed and unusual WebAuthn L3 option sets, taken from the steps of
parseCreationOptionsFromJSON / create() / get(): each gets the DOMException a browser
throws, in one line naming the field, exit status 1 (2 for JSON that does not parse), and
the store stays byte for byte as it was. Unusual but valid sets are accepted as browsers do."""

from __future__ import annotations

import base64
import copy
import io
import json
import sys
from pathlib import Path

import pytest

from authenticator.frontdoor.cli import main

ORIGIN = "https://example.com"
CHALLENGE = base64.urlsafe_b64encode(b"c" * 32).rstrip(b"=").decode()
UID = base64.urlsafe_b64encode(b"user-1").rstrip(b"=").decode()

CREATE = {
    "rp": {"name": "Example", "id": "example.com"},
    "user": {"id": UID, "name": "alice", "displayName": "Alice"},
    "challenge": CHALLENGE,
    "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
}
GET = {"challenge": CHALLENGE, "rpId": "example.com"}
MISSING = object()


def edit(base: dict, path: str, value) -> dict:
    """A copy of ``base`` with the member at ``path`` (dots) set, or removed (MISSING)."""
    out = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is MISSING:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


def c(path: str, value) -> dict:
    return edit(CREATE, path, value)


def g(path: str, value) -> dict:
    return edit(GET, path, value)


# (id, verb, options, extra CLI args, DOMException name, field named in the message, status)
CASES = [
    ("options-array", "create", [CREATE], [], "TypeError", "options", 1),
    ("publickey-string", "create", {"publicKey": "x"}, [], "TypeError", "publicKey", 1),
    ("no-rp", "create", c("rp", MISSING), [], "TypeError", "rp", 1),
    ("rp-string", "create", c("rp", "example.com"), [], "TypeError", "rp", 1),
    ("no-rp-name", "create", c("rp.name", MISSING), [], "TypeError", "rp.name", 1),
    ("no-user", "create", c("user", MISSING), [], "TypeError", "user", 1),
    ("user-number", "create", c("user", 7), [], "TypeError", "user", 1),
    ("no-user-id", "create", c("user.id", MISSING), [], "TypeError", "user.id", 1),
    ("no-user-name", "create", c("user.name", MISSING), [], "TypeError", "user.name", 1),
    ("no-display-name", "create", c("user.displayName", MISSING), [], "TypeError",
     "user.displayName", 1),
    ("user-id-empty", "create", c("user.id", ""), [], "TypeError", "user.id", 1),
    ("user-id-65-bytes", "create", c("user.id", "A" * 87), [], "TypeError", "user.id", 1),
    ("user-id-base64", "create", c("user.id", "ab+/"), [], "EncodingError", "user.id", 1),
    ("no-challenge", "create", c("challenge", MISSING), [], "TypeError", "challenge", 1),
    ("challenge-bangs", "create", c("challenge", "!!!"), [], "EncodingError", "challenge", 1),
    ("challenge-one-char", "create", c("challenge", "A"), [], "EncodingError", "challenge", 1),
    ("challenge-bad-padding", "create", c("challenge", "AA=A"), [], "EncodingError",
     "challenge", 1),
    ("no-params", "create", c("pubKeyCredParams", MISSING), [], "TypeError",
     "pubKeyCredParams", 1),
    ("params-string", "create", c("pubKeyCredParams", "ES256"), [], "TypeError",
     "pubKeyCredParams", 1),
    ("param-no-type", "create", c("pubKeyCredParams", [{"alg": -7}]), [], "TypeError",
     "pubKeyCredParams[0].type", 1),
    ("param-no-alg", "create", c("pubKeyCredParams", [{"type": "public-key"}]), [], "TypeError",
     "pubKeyCredParams[0].alg", 1),
    ("param-only-other-type", "create", c("pubKeyCredParams", [{"type": "password", "alg": -7}]),
     [], "NotSupportedError", "pubKeyCredParams", 1),
    ("param-unsupported-alg", "create",
     c("pubKeyCredParams", [{"type": "public-key", "alg": -999}]), [], "NotSupportedError",
     "pubKeyCredParams", 1),
    ("exclude-string", "create", c("excludeCredentials", "x"), [], "TypeError",
     "excludeCredentials", 1),
    ("exclude-null", "create", c("excludeCredentials", None), [], "TypeError",
     "excludeCredentials", 1),
    ("exclude-no-id", "create", c("excludeCredentials", [{"type": "public-key"}]), [],
     "TypeError", "excludeCredentials[0].id", 1),
    ("exclude-no-type", "create", c("excludeCredentials", [{"id": "AAAA"}]), [], "TypeError",
     "excludeCredentials[0].type", 1),
    ("exclude-bad-id", "create", c("excludeCredentials", [{"id": "a*b", "type": "public-key"}]),
     [], "EncodingError", "excludeCredentials[0].id", 1),
    ("exclude-transports-string", "create",
     c("excludeCredentials", [{"id": "AAAA", "type": "public-key", "transports": "usb"}]), [],
     "TypeError", "excludeCredentials[0].transports", 1),
    ("selection-string", "create", c("authenticatorSelection", "required"), [], "TypeError",
     "authenticatorSelection", 1),
    ("hints-string", "create", c("hints", "security-key"), [], "TypeError", "hints", 1),
    ("attestation-formats-string", "create", c("attestationFormats", "packed"), [], "TypeError",
     "attestationFormats", 1),
    ("extensions-string", "create", c("extensions", "credProps"), [], "TypeError",
     "extensions", 1),
    ("prf-bad-salt", "create", c("extensions", {"prf": {"eval": {"first": "!!"}}}), [],
     "EncodingError", "extensions.prf.eval.first", 1),
    ("prf-eval-by-credential-in-create", "create",
     c("extensions", {"prf": {"evalByCredential": {"AAAA": {"first": "AAAA"}}}}), [],
     "NotSupportedError", "extensions.prf.evalByCredential", 1),
    ("large-blob-read-in-create", "create", c("extensions", {"largeBlob": {"read": True}}), [],
     "NotSupportedError", "extensions.largeBlob", 1),
    ("cred-blob-bad", "create", c("extensions", {"credBlob": "a b"}), [], "EncodingError",
     "extensions.credBlob", 1),
    ("rp-id-foreign", "create", c("rp.id", "evil.com"), [], "SecurityError", "rp.id", 1),
    ("rp-id-public-suffix", "create", c("rp.id", "com"), [], "SecurityError", "rp.id", 1),
    ("rp-id-subdomain-of-origin", "create", c("rp.id", "login.example.com"), [],
     "SecurityError", "rp.id", 1),
    ("rp-id-ip", "create", c("rp.id", "127.0.0.1"), [], "SecurityError", "rp.id", 1),
    ("origin-insecure", "create", CREATE, ["--origin", "http://example.com"], "SecurityError",
     "origin", 1),
    ("origin-with-path", "create", CREATE, ["--origin", "https://example.com/login"],
     "SecurityError", "origin", 1),
    ("top-origin-insecure", "create", CREATE, ["--top-origin", "http://shop.test"],
     "SecurityError", "top_origin", 1),
    ("attachment-platform-on-a-key", "create",
     c("authenticatorSelection", {"authenticatorAttachment": "platform"}), [],
     "NotAllowedError", "authenticatorAttachment", 1),
    ("uv-required-without-pin", "create",
     c("authenticatorSelection", {"userVerification": "required"}), [], "NotAllowedError",
     "userVerification", 1),
    ("exclude-registered", "create", "EXCLUDE_REGISTERED", [], "InvalidStateError",
     "excludeCredentials", 1),
    ("json-syntax", "create", "{not json", [], "SyntaxError", "JSON", 2),
    ("get-no-challenge", "get", g("challenge", MISSING), [], "TypeError", "challenge", 1),
    ("get-challenge-bad", "get", g("challenge", "Zm9v!"), [], "EncodingError", "challenge", 1),
    ("get-allow-object", "get", g("allowCredentials", {}), [], "TypeError",
     "allowCredentials", 1),
    ("get-allow-bad-id", "get", g("allowCredentials", [{"id": "%%", "type": "public-key"}]), [],
     "EncodingError", "allowCredentials[0].id", 1),
    ("get-allow-unknown-id", "get", g("allowCredentials", [{"id": "AAAA", "type": "public-key"}]),
     [], "NotAllowedError", "getAssertion", 1),
    ("get-rp-id-foreign", "get", g("rpId", "other.com"), [], "SecurityError", "rpId", 1),
    ("get-uv-required", "get", g("userVerification", "required"), [], "NotAllowedError",
     "userVerification", 1),
    ("get-prf-by-unknown-credential", "get",
     {**GET, "allowCredentials": [{"id": "AAAA", "type": "public-key"}],
      "extensions": {"prf": {"evalByCredential": {"BBBB": {"first": "AAAA"}}}}}, [],
     "SyntaxError", "extensions.prf.evalByCredential", 1),
    ("get-large-blob-read-and-write", "get",
     g("extensions", {"largeBlob": {"read": True, "write": "AAAA"}}), [], "NotSupportedError",
     "extensions.largeBlob", 1),
    ("get-appid-http", "get", g("extensions", {"appid": "http://example.com"}), [],
     "SecurityError", "extensions.appid", 1),
    ("get-extensions-array-member", "get", g("extensions", {"prf": "x"}), [], "TypeError",
     "extensions.prf", 1),
]


def store_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def cli(monkeypatch, capsys, verb: str, text: str, store: Path, *extra: str):
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    args = ["webauthn", verb, "--origin", ORIGIN, "--store", str(store), *extra]
    if "--origin" in extra:
        args = ["webauthn", verb, "--store", str(store), *extra]
    status = main(args)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> tuple[Path, str]:
    """A store holding one discoverable credential for example.com."""
    store = tmp_path_factory.mktemp("malformed") / "rp.db"
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "stdin", io.StringIO(json.dumps(
        c("authenticatorSelection", {"residentKey": "required"})
    )))
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["webauthn", "create", "--origin", ORIGIN, "--store", str(store)]) == 0
    mp.undo()
    return store, json.loads(buf.getvalue())["id"]


def test_the_table_is_big_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_malformed_options(case, registered, monkeypatch, capsys):
    _, verb, options, extra, name, field, status = case
    store, cred_id = registered
    if options == "EXCLUDE_REGISTERED":
        options = c("excludeCredentials", [{"id": cred_id, "type": "public-key"}])
    text = options if isinstance(options, str) else json.dumps(options)
    before = store_bytes(store)
    got, out, err = cli(monkeypatch, capsys, verb, text, store, *extra)
    assert got == status, err
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"fido-emu: error: {name}: "), lines[0]
    assert field in lines[0], lines[0]
    assert store_bytes(store) == before


UNUSUAL = [
    ("empty-strings", c("user", {"id": UID, "name": "", "displayName": ""})),
    ("empty-rp-name", c("rp.name", "")),
    ("unknown-attestation", c("attestation", "bogus")),
    ("unknown-resident-key", c("authenticatorSelection", {"residentKey": "sometimes"})),
    ("unknown-user-verification", c("authenticatorSelection", {"userVerification": "maybe"})),
    ("unknown-attachment", c("authenticatorSelection", {"authenticatorAttachment": "pocket"})),
    ("unknown-hints", c("hints", ["smart-card", "telepathy", "security-key"])),
    ("smart-card-transport", c("excludeCredentials",
                               [{"id": "AAAA", "type": "public-key", "transports": ["smart-card"]}])),
    ("unknown-credential-type", c("excludeCredentials", [{"id": "AAAA", "type": "password"}])),
    ("empty-params-default-es256", c("pubKeyCredParams", [])),
    ("timeout-text", c("timeout", "soon")),
    ("timeout-huge", c("timeout", 10**12)),
    ("alg-as-string", c("pubKeyCredParams", [{"type": "public-key", "alg": "-7"}])),
    ("no-rp-id-defaults-to-origin", c("rp", {"name": "Example"})),
    ("unknown-extension", c("extensions", {"fancy": {"x": 1}, "credProps": True})),
    ("padded-challenge", c("challenge", "YWJjZA==")),
    ("wrapped-public-key", {"publicKey": CREATE, "signal": None}),
]


@pytest.mark.parametrize("case", UNUSUAL, ids=[u[0] for u in UNUSUAL])
def test_unusual_but_valid_options_are_accepted(case, tmp_path, monkeypatch, capsys):
    _, options = case
    status, out, err = cli(monkeypatch, capsys, "create", json.dumps(options), tmp_path / "s.db")
    assert status == 0, err
    reg = json.loads(out)
    assert reg["type"] == "public-key" and reg["response"]["attestationObject"]

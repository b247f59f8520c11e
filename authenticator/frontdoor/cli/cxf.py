"""``fido-emu credentials export --format cxf`` / ``credentials import FILE``: passkeys in the
FIDO Credential Exchange Format 1.0 (https://fidoalliance.org/specs/cx/cxf-v1.0-ps-20250814.html).

What is exchanged (docs/fleet.md): discoverable credentials as CXF ``passkey`` credentials
(credentialId, rpId, username, userDisplayName, userHandle, key = PKCS#8 DER, all
base64url; fido2Extensions with credBlob and the hmac-secret CredRandoms). CXF's counter
rule: a passkey whose signature counter is not zero is never exported (the user is told
which), and an imported passkey signs with counter 0 for good (``extra["counter"] =
"zero"``; the core never counts it), as a synced passkey does.

At rest the file is encrypted unless ``--plaintext``: passphrase -> scrypt (N=2^15, r=8,
p=1, 16-byte salt) -> AES-256-GCM over the CXF JSON, with the envelope's header as AAD.
CXF's own protocol (CXP, HPKE between two live providers) is for app-to-app transfer, not
files, so the envelope is ours and documented in docs/fleet.md.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from authenticator.frontdoor.cli import EXIT_STORE, CliError

ENVELOPE = "fido-emu/cxf-encrypted/v1"
PASSPHRASE_ENV = "FIDO_EMU_CXF_PASSPHRASE"
EXPORTER_RP_ID = "fido-emulator.invalid"
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
MAX_FILE = 64 * 1024 * 1024


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise CliError(f"CXF: {field} must be a base64url string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as e:
        raise CliError(f"CXF: {field} is not base64url") from e


# -- the encrypted envelope ------------------------------------------------------------
def _key(passphrase: str, salt: bytes, params: dict) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=params["n"], r=params["r"], p=params["p"]).derive(
        passphrase.encode()
    )


def _aad(header: dict) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def seal(document: bytes, passphrase: str) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt, nonce = os.urandom(16), os.urandom(12)
    header = {"format": ENVELOPE, "kdf": {"name": "scrypt", "salt": b64u(salt), **SCRYPT},
              "cipher": "A256GCM", "nonce": b64u(nonce)}
    ct = AESGCM(_key(passphrase, salt, SCRYPT)).encrypt(nonce, document, _aad(header))
    return json.dumps({**header, "ciphertext": b64u(ct)}, indent=1).encode() + b"\n"


def is_sealed(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("format") == ENVELOPE


def unseal(doc: dict, passphrase: str) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    kdf = doc.get("kdf")
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt" or doc.get("cipher") != "A256GCM":
        raise CliError("encrypted CXF file: unknown kdf or cipher")
    try:
        params = {k: int(kdf[k]) for k in ("n", "r", "p")}
    except (KeyError, TypeError, ValueError) as e:
        raise CliError("encrypted CXF file: bad scrypt parameters") from e
    if params["n"] > 2**20 or params["r"] > 16 or params["p"] > 4:
        raise CliError("encrypted CXF file: scrypt parameters too large")
    header = {k: doc[k] for k in ("format", "kdf", "cipher", "nonce") if k in doc}
    salt = unb64u(kdf.get("salt"), "kdf.salt")
    try:
        return AESGCM(_key(passphrase, salt, params)).decrypt(
            unb64u(doc.get("nonce"), "nonce"), unb64u(doc.get("ciphertext"), "ciphertext"),
            _aad(header),
        )
    except (InvalidTag, ValueError) as e:
        raise CliError("wrong passphrase for the CXF file (or the file was changed)") from e


def read_passphrase(confirm: bool) -> str:
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        raise CliError(f"a passphrase is needed: set {PASSPHRASE_ENV} (or --plaintext on export)")
    first = getpass.getpass("CXF file passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != first:
        raise CliError("the passphrases do not match")
    if not first:
        raise CliError("an empty passphrase protects nothing (use --plaintext on purpose)")
    return first


# -- export ----------------------------------------------------------------------------
def exportable(auth: Any, rp_filter: str | None) -> tuple[list[dict], list[str]]:
    """(CXF passkey credentials, descriptions of the passkeys left out for their counter)."""
    from cryptography.hazmat.primitives import serialization

    from authenticator.core import keys
    from authenticator.core.extensions.hmac_secret import cred_random

    passkeys: list[dict] = []
    skipped: list[str] = []
    store = auth.store
    rps = [r for r in store.list_rps() if rp_filter is None or r.rp_id == rp_filter]
    for rp in rps:
        for rec in store.credentials_for_rp(rp.rp_id_hash):
            cred = auth.credentials.from_record(rec)
            key = auth.counter_key(cred)
            count = 0 if key is None else auth.counters.peek(key)
            if count != 0:
                skipped.append(f"{rec.user_name or b64u(rec.user_id)} @ {rec.rp_id} (counter {count})")
                continue
            raw = auth.device_keys.records.open(rec.sealed_key, rec.credential_id)
            pkcs8 = keys.load(rec.algorithm, raw).private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            ext: dict[str, Any] = {}
            if rec.hmac_secret:
                ext["hmacCredentials"] = {
                    "algorithm": "hmac-sha256",
                    "credWithUV": b64u(cred_random(auth, cred, True)),
                    "credWithoutUV": b64u(cred_random(auth, cred, False)),
                }
            if rec.cred_blob:
                ext["credBlob"] = b64u(rec.cred_blob)
            item = {
                "type": "passkey",
                "credentialId": b64u(rec.credential_id),
                "rpId": rec.rp_id,
                "username": rec.user_name or "",
                "userDisplayName": rec.user_display_name or "",
                "userHandle": b64u(rec.user_id),
                "key": b64u(pkcs8),
            }
            if ext:
                item["fido2Extensions"] = ext
            passkeys.append({"item": item, "rec": rec})
    return passkeys, skipped


def document(passkeys: list[dict]) -> dict:
    """The CXF Header with one account holding one item per passkey."""
    now = int(time.time())
    items = [
        {
            "id": b64u(hashlib.sha256(p["rec"].credential_id).digest()[:16]),
            "creationAt": int(p["rec"].created) or now,
            "title": p["rec"].rp_name or p["rec"].rp_id,
            "scope": {"urls": [f"https://{p['rec'].rp_id}"], "androidApps": []},
            "credentials": [p["item"]],
        }
        for p in passkeys
    ]
    return {
        "version": {"major": 1, "minor": 0},
        "exporterRpId": EXPORTER_RP_ID,
        "exporterDisplayName": "fido-emulator",
        "timestamp": now,
        "accounts": [
            {"id": b64u(os.urandom(16)), "username": "", "email": "", "collections": [],
             "items": items}
        ],
    }


def cmd_export(args: argparse.Namespace) -> int:
    from fido2.ctap2 import ClientPin

    from authenticator.frontdoor.cli.manage import session, token

    if args.format != "cxf":
        raise CliError(f"unknown export format {args.format!r} (cxf)")
    if getattr(args, "device", None):
        raise CliError("export reads private keys from the store: it cannot use --device")
    # like a passkey provider, export needs user verification: a PIN token when a PIN is
    # set (or built-in UV); only then are private keys read
    with session(args) as ctap:
        options = ctap.info.options
        if options.get("clientPin") or options.get("uv"):
            token(ctap, args, ClientPin.PERMISSION.CREDENTIAL_MGMT)
        auth = ctap.device.handler
        passkeys, skipped = exportable(auth, args.rp)
    data = json.dumps(document(passkeys), indent=1).encode() + b"\n"
    if not args.plaintext:
        data = seal(data, read_passphrase(confirm=True))
    if args.output in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        out = Path(args.output)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    for what in skipped:
        print(f"not exported (CXF carries only passkeys with counter 0): {what}", file=sys.stderr)
    print(f"Exported {len(passkeys)} passkey(s)"
          + (" (plaintext: the file holds private keys in the clear)" if args.plaintext else "")
          + (f", left out {len(skipped)}" if skipped else "") + ".", file=sys.stderr)
    return 0


# -- import ----------------------------------------------------------------------------
def _str(item: dict, name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise CliError(f"CXF: {where}.{name} must be a string")
    return value


def parse(doc: Any) -> list[dict]:
    """The passkey credentials of a CXF document, validated (one-line errors naming the
    field); other credential types are ignored."""
    if not isinstance(doc, dict):
        raise CliError("CXF: the file is not a CXF header object")
    version = doc.get("version")
    if not isinstance(version, dict) or version.get("major") != 1:
        raise CliError(f"CXF: version must be 1.x, not {version!r}")
    accounts = doc.get("accounts")
    if not isinstance(accounts, list):
        raise CliError("CXF: accounts must be a list")
    found: list[dict] = []
    for a, account in enumerate(accounts):
        items = account.get("items") if isinstance(account, dict) else None
        if not isinstance(items, list):
            raise CliError(f"CXF: accounts[{a}].items must be a list")
        for i, item in enumerate(items):
            creds = item.get("credentials") if isinstance(item, dict) else None
            if not isinstance(creds, list):
                raise CliError(f"CXF: accounts[{a}].items[{i}].credentials must be a list")
            for c, cred in enumerate(creds):
                if isinstance(cred, dict) and cred.get("type") == "passkey":
                    found.append({**cred, "_where": f"accounts[{a}].items[{i}].credentials[{c}]"})
    return found


def _algorithm(private: Any) -> int:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from authenticator.core import keys

    if isinstance(private, ec.EllipticCurvePrivateKey):
        return {"secp256r1": keys.ES256, "secp384r1": keys.ES384}.get(private.curve.name, 0)
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return keys.EDDSA
    if isinstance(private, rsa.RSAPrivateKey):
        return keys.RS256
    return 0


def records(auth: Any, passkeys: list[dict]) -> list[Any]:
    """Validate every passkey first (a bad one refuses the whole file), then build the
    records, keys sealed under this device."""
    from cryptography.hazmat.primitives import serialization

    from authenticator.core import keys
    from authenticator.core.extensions.hmac_secret import IMPORTED
    from authenticator.core.params import encode
    from storage.base import CredentialRecord

    recs = []
    now = auth.wall_clock()
    for p in passkeys:
        where = p["_where"]
        for name in ("counter", "signCount"):  # not CXF fields; some exporters add them
            if name in p and p[name] not in (0, None):
                raise CliError(
                    f"CXF: {where} ({p.get('rpId')}) has signature counter {p[name]}: CXF "
                    "only carries passkeys with counter 0 (an RP would see this one go "
                    "backwards); nothing imported"
                )
        cred_id = unb64u(p.get("credentialId"), f"{where}.credentialId")
        if not 0 < len(cred_id) <= 1023:
            raise CliError(f"CXF: {where}.credentialId must be 1..1023 bytes")
        rp_id = _str(p, "rpId", where)
        if not rp_id:
            raise CliError(f"CXF: {where}.rpId is empty")
        user_handle = unb64u(p.get("userHandle"), f"{where}.userHandle")
        if not 0 < len(user_handle) <= 64:
            raise CliError(f"CXF: {where}.userHandle must be 1..64 bytes")
        try:
            private = serialization.load_der_private_key(
                unb64u(p.get("key"), f"{where}.key"), None
            )
        except (ValueError, TypeError) as e:
            raise CliError(f"CXF: {where}.key is not an unencrypted PKCS#8 private key") from e
        alg = _algorithm(private)
        if alg not in auth.config.algorithms:
            raise CliError(f"CXF: {where}.key: algorithm not enabled here "
                           f"(this authenticator: {list(auth.config.algorithms)})")
        ext = p.get("fido2Extensions") or {}
        if not isinstance(ext, dict):
            raise CliError(f"CXF: {where}.fido2Extensions must be an object")
        blob = unb64u(ext["credBlob"], f"{where}.fido2Extensions.credBlob") if ext.get(
            "credBlob") else None
        extra: dict[str, Any] = {"origin": "cxf-import", "counter": "zero"}
        hmac_creds = ext.get("hmacCredentials")
        if hmac_creds is not None:
            path = f"{where}.fido2Extensions.hmacCredentials"
            if not isinstance(hmac_creds, dict) or hmac_creds.get("algorithm") != "hmac-sha256":
                raise CliError(f"CXF: {path}.algorithm must be hmac-sha256")
            pair = unb64u(hmac_creds.get("credWithUV"), f"{path}.credWithUV") + unb64u(
                hmac_creds.get("credWithoutUV"), f"{path}.credWithoutUV")
            if len(pair) != 64:
                raise CliError(f"CXF: {path}: credWithUV and credWithoutUV must be 32 bytes")
            extra[IMPORTED] = base64.b64encode(
                auth.device_keys.records.seal(pair, cred_id + IMPORTED.encode())).decode()
        raw, cose = keys.material(alg, private)
        recs.append(CredentialRecord(
            credential_id=cred_id,
            rp_id=rp_id,
            rp_id_hash=hashlib.sha256(rp_id.encode()).digest(),
            user_id=user_handle,
            user_name=_str(p, "username", where) or None,
            user_display_name=_str(p, "userDisplayName", where) or None,
            algorithm=alg,
            sealed_key=auth.device_keys.records.seal(raw, cred_id),
            public_key=encode(cose),
            discoverable=True,
            backup_eligible=True,
            backup_state=True,
            cred_blob=blob,
            hmac_secret=hmac_creds is not None,
            created=now,
            extra=extra,
        ))
    return recs


def load_file(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}", EXIT_STORE) from e
    if len(data) > MAX_FILE:
        raise CliError(f"{path} is larger than {MAX_FILE // 2**20} MiB")
    try:
        doc = json.loads(data)
        if is_sealed(doc):
            doc = json.loads(unseal(doc, read_passphrase(confirm=False)))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CliError(f"{path} is not CXF JSON: {e}") from e
    return doc


def cmd_import(args: argparse.Namespace) -> int:
    from authenticator.frontdoor.cli.common import make_authenticator

    passkeys = parse(load_file(args.file))
    auth = make_authenticator(args)
    try:
        recs = records(auth, passkeys)
        replaced = auth.store.put_credentials(recs)  # one transaction: all or nothing
        for old in replaced:
            auth.credentials.forget(old.credential_id)
    finally:
        auth.store.close()
    print(f"Imported {len(recs)} passkey(s) as synced passkeys (counter 0)"
          + (f", replacing {len(replaced)}" if replaced else "") + ".")
    return 0


def register_actions(actions: argparse._SubParsersAction, common, pin_option) -> None:
    """``credentials export`` and ``credentials import`` (manage.py's credentials group)."""
    a = actions.add_parser("export", help="export passkeys (counter 0) as a CXF 1.0 file")
    a.add_argument("--format", choices=["cxf"], default="cxf", help="file format (cxf)")
    a.add_argument("--rp", metavar="RPID", help="only this RP")
    a.add_argument("-o", "--output", metavar="FILE", help="write here (new file, 0600); "
                   "default stdout")
    a.add_argument("--plaintext", action="store_true",
                   help=f"do not encrypt (default: passphrase from ${PASSPHRASE_ENV} or a prompt)")
    common(a, json_output=False)
    pin_option(a)
    a.set_defaults(func=cmd_export)
    a = actions.add_parser("import", help="import passkeys from a CXF 1.0 file")
    a.add_argument("file", help="CXF JSON, encrypted by export or plaintext")
    common(a, json_output=False, creates=True)
    a.set_defaults(func=cmd_import)


__all__ = ["register_actions"]

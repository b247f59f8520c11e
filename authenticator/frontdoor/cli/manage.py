"""``fido-emu info|pin|credentials|config|reset``: manage the authenticator like ``ykman fido``.

Everything goes through CTAP, with python-fido2 as the client (ClientPin,
CredentialManagement, Config), so these verbs exercise the same code paths a real
platform would. By default they talk to an in-process authenticator over the store;
``--device udp:HOST:PORT`` reaches a running ``fido-emu run --udp`` instead.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import enum
import getpass
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, CredentialManagement, Ctap2
from fido2.ctap2.config import Config as CtapConfig

from authenticator.frontdoor.cli import CliError
from authenticator.frontdoor.cli.common import (
    add_presence_option,
    add_store_options,
    close_authenticator,
    make_authenticator,
)

P = ClientPin.PERMISSION
R = CredentialManagement.RESULT

FRIENDLY = {
    CtapError.ERR.PIN_INVALID: "wrong PIN",
    CtapError.ERR.PIN_BLOCKED: "PIN blocked: reset the authenticator",
    CtapError.ERR.PIN_AUTH_BLOCKED: "too many wrong PINs: power-cycle the authenticator",
    CtapError.ERR.PIN_NOT_SET: "no PIN is set (fido-emu pin set)",
    CtapError.ERR.PIN_POLICY_VIOLATION: "the PIN does not meet the policy (length, or change required)",
    CtapError.ERR.NOT_ALLOWED: "not allowed now",
    CtapError.ERR.OPERATION_DENIED: "the user declined",
    CtapError.ERR.NO_CREDENTIALS: "no such credential",
    CtapError.ERR.PUAT_REQUIRED: "a PIN is required",
}


# -- plumbing -------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, json_output: bool = True, creates: bool = False) -> None:
    add_store_options(p, creates=creates)
    add_presence_option(p, "auto")
    p.add_argument(
        "--device",
        metavar="udp:HOST:PORT",
        help="talk to a running emulator instead of the store (e.g. udp:127.0.0.1:8111)",
    )
    p.add_argument(
        "--udp-local",
        type=int,
        default=7112,
        metavar="PORT",
        help="local UDP port the device replies to (default 7112, the solo convention; "
        "0 for any, with a device that answers the sender)",
    )
    if json_output:
        p.add_argument("--json", action="store_true", help="machine-readable output")


def _pin_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pin", help="the current PIN (else $FIDO_EMU_PIN, else a prompt)")


@contextmanager
def session(args: argparse.Namespace) -> Iterator[Ctap2]:
    """A python-fido2 Ctap2 on the selected device, closed afterwards."""
    spec = getattr(args, "device", None)
    if spec:
        device = _open_udp(spec, args.udp_local)
        auth = None
    else:
        from transports.inprocess import InProcessDevice

        auth = make_authenticator(args)
        device = InProcessDevice(auth, transport=auth.config.transports[0], u2f=auth.config.u2f)
    try:
        yield Ctap2(device)
    except CtapError as e:
        reason = FRIENDLY.get(e.code, "")
        name = e.code.name if isinstance(e.code, enum.Enum) else f"0x{int(e.code):02X}"
        raise CliError(f"{name}{': ' + reason if reason else ''}") from e
    finally:
        device.close()
        if auth is not None:
            close_authenticator(auth)


def _open_udp(spec: str, local_port: int) -> Any:
    kind, _, rest = spec.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "udp" or not host or not port.isdigit():
        raise CliError(f"--device must look like udp:HOST:PORT, not {spec!r}")
    try:
        from transports.udp import open_udp_device
    except ImportError as e:
        raise CliError(f"the UDP client is not available: {e}") from e
    try:
        return open_udp_device((host, int(port)), ("127.0.0.1", local_port), timeout=10.0)
    except Exception as e:
        raise CliError(f"cannot reach {spec}: {e}") from e


def read_pin(args: argparse.Namespace, prompt: str = "PIN: ") -> str:
    pin = getattr(args, "pin", None) or os.environ.get("FIDO_EMU_PIN")
    if pin:
        return pin
    if not sys.stdin.isatty():
        raise CliError("a PIN is needed: pass --pin or set FIDO_EMU_PIN")
    return getpass.getpass(prompt)


def read_new_pin(args: argparse.Namespace) -> str:
    pin = getattr(args, "new_pin", None) or os.environ.get("FIDO_EMU_NEW_PIN")
    if pin:
        return pin
    if not sys.stdin.isatty():
        raise CliError("a new PIN is needed: pass --new-pin or set FIDO_EMU_NEW_PIN")
    first = getpass.getpass("New PIN: ")
    if getpass.getpass("Repeat new PIN: ") != first:
        raise CliError("the PINs do not match")
    return first


def token(ctap: Ctap2, args: argparse.Namespace, permissions: P) -> tuple[ClientPin, bytes]:
    """A pinUvAuthToken: from the PIN if one is set, else from built-in UV."""
    client_pin = ClientPin(ctap)
    options = ctap.info.options
    if options.get("clientPin"):
        if ctap.info.force_pin_change:
            raise CliError("the PIN must be changed first: 'fido-emu pin change'")
        return client_pin, client_pin.get_pin_token(read_pin(args), permissions)
    if options.get("uv"):
        return client_pin, client_pin.get_uv_token(permissions)
    raise CliError("this needs a PIN: set one first with 'fido-emu pin set'")


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    print(json.dumps(jsonable(value), indent=2, sort_keys=True))


def table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- info -----------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    with session(args) as ctap:
        info = ctap.info
        retries = ClientPin(ctap).get_pin_retries()[0] if "clientPin" in info.options else None
    if args.json:
        emit_json({"info": info, "pin_retries": retries})
        return 0
    on = [k for k, v in sorted(info.options.items()) if v]
    off = [k for k, v in sorted(info.options.items()) if not v]
    rows = [
        ["AAGUID", str(info.aaguid)],
        ["Versions", ", ".join(info.versions)],
        ["Transports", ", ".join(info.transports)],
        ["Algorithms", ", ".join(str(a.get("alg")) for a in info.algorithms)],
        ["Extensions", ", ".join(info.extensions)],
        ["Options on", ", ".join(on)],
        ["Options off", ", ".join(off)],
        ["PIN", _pin_status(info.options, retries)],
        ["Min PIN length", str(info.min_pin_length)],
        ["Force PIN change", "yes" if info.force_pin_change else "no"],
        ["Discoverable left", str(info.remaining_disc_creds)],
        ["Large-blob array", f"{info.max_large_blob} bytes"],
        ["Firmware", f"0x{info.firmware_version:08X}"],
    ]
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label + ':':<{width + 1}} {value}")
    return 0


def _pin_status(options: dict, retries: int | None) -> str:
    if "clientPin" not in options:
        return "not supported"
    if not options["clientPin"]:
        return "not set"
    return f"set, {retries} retries left"


# -- pin ------------------------------------------------------------------------------------
def cmd_pin(args: argparse.Namespace) -> int:
    with session(args) as ctap:
        if "clientPin" not in ctap.info.options:
            raise CliError("this authenticator has no clientPIN")
        client_pin = ClientPin(ctap)
        if args.action == "retries":
            retries, power_cycle = client_pin.get_pin_retries()
            if args.json:
                emit_json({"retries": retries, "power_cycle_required": bool(power_cycle)})
            else:
                print(f"{retries} retries left" + (" (power-cycle required)" if power_cycle else ""))
            return 0
        if args.action == "set":
            if ctap.info.options.get("clientPin"):
                raise CliError("a PIN is already set: use 'fido-emu pin change'")
            client_pin.set_pin(_checked(ctap, read_new_pin(args)))
            print("PIN set.")
        elif args.action == "change":
            old = read_pin(args, "Current PIN: ")
            client_pin.change_pin(old, _checked(ctap, read_new_pin(args)))
            print("PIN changed.")
        else:
            client_pin.get_pin_token(read_pin(args))
            print("PIN verified.")
    return 0


def _checked(ctap: Ctap2, pin: str) -> str:
    """python-fido2 raises a bare ValueError on bad lengths; say it as the policy."""
    minimum = ctap.info.min_pin_length
    if len(pin) < minimum or len(pin.encode()) > 63:
        raise CliError(f"the PIN must be {minimum} to 63 characters long")
    return pin


# -- credentials ------------------------------------------------------------------------------
def _manager(ctap: Ctap2, args: argparse.Namespace) -> CredentialManagement:
    if not CredentialManagement.is_supported(ctap.info):
        raise CliError("this authenticator has no credential management")
    client_pin, tok = token(ctap, args, P.CREDENTIAL_MGMT)
    return CredentialManagement(ctap, client_pin.protocol, tok)


def _all_credentials(cm: CredentialManagement, rp_filter: str | None) -> list[dict]:
    if rp_filter:  # straight to that RP: no walk over every RP of a large store
        rps = [(rp_filter, hashlib.sha256(rp_filter.encode()).digest())]
    else:
        rps = [(rp[R.RP]["id"], rp[R.RP_ID_HASH]) for rp in cm.enumerate_rps()]
    found = []
    for rp_id, rp_hash in rps:
        for c in cm.enumerate_creds(rp_hash):
            user = c[R.USER]
            found.append(
                {
                    "rp_id": rp_id,
                    "credential_id": c[R.CREDENTIAL_ID]["id"],
                    "user_id": user["id"],
                    "user_name": user.get("name"),
                    "display_name": user.get("displayName"),
                    "cred_protect": c.get(R.CRED_PROTECT),
                    "large_blob_key": R.LARGE_BLOB_KEY in c,
                }
            )
    return found


def _find(creds: list[dict], ident: str) -> dict:
    """A credential by its id: hex, base64url, or a unique hex prefix."""
    ident = ident.strip()
    matches = [
        c
        for c in creds
        if c["credential_id"].hex().startswith(ident.lower()) or b64url(c["credential_id"]) == ident
    ]
    if not matches:
        raise CliError(f"no credential matches {ident!r}")
    if len(matches) > 1:
        raise CliError(f"{ident!r} matches {len(matches)} credentials; give more of the id")
    return matches[0]


def cmd_credentials(args: argparse.Namespace) -> int:
    with session(args) as ctap:
        cm = _manager(ctap, args)
        creds = _all_credentials(cm, getattr(args, "rp", None))
        if args.action == "list":
            if args.json:
                emit_json(
                    [
                        {**c, "credential_id": b64url(c["credential_id"]), "user_id": b64url(c["user_id"])}
                        for c in creds
                    ]
                )
            elif not creds:
                print("No discoverable credentials.")
            else:
                table(
                    [
                        [c["rp_id"], c["user_name"] or "", c["display_name"] or "",
                         c["credential_id"].hex()[:16], str(c["cred_protect"])]
                        for c in creds
                    ],
                    ["RP ID", "USER", "DISPLAY NAME", "CREDENTIAL ID", "PROTECT"],
                )
            return 0
        cred = _find(creds, args.credential_id)
        descriptor = {"id": cred["credential_id"], "type": "public-key"}
        if args.action == "delete":
            if not args.yes and not _confirm(f"Delete {cred['user_name']} @ {cred['rp_id']}?"):
                raise CliError("not deleted", status=2)
            cm.delete_cred(descriptor)
            print(f"Deleted {cred['credential_id'].hex()[:16]}.")
        else:
            name = cred["user_name"] if args.name is None else args.name
            display = cred["display_name"] if args.display_name is None else args.display_name
            user: dict = {"id": cred["user_id"]}
            if name:
                user["name"] = name
            if display:
                user["displayName"] = display
            cm.update_user_info(descriptor, user)
            print(f"Updated {cred['credential_id'].hex()[:16]}.")
    return 0


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise CliError("refusing without --yes (stdin is not a terminal)")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


# -- config ---------------------------------------------------------------------------------
def cmd_config(args: argparse.Namespace) -> int:
    with session(args) as ctap:
        if not CtapConfig.is_supported(ctap.info):
            raise CliError("this authenticator has no authenticatorConfig")
        options = ctap.info.options
        if options.get("clientPin") or options.get("alwaysUv"):
            client_pin, tok = token(ctap, args, P.AUTHENTICATOR_CFG)
            config = CtapConfig(ctap, client_pin.protocol, tok)
        else:
            config = CtapConfig(ctap)
        if args.setting == "always-uv":
            current = bool(options.get("alwaysUv"))
            wanted = {"on": True, "off": False, "toggle": not current}[args.state]
            if wanted != current:
                config.toggle_always_uv()
            print(f"alwaysUv is {'on' if wanted else 'off'}.")
        elif args.setting == "min-pin-length":
            config.set_min_pin_length(args.length, args.rp_id or None, args.force_change)
            print(f"Minimum PIN length is {args.length or ctap.info.min_pin_length}.")
        else:
            config.enable_enterprise_attestation()
            print("Enterprise attestation enabled.")
    return 0


# -- reset ----------------------------------------------------------------------------------
def cmd_reset(args: argparse.Namespace) -> int:
    if not args.yes:
        raise CliError("reset deletes every credential and the PIN: pass --yes to confirm", 2)
    with session(args) as ctap:
        try:
            ctap.reset()
        except CtapError as e:
            if e.code == CtapError.ERR.NOT_ALLOWED:
                raise CliError("reset is only allowed right after power-up: replug and retry") from e
            raise
    print("Authenticator reset.")
    return 0


# -- argparse -------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show the authenticator's getInfo, PIN state and limits")
    _common(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("pin", help="set, change or verify the PIN; show retries")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    for name, what in (
        ("set", "set the first PIN"),
        ("change", "change the PIN"),
        ("verify", "check a PIN (spends a retry if wrong)"),
        ("retries", "show the PIN retry counter"),
    ):
        a = actions.add_parser(name, help=what)
        _common(a, json_output=name == "retries", creates=name == "set")
        if name in ("change", "verify"):
            _pin_option(a)
        if name in ("set", "change"):
            a.add_argument("--new-pin", help="the new PIN (else $FIDO_EMU_NEW_PIN, else a prompt)")
        a.set_defaults(func=cmd_pin)

    p = sub.add_parser("credentials", help="list, delete, rename, export or import (CXF) passkeys")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    a = actions.add_parser("list", help="list discoverable credentials")
    a.add_argument("--rp", metavar="RPID", help="only this RP")
    _common(a)
    _pin_option(a)
    a.set_defaults(func=cmd_credentials)
    a = actions.add_parser("delete", help="delete a credential")
    a.add_argument("credential_id", help="credential id: hex, base64url or a unique hex prefix")
    a.add_argument("--yes", action="store_true", help="do not ask")
    _common(a, json_output=False)
    _pin_option(a)
    a.set_defaults(func=cmd_credentials)
    a = actions.add_parser("update", help="change a credential's user name / display name")
    a.add_argument("credential_id", help="credential id: hex, base64url or a unique hex prefix")
    a.add_argument("--name", help="new user name ('' removes it)")
    a.add_argument("--display-name", help="new display name ('' removes it)")
    _common(a, json_output=False)
    _pin_option(a)
    a.set_defaults(func=cmd_credentials)
    from authenticator.frontdoor.cli.cxf import register_actions as cxf_actions

    cxf_actions(actions, _common, _pin_option)  # export / import (CXF 1.0)

    p = sub.add_parser("config", help="authenticatorConfig: alwaysUv, minimum PIN length, EA")
    settings = p.add_subparsers(dest="setting", metavar="SETTING")
    settings.required = True
    a = settings.add_parser("always-uv", help="require UV for every operation")
    a.add_argument("state", choices=["on", "off", "toggle"])
    a = settings.add_parser("min-pin-length", help="raise the minimum PIN length")
    a.add_argument("length", type=int, nargs="?", help="new minimum (it can only grow)")
    a.add_argument("--rp-id", action="append", help="RP allowed to read it (repeatable)")
    a.add_argument("--force-change", action="store_true", help="require a PIN change")
    a = settings.add_parser("enterprise-attestation", help="enable enterprise attestation")
    for a in settings.choices.values():
        _common(a, json_output=False, creates=True)
        _pin_option(a)
        a.set_defaults(func=cmd_config)

    p = sub.add_parser("reset", help="factory reset: delete all credentials and the PIN")
    p.add_argument("--yes", action="store_true", help="confirm")
    _common(p, json_output=False)
    p.set_defaults(func=cmd_reset)


__all__ = ["register", "session"]

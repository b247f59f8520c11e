"""``fido-emu webauthn create|get``: a browser's WebAuthn calls from the shell.

Scripting tools, so presence is approved automatically unless ``--presence`` says
otherwise. Input is WebAuthn L3 JSON (``PublicKeyCredential*OptionsJSON``, optionally
wrapped in ``{"publicKey": ...}``); output is one ``toJSON()``-style response object.
"""

from __future__ import annotations

import argparse
import json
import sys

from authenticator.frontdoor.cli.common import (
    add_presence_option,
    add_store_options,
    make_authenticator,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("webauthn", help="navigator.credentials.create()/get() from the shell")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    for verb, what in (
        ("create", "PublicKeyCredentialCreationOptionsJSON -> RegistrationResponseJSON"),
        ("get", "PublicKeyCredentialRequestOptionsJSON -> AuthenticationResponseJSON"),
    ):
        v = verbs.add_parser(
            verb,
            help=what,
            description=f"{what}. Presence is approved automatically (a scripting tool); "
            "use --presence prompt or deny to change that.",
        )
        v.add_argument("--origin", required=True, help="the calling origin, e.g. https://example.com")
        v.add_argument("--options", metavar="FILE", help="options JSON file (default: stdin)")
        v.add_argument("--pin", help="PIN, if the authenticator has one (or FIDO_EMU_PIN)")
        v.add_argument("--fault", action="append", metavar="SPEC", help="inject a fault (repeatable)")
        add_store_options(v)
        add_presence_option(v, "auto")
        v.set_defaults(func=run)


def _read_options(path: str | None) -> dict:
    from authenticator.frontdoor.cli import CliError

    try:
        text = open(path, encoding="utf-8").read() if path else sys.stdin.read()
    except OSError as e:
        raise CliError(f"cannot read options: {e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CliError(f"options are not valid JSON: {e.msg} at line {e.lineno}") from e
    if not isinstance(data, dict):
        raise CliError("options must be a JSON object")
    return data


def run(args: argparse.Namespace) -> int:
    import os

    from authenticator.frontdoor.cli import CliError
    from authenticator.rp_testing.webauthn import WebAuthnClient, WebAuthnError
    from transports.inprocess import InProcessDevice

    options = _read_options(args.options)
    auth = make_authenticator(args)
    device = InProcessDevice(auth, transport=auth.config.transports[0], u2f=auth.config.u2f)
    attachment = "platform" if auth.config.platform_attachment else "cross-platform"
    client = WebAuthnClient(
        device,
        args.origin,
        pin=args.pin or os.environ.get("FIDO_EMU_PIN"),
        transports=list(auth.config.transports),
        attachment=attachment,
    )
    try:
        result = client.create(options) if args.verb == "create" else client.get(options)
    except WebAuthnError as e:
        raise CliError(str(e)) from e
    finally:
        device.close()
        auth.store.close()
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0

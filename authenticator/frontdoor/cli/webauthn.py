"""``fido-emu webauthn create|get``: a browser's WebAuthn calls from the shell.

Scripting tools, so presence is approved automatically unless ``--presence`` says
otherwise. Input is WebAuthn L3 JSON (``PublicKeyCredential*OptionsJSON``, optionally
wrapped in ``{"publicKey": ...}``) from ``--options FILE`` or stdin (``-``); output is one
``toJSON()``-style response object. A refusal prints one line naming the DOMException, the
field and the value, exits 1 and leaves the store byte for byte as it was.
"""

from __future__ import annotations

import argparse
import json
import sys

from authenticator.frontdoor.cli import EXIT_STORE, EXIT_USAGE, CliError
from authenticator.frontdoor.cli.common import (
    add_presence_option,
    add_store_options,
    close_authenticator,
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
            "use --presence prompt (asks on the terminal) or deny to change that.",
        )
        v.add_argument("--origin", required=True,
                       help="the calling origin, e.g. https://example.com or http://localhost:8080")
        v.add_argument("--top-origin", metavar="ORIGIN", default=None,
                       help="the top-level page's origin when the caller is a cross-origin "
                       "iframe (clientDataJSON crossOrigin/topOrigin)")
        v.add_argument("--related-origins", metavar="FILE", default=None,
                       help="the RP's /.well-known/webauthn JSON ({\"origins\": [...]}) for "
                       "origins outside the rpId's domain")
        v.add_argument("--options", metavar="FILE", default="-",
                       help="options JSON file; '-' (the default) reads stdin")
        v.add_argument("--pin", help="PIN, if the authenticator has one (or FIDO_EMU_PIN)")
        v.add_argument("--fault", action="append", metavar="SPEC",
                       help="inject a fault (repeatable): see README 'Fault injection'")
        add_store_options(v, creates=verb == "create")
        add_presence_option(v, "auto")
        v.set_defaults(func=run)


def _read_options(path: str) -> dict:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read options {path!r}: {e}", EXIT_STORE) from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CliError(
            f"SyntaxError: options are not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
            EXIT_USAGE,
        ) from e


def run(args: argparse.Namespace) -> int:
    import os

    from authenticator.rp_testing.webauthn import (
        DirectDevice,
        WebAuthnClient,
        WebAuthnError,
        load_related_origins,
    )

    options = _read_options(args.options)
    related = None
    if args.related_origins:
        try:
            related = load_related_origins(args.related_origins)
        except OSError as e:
            raise CliError(f"cannot read --related-origins: {e}", EXIT_STORE) from e
        except ValueError as e:
            raise CliError(f"bad --related-origins {args.related_origins!r}: {e}", EXIT_USAGE) from e
    try:
        client = WebAuthnClient(
            None,
            args.origin,
            top_origin=args.top_origin,
            pin=args.pin or os.environ.get("FIDO_EMU_PIN"),
            related_origins=related,
        )
        # everything a browser checks before it talks to an authenticator: no store opened
        (client.check_create if args.verb == "create" else client.check_get)(options)
    except WebAuthnError as e:
        raise CliError(str(e)) from e
    auth = make_authenticator(args)
    client.device = DirectDevice(auth, transport=auth.config.transports[0])
    client.transports = list(auth.config.transports)
    client.attachment = "platform" if auth.config.platform_attachment else "cross-platform"
    device = client.device
    try:
        result = client.create(options) if args.verb == "create" else client.get(options)
    except WebAuthnError as e:
        raise CliError(str(e)) from e
    finally:
        device.close()
        close_authenticator(auth)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0

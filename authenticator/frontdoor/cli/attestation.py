"""``fido-emu attestation init|metadata``: a private attestation CA and its MDS3 statement.

``init`` creates (or reuses) a root CA in a directory and installs a batch certificate for
the profile's AAGUID into the store; ``metadata`` writes the FIDO MDS3 metadata statement an
RP needs to trust that root. Registrations carry the x5c chain when the authenticator's
attestation mode is ``packed`` (``Config(attestation="packed")``); ``packed-self`` ignores it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from authenticator.frontdoor.cli import EXIT_STORE, EXIT_USAGE, CliError
from authenticator.frontdoor.cli.common import (
    add_store_options,
    close_authenticator,
    make_authenticator,
)


def default_dir() -> Path:
    env = os.environ.get("FIDO_EMU_ATTESTATION_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("fido-emulator")) / "attestation"


def cmd_init(args: argparse.Namespace) -> int:
    from authenticator.frontdoor import attestation_ca

    directory = Path(args.dir) if args.dir else default_dir()
    subject = attestation_ca.Subject(args.country, args.organization, args.common_name)
    if len(subject.country) != 2:
        raise CliError("--country must be a two-letter ISO 3166 code", EXIT_USAGE)
    auth = make_authenticator(args)
    try:
        existed = attestation_ca.load_root(directory) is not None
        root = attestation_ca.init(auth, directory, subject)
    except (OSError, ValueError) as e:
        raise CliError(f"cannot set up the attestation CA in {directory}: {e}", EXIT_STORE) from e
    finally:
        close_authenticator(auth)
    action = "reused" if existed else "created"
    print(f"Root CA {action}: {directory / attestation_ca.ROOT_CERT_FILE}")
    print(f"Root key (keep it private): {directory / attestation_ca.ROOT_KEY_FILE}")
    print(f"Batch certificate installed for AAGUID {auth.config.aaguid.hex()} "
          f"({root.cert.subject.rfc4514_string()} issued it).")
    return 0


def cmd_metadata(args: argparse.Namespace) -> int:
    from authenticator.frontdoor import attestation_ca, metadata

    directory = Path(args.dir) if args.dir else default_dir()
    root = attestation_ca.installed_root_der(directory)
    if root is None:
        raise CliError(f"no root CA in {directory}: run 'fido-emu attestation init' first",
                       EXIT_STORE)
    auth = make_authenticator(args)
    try:
        statement = metadata.statement(auth, [root], description=args.description)
    finally:
        close_authenticator(auth)
    text = json.dumps(statement, indent=2) + "\n"
    if args.out and args.out != "-":
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as e:
            raise CliError(f"cannot write {args.out}: {e}", EXIT_STORE) from e
        print(f"Metadata statement written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attestation", help="attestation CA and FIDO metadata statement")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    dir_help = "CA directory (default: $FIDO_EMU_ATTESTATION_DIR or <user data dir>/attestation)"

    v = verbs.add_parser("init", help="create/reuse a root CA and install a batch certificate")
    v.add_argument("--dir", help=dir_help)
    v.add_argument("--country", default="US", help="subject C (default US)")
    v.add_argument("--organization", default="fido-emulator", help="subject O")
    v.add_argument("--common-name", default="fido-emulator", help="subject CN prefix")
    add_store_options(v, creates=True)
    v.set_defaults(func=cmd_init)

    v = verbs.add_parser("metadata", help="write the FIDO MDS3 metadata statement (JSON)")
    v.add_argument("--dir", help=dir_help)
    v.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
    v.add_argument(
        "--description", default="fido-emulator software authenticator", help="description"
    )
    add_store_options(v)
    v.set_defaults(func=cmd_metadata)

"""``fido-emu store migrate``: bring a PostgreSQL store's schema up to date, explicitly.

A shared store is migrated once, on purpose, by one command (docs/fleet.md): instances
never change a shared schema behind each other's back; they refuse an old one instead.
SQLite stores, one per machine, migrate themselves when opened.
"""

from __future__ import annotations

import argparse
import os

from authenticator.frontdoor.cli import EXIT_STORE, EXIT_USAGE, CliError


def _url(args: argparse.Namespace) -> str:
    url = args.store or os.environ.get("FIDO_EMU_STORE", "")
    if not url.startswith(("postgresql://", "postgres://")):
        raise CliError("store migrate needs a PostgreSQL store: --store postgresql://… "
                       "(SQLite stores migrate themselves when opened)", EXIT_USAGE)
    return url


def cmd_migrate(args: argparse.Namespace) -> int:
    from storage.base import StoreError

    url = _url(args)
    try:
        from storage.postgres import SCHEMA_VERSION, describe, migrate
    except ImportError as e:
        raise CliError(f"needs the [postgres] extra ({e.name} is missing): "
                       "pip install 'fido-emulator[postgres]'") from e
    try:
        before, after = migrate(url)
    except StoreError as e:
        raise CliError(str(e), EXIT_STORE) from e  # unreachable, locked, newer schema
    if before == after:
        print(f"{describe(url)}: schema {after}, up to date.")
    else:
        print(f"{describe(url)}: schema {before} -> {after} (this fido-emulator: {SCHEMA_VERSION}).")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="store administration (PostgreSQL schema migrations)")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    a = actions.add_parser("migrate", help="apply pending schema migrations to a PostgreSQL store")
    a.add_argument("--store", metavar="URL", default=None,
                   help="postgresql://USER:PASSWORD@HOST:PORT/DB (default: $FIDO_EMU_STORE)")
    a.set_defaults(func=cmd_migrate)


__all__ = ["register"]

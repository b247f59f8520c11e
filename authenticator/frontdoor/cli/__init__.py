"""``fido-emu``: one console script, one module per verb group.

Each module exposes ``register(subparsers)``; errors print one line on stderr and exit
non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# verb group modules, in --help order
MODULES = [
    "authenticator.frontdoor.cli.webauthn",
    "authenticator.frontdoor.cli.demo",
    "authenticator.frontdoor.cli.run",
    "authenticator.frontdoor.cli.manage",
    "authenticator.frontdoor.cli.attestation",
    "authenticator.frontdoor.cli.hybrid",
]


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1 (or ``status``)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fido-emu",
        description="A software FIDO2/CTAP2 authenticator (security key / passkey emulator).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as e:  # a verb group whose optional dependency is missing
            logging.getLogger("fido_emu").debug("CLI module %s unavailable: %s", name, e)
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"fido-emu: error: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

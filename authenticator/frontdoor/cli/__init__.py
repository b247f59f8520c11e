"""``fido-emu``: one console script, one module per verb group.

Each module exposes ``register(subparsers)``. Only the module of the verb being run is
imported (``fido-emu webauthn get`` never loads the hybrid or dashboard code); ``--help``
without a verb imports them all. Errors print ONE line on stderr and exit with the status
of :data:`EXIT_CODES`, never a traceback (``-v`` adds details to the log instead).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# verb -> module; the order is the --help order. A module may serve several verbs.
COMMAND_MODULES = {
    "webauthn": "authenticator.frontdoor.cli.webauthn",
    "demo": "authenticator.frontdoor.cli.demo",
    "run": "authenticator.frontdoor.cli.run",
    "serve": "authenticator.frontdoor.cli.serve",
    "gadget": "authenticator.frontdoor.cli.run",
    "info": "authenticator.frontdoor.cli.manage",
    "pin": "authenticator.frontdoor.cli.manage",
    "credentials": "authenticator.frontdoor.cli.manage",
    "config": "authenticator.frontdoor.cli.manage",
    "reset": "authenticator.frontdoor.cli.manage",
    "attestation": "authenticator.frontdoor.cli.attestation",
    "tunnel-server": "authenticator.frontdoor.cli.hybrid",
    "hybrid": "authenticator.frontdoor.cli.hybrid",
    "store": "authenticator.frontdoor.cli.store",
}
# verb group modules not in the table above (added by other front doors) are still found
MODULES = list(dict.fromkeys([*COMMAND_MODULES.values(), "authenticator.frontdoor.cli.serve"]))

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_STORE = 0, 1, 2, 3
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_REFUSED: "refused by the authenticator or the WebAuthn/RP rules (a DOMException, a CTAP "
    "status, no matching credential, a wrong PIN, ...)",
    EXIT_USAGE: "usage: a bad option, argument or options JSON",
    EXIT_STORE: "store or I/O: the store is missing, locked or unreadable, a file cannot be read",
}
EXIT_TABLE = "exit status:\n" + "\n".join(f"  {k}  {v}" for k, v in EXIT_CODES.items())


class CliError(Exception):
    """A user-facing error: printed as one line; ``status`` is one of :data:`EXIT_CODES`."""

    def __init__(self, message: str, status: int = EXIT_REFUSED) -> None:
        super().__init__(" ".join(str(message).split()))
        self.status = status


def _version() -> str:
    from authenticator import __version__

    return f"fido-emu {__version__}"


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as ONE line naming where to find help, and status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"fido-emu: error: {' '.join(message.split())} (see '{self.prog} --help')",
              file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _global_options(p: argparse.ArgumentParser, top: bool) -> None:
    """-v and --version, accepted before or after the verb."""
    taken = p._option_string_actions
    if "-v" not in taken and "--verbose" not in taken:
        p.add_argument("-v", "--verbose", action="count", help="more logging (repeatable)",
                       default=0 if top else argparse.SUPPRESS)
    if "--version" not in taken:
        p.add_argument("--version", action="version", version=_version(),
                       help="print the version and exit")


def _walk(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from _walk(child)


def _verb(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fido-emu",
        description="A software FIDO2/CTAP2 authenticator (security key / passkey emulator).",
        epilog=EXIT_TABLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    verb = _verb(argv or [])
    names = [COMMAND_MODULES[verb]] if verb in COMMAND_MODULES else MODULES
    for name in dict.fromkeys(names):
        try:
            module = importlib.import_module(name)
        except ImportError as e:  # a verb group whose optional dependency is missing
            if e.name != name:
                import logging

                logging.getLogger("fido_emu").debug("CLI module %s unavailable: %s", name, e)
            continue
        module.register(sub)
    for p in _walk(parser):
        if p is not parser:
            _global_options(p, top=False)
            if p.epilog is None:
                p.epilog = EXIT_TABLE
                p.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _setup_logging(verbose: int) -> None:
    import logging

    class OneLine(logging.Formatter):
        """Without -v, a logged exception is one line (its type and message), never a
        traceback: the core logs internal errors with log.exception."""

        def format(self, record: logging.LogRecord) -> str:
            if verbose or not record.exc_info:
                return super().format(record)
            exc = record.exc_info[1]
            saved = record.exc_info, record.exc_text
            record.exc_info, record.exc_text = None, None
            try:
                text = super().format(record)
            finally:
                record.exc_info, record.exc_text = saved
            return f"{text}: {type(exc).__name__}: {exc} (-v for details)"

    handler = logging.StreamHandler()
    handler.setFormatter(OneLine("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.WARNING - 10 * verbose, handlers=[handler])


def _quiet_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
    except BrokenPipeError:  # --help | head
        _quiet_stdout()
        return EXIT_OK
    _setup_logging(args.verbose or 0)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()
        return status
    except CliError as e:
        print(f"fido-emu: error: {e}", file=sys.stderr)
        return e.status
    except BrokenPipeError:  # `fido-emu ... | head`: the reader left; not an error
        _quiet_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: still one line; the traceback only with -v
        import logging

        logging.getLogger("fido_emu").debug("internal error", exc_info=True)
        text = " ".join(str(e).split())
        print(f"fido-emu: error: internal error: {type(e).__name__}: {text} "
              "(please report it; -v shows the traceback)", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())

"""Options and set-up shared by the verbs: store, profile, presence, device."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from authenticator.config import PROFILES, Config
from authenticator.core import Authenticator
from authenticator.presence import AutoApprove, Deny, Presence


def add_store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        metavar="PATH",
        default=None,
        help="credential store (SQLite file; ':memory:' for a throwaway one). "
        "Default: $FIDO_EMU_STORE or the user data dir",
    )
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=None,
        help="authenticator profile (default: security-key, or the one the store was made with)",
    )


def add_presence_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--presence",
        choices=["auto", "prompt", "deny"],
        default=default,
        help=f"how user presence is answered (default: {default})",
    )
    p.add_argument(
        "--uv",
        choices=["approve", "deny", "fail"],
        default="approve",
        help="outcome of built-in user verification for profiles that have it",
    )


def make_presence(args: argparse.Namespace) -> Presence:
    uv = getattr(args, "uv", "approve")
    mode = getattr(args, "presence", "auto")
    if mode == "deny":
        return Deny(uv_outcome="deny")
    if mode == "prompt":
        from authenticator.cli.prompt import TerminalPresence

        return TerminalPresence(uv_outcome=uv)
    return AutoApprove(uv_outcome=uv)


def open_store_from(args: argparse.Namespace):
    from authenticator.cli import CliError
    from storage.sqlite import KeyFileError, open_store

    path = getattr(args, "store", None)
    try:
        return open_store(Path(path) if path and path != ":memory:" else path)
    except KeyFileError as e:
        raise CliError(str(e)) from e
    except Exception as e:  # sqlite3.DatabaseError, PermissionError, ...
        raise CliError(f"cannot open store {path or '(default)'}: {e}") from e


PROFILE_STATE = "cli.profile"


def make_authenticator(args: argparse.Namespace, **overrides) -> Authenticator:
    """The authenticator behind a CLI invocation; the store remembers its profile."""
    store = open_store_from(args)
    saved = store.get_state(PROFILE_STATE)
    profile = getattr(args, "profile", None) or (saved.decode() if saved else "security-key")
    if saved is None or saved.decode() != profile:
        store.set_state(PROFILE_STATE, profile.encode())
    config = Config.for_profile(profile, **overrides)
    auth = Authenticator(config, store, make_presence(args))
    for spec in getattr(args, "fault", None) or []:
        try:
            auth.faults.arm(spec)
        except ValueError as e:
            from authenticator.cli import CliError

            raise CliError(str(e)) from e
    return auth


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")

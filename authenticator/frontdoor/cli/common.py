"""Options and set-up shared by the verbs: store, profile, presence, device."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from authenticator.core import Authenticator
from authenticator.core.config import PROFILES, Config
from authenticator.core.presence import AutoApprove, Deny, Presence


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
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="FIELD=VALUE",
        default=[],
        help="override a Config field of the profile, e.g. --set builtin_uv=true "
        "--set counter_mode=global --set algorithms=-8,-7 (repeatable)",
    )


def add_presence_option(p: argparse.ArgumentParser, default: str, web: bool = False) -> None:
    """``web`` offers ``--presence web`` (verbs that serve the dashboard)."""
    p.add_argument(
        "--presence",
        choices=["auto", "prompt", "deny", "gpio", *(["web"] if web else [])],
        default=default,
        help=f"how user presence is answered (default: {default}"
        + ("; web: the dashboard's buttons" if web else "") + ")",
    )
    p.add_argument(
        "--gpio-chip", default="/dev/gpiochip0", help="--presence gpio: the GPIO chip device"
    )
    p.add_argument(
        "--gpio-line", type=int, default=17, help="--presence gpio: the button's line (BCM number)"
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
        from authenticator.frontdoor.cli.prompt import TerminalPresence

        return TerminalPresence(uv_outcome=uv)
    if mode == "gpio":
        from authenticator.frontdoor.cli import CliError

        try:
            from authenticator.frontdoor.cli.gpio import GpioButtonPresence

            return GpioButtonPresence(args.gpio_chip, args.gpio_line, uv_outcome=uv)
        except ImportError as e:
            raise CliError("--presence gpio needs the gpiod package (pip install gpiod)") from e
        except OSError as e:
            raise CliError(f"cannot open GPIO {args.gpio_chip} line {args.gpio_line}: {e}") from e
    if mode == "web":
        from authenticator.frontdoor.dashboard.presence import WebPresence

        return WebPresence()
    return AutoApprove(uv_outcome=uv)


def open_store_from(args: argparse.Namespace):
    from authenticator.frontdoor.cli import CliError
    from storage.sqlite import KeyFileError, open_store

    path = getattr(args, "store", None)
    try:
        return open_store(Path(path) if path and path != ":memory:" else path)
    except KeyFileError as e:
        raise CliError(str(e)) from e
    except Exception as e:  # sqlite3.DatabaseError, PermissionError, ...
        raise CliError(f"cannot open store {path or '(default)'}: {e}") from e


PROFILE_STATE = "cli.profile"
OVERRIDES_STATE = "cli.overrides"


def make_authenticator(
    args: argparse.Namespace, defaults: dict | None = None, **overrides
) -> Authenticator:
    """The authenticator behind a CLI invocation; the store remembers its profile.

    ``defaults`` replace profile values but yield to ``--set`` (``fido-emu run`` passes the
    transports it really serves); ``overrides`` win over everything."""
    store = open_store_from(args)
    saved = store.get_state(PROFILE_STATE)
    profile = getattr(args, "profile", None) or (saved.decode() if saved else "security-key")
    if saved is None or saved.decode() != profile:
        store.set_state(PROFILE_STATE, profile.encode())
    # --set overrides are remembered by the store, like its profile, so later commands on
    # the same store see the same authenticator
    given = getattr(args, "overrides", None) or []
    if given:
        store.set_state(OVERRIDES_STATE, "\n".join(given).encode())
    else:
        saved_overrides = store.get_state(OVERRIDES_STATE)
        given = saved_overrides.decode().splitlines() if saved_overrides else []
    overrides = {**(defaults or {}), **parse_overrides(given), **overrides}
    try:
        config = Config.for_profile(profile, **overrides)
    except TypeError as e:
        from authenticator.frontdoor.cli import CliError

        raise CliError(f"bad --set: {e}") from e
    auth = Authenticator(config, store, make_presence(args))
    for spec in getattr(args, "fault", None) or []:
        try:
            auth.faults.arm(spec)
        except ValueError as e:
            from authenticator.frontdoor.cli import CliError

            raise CliError(str(e)) from e
    return auth


def parse_overrides(items: list[str]) -> dict:
    """``FIELD=VALUE`` pairs -> Config keyword arguments, typed by the field's default."""
    import dataclasses

    from authenticator.frontdoor.cli import CliError

    fields = {f.name: f for f in dataclasses.fields(Config)}
    defaults = Config()
    out: dict = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in fields or name in ("profile", "extra"):
            raise CliError(f"bad --set {item!r}: expected FIELD=VALUE with a Config field")
        current = getattr(defaults, name)
        try:
            if isinstance(current, bool):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                value = raw.lower() in ("true", "1", "yes")
            elif isinstance(current, bytes):
                value = bytes.fromhex(raw.replace("-", ""))
            elif isinstance(current, tuple):
                parts = [p for p in raw.split(",") if p]
                value = tuple(int(p) if p.lstrip("-").isdigit() else p for p in parts)
            elif isinstance(current, int) or name == "reset_window":
                value = None if raw.lower() == "none" else (float(raw) if "." in raw else int(raw))
            elif isinstance(current, float):
                value = float(raw)
            else:
                value = raw
        except ValueError as e:
            raise CliError(f"bad --set {item!r}: {e}") from e
        out[name] = value
    return out


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")

"""Options and set-up shared by the verbs: store, profile, presence, device.

Imports stay light at module level: the core is loaded when an authenticator is built.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from authenticator.frontdoor.cli import EXIT_STORE, EXIT_USAGE, CliError

if TYPE_CHECKING:
    from authenticator.core import Authenticator
    from authenticator.core.presence import Presence

PROFILE_NAMES = ("security-key", "synced-passkey", "platform")


def add_store_options(
    p: argparse.ArgumentParser, creates: bool = False, store_help: str | None = None
) -> None:
    """``creates``: the verb writes, so it may create a missing store; read verbs refuse a
    store path that does not exist unless ``--create`` is given (a typo must not answer
    NO_CREDENTIALS from a fresh empty store)."""
    p.add_argument(
        "--store",
        metavar="PATH|URL",
        default=None,
        help=store_help or "credential store (SQLite file; postgresql://… for a shared one, "
        "docs/fleet.md; ':memory:' for a throwaway one). "
        "Default: $FIDO_EMU_STORE or the user data dir"
        + ("; created when missing" if creates else "; must exist unless --create"),
    )
    p.add_argument(
        "--create",
        action="store_true",
        default=creates,
        help=argparse.SUPPRESS if creates else "create the store if it does not exist",
    )
    p.add_argument(
        "--profile",
        choices=sorted(PROFILE_NAMES),
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
        help=f"how user presence is answered (default: {default}). prompt asks on the "
        "terminal (/dev/tty, never stdin) and denies when there is none; auto approves every "
        "touch" + ("; web: the dashboard's buttons" if web else ""),
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
    from authenticator.core.presence import AutoApprove, Deny

    uv = getattr(args, "uv", "approve")
    mode = getattr(args, "presence", "auto")
    if mode == "deny":
        return Deny(uv_outcome="deny")
    if mode == "prompt":
        from authenticator.frontdoor.cli.prompt import TerminalPresence

        return TerminalPresence(uv_outcome=uv)
    if mode == "gpio":
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


def store_path(args: argparse.Namespace) -> Path | str:
    """The store the verb uses: --store, $FIDO_EMU_STORE or the user data dir."""
    path = getattr(args, "store", None) or os.environ.get("FIDO_EMU_STORE", "")
    if path == ":memory:" or "://" in path:  # postgresql://… stays a URL
        return path
    if path:
        return Path(path).expanduser()
    from storage.sqlite import default_store_path

    default = default_store_path()
    return ":memory:" if str(default) == ":memory:" else default


def open_store_from(args: argparse.Namespace):
    from storage.base import StoreError
    from storage.sqlite import open_store

    path = store_path(args)
    if (
        path != ":memory:"
        and "://" not in str(path)
        and not getattr(args, "create", True)
        and not Path(path).exists()
    ):
        raise CliError(
            f"no store at {path} (check --store; a write such as 'webauthn create', or "
            "--create, makes one)",
            EXIT_STORE,
        )
    try:
        return open_store(path)
    except StoreError as e:  # key file and PostgreSQL errors: one line, no URL password
        raise CliError(str(e), EXIT_STORE) from e
    except Exception as e:  # sqlite3.DatabaseError, PermissionError, ...
        raise CliError(f"cannot open store {path}: {e}", EXIT_STORE) from e


def close_authenticator(auth: Authenticator) -> None:
    """A clean exit: give unused counter leases back (consecutive CLI calls then count +1
    per signature, like a real key), then close the store."""
    try:
        auth.counters.release()
    finally:
        auth.store.close()


PROFILE_STATE = "cli.profile"
OVERRIDES_STATE = "cli.overrides"


def make_authenticator(
    args: argparse.Namespace, defaults: dict | None = None, **overrides
) -> Authenticator:
    """The authenticator behind a CLI invocation; the store remembers its profile.
    Close it with :func:`close_authenticator`.

    ``defaults`` replace profile values but yield to ``--set`` (``fido-emu run`` passes the
    transports it really serves); ``overrides`` win over everything."""
    from authenticator.core import Authenticator
    from authenticator.core.config import Config

    overrides_given = parse_overrides(getattr(args, "overrides", None) or [])
    store = open_store_from(args)
    try:
        return _configure(
            args, store, Config, Authenticator, {**overrides_given, **overrides}, defaults
        )
    except BaseException:
        store.close()
        raise


def _configure(
    args, store, Config, Authenticator, explicit: dict, defaults: dict | None
) -> Authenticator:
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
    overrides = {**(defaults or {}), **parse_overrides(given), **explicit}
    try:
        config = Config.for_profile(profile, **overrides)
    except (TypeError, ValueError) as e:
        raise CliError(f"bad --set: {e}", EXIT_USAGE) from e
    auth = Authenticator(config, store, make_presence(args))
    for spec in getattr(args, "fault", None) or []:
        try:
            auth.faults.arm(spec)
        except ValueError as e:
            raise CliError(f"bad --fault {spec!r}: {e}", EXIT_USAGE) from e
    return auth


def parse_overrides(items: list[str]) -> dict:
    """``FIELD=VALUE`` pairs -> Config keyword arguments, typed by the field's default."""
    if not items:
        return {}
    from authenticator.core.config import Config

    defaults = Config()
    settable = override_fields()
    out: dict = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in settable:
            valid = ", ".join(f"{n} ({t})" for n, t in settable.items())
            raise CliError(
                f"bad --set {item!r}: expected FIELD=VALUE; fields: {valid}", EXIT_USAGE
            )
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
        except ValueError:
            raise CliError(
                f"bad --set {item!r}: {name} takes {settable[name]}, not {raw!r}", EXIT_USAGE
            ) from None
        out[name] = value
    return out


def override_fields() -> dict[str, str]:
    """Config fields --set accepts, with the type each takes (for error messages)."""
    import dataclasses

    from authenticator.core.config import Config

    defaults = Config()
    out = {}
    for f in dataclasses.fields(Config):
        if f.name in ("profile", "extra"):
            continue
        v = getattr(defaults, f.name)
        if isinstance(v, bool):
            kind = "true|false"
        elif isinstance(v, bytes):
            kind = "hex"
        elif isinstance(v, tuple):
            kind = "comma list"
        elif isinstance(v, int | float) or f.name == "reset_window":
            kind = "number" + ("|none" if v is None or f.name == "reset_window" else "")
        else:
            kind = "text"
        out[f.name] = kind
    return out


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")

"""A live web dashboard for ``fido-emu run --dashboard [HOST:]PORT``.

Presence requests with Approve/Deny (``--presence web``), credentials per RP, device state,
PIN, reset, power cycle, faults, the live CTAP log and hybrid QR scanning, from the same
process as the transports. aiohttp underneath (see docs/dashboard.md), no front-end build.
Every request needs the token, loopback included.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from authenticator.core import Authenticator
    from authenticator.frontdoor.dashboard.server import Dashboard

DEFAULT_ADDRESS = "127.0.0.1:8765"


def add_dashboard_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dashboard", nargs="?", const=DEFAULT_ADDRESS, default=None, metavar="[HOST:]PORT",
        help=f"serve the web dashboard (default {DEFAULT_ADDRESS}); it prints its URL with a "
        "token, which every request needs",
    )
    p.add_argument(
        "--dashboard-token-file", metavar="FILE", default=None,
        help="take the dashboard token from FILE (created, mode 0600, if missing); default: a "
        "fresh token, written for scripts to $XDG_RUNTIME_DIR/fido-emu/dashboard-PORT.token",
    )


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host.strip("[]") or "127.0.0.1", int(port))


async def start_dashboard(
    auth: Authenticator,
    args: argparse.Namespace,
    *,
    transports: Sequence[str] = (),
    power_cycle: Callable[[], None] | None = None,
) -> Dashboard:
    """Start the dashboard for ``args``; with a waiting presence source (the terminal prompt)
    the web buttons race it through FirstOf. Prints the URL (and a generated token)."""
    from authenticator.core.presence import FirstOf
    from authenticator.frontdoor.cli import CliError
    from authenticator.frontdoor.dashboard.presence import WebPresence
    from authenticator.frontdoor.dashboard.security import (
        default_token_path,
        load_token,
        write_token_file,
    )
    from authenticator.frontdoor.dashboard.server import Dashboard

    try:
        host, port = parse_address(args.dashboard)
    except ValueError:
        raise CliError(f"--dashboard must be [HOST:]PORT, not {args.dashboard!r}") from None
    token = None
    if args.dashboard_token_file:
        try:
            token = load_token(args.dashboard_token_file)
        except (OSError, ValueError) as e:
            raise CliError(f"dashboard token file: {e}") from e

    web = auth.presence if isinstance(auth.presence, WebPresence) else None
    if web is None and getattr(auth.presence, "immediate", None) is None:
        web = WebPresence()  # auto/deny answer at once; a prompt gets the page as a rival
        auth.presence = FirstOf(auth.presence, web)
    dashboard = Dashboard(
        auth, host=host, port=port, token=token, web_presence=web,
        transports=transports, power_cycle=power_cycle,
    )
    try:
        await dashboard.start()
    except OSError as e:
        raise CliError(f"cannot serve the dashboard on {host}:{port}: {e.strerror}") from e
    token_file = args.dashboard_token_file
    if token_file is None:
        try:
            token_file = write_token_file(default_token_path("dashboard", dashboard.port),
                                          dashboard.token)
            dashboard.token_file = token_file
        except OSError:
            token_file = None
    where = f" (token also in {token_file})" if token_file else ""
    print(f"fido-emu: dashboard on {dashboard.login_url}{where}", file=sys.stderr, flush=True)
    if host in ("0.0.0.0", "::", ""):
        print(f"fido-emu: dashboard listens on every interface ({host}); from another machine "
              f"use this machine's address and the same token", file=sys.stderr, flush=True)
    return dashboard


__all__ = ["DEFAULT_ADDRESS", "add_dashboard_options", "parse_address", "start_dashboard"]

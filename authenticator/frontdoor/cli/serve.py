"""``fido-emu serve``: the HTTP JSON API for RP test suites (see docs/dashboard.md)."""

from __future__ import annotations

import argparse
import sys

from authenticator.frontdoor.cli.common import add_store_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="HTTP JSON API: W3C WebAuthn virtual authenticators, L3 JSON ceremonies",
        description="Serve the WebAuthn WebDriver-extension vocabulary and WebAuthn L3 JSON "
        "create/get over HTTP. Prints its URL with a token; every request needs the token "
        "(X-Fido-Emu-Token, Authorization: Bearer, or ?token=).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8766, help="port (default 8766; 0 picks one)")
    p.add_argument("--token-file", metavar="FILE", default=None,
                   help="take the token from FILE (created, mode 0600, if missing)")
    add_store_options(p, creates=True)
    p.set_defaults(func=run, presence="auto")


def run(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_serve(args)) or 0


async def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import os
    import signal

    from authenticator.frontdoor.api import ApiServer
    from authenticator.frontdoor.cli import CliError
    from authenticator.frontdoor.cli.common import make_authenticator
    from authenticator.frontdoor.dashboard.security import (
        default_token_path,
        load_token,
        write_token_file,
    )

    token = None
    if args.token_file:
        try:
            token = load_token(args.token_file)
        except (OSError, ValueError) as e:
            raise CliError(f"token file: {e}") from e
    auth = make_authenticator(args)
    server = ApiServer(host=args.host, port=args.port, token=token, profile=auth.config.profile)
    server.add(auth, "default")
    try:
        await server.start()
    except OSError as e:
        raise CliError(f"cannot serve on {args.host}:{args.port}: {e.strerror}") from e
    token_file = args.token_file
    generated = None
    if token_file is None:
        with contextlib.suppress(OSError):
            token_file = generated = write_token_file(default_token_path("serve", server.port),
                                                      server.token)
    where = f" (token also in {token_file})" if token_file else ""
    print(f"fido-emu: serving on {server.url}?token={server.token}{where}", file=sys.stderr,
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()
        if generated is not None:
            with contextlib.suppress(OSError):
                os.unlink(generated)
    return 0

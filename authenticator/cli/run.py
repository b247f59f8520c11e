"""``fido-emu run``: serve the authenticator over real transports (filled in below)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    return None

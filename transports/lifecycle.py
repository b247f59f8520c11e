"""The life cycle every I/O transport shares: start, serve until cancelled, close."""

from __future__ import annotations

import asyncio
from typing import Self


class Served:
    """Subclasses implement ``start`` and ``close``; this gives them the rest."""

    async def start(self) -> object:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def serve_forever(self) -> None:
        """Start, then run until cancelled; always closes (destroys devices, unbinds)."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

"""The Presence port: how the core asks a human (or a program) for a touch or UV.

Implementations here never block the event loop; the terminal prompt lives in the CLI.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

UvOutcome = Literal["approve", "deny", "fail"]


@dataclass(frozen=True)
class PresenceRequest:
    """Who asks: shown to the user (terminal, dashboard, log); never carries secrets."""

    command: str
    rp_id: str | None = None
    user_name: str | None = None
    transport: str = "usb"


class Presence(Protocol):
    async def request_presence(self, request: PresenceRequest) -> bool:
        """True when the user touched the key; False when they declined."""
        ...

    async def verify_user(self, request: PresenceRequest) -> UvOutcome:
        """Built-in UV (biometric-like): approve, deny (cancelled) or fail (no match)."""
        ...


class AutoApprove:
    """Approves every touch immediately; built-in UV gives ``uv_outcome``."""

    def __init__(self, uv_outcome: UvOutcome = "approve") -> None:
        self.uv_outcome: UvOutcome = uv_outcome
        self.requests: deque[PresenceRequest] = deque(maxlen=100)  # recent, for tests

    def immediate(self, request: PresenceRequest) -> bool | None:
        """An answer available without waiting (lets the core skip the wait machinery)."""
        self.requests.append(request)
        return True

    async def request_presence(self, request: PresenceRequest) -> bool:
        self.requests.append(request)
        return True

    async def verify_user(self, request: PresenceRequest) -> UvOutcome:
        self.requests.append(request)
        return self.uv_outcome


class Deny(AutoApprove):
    """Declines every touch, as a user who does not touch the key before the timeout."""

    def __init__(self, uv_outcome: UvOutcome = "deny") -> None:
        super().__init__(uv_outcome)

    async def request_presence(self, request: PresenceRequest) -> bool:
        self.requests.append(request)
        return False

    def immediate(self, request: PresenceRequest) -> bool | None:
        self.requests.append(request)
        return False


PresenceFn = Callable[[PresenceRequest], "bool | Awaitable[bool]"]
UvFn = Callable[[PresenceRequest], "UvOutcome | Awaitable[UvOutcome]"]


class CallbackPresence:
    """Presence decided by a program: sync or async callables."""

    def __init__(self, presence: PresenceFn, uv: UvFn | None = None) -> None:
        self._presence = presence
        self._uv = uv

    async def request_presence(self, request: PresenceRequest) -> bool:
        result = self._presence(request)
        if inspect.isawaitable(result):
            result = await result
        return bool(result)

    async def verify_user(self, request: PresenceRequest) -> UvOutcome:
        if self._uv is None:
            return "approve" if await self.request_presence(request) else "deny"
        result = self._uv(request)
        if inspect.isawaitable(result):
            result = await result
        return result  # type: ignore[return-value]


class FirstOf:
    """Several presence sources at once (terminal, GPIO, dashboard): the first answer wins."""

    def __init__(self, *sources: Presence) -> None:
        self.sources = list(sources)

    async def _race(self, calls: list[Awaitable]) -> object:
        tasks = [asyncio.ensure_future(c) for c in calls]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            return next(iter(done)).result()
        finally:
            for t in tasks:
                t.cancel()

    async def request_presence(self, request: PresenceRequest) -> bool:
        return bool(await self._race([s.request_presence(request) for s in self.sources]))

    async def verify_user(self, request: PresenceRequest) -> UvOutcome:
        return await self._race([s.verify_user(request) for s in self.sources])  # type: ignore[return-value]

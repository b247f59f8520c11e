"""Presence answered from the dashboard page: ``--presence web``.

Each wait becomes a pending request the page shows (who asks, a countdown) until a
button answers it, the core's timeout or a CTAPHID CANCEL ends the wait, or another
source in a :class:`~authenticator.core.presence.FirstOf` answers first (the wait is then
cancelled and the request disappears from the page).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from authenticator.core.presence import PresenceRequest, UvOutcome

Answer = Literal["approve", "deny", "fail"]


@dataclass
class Pending:
    id: str
    kind: Literal["presence", "uv"]
    request: PresenceRequest
    created: float
    deadline: float
    future: asyncio.Future[Answer]

    def public(self) -> dict:
        r = self.request
        return {
            "id": self.id,
            "kind": self.kind,
            "command": r.command,
            "rpId": r.rp_id,
            "user": r.user_name,
            "transport": r.transport,
            "created": self.created,
            "deadline": self.deadline,
        }


class WebPresence:
    """A Presence port whose answers come from :meth:`answer` (the dashboard's buttons)."""

    def __init__(self, timeout: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self.timeout = timeout  # only for the page's countdown; the core enforces its own
        self.clock = clock
        self.pending: dict[str, Pending] = {}
        self.listeners: list[Callable[[], None]] = []

    async def request_presence(self, request: PresenceRequest) -> bool:
        return await self._ask("presence", request) == "approve"

    async def verify_user(self, request: PresenceRequest) -> UvOutcome:
        return await self._ask("uv", request)

    def answer(self, request_id: str, answer: Answer) -> bool:
        """Resolve a pending request; False when it is gone (answered, cancelled, timed out)."""
        pending = self.pending.get(request_id)
        if pending is None or pending.future.done():
            return False
        if answer == "fail" and pending.kind != "uv":
            answer = "deny"
        pending.future.set_result(answer)
        return True

    def snapshot(self) -> list[dict]:
        return [p.public() for p in self.pending.values()]

    async def _ask(self, kind: Literal["presence", "uv"], request: PresenceRequest) -> Answer:
        now = self.clock()
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        pending = Pending(secrets.token_hex(8), kind, request, now, now + self.timeout, future)
        self.pending[pending.id] = pending
        self._notify()
        try:
            return await future
        finally:
            self.pending.pop(pending.id, None)
            self._notify()

    def _notify(self) -> None:
        for listener in list(self.listeners):
            listener()


Mode = Literal["auto", "ask", "deny"]
MODES: tuple[Mode, ...] = ("auto", "ask", "deny")


class SwitchablePresence:
    """Presence whose mode the dashboard switches at run time: ``auto`` approves at once,
    ``deny`` declines at once, ``ask`` defers to ``ask_source`` (the page's buttons, raced
    with the terminal or a GPIO button when those were configured)."""

    def __init__(self, ask_source: object, mode: Mode = "ask", uv_outcome: UvOutcome = "approve"):
        self.ask_source = ask_source
        self.mode: Mode = mode
        self.uv_outcome: UvOutcome = uv_outcome

    def immediate(self, request: PresenceRequest) -> bool | None:
        if self.mode == "auto":
            return True
        if self.mode == "deny":
            return False
        inner = getattr(self.ask_source, "immediate", None)
        return inner(request) if inner is not None else None

    async def request_presence(self, request: PresenceRequest) -> bool:
        if self.mode != "ask":
            return self.mode == "auto"
        return await self.ask_source.request_presence(request)  # type: ignore[attr-defined]

    async def verify_user(self, request: PresenceRequest) -> UvOutcome:
        if self.mode == "auto":
            return self.uv_outcome
        if self.mode == "deny":
            return "deny"
        return await self.ask_source.verify_user(request)  # type: ignore[attr-defined]

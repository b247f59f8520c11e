"""Presence from the terminal: the user types Enter to touch, 'n' to decline."""

from __future__ import annotations

import asyncio
import sys

from authenticator.core.presence import PresenceRequest, UvOutcome


class TerminalPresence:
    def __init__(self, uv_outcome: UvOutcome = "approve") -> None:
        self.uv_outcome = uv_outcome

    async def _ask(self, question: str) -> bool:
        loop = asyncio.get_running_loop()
        print(question, end="", file=sys.stderr, flush=True)
        answer = await loop.run_in_executor(None, sys.stdin.readline)
        return answer.strip().lower() not in ("n", "no")

    async def request_presence(self, request: PresenceRequest) -> bool:
        who = request.rp_id or "the authenticator"
        user = f" as {request.user_name}" if request.user_name else ""
        return await self._ask(
            f"[fido-emu] {request.command} for {who}{user} via {request.transport}: "
            "touch? [Enter = yes, n = no] "
        )

    async def verify_user(self, request: PresenceRequest) -> UvOutcome:
        ok = await self.request_presence(request)
        return self.uv_outcome if ok else "deny"

"""Presence from a push button on a GPIO line (Raspberry Pi), via libgpiod v2 (``gpiod``).

A press is a falling edge on an input with the pull-up enabled (button to ground), the
usual wiring on a Pi (e.g. GPIO17 on pin 11, ground on pin 9). Edges that happened before
the request are discarded, so a stale press never approves a later request.
"""

from __future__ import annotations

import asyncio
import time

from authenticator.core.presence import PresenceRequest, UvOutcome


class GpioButtonPresence:
    def __init__(
        self,
        chip: str = "/dev/gpiochip0",
        line: int = 17,
        *,
        active_low: bool = True,
        debounce: float = 0.05,
        uv_outcome: UvOutcome = "approve",
    ) -> None:
        import gpiod
        from gpiod.line import Bias, Direction, Edge

        self.uv_outcome = uv_outcome
        self.debounce = debounce
        settings = gpiod.LineSettings(
            direction=Direction.INPUT,
            edge_detection=Edge.FALLING if active_low else Edge.RISING,
            bias=Bias.PULL_UP if active_low else Bias.PULL_DOWN,
        )
        self._request = gpiod.request_lines(chip, consumer="fido-emu", config={line: settings})

    def _drain(self) -> None:
        while self._request.wait_edge_events(0):
            self._request.read_edge_events()

    async def _press(self) -> None:
        loop = asyncio.get_running_loop()
        self._drain()
        pressed = asyncio.Event()
        last = [0.0]

        def readable() -> None:
            self._request.read_edge_events()
            now = time.monotonic()
            if now - last[0] >= self.debounce:
                pressed.set()
            last[0] = now

        loop.add_reader(self._request.fd, readable)
        try:
            await pressed.wait()
        finally:
            loop.remove_reader(self._request.fd)

    async def request_presence(self, request: PresenceRequest) -> bool:
        print(
            f"[fido-emu] press the button: {request.command} for {request.rp_id or '-'}",
            flush=True,
        )
        await self._press()
        return True

    async def verify_user(self, request: PresenceRequest) -> UvOutcome:
        await self.request_presence(request)
        return self.uv_outcome

    def close(self) -> None:
        self._request.release()

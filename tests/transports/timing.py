"""Ordering without sleeping: a fake clock with timers, ``until`` with a deadline, a lock that
says when someone waits for it.

Engines take ``clock`` (read the time) and ``call_later`` (arm a timer); :class:`FakeTime`
is both, and fires due timers only when a test calls :meth:`FakeTime.advance`. So a test says
"0.74 s pass: nothing; 0.01 s more: the timeout" and never measures a real duration.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeTime:
    """``clock()`` and ``call_later(delay, callback)`` on a time that moves only on advance()."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self._timers: list[tuple[float, int, FakeTimer]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], object]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    @property
    def pending(self) -> int:
        return sum(not t.cancelled for _, _, t in self._timers)

    def advance(self, seconds: float) -> None:
        """Move time on, firing every timer due by then in order (including ones armed now)."""
        end = self.now + seconds
        while self._timers and self._timers[0][0] <= end:
            when, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self.now = max(self.now, when)
            timer.callback()
        self.now = end


async def until(predicate: Callable[[], bool], deadline: float = 5.0) -> None:
    """Let the event loop run until ``predicate()`` holds; fail after ``deadline`` seconds.

    The deadline only guards against a hang: no outcome depends on how long anything took.
    """
    async with asyncio.timeout(deadline):
        while not predicate():
            await asyncio.sleep(0.002)


class WatchedLock(asyncio.Lock):
    """An ``asyncio.Lock`` whose ``contended`` event is set once someone has to wait for it."""

    def __init__(self) -> None:
        super().__init__()
        self.contended = asyncio.Event()

    async def acquire(self) -> bool:
        if self.locked():
            self.contended.set()
        return await super().acquire()

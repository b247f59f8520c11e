"""The protocol engines' only sense of time: read a clock, arm a timer.

Engines take ``clock`` and ``call_later`` so tests can drive them on fake time (the
timers fire when the test says so) instead of sleeping and measuring.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    """What ``call_later`` returns: an ``asyncio.TimerHandle`` or a test's fake timer."""

    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], object]], Timer]


def loop_call_later(delay: float, callback: Callable[[], object]) -> Timer:
    """The default: a timer on the running event loop."""
    return asyncio.get_running_loop().call_later(delay, callback)

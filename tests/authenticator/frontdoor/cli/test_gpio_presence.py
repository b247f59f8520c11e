"""--presence gpio logic against a fake libgpiod line (Debian's kernel has no gpio-sim,
so no real-kernel test): waits for a press, ignores presses made before the request."""

from __future__ import annotations

import asyncio
import os
import select
import sys
import types

import pytest

from authenticator.core.presence import PresenceRequest


class FakeRequest:
    def __init__(self) -> None:
        self.fd, self._w = os.pipe()
        os.set_blocking(self.fd, False)

    def press(self) -> None:
        os.write(self._w, b"x")

    def wait_edge_events(self, timeout: float) -> bool:
        return bool(select.select([self.fd], [], [], timeout)[0])

    def read_edge_events(self) -> list:
        try:
            return list(os.read(self.fd, 64))
        except BlockingIOError:
            return []

    def release(self) -> None:
        os.close(self.fd)
        os.close(self._w)


@pytest.fixture
def fake_gpiod(monkeypatch):
    made: list[FakeRequest] = []
    gpiod = types.ModuleType("gpiod")
    line = types.ModuleType("gpiod.line")
    line.Bias = types.SimpleNamespace(PULL_UP=1, PULL_DOWN=2)
    line.Direction = types.SimpleNamespace(INPUT=1)
    line.Edge = types.SimpleNamespace(FALLING=1, RISING=2)
    gpiod.LineSettings = lambda **kw: kw
    gpiod.request_lines = lambda chip, consumer, config: made.append(FakeRequest()) or made[-1]
    gpiod.line = line
    monkeypatch.setitem(sys.modules, "gpiod", gpiod)
    monkeypatch.setitem(sys.modules, "gpiod.line", line)
    return made


async def test_button_press_approves_and_stale_presses_are_ignored(fake_gpiod):
    from authenticator.frontdoor.cli.gpio import GpioButtonPresence

    presence = GpioButtonPresence("/dev/gpiochip0", 17, debounce=0)
    request = fake_gpiod[0]
    request.press()  # a press before anyone asked must not count
    task = asyncio.create_task(presence.request_presence(PresenceRequest("makeCredential", "example.com")))
    await asyncio.sleep(0.2)
    assert not task.done()
    request.press()
    assert await asyncio.wait_for(task, 2) is True
    presence.close()

"""Fixtures the core's tests share: an authenticator on a settable clock, as a CtapDevice."""

from __future__ import annotations

import pytest
from fido2.ctap2 import Ctap2

from authenticator import Authenticator
from transports.inprocess import InProcessDevice


class Clock:
    """A monotonic clock the test moves by hand (token expiry, reset window)."""

    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(clock: Clock) -> Authenticator:
    return Authenticator(clock=clock)


@pytest.fixture
def dev(auth: Authenticator):
    device = InProcessDevice(auth)
    yield device
    device.close()


@pytest.fixture
def ctap(dev: InProcessDevice) -> Ctap2:
    return Ctap2(dev)

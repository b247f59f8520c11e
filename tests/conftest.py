"""Shared fixtures: an in-process authenticator and python-fido2's client and server."""

from __future__ import annotations

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.server import Fido2Server
from fido2.webauthn import PublicKeyCredentialRpEntity

from authenticator import Authenticator, Config
from storage.memory import MemoryStore
from transports.inprocess import InProcessDevice

ORIGIN = "https://example.com"
RP = PublicKeyCredentialRpEntity(name="Example RP", id="example.com")


class PinInteraction(UserInteraction):
    def __init__(self, pin: str | None = None) -> None:
        self.pin = pin

    def request_pin(self, permissions, rp_id):
        return self.pin

    def request_uv(self, permissions, rp_id):
        return True


@pytest.fixture
def make_device():
    devices = []

    def factory(config: Config | None = None, store=None, presence=None, **kw):
        auth = Authenticator(config or Config(), store or MemoryStore(), presence, **kw)
        dev = InProcessDevice(auth)
        devices.append(dev)
        return auth, dev

    yield factory
    for d in devices:
        d.close()


@pytest.fixture
def make_client():
    def factory(dev, pin: str | None = None, origin: str = ORIGIN) -> Fido2Client:
        return Fido2Client(dev, DefaultClientDataCollector(origin), PinInteraction(pin))

    return factory


@pytest.fixture
def server() -> Fido2Server:
    return Fido2Server(RP, attestation="direct")


from tests.vm.conftest import vm  # noqa: E402,F401  (the qemu guest fixture, for every suite)

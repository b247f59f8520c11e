"""pytest plugin (entry point ``pytest11``): an emulated passkey in any test suite.

Fixtures:

* ``fido_authenticator`` - an :class:`Authenticator` (security-key profile) on a temporary
  SQLite store; parametrize the profile with ``@pytest.mark.fido_profile("synced-passkey")``.
* ``fido_device`` - the same authenticator as a python-fido2 ``CtapDevice``.
* ``webauthn_client`` - a factory ``webauthn_client(origin)`` returning a
  :class:`authenticator.webauthn.WebAuthnClient` that takes and returns WebAuthn L3 JSON.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fido_profile(name): the fido-emulator profile for fido_authenticator"
    )


@pytest.fixture
def fido_authenticator(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    from authenticator import Authenticator, Config
    from storage.sqlite import SqliteStore

    marker = request.node.get_closest_marker("fido_profile")
    profile = marker.args[0] if marker else "security-key"
    store = SqliteStore(tmp_path_factory.mktemp("fido-emu") / "store.db")
    auth = Authenticator(Config.for_profile(profile), store)
    yield auth
    store.close()


@pytest.fixture
def fido_device(fido_authenticator):
    from transports.inprocess import InProcessDevice

    device = InProcessDevice(fido_authenticator, transport=fido_authenticator.config.transports[0])
    yield device
    device.close()


@pytest.fixture
def webauthn_client(fido_device, fido_authenticator):
    from authenticator.webauthn import WebAuthnClient

    def factory(origin: str, pin: str | None = None) -> WebAuthnClient:
        cfg = fido_authenticator.config
        return WebAuthnClient(
            fido_device,
            origin,
            pin=pin,
            transports=list(cfg.transports),
            attachment="platform" if cfg.platform_attachment else "cross-platform",
        )

    return factory

"""Fixtures the core's tests share: an authenticator on a settable clock, as a CtapDevice.

Every core test runs once per store engine (``memory`` and ``sqlite`` on tmp_path): the
core talks to stores only through the CredentialStore protocol, and the engine a user runs
is SQLite. ``restart`` builds a new Authenticator on the same store, as after a power loss
or a new process (for SQLite: a new connection to the same file).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fido2.ctap2 import Ctap2

from authenticator import Authenticator, Config
from storage.memory import MemoryStore
from storage.sqlite import SqliteStore
from transports.inprocess import InProcessDevice

STORE_KINDS = ("memory", "sqlite")


class Clock:
    """A monotonic clock the test moves by hand (token expiry, reset window)."""

    now = 1000.0

    def __call__(self) -> float:
        return self.now


def reference_cred_random(device_secret: bytes, credential_id: bytes, uv: bool) -> bytes:
    """CredRandom as docs/testing.md states it, computed here with cryptography's HKDF:
    HMAC-SHA256(HKDF(secret, info="fido-emu/cred-random"), uv-byte ‖ credentialId)."""
    key = HKDF(hashes.SHA256(), 32, salt=None, info=b"fido-emu/cred-random").derive(device_secret)
    return hmac.new(key, (b"\x01" if uv else b"\x00") + credential_id, hashlib.sha256).digest()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=STORE_KINDS)
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def make_store(store_kind: str, tmp_path):
    """``make_store(name)``: a fresh store of this run's kind; the same name again reopens
    the same SQLite file (a memory store has no file: the same object comes back)."""
    opened: list = []
    memory: dict[str, MemoryStore] = {}

    def factory(name: str = "core.db"):
        if store_kind == "memory":
            return memory.setdefault(name, MemoryStore())
        store = SqliteStore(tmp_path / name)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def make_auth(make_store, clock: Clock) -> Callable[..., Authenticator]:
    """``make_auth(config, presence, name=...)``: an Authenticator on its own store."""
    counter = iter(range(1_000_000))

    def factory(config: Config | None = None, presence=None, *, name: str | None = None, **kw):
        store = make_store(name or f"auth{next(counter)}.db")
        return Authenticator(config, store, presence, clock=kw.pop("clock", clock), **kw)

    return factory


@pytest.fixture
def restart(make_store, store_kind: str, clock: Clock) -> Callable[..., Authenticator]:
    """A new Authenticator on the same persistent state as ``auth`` (a restart)."""

    def factory(auth: Authenticator, config: Config | None = None, presence=None):
        store = auth.store
        if store_kind == "sqlite":
            store = make_store(store.path.name)  # a new connection to the same file
        return Authenticator(config or auth.config, store, presence, clock=clock)

    return factory


@pytest.fixture
def auth(make_auth) -> Authenticator:
    return make_auth(name="core.db")


@pytest.fixture
def dev(auth: Authenticator):
    device = InProcessDevice(auth)
    yield device
    device.close()


@pytest.fixture
def ctap(dev: InProcessDevice) -> Ctap2:
    return Ctap2(dev)

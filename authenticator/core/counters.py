"""Signature counters that never go backwards, without an fsync per signature.

Each counter keeps a durable *lease* in the store: a value no handed-out counter may
exceed. Counting happens in memory; when the next value would pass the lease, a new lease
(value + N) is written first. After a crash the counter restarts at the lease, so it may
jump forward but never back.

A clean shutdown gives the unused part of each lease back (:meth:`Counters.release`), so
consecutive processes on one store count +1 per signature like a real key; only a crash
makes a counter jump, by at most the lease size (``Config.counter_lease``).
"""

from __future__ import annotations

from authenticator.core.errors import ERR, CtapStatusError
from storage.base import COUNTER_MAX, CredentialStore

GLOBAL_KEY = b"\x00global"


class Counters:
    """Several processes may share one store (``fido-emu run`` plus the CLI): when another
    connection has written, cached counters are re-read and jump past its leases, so no
    process hands out a value another one may already have used."""

    def __init__(self, store: CredentialStore, lease: int = 64) -> None:
        self._store = store
        self._lease_size = max(1, lease)
        self._current: dict[bytes, int] = {}
        self._lease: dict[bytes, int] = {}
        self._generation = getattr(store, "generation", None)
        self._seen = self._generation() if self._generation else 0
        self._stale: set[bytes] = set()

    def _check_others(self, key: bytes) -> None:
        if self._generation is None:
            return
        gen = self._generation()
        if gen != self._seen:
            self._seen = gen
            self._stale = set(self._current)
        if key in self._stale:
            self._stale.discard(key)
            lease = self._store.load_counter(key) or 0
            if lease > self._lease.get(key, 0):
                self._current[key] = lease
                self._lease[key] = lease

    def _load(self, key: bytes) -> int:
        if key not in self._current:
            lease = self._store.load_counter(key)
            self._current[key] = lease or 0
            self._lease[key] = lease or 0
        return self._current[key]

    def peek(self, key: bytes) -> int:
        return self._load(key)

    def next(self, key: bytes) -> int:
        self._check_others(key)
        value = self._load(key) + 1
        if value > COUNTER_MAX:
            # signCount is 32 bits (WebAuthn §6.1): wrapping to 0 would look like a cloned
            # key to every RP, so the credential stops signing instead (docs/storage.md)
            raise CtapStatusError(ERR.LIMIT_EXCEEDED, "signature counter exhausted")
        if value > self._lease[key]:
            lease = value + self._lease_size
            self._store.store_counter(key, lease)
            self._lease[key] = lease
        self._current[key] = value
        return value

    def set(self, key: bytes, value: int) -> None:
        """Fault injection and imports: force a value (possibly lower, on purpose). One
        store transaction; a value outside 0..2^32-1 raises CounterRangeError (a ValueError)
        and changes nothing."""
        self._store.set_counter(key, value)
        self._current[key] = value
        self._lease[key] = value

    def forget(self, key: bytes) -> None:
        self._current.pop(key, None)
        self._lease.pop(key, None)
        self._store.delete_counter(key)

    def release(self) -> int:
        """Clean shutdown: lower each lease this process holds to the last value it handed
        out, unless another process raised it meanwhile (the store checks that atomically).
        Returns how many leases were given back."""
        release = getattr(self._store, "release_counter", None)
        if release is None:
            return 0
        given = 0
        for key, lease in list(self._lease.items()):
            current = self._current.get(key, lease)
            if current < lease and release(key, lease, current):
                self._lease[key] = current
                given += 1
        return given

    def drop_cache(self) -> None:
        self._current.clear()
        self._lease.clear()

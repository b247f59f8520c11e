"""In-memory store: for tests and throwaway sessions. Nothing survives the process.

It keeps the contract of :mod:`storage.base` within one process (the same counts, order,
replace and counter rules as the SQLite store); paging sorts in memory, which is fine at
the sizes tests use.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable

from storage.base import CredentialRecord, RpSummary, cap_lease, check_counter


def _cred_order(r: CredentialRecord) -> tuple[float, bytes]:
    """Newest first, ties broken by credential id (descending): the paging order."""
    return (r.created, r.credential_id)


class MemoryStore:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or os.urandom(32)
        self._creds: dict[bytes, CredentialRecord] = {}
        self._by_rp: dict[bytes, dict[bytes, CredentialRecord]] = {}
        self._rp_meta: dict[bytes, tuple[str, str | None]] = {}  # rp_id, last rp_name given
        self._discoverable = 0
        self._counters: dict[bytes, int] = {}
        self._state: dict[str, bytes] = {}
        self._generation = 0

    def _wrote(self) -> None:
        self._generation += 1

    def generation(self) -> int:
        return self._generation

    def device_secret(self) -> bytes:
        return self._secret

    # -- credentials ------------------------------------------------------------------
    def _remove(self, cid: bytes) -> CredentialRecord | None:
        old = self._creds.pop(cid, None)
        self._counters.pop(cid, None)
        if old is not None and old.discoverable:
            rp = self._by_rp[old.rp_id_hash]
            del rp[cid]
            if not rp:
                del self._by_rp[old.rp_id_hash]
                del self._rp_meta[old.rp_id_hash]
            self._discoverable -= 1
        return old

    def _put(self, rec: CredentialRecord) -> CredentialRecord | None:
        replaced = None
        if rec.discoverable:
            for old in list(self._by_rp.get(rec.rp_id_hash, {}).values()):
                if old.user_id == rec.user_id and old.credential_id != rec.credential_id:
                    replaced = self._remove(old.credential_id)
        same = self._creds.get(rec.credential_id)
        if same is not None:  # same id again: the new record replaces it, counter kept
            counter = self._counters.get(rec.credential_id)
            self._remove(rec.credential_id)
            if counter is not None:
                self._counters[rec.credential_id] = counter
            replaced = replaced or same
        new = copy.deepcopy(rec)
        self._creds[rec.credential_id] = new
        if new.discoverable:
            self._by_rp.setdefault(new.rp_id_hash, {})[new.credential_id] = new
            _, name = self._rp_meta.get(new.rp_id_hash, ("", None))
            self._rp_meta[new.rp_id_hash] = (new.rp_id, new.rp_name or name)
            self._discoverable += 1
        return replaced

    def put_credential(self, rec: CredentialRecord) -> CredentialRecord | None:
        replaced = self._put(rec)
        self._wrote()
        return copy.deepcopy(replaced)

    def put_credentials(self, recs: Iterable[CredentialRecord]) -> list[CredentialRecord]:
        out = [r for r in (self._put(rec) for rec in list(recs)) if r is not None]
        self._wrote()
        return copy.deepcopy(out)

    def get_credential(self, credential_id: bytes) -> CredentialRecord | None:
        rec = self._creds.get(credential_id)
        return _copy(rec) if rec else None

    def _sorted_rp(self, rp_id_hash: bytes) -> list[CredentialRecord]:
        return sorted(self._by_rp.get(rp_id_hash, {}).values(), key=_cred_order, reverse=True)

    def credentials_for_rp(self, rp_id_hash: bytes) -> list[CredentialRecord]:
        return [_copy(r) for r in self._sorted_rp(rp_id_hash)]

    def credentials_for_rp_page(
        self, rp_id_hash: bytes, after: CredentialRecord | None, limit: int
    ) -> list[CredentialRecord]:
        items = self._sorted_rp(rp_id_hash)
        if after is not None:
            cut = _cred_order(after)
            items = [r for r in items if _cred_order(r) < cut]
        return copy.deepcopy(items[: max(0, limit)])

    def delete_credential(self, credential_id: bytes) -> bool:
        gone = self._remove(credential_id) is not None
        self._wrote()
        return gone

    def update_user(
        self, credential_id: bytes, user_id: bytes, name: str | None, display_name: str | None
    ) -> bool:
        rec = self._creds.get(credential_id)
        if rec is None or rec.user_id != user_id:
            return False
        rec.user_name, rec.user_display_name = name, display_name
        self._wrote()
        return True

    def _summary(self, rp_id_hash: bytes) -> RpSummary | None:
        creds = self._by_rp.get(rp_id_hash)
        if not creds:
            return None
        rp_id, name = self._rp_meta[rp_id_hash]
        return RpSummary(rp_id, rp_id_hash, name, len(creds))

    def list_rps(self) -> list[RpSummary]:
        rps = [self._summary(h) for h in self._by_rp]
        return sorted((s for s in rps if s), key=lambda s: (s.rp_id, s.rp_id_hash))

    def list_rps_page(self, after: RpSummary | None, limit: int) -> list[RpSummary]:
        rps = self.list_rps()
        if after is not None:
            cut = (after.rp_id, after.rp_id_hash)
            rps = [s for s in rps if (s.rp_id, s.rp_id_hash) > cut]
        return rps[: max(0, limit)]

    def rp_summary(self, rp_id_hash: bytes) -> RpSummary | None:
        return self._summary(rp_id_hash)

    def count_rps(self) -> int:
        return len(self._by_rp)

    def count_discoverable(self) -> int:
        return self._discoverable

    # -- counters ---------------------------------------------------------------------
    def load_counter(self, key: bytes) -> int | None:
        return self._counters.get(key)

    def store_counter(self, key: bytes, lease: int) -> None:
        self._counters[key] = max(cap_lease(lease), self._counters.get(key, 0))
        self._wrote()

    def set_counter(self, key: bytes, value: int) -> None:
        self._counters[key] = check_counter(value)
        self._wrote()

    def delete_counter(self, key: bytes) -> None:
        self._counters.pop(key, None)
        self._wrote()

    def release_counter(self, key: bytes, lease: int, value: int) -> bool:
        """Lower a lease to ``value`` only if it is still ``lease`` (see the SQLite store)."""
        if self._counters.get(key) != lease or check_counter(value) > lease:
            return False
        self._counters[key] = value
        self._wrote()
        return True

    # -- state ------------------------------------------------------------------------
    def get_state(self, name: str) -> bytes | None:
        return self._state.get(name)

    def set_state(self, name: str, value: bytes | None) -> None:
        if value is None:
            self._state.pop(name, None)
        else:
            self._state[name] = bytes(value)
        self._wrote()

    def update_state(
        self, name: str, fn: Callable[[bytes | None], bytes | None]
    ) -> bytes | None:
        new = fn(self._state.get(name))
        self.set_state(name, new)
        return None if new is None else bytes(new)

    def wipe(self) -> None:
        self._creds.clear()
        self._by_rp.clear()
        self._rp_meta.clear()
        self._discoverable = 0
        self._counters.clear()
        self._state.clear()
        self._secret = os.urandom(32)
        self._wrote()

    def close(self) -> None:
        pass


def _copy(rec: CredentialRecord) -> CredentialRecord:
    """A caller's own copy, as a database would hand out: every field but ``extra`` is
    immutable (bytes, str, int, bool, float), so without extras a flat copy will do; 10x
    cheaper than ``copy.deepcopy`` of the record, which getAssertion pays per command."""
    fields = rec.__dict__
    extra = fields["extra"]
    if extra or not all(type(v) in _IMMUTABLE for k, v in fields.items() if k != "extra"):
        return copy.deepcopy(rec)  # a bytearray a caller stored, or extras to copy
    new = object.__new__(CredentialRecord)
    new.__dict__.update(fields)
    new.extra = {}
    return new


_IMMUTABLE = frozenset({bytes, str, int, bool, float, type(None)})

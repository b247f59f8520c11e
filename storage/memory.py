"""In-memory store: for tests and throwaway sessions. Nothing survives the process."""

from __future__ import annotations

import copy
import os

from storage.base import CredentialRecord, RpSummary


class MemoryStore:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or os.urandom(32)
        self._creds: dict[bytes, CredentialRecord] = {}
        self._counters: dict[bytes, int] = {}
        self._state: dict[str, bytes] = {}

    def device_secret(self) -> bytes:
        return self._secret

    def put_credential(self, rec: CredentialRecord) -> CredentialRecord | None:
        replaced = None
        if rec.discoverable:
            for cid, old in list(self._creds.items()):
                if old.discoverable and old.rp_id_hash == rec.rp_id_hash and old.user_id == rec.user_id:
                    replaced = self._creds.pop(cid)
                    self._counters.pop(cid, None)
        self._creds[rec.credential_id] = copy.deepcopy(rec)
        return replaced

    def get_credential(self, credential_id: bytes) -> CredentialRecord | None:
        rec = self._creds.get(credential_id)
        return copy.deepcopy(rec) if rec else None

    def credentials_for_rp(self, rp_id_hash: bytes) -> list[CredentialRecord]:
        found = [
            copy.deepcopy(r)
            for r in self._creds.values()
            if r.discoverable and r.rp_id_hash == rp_id_hash
        ]
        return sorted(found, key=lambda r: r.created, reverse=True)

    def delete_credential(self, credential_id: bytes) -> bool:
        self._counters.pop(credential_id, None)
        return self._creds.pop(credential_id, None) is not None

    def update_user(
        self, credential_id: bytes, user_id: bytes, name: str | None, display_name: str | None
    ) -> bool:
        rec = self._creds.get(credential_id)
        if rec is None or rec.user_id != user_id:
            return False
        rec.user_name, rec.user_display_name = name, display_name
        return True

    def list_rps(self) -> list[RpSummary]:
        rps: dict[bytes, RpSummary] = {}
        for r in self._creds.values():
            if not r.discoverable:
                continue
            s = rps.setdefault(r.rp_id_hash, RpSummary(r.rp_id, r.rp_id_hash, r.rp_name, 0))
            s.count += 1
        return sorted(rps.values(), key=lambda s: s.rp_id)

    def count_discoverable(self) -> int:
        return sum(1 for r in self._creds.values() if r.discoverable)

    def load_counter(self, key: bytes) -> int | None:
        return self._counters.get(key)

    def store_counter(self, key: bytes, lease: int) -> None:
        self._counters[key] = max(lease, self._counters.get(key, 0))

    def delete_counter(self, key: bytes) -> None:
        self._counters.pop(key, None)

    def get_state(self, name: str) -> bytes | None:
        return self._state.get(name)

    def set_state(self, name: str, value: bytes | None) -> None:
        if value is None:
            self._state.pop(name, None)
        else:
            self._state[name] = bytes(value)

    def wipe(self) -> None:
        self._creds.clear()
        self._counters.clear()
        self._state.clear()
        self._secret = os.urandom(32)

    def close(self) -> None:
        pass

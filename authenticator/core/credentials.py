"""Credential ids, sealing and lookup.

A credential id is ``version ‖ AES-GCM(nonce, payload, aad = version ‖ rpIdHash)``:

* ``0x01`` self-contained (non-discoverable EC/EdDSA keys, U2F key handles): the payload
  carries algorithm, flags, credProtect, the private key and an optional credBlob, so the
  credential needs no storage at all;
* ``0x02`` stored (discoverable credentials, and RSA keys too large for an id): the
  payload is 16 random bytes and the store holds the record with its sealed key.

Binding the rpIdHash as AAD means an id presented for another RP simply fails to open.
"""

from __future__ import annotations

import os
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from authenticator.core import keys
from storage.base import CredentialRecord, CredentialStore
from storage.sealing import DeviceKeys, SealError

SELF_CONTAINED = 0x01
STORED = 0x02

FLAG_BE = 0x01
FLAG_BS = 0x02
FLAG_HMAC = 0x04
FLAG_U2F = 0x08


@dataclass
class Credential:
    """A credential resolved for one request (never persisted as such)."""

    id: bytes
    rp_id_hash: bytes
    algorithm: int
    discoverable: bool
    cred_protect: int
    backup_eligible: bool
    backup_state: bool
    hmac_secret: bool
    cred_blob: bytes | None
    record: CredentialRecord | None
    private_material: bytes  # still sealed for stored credentials, raw for self-contained
    u2f: bool = False

    @property
    def user_id(self) -> bytes | None:
        return self.record.user_id if self.record else None


class CredentialSource:
    """Creates, resolves and signs with credentials; caches loaded private keys."""

    def __init__(self, store: CredentialStore, device_keys: DeviceKeys, cache_size: int = 4096):
        self.store = store
        self.keys = device_keys
        self._cache: OrderedDict[bytes, Any] = OrderedDict()
        self._cache_size = cache_size

    # -- creation -----------------------------------------------------------------
    def new_id(self, rp_id_hash: bytes, payload: bytes, version: int) -> bytes:
        aad = bytes([version]) + rp_id_hash
        return bytes([version]) + self.keys.key_handles.seal(payload, aad)

    def create(
        self,
        *,
        alg: int,
        rp_id: str,
        rp_id_hash: bytes,
        discoverable: bool,
        cred_protect: int,
        backup_eligible: bool,
        backup_state: bool,
        hmac_secret: bool,
        cred_blob: bytes | None,
        large_blob_key: bool,
        rp_name: str | None,
        user: dict | None,
        now: float,
        u2f: bool = False,
    ) -> tuple[Credential, Any, CredentialRecord | None, dict]:
        """A new key pair and its id, with the record (if stored; not yet saved) and the
        COSE public key."""
        private = keys.generate(alg)
        raw, cose = keys.material(alg, private)
        stored = discoverable or alg == keys.RS256
        flags = (
            (FLAG_BE if backup_eligible else 0)
            | (FLAG_BS if backup_state else 0)
            | (FLAG_HMAC if hmac_secret else 0)
            | (FLAG_U2F if u2f else 0)
        )
        record = None
        if stored:
            cred_id = self.new_id(rp_id_hash, os.urandom(16), STORED)
            user = user or {}
            record = CredentialRecord(
                credential_id=cred_id,
                rp_id=rp_id,
                rp_id_hash=rp_id_hash,
                rp_name=rp_name,
                user_id=user.get("id", b""),
                user_name=user.get("name"),
                user_display_name=user.get("displayName"),
                algorithm=alg,
                sealed_key=self.keys.records.seal(raw, cred_id),
                public_key=b"",
                discoverable=discoverable,
                cred_protect=cred_protect,
                backup_eligible=backup_eligible,
                backup_state=backup_state,
                hmac_secret=hmac_secret,
                large_blob_key=large_blob_key,
                cred_blob=cred_blob,
                created=now,
            )
            material = record.sealed_key
        else:
            blob = cred_blob or b""
            payload = struct.pack(">hBBB", alg, flags, cred_protect, len(blob)) + blob + raw
            cred_id = self.new_id(rp_id_hash, payload, SELF_CONTAINED)
            material = raw
        cred = Credential(
            id=cred_id,
            rp_id_hash=rp_id_hash,
            algorithm=alg,
            discoverable=discoverable,
            cred_protect=cred_protect,
            backup_eligible=backup_eligible,
            backup_state=backup_state,
            hmac_secret=hmac_secret,
            cred_blob=cred_blob,
            record=record,
            private_material=material,
            u2f=u2f,
        )
        self._remember(cred_id, private)
        return cred, private, record, cose

    # -- lookup -------------------------------------------------------------------
    def resolve(self, cred_id: bytes, rp_id_hash: bytes) -> Credential | None:
        """The credential behind an id if it belongs to this RP and still exists."""
        if not cred_id:
            return None
        version = cred_id[0]
        if version != SELF_CONTAINED:  # STORED, or an id minted elsewhere (CDP import)
            return self._stored(cred_id, rp_id_hash)
        try:
            payload = self.keys.key_handles.open(cred_id[1:], bytes([version]) + rp_id_hash)
        except SealError:  # a foreign id may start with 0x01 too
            return self._stored(cred_id, rp_id_hash)
        alg, flags, protect, blob_len = struct.unpack_from(">hBBB", payload)
        return Credential(
            id=cred_id,
            rp_id_hash=rp_id_hash,
            algorithm=alg,
            discoverable=False,
            cred_protect=protect,
            backup_eligible=bool(flags & FLAG_BE),
            backup_state=bool(flags & FLAG_BS),
            hmac_secret=bool(flags & FLAG_HMAC),
            cred_blob=payload[5 : 5 + blob_len] or None,
            record=None,
            private_material=payload[5 + blob_len :],
            u2f=bool(flags & FLAG_U2F),
        )

    def _stored(self, cred_id: bytes, rp_id_hash: bytes) -> Credential | None:
        record = self.store.get_credential(cred_id)
        if record is None or record.rp_id_hash != rp_id_hash:
            return None
        return self.from_record(record)

    def from_record(self, record: CredentialRecord) -> Credential:
        return Credential(
            id=record.credential_id,
            rp_id_hash=record.rp_id_hash,
            algorithm=record.algorithm,
            discoverable=record.discoverable,
            cred_protect=record.cred_protect,
            backup_eligible=record.backup_eligible,
            backup_state=record.backup_state,
            hmac_secret=record.hmac_secret,
            cred_blob=record.cred_blob,
            record=record,
            private_material=record.sealed_key,
        )

    # -- keys -----------------------------------------------------------------------
    def private_key(self, cred: Credential) -> Any:
        key = self._cache.get(cred.id)
        if key is not None:
            self._cache.move_to_end(cred.id)
            return key
        raw = cred.private_material
        if cred.record is not None:
            raw = self.keys.records.open(cred.record.sealed_key, cred.id)
        key = keys.load(cred.algorithm, raw)
        self._remember(cred.id, key)
        return key

    def sign(self, cred: Credential, data: bytes) -> bytes:
        return keys.sign(cred.algorithm, self.private_key(cred), data)

    def _remember(self, cred_id: bytes, key: Any) -> None:
        self._cache[cred_id] = key
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def forget(self, cred_id: bytes) -> None:
        self._cache.pop(cred_id, None)

    def clear_cache(self) -> None:
        self._cache.clear()


def now() -> float:
    return time.time()

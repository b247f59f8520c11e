"""Persistent settings changed by authenticatorConfig and clientPIN.

They live in the store as one CBOR map: alwaysUv, minimum PIN length and the RP ids
allowed to read it, forcePINChange, enterprise attestation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cbor2

from authenticator.core.params import encode

if TYPE_CHECKING:
    from authenticator.core.config import Config
    from storage.base import CredentialStore

STATE = "config.settings"
# stored key -> attribute
FIELDS = {
    "alwaysUv": "always_uv",
    "minPinLength": "min_pin_length",
    "minPinLengthRPIDs": "min_pin_length_rp_ids",
    "forceChangePin": "force_change_pin",
    "ep": "enterprise_attestation",
}


@dataclass
class Settings:
    store: CredentialStore
    always_uv: bool = False
    min_pin_length: int = 4
    min_pin_length_rp_ids: list[str] = field(default_factory=list)
    force_change_pin: bool = False
    enterprise_attestation: bool = False
    _loaded: dict = field(default_factory=dict, repr=False, compare=False)

    def _as_map(self) -> dict:
        return {key: copy.copy(getattr(self, attr)) for key, attr in FIELDS.items()}

    @classmethod
    def load(cls, store: CredentialStore, config: Config) -> Settings:
        s = cls(
            store,
            always_uv=config.always_uv,
            min_pin_length=config.min_pin_length,
            enterprise_attestation=config.enterprise_attestation,
        )
        raw = store.get_state(STATE)
        if raw:
            data = cbor2.loads(raw)
            s.always_uv = data.get("alwaysUv", s.always_uv)
            s.min_pin_length = data.get("minPinLength", s.min_pin_length)
            s.min_pin_length_rp_ids = data.get("minPinLengthRPIDs", [])
            s.force_change_pin = data.get("forceChangePin", False)
            s.enterprise_attestation = data.get("ep", s.enterprise_attestation)
        s._loaded = s._as_map()
        return s

    def save(self) -> None:
        """Read-modify-write in one store transaction: only the fields changed since this
        object was loaded go over what is stored now, so a setting another process changed
        in between (``fido-emu config always-uv on`` beside a running server) survives."""
        mine = self._as_map()
        changed = {k: v for k, v in mine.items() if self._loaded.get(k) != v}

        def merge(raw: bytes | None) -> bytes:
            if not raw:
                return encode(mine)
            data = cbor2.loads(raw)
            data.update(changed)
            return encode(data)

        data = cbor2.loads(self.store.update_state(STATE, merge) or encode(mine))
        for key, attr in FIELDS.items():
            if key in data:
                setattr(self, attr, data[key])
        self._loaded = self._as_map()

    def set_force_change(self, value: bool) -> None:
        if self.force_change_pin != value:
            self.force_change_pin = value
            self.save()



"""Persistent settings changed by authenticatorConfig and clientPIN.

They live in the store as one CBOR map: alwaysUv, minimum PIN length and the RP ids
allowed to read it, forcePINChange, enterprise attestation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cbor2

from authenticator.core.params import encode

if TYPE_CHECKING:
    from authenticator.core.config import Config
    from storage.base import CredentialStore

STATE = "config.settings"


@dataclass
class Settings:
    store: CredentialStore
    always_uv: bool = False
    min_pin_length: int = 4
    min_pin_length_rp_ids: list[str] = field(default_factory=list)
    force_change_pin: bool = False
    enterprise_attestation: bool = False

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
        return s

    def save(self) -> None:
        self.store.set_state(
            STATE,
            encode(
                {
                    "alwaysUv": self.always_uv,
                    "minPinLength": self.min_pin_length,
                    "minPinLengthRPIDs": self.min_pin_length_rp_ids,
                    "forceChangePin": self.force_change_pin,
                    "ep": self.enterprise_attestation,
                }
            ),
        )

    def set_force_change(self, value: bool) -> None:
        if self.force_change_pin != value:
            self.force_change_pin = value
            self.save()



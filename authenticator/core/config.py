"""One config object for the authenticator, and the profiles that set its defaults.

A profile is the honest default behaviour of a kind of authenticator; every field stays
overridable (``Config.for_profile("security-key", counter_mode="zero")``).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

CounterMode = Literal["per-credential", "global", "zero"]
# packed: x5c batch attestation when a batch certificate is installed, self otherwise;
# packed-self: always self attestation; none: no attestation statement.
AttestationMode = Literal["packed-self", "packed", "none"]

# fido-emulator's own AAGUIDs, one per profile, so an RP can tell the models apart.
AAGUIDS = {
    "security-key": uuid.UUID("ca176c2b-d6ab-4e35-9513-c2e27d419029").bytes,
    "synced-passkey": uuid.UUID("72707b25-92ee-4c63-b284-0912b7d5a2ca").bytes,
    "platform": uuid.UUID("cd9bdfa4-6f75-46a3-ab78-ede5b17c3b27").bytes,
}

ALL_ALGORITHMS = (-7, -8, -35, -257)  # ES256, EdDSA, ES384, RS256


@dataclass
class Config:
    profile: str = "security-key"
    aaguid: bytes = AAGUIDS["security-key"]
    algorithms: tuple[int, ...] = ALL_ALGORITHMS
    backup_eligible: bool = False
    backup_state: bool = False
    counter_mode: CounterMode = "per-credential"
    attestation: AttestationMode = "packed-self"
    transports: tuple[str, ...] = ("usb",)
    platform_attachment: bool = False
    builtin_uv: bool = False
    client_pin: bool = True
    resident_keys: bool = True
    u2f: bool = True
    always_uv: bool = False
    make_cred_uv_not_required: bool = True
    make_cred_up_option_invalid: bool = False  # CTAP 2.0: "up" in makeCredential options fails
    min_pin_length: int = 4
    max_pin_retries: int = 8
    max_uv_retries: int = 5
    # the store counts in O(1) and pages enumeration; measured flat at 1M (docs/bench.md)
    max_discoverable: int = 1_000_000
    max_cred_count_in_list: int = 16
    max_cred_id_length: int = 128
    max_msg_size: int = 7609
    max_cred_blob_length: int = 64
    max_large_blob_array: int = 4096
    max_rpids_for_set_min_pin: int = 8
    counter_lease: int = 256  # counters may jump by this much after a crash, never back
    presence_timeout: float = 30.0
    reset_window: float | None = 10.0  # authenticatorReset only this long after power-up
    pin_token_lifetime: float = 600.0
    enterprise_attestation: bool = False
    # Account choice on the authenticator (a phone, a key with a display): discoverable
    # getAssertion answers with the newest credential and userSelected=true, so clients
    # (Chromium) need no account picker of their own.
    select_account_on_device: bool = False
    enterprise_rp_ids: tuple[str, ...] = ()
    firmware_version: int = 0x00010000
    extensions: tuple[str, ...] = (
        "credProtect",
        "hmac-secret",
        "hmac-secret-mc",
        "credBlob",
        "largeBlobKey",
        "minPinLength",
    )
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_profile(cls, profile: str = "security-key", **overrides: Any) -> Config:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
        values = dict(PROFILES[profile])
        values.update(overrides)
        return cls(profile=profile, **values)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, dict[str, Any]] = {
    # A roaming USB key: no backup, counters, packed attestation, PIN, U2F.
    "security-key": dict(
        aaguid=AAGUIDS["security-key"],
        backup_eligible=False,
        backup_state=False,
        counter_mode="per-credential",
        attestation="packed",  # x5c once `fido-emu attestation init` ran, else self
        transports=("usb",),
        platform_attachment=False,
        builtin_uv=False,
        client_pin=True,
        u2f=True,
    ),
    # A synced passkey provider (phone / password manager): backed up, counter 0,
    # no attestation, UV built in, reached over hybrid.
    "synced-passkey": dict(
        aaguid=AAGUIDS["synced-passkey"],
        backup_eligible=True,
        backup_state=True,
        counter_mode="zero",
        attestation="none",
        transports=("hybrid", "internal"),
        platform_attachment=False,
        builtin_uv=True,
        client_pin=False,
        u2f=False,
        algorithms=(-7, -8),
        select_account_on_device=True,  # the phone shows its own account picker
    ),
    # A device-bound platform authenticator (Windows Hello-like): internal, UV built in.
    "platform": dict(
        aaguid=AAGUIDS["platform"],
        backup_eligible=False,
        backup_state=False,
        counter_mode="per-credential",
        attestation="none",
        transports=("internal",),
        platform_attachment=True,
        builtin_uv=True,
        client_pin=False,
        u2f=False,
        algorithms=(-7, -257),
        select_account_on_device=True,  # the OS shows its own account picker
    ),
}

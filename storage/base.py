"""The storage protocol the core depends on.

Everything the authenticator must remember goes through :class:`CredentialStore`:
resident credentials, counter leases and small named state blobs (PIN hash, retries,
large-blob array, config flags). Secret fields arrive here already sealed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class CredentialRecord:
    """A stored (discoverable or server-side) credential.

    ``sealed_key`` is the private key sealed under the device key; the store never sees
    it in the clear. ``public_key`` is the COSE_Key in CBOR, for credentialManagement.
    """

    credential_id: bytes
    rp_id: str
    rp_id_hash: bytes
    user_id: bytes
    algorithm: int
    sealed_key: bytes
    public_key: bytes
    rp_name: str | None = None
    user_name: str | None = None
    user_display_name: str | None = None
    discoverable: bool = True
    cred_protect: int = 1
    backup_eligible: bool = False
    backup_state: bool = False
    hmac_secret: bool = False
    large_blob_key: bool = False
    cred_blob: bytes | None = None
    created: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass
class RpSummary:
    rp_id: str
    rp_id_hash: bytes
    rp_name: str | None
    count: int


class CredentialStore(Protocol):
    """Durable storage for one authenticator. Every write is durable when it returns."""

    def device_secret(self) -> bytes:
        """The 32-byte device master secret (created on first use, kept sealed at rest)."""
        ...

    # credentials
    def put_credential(self, rec: CredentialRecord) -> CredentialRecord | None:
        """Insert; a discoverable credential replaces the one with the same rpId + user.id.
        Returns the replaced record, if any."""
        ...

    def get_credential(self, credential_id: bytes) -> CredentialRecord | None: ...

    def credentials_for_rp(self, rp_id_hash: bytes) -> list[CredentialRecord]:
        """Discoverable credentials of an RP, newest first."""
        ...

    def delete_credential(self, credential_id: bytes) -> bool: ...

    def update_user(
        self, credential_id: bytes, user_id: bytes, name: str | None, display_name: str | None
    ) -> bool: ...

    def list_rps(self) -> list[RpSummary]: ...

    def count_discoverable(self) -> int: ...

    # counters
    def load_counter(self, key: bytes) -> int | None:
        """The durable lease of a counter (an upper bound of every value handed out)."""
        ...

    def store_counter(self, key: bytes, lease: int) -> None:
        """Durably raise a counter lease; never lowers it."""
        ...

    def delete_counter(self, key: bytes) -> None: ...

    # small named state (PIN, retries, config, large blobs)
    def get_state(self, name: str) -> bytes | None: ...

    def set_state(self, name: str, value: bytes | None) -> None: ...

    def wipe(self) -> None:
        """authenticatorReset: forget credentials, counters and state; new device secret."""
        ...

    def close(self) -> None: ...

"""The storage protocol the core depends on.

Everything the authenticator must remember goes through :class:`CredentialStore`:
resident credentials, counter leases and small named state blobs (PIN hash, retries,
large-blob array, config flags). Secret fields arrive here already sealed.

Rules every implementation keeps (``tests/storage/contract.py`` checks them):

- **Durable and atomic.** A write is durable when it returns, and every method that
  changes several rows (a replacing put, a delete with its counter, a bulk import, wipe,
  a counter set) does so in ONE transaction: a crash leaves the old or the new state.
- **O(1) / O(page).** ``count_discoverable``, ``count_rps`` and ``rp_summary`` never scan;
  the ``*_page`` methods cost O(limit) whatever the store's size.
- **Counters never go backwards** except through :meth:`CredentialStore.set_counter` (fault
  injection, imports), and stay in 0 .. ``COUNTER_MAX`` (the 32-bit signCount range).
- **One truth across processes.** :meth:`CredentialStore.generation` changes after every
  committed write, this handle's own or another process's. A caller that caches anything
  derived from the store (settings, PIN state, device keys) drops that cache when the
  generation changes; :meth:`CredentialStore.device_secret` is always the current secret
  (after another process ran ``wipe``, the new one). A store may also offer
  ``command_begin()`` / ``command_end()`` (the core calls them around each command when
  present): then it checks for other processes' writes once per command instead of on
  every call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

COUNTER_MAX = 2**32 - 1
"""The largest signCount authData can carry. A counter that reached it must make the
authenticator stop signing with that credential (never wrap to 0): the store refuses
values above it, and leases are capped at it."""


class CounterRangeError(ValueError):
    """A counter value outside 0 .. 2^32-1 (authData's signCount is 32 bits)."""

    def __init__(self, value: int) -> None:
        super().__init__(f"signCount {value} is outside 0..{COUNTER_MAX} (32 bits)")
        self.value = value


def check_counter(value: int) -> int:
    """``value`` if it is a valid signCount, else :class:`CounterRangeError`."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= COUNTER_MAX:
        raise CounterRangeError(value)
    return value


def cap_lease(lease: int) -> int:
    """A counter lease as stored: at most ``COUNTER_MAX`` (no value above it is ever handed
    out, so a larger lease means nothing); negative leases are refused."""
    if not isinstance(lease, int) or isinstance(lease, bool) or lease < 0:
        raise CounterRangeError(lease)
    return min(lease, COUNTER_MAX)


class StoreError(Exception):
    """The store cannot be used as it is; the message is one line saying what to do."""


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
        """The current 32-byte device master secret (kept sealed at rest). Changes only
        through ``wipe`` — this handle's or another process's."""
        ...

    def generation(self) -> int:
        """A cheap value that changes after every committed write seen by this handle
        (its own or another process's). Equal values mean nothing changed in between."""
        ...

    # credentials
    def put_credential(self, rec: CredentialRecord) -> CredentialRecord | None:
        """Insert; a discoverable credential replaces the one with the same rpId + user.id
        (and that one's counter). Returns the replaced record, if any."""
        ...

    def put_credentials(self, recs: Iterable[CredentialRecord]) -> list[CredentialRecord]:
        """Bulk import: ``put_credential`` for each, all in one transaction. Returns the
        replaced records."""
        ...

    def get_credential(self, credential_id: bytes) -> CredentialRecord | None: ...

    def credentials_for_rp(self, rp_id_hash: bytes) -> list[CredentialRecord]:
        """Discoverable credentials of an RP, newest first."""
        ...

    def credentials_for_rp_page(
        self, rp_id_hash: bytes, after: CredentialRecord | None, limit: int
    ) -> list[CredentialRecord]:
        """Up to ``limit`` of ``credentials_for_rp`` (same order), starting after the
        record ``after`` (the last one of the previous page; None for the first)."""
        ...

    def delete_credential(self, credential_id: bytes) -> bool:
        """Delete a credential and its counter. False if it did not exist."""
        ...

    def update_user(
        self, credential_id: bytes, user_id: bytes, name: str | None, display_name: str | None
    ) -> bool: ...

    def list_rps(self) -> list[RpSummary]:
        """RPs with discoverable credentials, ordered by rp_id."""
        ...

    def list_rps_page(self, after: RpSummary | None, limit: int) -> list[RpSummary]:
        """Up to ``limit`` of ``list_rps`` (same order), after the summary ``after``."""
        ...

    def rp_summary(self, rp_id_hash: bytes) -> RpSummary | None:
        """One RP's summary (None if it has no discoverable credential)."""
        ...

    def count_rps(self) -> int: ...

    def count_discoverable(self) -> int: ...

    # counters
    def load_counter(self, key: bytes) -> int | None:
        """The durable lease of a counter (an upper bound of every value handed out)."""
        ...

    def store_counter(self, key: bytes, lease: int) -> None:
        """Durably raise a counter lease; never lowers it. Leases are capped at
        ``COUNTER_MAX``; a negative lease is a :class:`CounterRangeError`."""
        ...

    def set_counter(self, key: bytes, value: int) -> None:
        """Force a counter to ``value`` (may lower it: fault injection, imports), in one
        transaction. Values outside 0 .. ``COUNTER_MAX`` raise :class:`CounterRangeError`
        and change nothing."""
        ...

    def delete_counter(self, key: bytes) -> None: ...

    def release_counter(self, key: bytes, lease: int, value: int) -> bool:
        """A clean exit gives its unused lease back: lower the lease to ``value`` only while
        it still equals ``lease`` (compare-and-set, one statement); never raises a lease.
        True when lowered."""
        ...

    # small named state (PIN, retries, config, large blobs)
    def get_state(self, name: str) -> bytes | None: ...

    def set_state(self, name: str, value: bytes | None) -> None: ...

    def update_state(
        self, name: str, fn: Callable[[bytes | None], bytes | None]
    ) -> bytes | None:
        """Read-modify-write of one state blob in one transaction: ``fn(current)`` gives
        the new value (None deletes it). Nothing another process writes in between is
        lost. Returns the new value."""
        ...

    def wipe(self) -> None:
        """authenticatorReset: forget credentials, counters and state; new device secret."""
        ...

    def close(self) -> None: ...

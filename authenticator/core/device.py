"""The device: state and shared helpers every command receives.

Commands take a :class:`Device` and a :class:`Call` as parameters; they never import the
dispatcher (:mod:`authenticator.core.dispatch`), which is the only module that knows every
command. The device owns the injected ports (store, presence, clocks) and what is built
from them (credentials, counters, PIN state, settings), plus the little volatile state
that outlives one command (getNextAssertion, credentialManagement enumeration, large-blob
writes in progress).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from authenticator.core.config import Config
from authenticator.core.counters import GLOBAL_KEY, Counters
from authenticator.core.credentials import Credential, CredentialSource
from authenticator.core.errors import ERR, CtapStatusError
from authenticator.core.faults import Faults
from authenticator.core.pin_state import STATE_PIN, PinState
from authenticator.core.ports import CommandContext, KeepaliveStatus
from authenticator.core.presence import AutoApprove, Presence, PresenceRequest
from authenticator.core.settings import Settings
from storage.base import CredentialStore
from storage.memory import MemoryStore
from storage.sealing import DeviceKeys


@dataclass
class Call:
    """One command in flight: its transport context and what the log should say."""

    ctx: CommandContext
    command: str
    rp_id: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class Device:
    """Everything a command may use: ports, persistent state views, volatile state."""

    def __init__(
        self,
        config: Config | None = None,
        store: CredentialStore | None = None,
        presence: Presence | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or Config()
        # a volatile in-memory store when none is injected (tests, demos): no I/O either way
        self.store = store if store is not None else MemoryStore()
        self.presence = presence or AutoApprove()
        self.clock = clock
        self.wall_clock = wall_clock
        self.faults = Faults()
        self.power_up_time = self.clock()
        self._load_persistent()

    def _load_persistent(self) -> None:
        """(Re)build everything derived from the store's persistent state."""
        self.__dict__.pop("_batch_cache", None)
        self._secret = self.store.device_secret()
        self.device_keys = DeviceKeys(self._secret)
        self.credentials = CredentialSource(self.store, self.device_keys)
        self.counters = Counters(self.store, self.config.counter_lease)
        self.pin = PinState(self.store, self.config, self.device_keys, self.clock)
        self.settings = Settings.load(self.store, self.config)
        self._clear_volatile()
        self._store_generation = self._generation()
        self._pin_seen = self.store.get_state(STATE_PIN)

    # -- one truth across processes -------------------------------------------------------
    def _generation(self) -> object:
        generation = getattr(self.store, "generation", None)
        return generation() if generation is not None else None

    def store_begin(self) -> None:
        """Start of a command: one freshness check of the store. When someone else (another
        process sharing it: the CLI, a second `fido-emu run`) wrote since our last command,
        re-read what we derived from it: settings, the attestation batch key and, after a
        reset elsewhere, the device keys and everything sealed under them. A PIN set or
        changed elsewhere ends our pinUvAuthToken, as a change here would."""
        begin = getattr(self.store, "command_begin", None)
        if begin is not None:
            begin()
        generation = self._generation()
        if generation == self._store_generation:
            return
        if self.store.device_secret() != self._secret:
            self._load_persistent()
            return
        self._store_generation = generation
        self.__dict__.pop("_batch_cache", None)
        self.settings = Settings.load(self.store, self.config)
        pin = self.store.get_state(STATE_PIN)
        if pin != self._pin_seen:
            self._pin_seen = pin
            self.pin.invalidate_tokens()

    def store_end(self) -> None:
        """End of a command: our own writes are not news to us."""
        generation = self._generation()
        if generation != self._store_generation:
            self._store_generation = generation
            self._pin_seen = self.store.get_state(STATE_PIN)
        end = getattr(self.store, "command_end", None)
        if end is not None:
            end()

    def _clear_volatile(self) -> None:
        # typed loosely on purpose: each belongs to the command module that fills it
        self.next_assertion: Any = None  # commands.get_assertion.NextAssertionState
        self.large_blob_pending: Any = None  # commands.large_blobs.PendingWrite
        self.cred_mgmt_state: Any = None  # commands.credential_management.EnumerationState

    # -- user presence and verification ------------------------------------------------
    async def require_presence(
        self, call: Call, rp_id: str | None = None, user_name: str | None = None
    ) -> None:
        """Wait for a touch; CTAP errors for decline, cancel and timeout."""
        request = PresenceRequest(call.command, rp_id, user_name, call.ctx.transport)
        immediate = getattr(self.presence, "immediate", None)
        ok = immediate(request) if immediate is not None else None
        if ok is None:
            ok = await self._wait_user(call, self.presence.request_presence(request))
        if not ok:
            raise CtapStatusError(ERR.OPERATION_DENIED, "user declined")

    async def builtin_uv(self, call: Call, rp_id: str | None, user_name: str | None = None) -> None:
        """Built-in UV (implies presence). Decrements the UV retry counter on a mismatch."""
        if self.pin.uv_retries <= 0:
            raise CtapStatusError(ERR.UV_BLOCKED)
        request = PresenceRequest(call.command, rp_id, user_name, call.ctx.transport)
        outcome = await self._wait_user(call, self.presence.verify_user(request))
        if outcome == "approve":
            self.pin.uv_succeeded()
            return
        if outcome == "deny":
            raise CtapStatusError(ERR.OPERATION_DENIED, "user declined UV")
        self.pin.uv_failed()
        if self.pin.uv_retries <= 0:
            raise CtapStatusError(ERR.UV_BLOCKED)
        raise CtapStatusError(ERR.UV_INVALID)

    async def _wait_user(self, call: Call, waiter: Any) -> Any:
        ctx = call.ctx
        ctx.status(KeepaliveStatus.UPNEEDED)
        task = asyncio.ensure_future(waiter)
        cancel = asyncio.ensure_future(ctx.cancel.wait())
        try:
            done, _ = await asyncio.wait(
                {task, cancel},
                timeout=self.config.presence_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            cancel.cancel()
            if not task.done():
                task.cancel()
            ctx.status(KeepaliveStatus.PROCESSING)
        if task in done:
            return task.result()
        if ctx.cancel.is_set():
            raise CtapStatusError(ERR.KEEPALIVE_CANCEL)
        raise CtapStatusError(ERR.USER_ACTION_TIMEOUT)

    # -- signature counters --------------------------------------------------------------
    def counter_key(self, cred: Credential) -> bytes | None:
        mode = self.config.counter_mode
        if mode == "zero" or (cred.record is not None and cred.record.extra.get("counter") == "zero"):
            return None  # imported CXF passkeys keep counter 0 for good (docs/fleet.md)
        return GLOBAL_KEY if mode == "global" else cred.id

    def next_counter(self, cred: Credential) -> int:
        key = self.counter_key(cred)
        value = 0 if key is None else self.counters.next(key)
        return self.faults.counter(value)

    def initial_counter(self, cred: Credential) -> int:
        """The counter in makeCredential's authData: 0 per credential, else the global value."""
        if self.config.counter_mode == "global":
            return self.faults.counter(self.counters.next(GLOBAL_KEY))
        return self.faults.counter(0)

    # -- power and reset -----------------------------------------------------------------
    def within_reset_window(self) -> bool:
        window = self.config.reset_window
        return window is None or self.clock() - self.power_up_time <= window

    def factory_reset(self) -> None:
        self.store.wipe()
        self._load_persistent()


__all__ = ["Call", "Device"]

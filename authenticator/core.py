"""The authenticator: one object, pure protocol logic, ports injected.

Transports call :meth:`Authenticator.handle_cbor` / :meth:`handle_u2f` with whole
messages. Each CTAP command lives in its own module; :data:`COMMANDS` below maps every
command byte to it, so the code for a command is one hop from its name.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from authenticator import (
    client_pin,
    credential_management,
    ctap1,
    get_assertion,
    info,
    large_blobs,
    make_credential,
)
from authenticator import config_command as config_cmd
from authenticator.config import Config
from authenticator.counters import GLOBAL_KEY, Counters
from authenticator.credentials import Credential, CredentialSource
from authenticator.errors import ERR, CtapStatusError
from authenticator.faults import Faults
from authenticator.params import decode_request, encode
from authenticator.ports import CommandContext, KeepaliveStatus
from authenticator.presence import AutoApprove, Presence, PresenceRequest
from storage.base import CredentialStore
from storage.memory import MemoryStore
from storage.sealing import DeviceKeys

log = logging.getLogger("fido_emu")

Handler = Callable[["Authenticator", dict, "Call"], Any]

# command byte -> (name, handler). authenticatorBioEnrollment (0x09) is not offered.
COMMANDS: dict[int, tuple[str, Handler]] = {
    0x01: ("makeCredential", make_credential.handle),
    0x02: ("getAssertion", get_assertion.handle),
    0x04: ("getInfo", info.get_info),
    0x06: ("clientPIN", client_pin.handle),
    0x07: ("reset", info.reset),
    0x08: ("getNextAssertion", get_assertion.handle_next),
    0x0A: ("credentialManagement", credential_management.handle),
    0x0B: ("selection", info.selection),
    0x0C: ("largeBlobs", large_blobs.handle),
    0x0D: ("authenticatorConfig", config_cmd.handle),
    0x41: ("credentialManagement(prototype)", credential_management.handle),
}


@dataclass
class Call:
    """One command in flight: its transport context and what the log should say."""

    ctx: CommandContext
    command: str
    rp_id: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class CommandEvent:
    """What listeners (log, dashboard) learn about each command. Never secrets."""

    time: float
    transport: str
    command: str
    rp_id: str | None
    status: str
    duration_ms: float


class Authenticator:
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
        self.store = store if store is not None else MemoryStore()
        self.presence = presence or AutoApprove()
        self.clock = clock
        self.wall_clock = wall_clock
        self.device_keys = DeviceKeys(self.store.device_secret())
        self.credentials = CredentialSource(self.store, self.device_keys)
        self.counters = Counters(self.store, self.config.counter_lease)
        self.pin = client_pin.PinState(self)
        self.faults = Faults()
        self.listeners: list[Callable[[CommandEvent], None]] = []
        self.next_assertion: get_assertion.NextAssertionState | None = None
        self.large_blob_pending: large_blobs.PendingWrite | None = None
        self.cred_mgmt_state: credential_management.EnumerationState | None = None
        self.settings = config_cmd.Settings.load(self)
        self.power_up_time = self.clock()
        self._lock = asyncio.Lock()

    # -- entry points ---------------------------------------------------------------
    async def handle_cbor(self, request: bytes, ctx: CommandContext | None = None) -> bytes:
        ctx = ctx or CommandContext()
        if not request:
            return bytes([ERR.INVALID_LENGTH])
        cmd = request[0]
        name, handler = COMMANDS.get(cmd, (f"0x{cmd:02X}", None))
        call = Call(ctx=ctx, command=name)
        start = self.clock()
        async with self._lock:
            scope = getattr(self.store, "command_begin", None)
            if scope is not None:
                scope()
            try:
                forced = self.faults.take_error()
                if forced is not None:
                    raise CtapStatusError(forced, "injected fault")
                if handler is None:
                    raise CtapStatusError(ERR.INVALID_COMMAND, "unknown command")
                if cmd != 0x08:
                    self.next_assertion = None
                if cmd not in (0x0A, 0x41):
                    self.cred_mgmt_state = None
                params = decode_request(request[1:])
                await self.faults.delay()
                result = await handler(self, params, call)
                if isinstance(result, bytes):  # already canonical CBOR (hot paths)
                    response = b"\x00" + result
                else:
                    response = b"\x00" + (encode(result) if result else b"")
                status = "OK"
            except CtapStatusError as e:
                response, status = bytes([e.code]), e.name
            except Exception:  # the core never lets a traceback reach a client
                log.exception("internal error in %s", name)
                response, status = bytes([ERR.OTHER]), "OTHER"
            finally:
                if scope is not None:
                    self.store.command_end()  # type: ignore[attr-defined]
        self._emit(call, status, start)
        return response

    async def handle_u2f(self, apdu: bytes, ctx: CommandContext | None = None) -> bytes:
        ctx = ctx or CommandContext()
        call = Call(ctx=ctx, command="U2F")
        start = self.clock()
        async with self._lock:
            self.next_assertion = None
            try:
                response = await ctap1.handle(self, apdu, call)
            except Exception:
                log.exception("internal error in U2F")
                response = ctap1.SW_UNKNOWN
        self._emit(call, f"SW {response[-2:].hex().upper()}", start)
        return response

    def power_cycle(self) -> None:
        """Unplug/replug: volatile state goes, persistent state stays."""
        self.pin.power_cycle()
        self.next_assertion = None
        self.large_blob_pending = None
        self.cred_mgmt_state = None
        self.power_up_time = self.clock()
        log.info("power cycle")

    def wink(self) -> None:
        log.info("wink")

    # -- helpers the commands share ---------------------------------------------------
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

    def counter_key(self, cred: Credential) -> bytes | None:
        mode = self.config.counter_mode
        if mode == "zero":
            return None
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

    def within_reset_window(self) -> bool:
        window = self.config.reset_window
        return window is None or self.clock() - self.power_up_time <= window

    def factory_reset(self) -> None:
        self.store.wipe()
        self.__dict__.pop("_batch_cache", None)
        self.device_keys = DeviceKeys(self.store.device_secret())
        self.credentials = CredentialSource(self.store, self.device_keys)
        self.counters = Counters(self.store, self.config.counter_lease)
        self.pin = client_pin.PinState(self)
        self.settings = config_cmd.Settings.load(self)
        self.next_assertion = None
        self.large_blob_pending = None
        self.cred_mgmt_state = None

    def _emit(self, call: Call, status: str, start: float) -> None:
        if not self.listeners and not log.isEnabledFor(logging.INFO):
            return
        event = CommandEvent(
            time=self.wall_clock(),
            transport=call.ctx.transport,
            command=call.command,
            rp_id=call.rp_id,
            status=status,
            duration_ms=(self.clock() - start) * 1000,
        )
        log.info(
            "%s rp=%s status=%s %.1fms via %s",
            event.command,
            event.rp_id or "-",
            event.status,
            event.duration_ms,
            event.transport,
        )
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.exception("command listener failed")


__all__ = ["Authenticator", "COMMANDS", "Call", "CommandEvent", "Config"]

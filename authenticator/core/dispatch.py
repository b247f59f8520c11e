"""The dispatcher: command bytes to command modules, one command at a time.

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

from authenticator.core.commands import (
    authenticator_config,
    client_pin,
    credential_management,
    ctap1,
    get_assertion,
    get_info,
    large_blobs,
    make_credential,
    reset,
    selection,
)
from authenticator.core.config import Config
from authenticator.core.device import Call, Device
from authenticator.core.errors import ERR, CtapStatusError
from authenticator.core.params import decode_request, encode
from authenticator.core.ports import CommandContext
from authenticator.core.presence import Presence
from storage.base import CredentialStore, StoreError

log = logging.getLogger("fido_emu")

Handler = Callable[[Device, dict, Call], Any]

# command byte -> (name, handler). authenticatorBioEnrollment (0x09) is not offered.
COMMANDS: dict[int, tuple[str, Handler]] = {
    0x01: ("makeCredential", make_credential.handle),
    0x02: ("getAssertion", get_assertion.handle),
    0x04: ("getInfo", get_info.handle),
    0x06: ("clientPIN", client_pin.handle),
    0x07: ("reset", reset.handle),
    0x08: ("getNextAssertion", get_assertion.handle_next),
    0x0A: ("credentialManagement", credential_management.handle),
    0x0B: ("selection", selection.handle),
    0x0C: ("largeBlobs", large_blobs.handle),
    0x0D: ("authenticatorConfig", authenticator_config.handle),
    0x41: ("credentialManagement(prototype)", credential_management.handle_preview),
}


@dataclass
class CommandEvent:
    """What listeners (log, dashboard) learn about each command. Never secrets."""

    time: float
    transport: str
    command: str
    rp_id: str | None
    status: str
    duration_ms: float
    # public facts of the credential a ceremony used (dashboard's live log): credential_id
    # (base64url), user, flags (e.g. "UP UV"), counter; empty for other commands
    details: dict = field(default_factory=dict)


class Authenticator(Device):
    """The whole authenticator: a :class:`Device` plus the command table and the entry
    points transports call. One command runs at a time, whichever transport it came from."""

    def __init__(
        self,
        config: Config | None = None,
        store: CredentialStore | None = None,
        presence: Presence | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, store, presence, clock=clock, wall_clock=wall_clock)
        self.listeners: list[Callable[[CommandEvent], None]] = []
        self._lock = asyncio.Lock()

    # -- entry points ---------------------------------------------------------------
    async def handle_cbor(self, request: bytes, ctx: CommandContext | None = None) -> bytes:
        ctx = ctx or CommandContext()
        if not request:
            return bytes([ERR.INVALID_LENGTH])
        cmd = request[0]
        entry = COMMANDS.get(cmd)
        name, handler = entry if entry is not None else (f"0x{cmd:02X}", None)
        call = Call(ctx=ctx, command=name)
        start = self.clock()
        async with self._lock:
            try:
                self.store_begin()
                forced = self.faults.take_error(cmd)
                if forced is not None:
                    raise CtapStatusError(forced, "injected fault")
                if handler is None:
                    raise CtapStatusError(ERR.INVALID_COMMAND, "unknown command")
                if cmd != 0x08:
                    self.next_assertion = None
                if cmd not in (0x0A, 0x41):
                    self.cred_mgmt_state = None
                params = decode_request(request[1:])
                if self.faults.delay_s:  # no coroutine to await on the common path
                    await self.faults.delay()
                result = await handler(self, params, call)
                if isinstance(result, bytes):  # already canonical CBOR (hot paths)
                    response = b"\x00" + result
                else:
                    response = b"\x00" + (encode(result) if result else b"")
                status = "OK"
            except CtapStatusError as e:
                response, status = bytes([e.code]), e.name
            except StoreError as e:  # e.g. the database went away: one line; the next may work
                log.error("%s failed: %s", name, e)
                response, status = bytes([ERR.OTHER]), "OTHER"
            except Exception:  # the core never lets a traceback reach a client
                log.exception("internal error in %s", name)
                response, status = bytes([ERR.OTHER]), "OTHER"
            finally:
                try:
                    self.store_end()
                except StoreError as e:  # the command itself is done (and durable)
                    log.error("%s: %s", name, e)
        self._emit(call, status, start)
        return response

    async def handle_u2f(self, apdu: bytes, ctx: CommandContext | None = None) -> bytes:
        ctx = ctx or CommandContext()
        call = Call(ctx=ctx, command="U2F")
        start = self.clock()
        async with self._lock:
            self.next_assertion = None
            try:
                self.store_begin()
                response = await ctap1.handle(self, apdu, call)
            except Exception:
                log.exception("internal error in U2F")
                response = ctap1.SW_UNKNOWN
            finally:
                self.store_end()
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
            details=_details(call.notes) if status == "OK" and call.notes else {},
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


_FLAG_NAMES = ((0x01, "UP"), (0x04, "UV"), (0x08, "BE"), (0x10, "BS"), (0x40, "AT"), (0x80, "ED"))


def _details(notes: dict) -> dict:
    """The log's view of a ceremony: never key material, only what the RP sees too."""
    import base64

    out: dict = {}
    cred_id = notes.get("credential_id")
    if isinstance(cred_id, bytes):
        out["credential_id"] = base64.urlsafe_b64encode(cred_id).rstrip(b"=").decode()
    if isinstance(notes.get("user"), str):
        out["user"] = notes["user"]
    data = notes.get("auth_data")
    if isinstance(data, bytes) and len(data) >= 37:
        out["flags"] = " ".join(name for bit, name in _FLAG_NAMES if data[32] & bit)
        out["counter"] = int.from_bytes(data[33:37], "big")
    return out


__all__ = ["Authenticator", "COMMANDS", "Call", "CommandEvent", "Config"]

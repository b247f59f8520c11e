"""The routes of ``fido-emu serve``. Responses follow WebDriver: ``{"value": …}`` on success,
``{"value": {"error": CODE, "message": …}}`` on failure (WebAuthn refusals add ``name``, the
DOMException a browser would raise)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from authenticator.core import Authenticator
from authenticator.core.config import PROFILES, Config
from authenticator.core.presence import AutoApprove
from authenticator.frontdoor.dashboard.device import LoopDevice
from authenticator.frontdoor.dashboard.http import HttpError, HttpServer, Request, Response
from authenticator.frontdoor.dashboard.presence import MODES, SwitchablePresence, WebPresence
from authenticator.frontdoor.dashboard.security import AccessPolicy
from storage.memory import MemoryStore

log = logging.getLogger("fido_emu.api")

MAX_BODY = 256 * 1024  # options, a credential with its key
MAX_AUTHENTICATORS = 64
TRANSPORTS = ("usb", "nfc", "ble", "smart-card", "hybrid", "internal")
PROTOCOLS = ("ctap1/u2f", "ctap2", "ctap2_1")


def value(v: Any, status: int = 200) -> Response:
    return Response(status, json.dumps({"value": v}).encode())


def failure(status: int, error: str, message: str, **extra: Any) -> Response:
    return value({"error": error, "message": message, **extra}, status)


class ApiError(HttpError):
    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(status, message)
        self.error, self.extra = error, extra


@dataclass
class Entry:
    """One virtual authenticator: its core, its store, its presence switch."""

    id: str
    auth: Authenticator
    switch: SwitchablePresence
    web: WebPresence
    uv: dict  # {"outcome": "approve" | "deny"}: W3C isUserVerified


class ApiServer:
    """Several authenticators, each with its own id and store, behind one token."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 profile: str = "security-key") -> None:
        self.host, self.port = host, port
        self.token = token or secrets.token_urlsafe(32)
        self.profile = profile
        self.entries: dict[str, Entry] = {}
        self.policy: AccessPolicy | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http = HttpServer(self.handle, pre_check=self._pre_check, max_body=MAX_BODY,
                                name="api")
        self._routes: list[tuple[str, re.Pattern, Callable[..., Awaitable[Response]]]] = [
            ("GET", re.compile(r"/openapi\.json"), self.openapi),
            ("GET", re.compile(r"/webauthn/authenticators"), self.list_authenticators),
            ("POST", re.compile(r"/webauthn/authenticator"), self.add_authenticator),
            ("DELETE", re.compile(r"/webauthn/authenticator/(?P<id>[^/]+)"), self.remove_authenticator),
            ("POST", re.compile(r"/webauthn/authenticator/(?P<id>[^/]+)/credential"), self.add_credential),
            ("GET", re.compile(r"/webauthn/authenticator/(?P<id>[^/]+)/credentials"), self.get_credentials),
            ("DELETE", re.compile(r"/webauthn/authenticator/(?P<id>[^/]+)/credentials/(?P<cid>[^/]+)"),
             self.remove_credential),
            ("DELETE", re.compile(r"/webauthn/authenticator/(?P<id>[^/]+)/credentials"),
             self.remove_all_credentials),
            ("POST", re.compile(r"/webauthn/authenticator/(?P<id>[^/]+)/uv"), self.set_uv),
            ("GET", re.compile(r"/webauthn/authenticator/(?P<id>[^/]+)/presence"), self.get_presence),
            ("POST", re.compile(r"/webauthn/authenticator/(?P<id>[^/]+)/presence"), self.set_presence),
            ("POST", re.compile(r"/webauthn/authenticator/(?P<id>[^/]+)/presence/(?P<rid>[^/]+)"),
             self.answer_presence),
            ("GET", re.compile(r"/webauthn/authenticator/(?P<id>[^/]+)/faults"), self.get_faults),
            ("POST", re.compile(r"/webauthn/authenticator/(?P<id>[^/]+)/faults"), self.arm_fault),
            ("DELETE", re.compile(r"/webauthn/authenticator/(?P<id>[^/]+)/faults"), self.clear_faults),
            ("POST", re.compile(r"/webauthn/authenticator/(?P<id>[^/]+)/power-cycle"), self.power_cycle),
            ("POST", re.compile(r"/webauthn/create"), self.create),
            ("POST", re.compile(r"/webauthn/get"), self.get),
        ]

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> str:
        self._loop = asyncio.get_running_loop()
        _, self.port = await self._http.start(self.host, self.port)
        self.policy = AccessPolicy.for_binding(self.host, self.port, self.token, api=True)
        return self.url

    @property
    def url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    async def close(self) -> None:
        await self._http.close()
        for entry in self.entries.values():
            _close(entry.auth)
        self.entries.clear()

    def add(self, auth: Authenticator, entry_id: str | None = None) -> Entry:
        """Serve ``auth`` (its presence becomes switchable: auto by default, as W3C's
        isUserConsenting)."""
        if len(self.entries) >= MAX_AUTHENTICATORS:
            raise ApiError(400, "invalid argument", f"at most {MAX_AUTHENTICATORS} authenticators")
        web = WebPresence()
        uv = {"outcome": "approve"}
        switch = _UvSwitch(web, "auto", uv)
        auth.presence = switch
        entry = Entry(entry_id or secrets.token_hex(8), auth, switch, web, uv)
        self.entries[entry.id] = entry
        return entry

    # -- dispatch -------------------------------------------------------------------------
    def _pre_check(self, req: Request) -> Response | None:
        assert self.policy is not None
        refused = self.policy.check(req)
        if refused is None:
            return None
        status, reason = refused
        return failure(status, "invalid session id" if status == 401 else "unknown error", reason)

    async def handle(self, req: Request) -> Response:
        from urllib.parse import unquote

        path = (req.raw_path or req.path).rstrip("/") or "/"
        allowed = False
        for method, pattern, fn in self._routes:
            m = pattern.fullmatch(path)
            if m is None:
                continue
            allowed = True
            if method != req.method:
                continue
            try:
                return await fn(req, **{k: unquote(v) for k, v in m.groupdict().items()})
            except ApiError as e:
                return failure(e.status, e.error, str(e), **e.extra)
            except HttpError as e:
                return failure(e.status, "invalid argument", str(e))
        if allowed:
            return failure(405, "unknown method", f"{req.method} is not served on {path}")
        return failure(404, "unknown command", f"no route {path}")

    def _entry(self, entry_id: Any) -> Entry:
        if entry_id is None:
            if len(self.entries) == 1:
                return next(iter(self.entries.values()))
            raise ApiError(400, "invalid argument", "authenticatorId is required "
                           f"({len(self.entries)} authenticators are served)")
        if not isinstance(entry_id, str):
            raise ApiError(400, "invalid argument", "authenticatorId must be a string")
        entry = self.entries.get(entry_id)
        if entry is None:
            raise ApiError(400, "invalid argument", f"no authenticator {entry_id!r}")
        return entry

    # -- W3C WebDriver extension ----------------------------------------------------------
    async def list_authenticators(self, req: Request) -> Response:
        return value([{"authenticatorId": e.id, "profile": e.auth.config.profile,
                       "transports": list(e.auth.config.transports)}
                      for e in self.entries.values()])

    async def add_authenticator(self, req: Request) -> Response:
        body = req.json_object()
        profile = body.get("fidoEmu:profile", self.profile)
        if not isinstance(profile, str) or profile not in PROFILES:
            raise ApiError(400, "invalid argument", f"fidoEmu:profile must be one of {sorted(PROFILES)}")
        overrides: dict[str, Any] = {}
        protocol = body.get("protocol", "ctap2")
        if not isinstance(protocol, str) or protocol not in PROTOCOLS:
            raise ApiError(400, "invalid argument", f"protocol must be one of {list(PROTOCOLS)}")
        transport = body.get("transport")
        if transport is not None:
            if not isinstance(transport, str) or transport not in TRANSPORTS:
                raise ApiError(400, "invalid argument", f"transport must be one of {list(TRANSPORTS)}")
            overrides["transports"] = (transport,)
            overrides["platform_attachment"] = transport == "internal"
        for member, field in (("hasResidentKey", "resident_keys"),
                              ("hasUserVerification", "builtin_uv"),
                              ("defaultBackupEligibility", "backup_eligible"),
                              ("defaultBackupState", "backup_state")):
            if member in body:
                if not isinstance(body[member], bool):
                    raise ApiError(400, "invalid argument", f"{member} must be a boolean")
                overrides[field] = body[member]
        for member in ("isUserConsenting", "isUserVerified"):
            if member in body and not isinstance(body[member], bool):
                raise ApiError(400, "invalid argument", f"{member} must be a boolean")
        if protocol == "ctap1/u2f":
            overrides["u2f"] = True
        try:
            config = Config.for_profile(profile, **overrides)
        except TypeError as e:
            raise ApiError(400, "invalid argument", str(e)) from None
        entry = self.add(Authenticator(config, MemoryStore(), AutoApprove()))
        entry.switch.mode = "auto" if body.get("isUserConsenting", True) else "deny"
        entry.uv["outcome"] = "approve" if body.get("isUserVerified", True) else "deny"
        return value(entry.id)

    async def remove_authenticator(self, req: Request, id: str) -> Response:
        entry = self._entry(id)
        del self.entries[id]
        _close(entry.auth)
        return value(None)

    async def add_credential(self, req: Request, id: str) -> Response:
        from authenticator.rp_testing.cdp_bridge import apply_export

        entry = self._entry(id)
        body = req.json_object()
        for member in ("credentialId", "rpId", "privateKey"):
            if not isinstance(body.get(member), str):
                raise ApiError(400, "invalid argument", f"{member} must be a base64url string")
        try:
            apply_export(entry.auth, [body])
        except (KeyError, ValueError, TypeError, OverflowError) as e:
            raise ApiError(400, "invalid argument",
                           f"invalid credential: {type(e).__name__} {str(e)[:200]}".strip()) from None
        return value(None)

    async def get_credentials(self, req: Request, id: str) -> Response:
        from authenticator.rp_testing.cdp_bridge import credential_params, stored_records

        auth = self._entry(id).auth
        return value([credential_params(auth, auth.credentials.from_record(r), r.rp_id)
                      for r in stored_records(auth)])

    def _delete(self, auth: Authenticator, cred_id: bytes) -> bool:
        if not auth.store.delete_credential(cred_id):
            return False
        auth.counters.forget(cred_id)
        auth.credentials.forget(cred_id)
        auth.cred_mgmt_state = None
        auth.next_assertion = None
        return True

    async def remove_credential(self, req: Request, id: str, cid: str) -> Response:
        import base64
        import binascii

        auth = self._entry(id).auth
        try:
            # base64url as WebDriver says; CDP's standard base64 (percent-encoded) works too
            text = cid.replace("+", "-").replace("/", "_")
            cred_id = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid argument", "credentialId must be base64url") from None
        if not self._delete(auth, cred_id):
            raise ApiError(400, "invalid argument", f"no credential {cid}")
        return value(None)

    async def remove_all_credentials(self, req: Request, id: str) -> Response:
        from authenticator.rp_testing.cdp_bridge import stored_records

        auth = self._entry(id).auth
        for record in stored_records(auth):
            self._delete(auth, record.credential_id)
        return value(None)

    async def set_uv(self, req: Request, id: str) -> Response:
        entry = self._entry(id)
        verified = req.json_object().get("isUserVerified")
        if not isinstance(verified, bool):
            raise ApiError(400, "invalid argument", "isUserVerified must be a boolean")
        entry.uv["outcome"] = "approve" if verified else "deny"
        return value(None)

    # -- presence, faults, power ----------------------------------------------------------
    async def get_presence(self, req: Request, id: str) -> Response:
        entry = self._entry(id)
        return value({"mode": entry.switch.mode, "pending": entry.web.snapshot()})

    async def set_presence(self, req: Request, id: str) -> Response:
        entry = self._entry(id)
        mode = req.json_object().get("mode")
        if mode not in MODES:
            raise ApiError(400, "invalid argument", "mode must be auto, ask or deny")
        entry.switch.mode = mode
        return value({"mode": mode})

    async def answer_presence(self, req: Request, id: str, rid: str) -> Response:
        entry = self._entry(id)
        answer = req.json_object().get("answer")
        if answer not in ("approve", "deny", "fail"):
            raise ApiError(400, "invalid argument", "answer must be approve, deny or fail")
        if not entry.web.answer(rid, answer):
            raise ApiError(404, "no such alert", "that presence request is no longer pending")
        return value(None)

    async def get_faults(self, req: Request, id: str) -> Response:
        from authenticator.core.faults import FAULT_HELP

        return value({"active": self._entry(id).auth.faults.active(), "known": FAULT_HELP})

    async def arm_fault(self, req: Request, id: str) -> Response:
        faults = self._entry(id).auth.faults
        spec = req.json_object().get("arm")
        if not isinstance(spec, str) or len(spec) > 64:
            raise ApiError(400, "invalid argument", 'send {"arm": "FAULT"}, e.g. error=PIN_INVALID')
        try:
            faults.arm(spec)
        except ValueError as e:
            raise ApiError(400, "invalid argument", str(e)) from None
        return value({"active": faults.active()})

    async def clear_faults(self, req: Request, id: str) -> Response:
        faults = self._entry(id).auth.faults
        faults.clear()
        return value({"active": faults.active()})

    async def power_cycle(self, req: Request, id: str) -> Response:
        self._entry(id).auth.power_cycle()
        return value(None)

    # -- ceremonies -----------------------------------------------------------------------
    async def create(self, req: Request) -> Response:
        return await self._ceremony(req, "create")

    async def get(self, req: Request) -> Response:
        return await self._ceremony(req, "get")

    async def _ceremony(self, req: Request, kind: str) -> Response:
        from authenticator.rp_testing.webauthn import WebAuthnClient, WebAuthnError

        body = req.json_object()
        entry = self._entry(body.get("authenticatorId"))
        origin, options, pin = body.get("origin"), body.get("options"), body.get("pin")
        if not isinstance(origin, str):
            raise ApiError(400, "invalid argument", "origin must be a string, e.g. https://example.com")
        if pin is not None and not isinstance(pin, str):
            raise ApiError(400, "invalid argument", "pin must be a string")
        top = body.get("topOrigin")
        if top is not None and not isinstance(top, str):
            raise ApiError(400, "invalid argument", "topOrigin must be a string")
        assert self._loop is not None
        auth = entry.auth
        device = LoopDevice(auth, self._loop)
        client = WebAuthnClient(
            device, origin, top_origin=top, pin=pin, transports=list(auth.config.transports),
            attachment="platform" if auth.config.platform_attachment else "cross-platform",
        )
        call = client.create if kind == "create" else client.get
        try:
            result = await asyncio.to_thread(call, options)
        except WebAuthnError as e:
            return failure(400, "webauthn error", e.message, name=e.name)
        return value(result)

    async def openapi(self, req: Request) -> Response:
        from authenticator.frontdoor.api.openapi import document

        return Response(200, json.dumps(document()).encode())


def _close(auth: Authenticator) -> None:
    """A clean stop gives unused counter leases back (the next process counts on by +1)."""
    try:
        auth.counters.release()
    finally:
        auth.store.close()


class _UvSwitch(SwitchablePresence):
    """Presence switch whose automatic UV answer follows W3C ``isUserVerified``."""

    def __init__(self, ask_source: object, mode: str, uv: dict) -> None:
        super().__init__(ask_source, mode)  # type: ignore[arg-type]
        self._uv = uv

    async def verify_user(self, request):  # type: ignore[override]
        if self.mode == "auto":
            return self._uv["outcome"]
        return await super().verify_user(request)

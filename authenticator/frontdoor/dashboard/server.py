"""The dashboard: a JSON API, an SSE stream and a static page, in the emulator's process.

Everything the page sees is public: rpIds, user names, credential ids, counters, flags,
CTAP command names and statuses, except the key export, which answers a POST that carries
the token and the CSRF header with a download. Import and export move key material only
through the HTTP body: no endpoint reads or writes a server-side path a client names, and
none says anything about the server's file system (issue 13, D1).
Credential changes take the same store paths as authenticatorCredentialManagement (so
caches and counters stay consistent); PIN changes and reset are real CTAP exchanges
through python-fido2 (:mod:`authenticator.frontdoor.dashboard.device`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from authenticator.core import Authenticator, CommandEvent
from authenticator.core.counters import GLOBAL_KEY
from authenticator.core.faults import FAULT_HELP
from authenticator.frontdoor.dashboard.device import LoopDevice
from authenticator.frontdoor.dashboard.http import (
    HttpError,
    HttpServer,
    RateLimitedLog,
    Request,
    Response,
    error_response,
    json_response,
)
from authenticator.frontdoor.dashboard.presence import MODES, SwitchablePresence, WebPresence
from authenticator.frontdoor.dashboard.security import TOKEN_HEADER, AccessPolicy
from storage.base import CredentialRecord

log = logging.getLogger("fido_emu.dashboard")
_refusals = logging.getLogger("fido_emu.dashboard.refused")  # rate limited: floods stay quiet
_refusals.addFilter(RateLimitedLog())

ALGORITHMS = {-7: "ES256", -8: "EdDSA", -35: "ES384", -257: "RS256"}
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
LOG_SIZE = 500
LAST_USED_STATE = "dashboard.last_used"
MAX_UPLOAD = 4 * 1024 * 1024  # a QR screenshot, a credentials file
MAX_BODY = 64 * 1024  # every other request
UPLOAD_PATHS = ("/api/hybrid/image", "/api/credentials/import")
MAX_EVENT_STREAMS = 16  # live-log pages open at once; more get 503
EVENT_STREAM_LIFETIME = 300.0  # then the stream ends and EventSource reconnects


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise HttpError(400, "credentialId must be base64url") from None


def _str(body: dict, key: str, *, required: bool = True, limit: int = 4096) -> str | None:
    if not isinstance(body, dict):
        raise HttpError(400, "the body must be a JSON object")
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise HttpError(400, f"{key} must be a string")
    return value


class Dashboard:
    """Serve one authenticator's dashboard. ``power_cycle`` replugs every transport.
    Without ``token`` a random one is made (read it from :attr:`token`)."""

    def __init__(
        self,
        auth: Authenticator,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        token: str | None = None,
        web_presence: WebPresence | None = None,
        transports: Sequence[str] = (),
        power_cycle: Callable[[], None] | None = None,
    ) -> None:
        self.auth = auth
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(32)
        self.web = web_presence
        self.transports = list(transports)
        self._power_cycle = power_cycle or auth.power_cycle
        self.log: deque[dict] = deque(maxlen=LOG_SIZE)
        self.hybrid: dict[str, Any] = {"state": "idle"}
        self._hybrid_task: asyncio.Task | None = None
        self._subscribers: set[asyncio.Queue] = set()
        self._http = HttpServer(
            self.handle, pre_check=self._pre_check, body_limit=self._body_limit,
            max_body=MAX_UPLOAD,
        )
        self.policy: AccessPolicy | None = None
        self.switch: SwitchablePresence | None = None
        self.token_file: Any = None  # a generated token file, removed on close
        self.last_used: dict[str, float] = {}  # credential id (base64url) -> time
        self._last_used_flush: asyncio.TimerHandle | None = None
        self._presence_before: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> str:
        """Listen; returns the URL (without the token)."""
        self._loop = asyncio.get_running_loop()
        host, port = await self._http.start(self.host, self.port)
        self.port = port
        self.policy = AccessPolicy.for_binding(self.host, port, self.token)
        self.auth.listeners.append(self._on_command)
        self.last_used = self._load_last_used()
        # auto / ask / deny switchable from the page; "ask" is whatever waited before
        self._presence_before = self.auth.presence
        immediate = getattr(self.auth.presence, "immediate", None)
        mode = "ask"
        if immediate is not None and type(self.auth.presence).__name__ in ("AutoApprove", "Deny"):
            mode = "auto" if type(self.auth.presence).__name__ == "AutoApprove" else "deny"
        ask = self.web if self.web is not None else self.auth.presence
        if self.web is not None and self.auth.presence is not self.web and mode == "ask":
            ask = self.auth.presence  # already a FirstOf(prompt, web)
        self.switch = SwitchablePresence(
            ask, mode, getattr(self.auth.presence, "uv_outcome", "approve"))  # type: ignore[arg-type]
        self.auth.presence = self.switch
        if self.web is not None:
            self.web.timeout = self.auth.config.presence_timeout
            self.web.listeners.append(self._on_presence)
        return self.url

    @property
    def url(self) -> str:
        """A URL a browser on this machine can open (never 0.0.0.0 or ::)."""
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    @property
    def login_url(self) -> str:
        return f"{self.url}?token={self.token}"

    async def close(self) -> None:
        if self._on_command in self.auth.listeners:
            self.auth.listeners.remove(self._on_command)
        if self.web is not None and self._on_presence in self.web.listeners:
            self.web.listeners.remove(self._on_presence)
        if self._hybrid_task is not None:
            self._hybrid_task.cancel()
        if self._last_used_flush is not None:
            self._last_used_flush.cancel()
            self._save_last_used()
        if self.switch is not None and self.auth.presence is self.switch:
            self.auth.presence = self._presence_before
        if self.token_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.token_file)
        await self._http.close()

    # -- events ---------------------------------------------------------------------------
    def _on_command(self, event: CommandEvent) -> None:
        entry = {"kind": "ctap", **dataclasses.asdict(event)}
        cred = event.details.get("credential_id")
        if cred and event.command in ("getAssertion", "getNextAssertion", "makeCredential"):
            self.last_used[cred] = event.time
            if self._last_used_flush is None and self._loop is not None:
                self._last_used_flush = self._loop.call_later(2.0, self._save_last_used)
        self.log.append(entry)
        self._publish("log", entry)

    def _load_last_used(self) -> dict[str, float]:
        raw = self.auth.store.get_state(LAST_USED_STATE)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return {k: float(v) for k, v in data.items()
                if isinstance(k, str) and isinstance(v, int | float)} if isinstance(data, dict) else {}

    def _save_last_used(self) -> None:
        """Persist "last used" (one state entry, written at most every 2 s)."""
        self._last_used_flush = None
        known = {b64url(r.credential_id) for rp in self.auth.store.list_rps()
                 for r in self.auth.store.credentials_for_rp(rp.rp_id_hash)}
        self.last_used = {k: v for k, v in self.last_used.items() if k in known}
        try:
            self.auth.store.set_state(LAST_USED_STATE, json.dumps(self.last_used).encode())
        except Exception as e:  # a closed or read-only store: keep it in memory only
            log.warning("dashboard: cannot save last-used times: %s", e)

    def _on_presence(self) -> None:
        self._publish("presence", self.web.snapshot() if self.web else [])

    def _action(self, what: str, rp_id: str | None = None, status: str = "OK") -> None:
        """Dashboard actions go to the live log too, marked with transport 'dashboard'."""
        entry = {
            "kind": "action", "time": time.time(), "transport": "dashboard", "command": what,
            "rp_id": rp_id, "status": status, "duration_ms": 0.0,
        }
        self.log.append(entry)
        self._publish("log", entry)

    def _publish(self, event: str, data: Any) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait((event, data))
            except asyncio.QueueFull:  # a stalled page misses events rather than stalling us
                pass

    # -- request dispatch -----------------------------------------------------------------
    def _pre_check(self, req: Request) -> Response | None:
        """Before the body is read: login, Host, token, CSRF; None lets the request on."""
        assert self.policy is not None
        if req.method == "GET" and req.path == "/" and "token" in req.query:
            return self._login(req)
        refused = self.policy.check(req)
        if refused is None:
            return None
        status, reason = refused
        _refusals.warning("dashboard: refused %s %s: %s", req.method, req.path[:64], reason)
        if status == 401 and req.method == "GET" and req.path == "/":
            return Response(401, LOGIN_HINT.encode(), "text/html; charset=utf-8")
        return error_response(status, reason)

    @staticmethod
    def _body_limit(req: Request) -> int:
        return MAX_UPLOAD if req.path in UPLOAD_PATHS else MAX_BODY

    async def handle(self, req: Request) -> Response:
        """A request that passed :meth:`_pre_check` and the size limits."""
        if req.method == "GET":
            if req.path in STATIC_FILES:
                return self._static(req.path)
            route = self.GET_ROUTES.get(req.path)
            if route is not None:
                return await route(self, req)
        elif req.method == "POST":
            route = self.POST_ROUTES.get(req.path)
            if route is not None:
                result = await route(self, req)
                return result if isinstance(result, Response) else json_response(result)
        else:
            return error_response(405, "method not allowed")
        return error_response(404, "not found")

    def _login(self, req: Request) -> Response:
        assert self.policy is not None
        token = req.query["token"]
        probe = Request(req.method, req.path, {}, {**req.headers, TOKEN_HEADER: token}, b"")
        refused = self.policy.check(probe)
        if refused is not None:
            return error_response(*refused)
        cookie = f"{self.policy.cookie_name}={token}; HttpOnly; SameSite=Strict; Path=/"
        return Response(303, b"", "text/plain", {"Location": "/", "Set-Cookie": cookie})

    def _static(self, path: str) -> Response:
        name, content_type = STATIC_FILES[path]
        body = resources.files("authenticator.frontdoor.dashboard").joinpath("static", name).read_bytes()
        return Response(200, body, content_type)

    # -- GET ------------------------------------------------------------------------------
    async def get_state(self, req: Request) -> Response:
        return json_response(self.state())

    def state(self) -> dict:
        auth, cfg = self.auth, self.auth.config
        window = cfg.reset_window
        remaining = None
        if window is not None:
            remaining = max(0.0, window - (auth.clock() - auth.power_up_time))
        return {
            "profile": cfg.profile,
            "aaguid": str(uuid.UUID(bytes=cfg.aaguid)),
            "transportsUp": self.transports,
            "transports": list(cfg.transports),
            "counterMode": cfg.counter_mode,
            "attestation": cfg.attestation,
            "builtinUv": cfg.builtin_uv,
            "pin": {
                "supported": cfg.client_pin,
                "set": auth.pin.is_set,
                "retries": auth.pin.retries,
                "maxRetries": cfg.max_pin_retries,
                "minLength": auth.settings.min_pin_length,
                "forceChange": auth.settings.force_change_pin,
            },
            "uvRetries": auth.pin.uv_retries if cfg.builtin_uv else None,
            "discoverable": auth.store.count_discoverable(),
            "maxDiscoverable": cfg.max_discoverable,
            "reset": {"window": window, "remaining": remaining},
            "faults": {"active": auth.faults.active(), "known": FAULT_HELP},
            "presence": {
                "web": self.web is not None,
                "mode": self.switch.mode if self.switch else None,
                "source": type(self._presence_before or auth.presence).__name__,
                "timeout": cfg.presence_timeout,
            },
            "hybrid": self.hybrid,
        }

    async def get_credentials(self, req: Request) -> Response:
        return json_response(self.credentials())

    def credentials(self) -> list[dict]:
        out = []
        for rp in self.auth.store.list_rps():
            records = self.auth.store.credentials_for_rp(rp.rp_id_hash)
            out.append({
                "rpId": rp.rp_id,
                "rpName": rp.rp_name,
                "credentials": [self._public(rec) for rec in records],
            })
        return out

    def _counter(self, rec: CredentialRecord) -> int:
        mode = self.auth.config.counter_mode
        if mode == "zero":
            return 0
        return self.auth.counters.peek(GLOBAL_KEY if mode == "global" else rec.credential_id)

    def _public(self, rec: CredentialRecord) -> dict:
        """A credential as the page may see it: no key material, sealed or not."""
        return {
            "credentialId": b64url(rec.credential_id),
            "rpId": rec.rp_id,
            "userId": b64url(rec.user_id),
            "userName": rec.user_name,
            "displayName": rec.user_display_name,
            "algorithm": ALGORITHMS.get(rec.algorithm, str(rec.algorithm)),
            "created": rec.created or None,
            "lastUsed": self.last_used.get(b64url(rec.credential_id)),
            "counter": self._counter(rec),
            "discoverable": rec.discoverable,
            "credProtect": rec.cred_protect,
            "backupEligible": rec.backup_eligible,
            "backupState": rec.backup_state,
            "hmacSecret": rec.hmac_secret,
            "largeBlobKey": rec.large_blob_key,
        }

    async def get_public_export(self, req: Request) -> Response:
        body = json.dumps({"format": "fido-emu-public/1", "rps": self.credentials()}, indent=2)
        return Response(200, body.encode(), "application/json", {
            "Content-Disposition": 'attachment; filename="fido-emu-credentials-public.json"',
        })

    async def get_log(self, req: Request) -> Response:
        return json_response(list(self.log))

    async def get_log_export(self, req: Request) -> Response:
        body = json.dumps({"format": "fido-emu-log/1", "entries": list(self.log)}, indent=2)
        return Response(200, body.encode(), "application/json", {
            "Content-Disposition": 'attachment; filename="fido-emu-log.json"',
        })

    async def get_events(self, req: Request) -> Response:
        """The live log: at most MAX_EVENT_STREAMS at once, each ended after
        EVENT_STREAM_LIFETIME (EventSource reconnects by itself; issue 13, D7)."""
        if len(self._subscribers) >= MAX_EVENT_STREAMS:
            return Response(503, b'{"error": "too many live-log streams"}', close=True,
                            headers={"Retry-After": "5"})
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
        self._subscribers.add(queue)  # counted now: the cap holds before the stream starts
        loop = asyncio.get_running_loop()

        async def stream(send: Callable[[bytes], Any]) -> None:
            try:
                hello = {"log": list(self.log), "presence": self.web.snapshot() if self.web else [],
                         "presenceMode": self.switch.mode if self.switch else None}
                await send(b"retry: 2000\n" + _sse("hello", hello))
                end = loop.time() + EVENT_STREAM_LIFETIME
                while (left := end - loop.time()) > 0:
                    try:
                        event, data = await asyncio.wait_for(queue.get(), timeout=min(15, left))
                    except TimeoutError:
                        await send(b": keepalive\n\n")
                    else:
                        await send(_sse(event, data))
            finally:
                self._subscribers.discard(queue)

        return Response(200, b"", "text/event-stream", {"X-Accel-Buffering": "no"}, stream)

    # -- POST: presence -------------------------------------------------------------------
    async def post_presence(self, req: Request) -> dict:
        if self.web is None:
            raise HttpError(409, "web presence is not enabled (--presence web)")
        body = req.json_object()
        answer = _str(body, "answer", limit=16)
        if answer not in ("approve", "deny", "fail"):
            raise HttpError(400, "answer must be approve, deny or fail")
        if not self.web.answer(_str(body, "id", limit=64) or "", answer):  # type: ignore[arg-type]
            raise HttpError(409, "that request is no longer pending")
        return {"ok": True}

    async def post_presence_mode(self, req: Request) -> dict:
        mode = _str(req.json_object(), "mode", limit=8)
        if mode not in MODES or self.switch is None:
            raise HttpError(400, "mode must be auto, ask or deny")
        self.switch.mode = mode  # type: ignore[assignment]
        self._action(f"presence mode: {mode}")
        self._publish("presenceMode", mode)
        return {"ok": True, "mode": mode}

    # -- POST: credentials ----------------------------------------------------------------
    def _record(self, body: dict) -> CredentialRecord:
        cred_id = unb64url(_str(body, "credentialId", limit=1024) or "")
        record = self.auth.store.get_credential(cred_id)
        if record is None:
            raise HttpError(404, "no such credential")
        return record

    async def post_delete(self, req: Request) -> dict:
        record = self._record(req.json_object())
        # the same steps as credentialManagement deleteCredential
        auth = self.auth
        auth.store.delete_credential(record.credential_id)
        auth.counters.forget(record.credential_id)
        auth.credentials.forget(record.credential_id)
        auth.cred_mgmt_state = None  # an enumeration in progress must not return it
        auth.next_assertion = None
        self._action("delete credential", record.rp_id)
        self._publish("changed", "credentials")
        return {"ok": True}

    async def post_update(self, req: Request) -> dict:
        body = req.json_object()
        record = self._record(body)
        if not record.discoverable:
            raise HttpError(409, "only discoverable credentials have user information")
        name = _str(body, "name", required=False, limit=256)
        display = _str(body, "displayName", required=False, limit=256)
        # updateUserInformation: user.id is kept, absent or empty fields are removed
        self.auth.store.update_user(record.credential_id, record.user_id, name or None, display or None)
        self._action("update user information", record.rp_id)
        self._publish("changed", "credentials")
        return {"ok": True}

    async def post_export(self, req: Request) -> Response:
        """The private keys, as a download in this response (CDP WebAuthn.Credential list).
        A POST: it needs the token and the CSRF header, unlike a navigation."""
        from authenticator.rp_testing.cdp_bridge import credential_params, stored_records

        body = req.json_object()
        if "path" in body:
            raise HttpError(400, "export is a download; the server writes no file")
        rp_id = _str(body, "rpId", required=False, limit=256)
        records = stored_records(self.auth, [rp_id] if rp_id else None)
        creds = [
            credential_params(self.auth, self.auth.credentials.from_record(r), r.rp_id)
            for r in records
        ]
        data = json.dumps({"format": "cdp-webauthn-credentials/1", "credentials": creds}, indent=2)
        self._action(f"export {len(creds)} credential(s) as a download", rp_id)
        return Response(200, data.encode(), "application/json", {
            "Content-Disposition": 'attachment; filename="fido-emu-credentials.json"',
        })

    async def post_import(self, req: Request) -> dict:
        """The credentials file is the request body (the page uploads it)."""
        from authenticator.rp_testing.cdp_bridge import apply_export

        data = req.json()
        creds = data.get("credentials") if isinstance(data, dict) else data
        if not isinstance(creds, list) or not all(isinstance(c, dict) for c in creds):
            raise HttpError(400, "send the credentials file as the body: "
                                 '{"credentials": [CDP WebAuthn.Credential, ...]}')
        try:
            result = apply_export(self.auth, creds)
        except (KeyError, ValueError, TypeError, OverflowError) as e:
            detail = str(e).splitlines()[0][:200] if isinstance(e, ValueError) else ""
            raise HttpError(400, f"invalid credential: {type(e).__name__} {detail}".strip()) from None
        self._action(f"import: {len(result.added)} added, {len(result.counters)} counters moved")
        self._publish("changed", "credentials")
        return {"ok": True, "added": len(result.added), "counters": len(result.counters)}

    # -- POST: device ---------------------------------------------------------------------
    async def _ctap(self, fn: Callable[[Any], Any]) -> Any:
        """Run a python-fido2 exchange in a worker thread; CTAP errors become HTTP 409."""
        from fido2.ctap import CtapError
        from fido2.ctap2 import Ctap2

        assert self._loop is not None
        device = LoopDevice(self.auth, self._loop)
        try:
            return await asyncio.to_thread(lambda: fn(Ctap2(device)))
        except CtapError as e:
            name = getattr(e.code, "name", f"0x{int(e.code):02X}")
            raise HttpError(409, f"{name}: {FRIENDLY.get(name, '')}".rstrip(": ")) from None

    async def post_pin(self, req: Request) -> dict:
        """The PIN arrives once in this body; it is neither logged nor returned."""
        from fido2.ctap2 import ClientPin

        body = req.json_object()
        action = _str(body, "action", limit=16)
        new = _str(body, "newPin", limit=256) or ""
        current = _str(body, "currentPin", required=action == "change", limit=256)
        if action not in ("set", "change"):
            raise HttpError(400, "action must be set or change")
        minimum = self.auth.settings.min_pin_length
        if len(new) < minimum or len(new.encode()) > 63:
            raise HttpError(400, f"the PIN must be {minimum} to 63 characters long")

        def run(ctap: Any) -> None:
            client_pin = ClientPin(ctap)
            if action == "set":
                client_pin.set_pin(new)
            else:
                client_pin.change_pin(current, new)

        await self._ctap(run)
        self._action("PIN set" if action == "set" else "PIN changed")
        return {"ok": True}

    async def post_reset(self, req: Request) -> dict:
        if req.json_object().get("confirm") != "RESET":
            raise HttpError(400, 'confirm with {"confirm": "RESET"}')
        await self._ctap(lambda ctap: ctap.reset())
        self._publish("changed", "credentials")
        return {"ok": True}

    async def post_power_cycle(self, req: Request) -> dict:
        self._power_cycle()
        self._action("power cycle")
        return {"ok": True}

    async def post_faults(self, req: Request) -> dict:
        body = req.json_object()
        faults = self.auth.faults
        if body.get("clear"):
            faults.clear()
        arm = _str(body, "arm", required=False, limit=64)
        disarm = _str(body, "disarm", required=False, limit=64)
        if arm:
            try:
                faults.arm(arm)
            except ValueError as e:
                raise HttpError(400, str(e)) from None
        if disarm:  # Faults has arm/clear only: clear, then re-arm the others
            keep = [s for s in faults.active() if s != disarm and s.split("=")[0] != disarm]
            faults.clear()
            for spec in keep:
                faults.arm(spec)
        self._action("faults: " + (", ".join(faults.active()) or "none"))
        return {"ok": True, "active": faults.active()}

    # -- POST: hybrid ---------------------------------------------------------------------
    async def post_hybrid(self, req: Request) -> dict:
        body = req.json_object()
        return self._start_hybrid(_str(body, "qr", limit=2048) or "", body.get("tunnelUrl"))

    async def post_hybrid_image(self, req: Request) -> dict:
        if not req.body:
            raise HttpError(400, "send the image as the request body")
        try:
            import io

            import zxingcpp
            from PIL import Image
        except ImportError:
            raise HttpError(501, "reading QR images needs the hybrid extra (zxing-cpp, pillow)") from None
        try:
            results = zxingcpp.read_barcodes(Image.open(io.BytesIO(req.body)))
        except Exception:
            raise HttpError(400, "cannot read that image") from None
        text = next((r.text for r in results if r.text.upper().startswith("FIDO:/")), None)
        if text is None:
            raise HttpError(400, "no FIDO:/ QR code in that image")
        return self._start_hybrid(text, req.query.get("tunnelUrl"))

    async def post_hybrid_qr(self, req: Request) -> Response:
        """Render a ``FIDO:/`` text as a PNG QR code (the desktop's side of hybrid)."""
        text = (_str(req.json_object(), "text", limit=2048) or "").strip()
        if not text.upper().startswith("FIDO:/") or not text[6:].isdigit():
            raise HttpError(400, "text must be a FIDO:/ hybrid QR text (digits after FIDO:/)")
        try:
            import io

            import segno
        except ImportError:
            raise HttpError(501, "QR images need the hybrid extra (segno)") from None
        png = io.BytesIO()
        segno.make(text, micro=False).save(png, kind="png", scale=8, border=4)
        return Response(200, png.getvalue(), "image/png")

    def _start_hybrid(self, text: str, tunnel_url: Any) -> dict:
        try:
            from transports.hybrid.authenticator_role import HybridError, run_authenticator
            from transports.hybrid.qr import QrError, QrPayload
        except ImportError as e:
            raise HttpError(501, f"the hybrid extra is not installed ({e.name})") from None
        if self._hybrid_task is not None and not self._hybrid_task.done():
            raise HttpError(409, "a hybrid session is already running")
        if tunnel_url is not None and (not isinstance(tunnel_url, str) or not tunnel_url):
            tunnel_url = None
        try:
            payload = QrPayload.from_url(text.strip())
        except (QrError, ValueError) as e:
            raise HttpError(400, f"not a valid hybrid QR code: {e}") from None

        def advertise(service_data: bytes) -> None:
            self._set_hybrid(state="advertising", advert=service_data.hex())

        async def session() -> None:
            try:
                await run_authenticator(payload, self.auth, advertise, tunnel_url=tunnel_url)
            except (HybridError, OSError) as e:
                self._set_hybrid(state="error", error=str(e))
            except asyncio.CancelledError:
                self._set_hybrid(state="cancelled")
                raise
            except Exception as e:
                log.exception("hybrid session failed")
                self._set_hybrid(state="error", error=type(e).__name__)
            else:
                self._set_hybrid(state="finished")

        self.hybrid = {"state": "connecting", "started": time.time()}
        self._publish("hybrid", self.hybrid)
        self._hybrid_task = asyncio.ensure_future(session())
        self._action(f"hybrid: QR scanned ({payload.operation})")
        return {"ok": True}

    def _set_hybrid(self, **changes: Any) -> None:
        self.hybrid = {**self.hybrid, **changes}
        self._publish("hybrid", self.hybrid)

    GET_ROUTES = {
        "/api/state": get_state,
        "/api/credentials": get_credentials,
        "/api/credentials/public.json": get_public_export,
        "/api/log": get_log,
        "/api/log.json": get_log_export,
        "/api/events": get_events,
    }
    POST_ROUTES = {
        "/api/presence": post_presence,
        "/api/presence/mode": post_presence_mode,
        "/api/credentials/delete": post_delete,
        "/api/credentials/update": post_update,
        "/api/credentials/export": post_export,
        "/api/credentials/import": post_import,
        "/api/pin": post_pin,
        "/api/reset": post_reset,
        "/api/power-cycle": post_power_cycle,
        "/api/faults": post_faults,
        "/api/hybrid": post_hybrid,
        "/api/hybrid/image": post_hybrid_image,
        "/api/hybrid/qr": post_hybrid_qr,
    }


FRIENDLY = {
    "PIN_INVALID": "wrong PIN",
    "PIN_BLOCKED": "PIN blocked: reset the authenticator",
    "PIN_AUTH_BLOCKED": "too many wrong PINs: power-cycle the authenticator",
    "PIN_POLICY_VIOLATION": "the PIN does not meet the policy",
    "NOT_ALLOWED": "reset is only allowed shortly after power-up: power-cycle, then reset",
    "OPERATION_DENIED": "the user declined",
    "USER_ACTION_TIMEOUT": "nobody answered the presence request",
    "PIN_NOT_SET": "no PIN is set",
}

LOGIN_HINT = """<!doctype html><meta charset="utf-8"><title>fido-emu dashboard</title>
<p>This dashboard needs its token. Open the URL with <code>?token=</code> that
<code>fido-emu run --dashboard</code> printed, or <code>/?token=TOKEN</code> with the token from
its token file.
"""


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()

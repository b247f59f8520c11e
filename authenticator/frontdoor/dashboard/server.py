"""The dashboard: a JSON API, an SSE stream and a static page, in the emulator's process.

Everything the page sees is public: rpIds, user names, credential ids, counters, flags,
CTAP command names and statuses. Private keys, the PIN and the device key never leave the
server; exporting keys writes a file *on the server* (mode 0600) at a path the user types.
Credential changes take the same store paths as authenticatorCredentialManagement (so
caches and counters stay consistent); PIN changes and reset are real CTAP exchanges
through python-fido2 (:mod:`authenticator.frontdoor.dashboard.device`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from authenticator.core import Authenticator, CommandEvent
from authenticator.core.counters import GLOBAL_KEY
from authenticator.core.faults import FAULT_HELP
from authenticator.frontdoor.dashboard.device import LoopDevice
from authenticator.frontdoor.dashboard.http import (
    HttpError,
    HttpServer,
    Request,
    Response,
    error_response,
    json_response,
)
from authenticator.frontdoor.dashboard.presence import WebPresence
from authenticator.frontdoor.dashboard.security import TOKEN_HEADER, AccessPolicy
from storage.base import CredentialRecord

log = logging.getLogger("fido_emu.dashboard")

ALGORITHMS = {-7: "ES256", -8: "EdDSA", -35: "ES384", -257: "RS256"}
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
LOG_SIZE = 500
MAX_UPLOAD = 4 * 1024 * 1024  # a QR screenshot


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise HttpError(400, "credentialId must be base64url") from None


def _str(body: dict, key: str, *, required: bool = True, limit: int = 4096) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise HttpError(400, f"{key} must be a string")
    return value


class Dashboard:
    """Serve one authenticator's dashboard. ``power_cycle`` replugs every transport."""

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
        self.token = token
        self.web = web_presence
        self.transports = list(transports)
        self._power_cycle = power_cycle or auth.power_cycle
        self.log: deque[dict] = deque(maxlen=LOG_SIZE)
        self.hybrid: dict[str, Any] = {"state": "idle"}
        self._hybrid_task: asyncio.Task | None = None
        self._subscribers: set[asyncio.Queue] = set()
        self._http = HttpServer(self.handle, max_body=MAX_UPLOAD)
        self.policy: AccessPolicy | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> str:
        """Listen; returns the URL (without the token)."""
        self._loop = asyncio.get_running_loop()
        host, port = await self._http.start(self.host, self.port)
        self.port = port
        self.policy = AccessPolicy.for_binding(self.host, port, self.token)
        self.auth.listeners.append(self._on_command)
        if self.web is not None:
            self.web.timeout = self.auth.config.presence_timeout
            self.web.listeners.append(self._on_presence)
        return self.url

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def close(self) -> None:
        if self._on_command in self.auth.listeners:
            self.auth.listeners.remove(self._on_command)
        if self.web is not None and self._on_presence in self.web.listeners:
            self.web.listeners.remove(self._on_presence)
        if self._hybrid_task is not None:
            self._hybrid_task.cancel()
        await self._http.close()

    # -- events ---------------------------------------------------------------------------
    def _on_command(self, event: CommandEvent) -> None:
        entry = {"kind": "ctap", **dataclasses.asdict(event)}
        self.log.append(entry)
        self._publish("log", entry)

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
    async def handle(self, req: Request) -> Response:
        assert self.policy is not None
        if req.method == "GET" and req.path == "/" and "token" in req.query:
            return self._login(req)
        refused = self.policy.check(req)
        if refused is not None:
            status, reason = refused
            log.warning("dashboard: refused %s %s: %s", req.method, req.path, reason)
            if status == 401 and req.method == "GET" and req.path == "/":
                return Response(401, LOGIN_HINT.encode(), "text/html; charset=utf-8")
            return error_response(status, reason)
        if req.method == "GET":
            if req.path in STATIC_FILES:
                return self._static(req.path)
            route = self.GET_ROUTES.get(req.path)
            if route is not None:
                return await route(self, req)
        elif req.method == "POST":
            if req.path != "/api/hybrid/image" and len(req.body) > 64 * 1024:
                raise HttpError(413, "body too large")
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
                "source": type(auth.presence).__name__,
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
            "lastUsed": rec.extra.get("last_used") if isinstance(rec.extra, dict) else None,
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

    async def get_events(self, req: Request) -> Response:
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)

        async def stream(writer: asyncio.StreamWriter) -> None:
            self._subscribers.add(queue)
            try:
                hello = {"log": list(self.log), "presence": self.web.snapshot() if self.web else []}
                writer.write(_sse("hello", hello))
                await writer.drain()
                while True:
                    try:
                        event, data = await asyncio.wait_for(queue.get(), timeout=15)
                    except TimeoutError:
                        writer.write(b": keepalive\n\n")
                    else:
                        writer.write(_sse(event, data))
                    await writer.drain()
            finally:
                self._subscribers.discard(queue)

        return Response(200, b"", "text/event-stream", {"X-Accel-Buffering": "no"}, stream)

    # -- POST: presence -------------------------------------------------------------------
    async def post_presence(self, req: Request) -> dict:
        if self.web is None:
            raise HttpError(409, "web presence is not enabled (--presence web)")
        body = req.json()
        answer = _str(body, "answer", limit=16)
        if answer not in ("approve", "deny", "fail"):
            raise HttpError(400, "answer must be approve, deny or fail")
        if not self.web.answer(_str(body, "id", limit=64) or "", answer):  # type: ignore[arg-type]
            raise HttpError(409, "that request is no longer pending")
        return {"ok": True}

    # -- POST: credentials ----------------------------------------------------------------
    def _record(self, body: dict) -> CredentialRecord:
        cred_id = unb64url(_str(body, "credentialId", limit=1024) or "")
        record = self.auth.store.get_credential(cred_id)
        if record is None:
            raise HttpError(404, "no such credential")
        return record

    async def post_delete(self, req: Request) -> dict:
        record = self._record(req.json())
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
        body = req.json()
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

    async def post_export(self, req: Request) -> dict:
        """Keys go to a new 0600 file on the server, never into the HTTP response."""
        from authenticator.rp_testing.cdp_bridge import credential_params, stored_records

        body = req.json()
        path = Path(_str(body, "path") or "")
        rp_id = _str(body, "rpId", required=False, limit=256)
        if not path.is_absolute():
            raise HttpError(400, "give an absolute path on the server")
        records = stored_records(self.auth, [rp_id] if rp_id else None)
        creds = [
            credential_params(self.auth, self.auth.credentials.from_record(r), r.rp_id)
            for r in records
        ]
        data = json.dumps({"format": "cdp-webauthn-credentials/1", "credentials": creds}, indent=2)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise HttpError(409, "that file exists; choose a new name") from None
        except OSError as e:
            raise HttpError(400, f"cannot create the file: {e.strerror}") from None
        with os.fdopen(fd, "w") as f:
            f.write(data)
        self._action(f"export {len(creds)} credential(s) to a server file", rp_id)
        return {"ok": True, "count": len(creds), "path": str(path)}

    async def post_import(self, req: Request) -> dict:
        from authenticator.rp_testing.cdp_bridge import apply_export

        path = Path(_str(req.json(), "path") or "")
        if not path.is_absolute():
            raise HttpError(400, "give an absolute path on the server")
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise HttpError(400, f"cannot read the file: {e.strerror}") from None
        except ValueError:
            raise HttpError(400, "the file is not JSON") from None
        creds = data.get("credentials") if isinstance(data, dict) else data
        if not isinstance(creds, list) or not all(isinstance(c, dict) for c in creds):
            raise HttpError(400, "expected a list of credentials (CDP WebAuthn.Credential)")
        try:
            result = apply_export(self.auth, creds)
        except (KeyError, ValueError, TypeError) as e:
            raise HttpError(400, f"invalid credential in the file: {type(e).__name__}") from None
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

        body = req.json()
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
        if req.json().get("confirm") != "RESET":
            raise HttpError(400, 'confirm with {"confirm": "RESET"}')
        await self._ctap(lambda ctap: ctap.reset())
        self._publish("changed", "credentials")
        return {"ok": True}

    async def post_power_cycle(self, req: Request) -> dict:
        self._power_cycle()
        self._action("power cycle")
        return {"ok": True}

    async def post_faults(self, req: Request) -> dict:
        body = req.json()
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
        body = req.json()
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
        "/api/events": get_events,
    }
    POST_ROUTES = {
        "/api/presence": post_presence,
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
<p>This dashboard needs its token. Open <code>/?token=TOKEN</code> once (the token was printed
when <code>fido-emu run --dashboard</code> started, or is in <code>--dashboard-token-file</code>).
"""


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()

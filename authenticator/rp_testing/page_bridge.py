"""Our authenticator inside any browser page, without a kernel: a page-level WebAuthn bridge.

Why: the UHID key needs a kernel with /dev/uhid, and the CDP bridge hands the ceremony to
Chromium's own virtual authenticator (its AAGUID, ``fmt: none``, no faults, Chromium only).
This bridge replaces ``navigator.credentials.create/get`` and the ``PublicKeyCredential``
statics in every frame, before any page script runs (``page_bridge.js``), and forwards each
call to :class:`~authenticator.rp_testing.webauthn.WebAuthnClient` on our core with the
frame's origin and top origin as the browser reports them (never as the page says). So the
RP's real front-end code runs against our attestation, extensions, counters and faults.

Channels (each gives the origin from the browser, not from page script):

* Playwright, sync or async: :func:`attach_playwright` / :func:`attach_playwright_async`
  (``expose_binding`` + ``add_init_script`` on a page or a whole context).
* WebDriver BiDi (``script.addPreloadScript`` with a channel): :func:`attach_selenium` for a
  Selenium driver started with ``options.enable_bidi = True`` (chromedriver), and
  :class:`FirefoxBidi`, a minimal BiDi session on Debian's ``firefox-esr`` (no geckodriver
  needed; Firefox speaks BiDi itself).

What a browser decides, the bridge decides the same way: a cross-origin frame needs the
``publickey-credentials-create``/``-get`` permission policy (the iframe's ``allow``
attribute, up the frame chain; response headers are not read) and, for ``create()``,
transient user activation; clientDataJSON then carries ``crossOrigin: true`` and
``topOrigin``. Conditional requests (``mediation: "conditional"``) wait in
:meth:`PageBridge.conditional_requests` until the test picks an account
(:meth:`PageBridge.choose`), as a user picking from autofill would.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, Literal
from urllib.parse import urlsplit

import cbor2

from authenticator.core import Authenticator
from authenticator.rp_testing.webauthn import WebAuthnClient, WebAuthnError
from storage.base import CredentialRecord

UnknownCredentialAction = Literal["hide", "delete", "ignore"]
HIDDEN_STATE = "rp_testing.page_bridge.hidden"
DOM_NAMES = {
    "NotAllowedError", "SecurityError", "TypeError", "NotSupportedError", "InvalidStateError",
    "AbortError", "ConstraintError", "UnknownError", "NotReadableError", "EncodingError",
    "SyntaxError",
}
CREATE_FEATURE = "publickey-credentials-create"
GET_FEATURE = "publickey-credentials-get"


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: Any, field_name: str) -> bytes:
    import base64
    import binascii

    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", text):
        raise BridgeError("TypeError", f"{field_name} is not base64url")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise BridgeError("TypeError", f"{field_name} is not base64url") from None


class BridgeError(Exception):
    """What the page's promise rejects with: a DOMException ``name`` and a one-line message."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message

    def reply(self) -> dict[str, Any]:
        return {"error": {"name": self.name, "message": self.message}}


def _from_webauthn_error(e: WebAuthnError) -> BridgeError:
    """The client's error as the page's DOMException (name and one-line message)."""
    name = getattr(e, "name", None)
    if name in DOM_NAMES:
        return BridgeError(name, getattr(e, "message", str(e)))
    head, sep, rest = str(e).partition(":")
    return BridgeError(head if sep and head in DOM_NAMES else "NotAllowedError", rest.strip() or str(e))


# -- frames and permissions policy ----------------------------------------------------------


def origin_of(url: str) -> str:
    """The serialised origin of a URL ("null" for opaque ones)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        default = {"http": 80, "https": 443}[parts.scheme]
        host = parts.hostname
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port and parts.port != default else ""
        return f"{parts.scheme}://{host}{port}"
    return "null"


def allow_attribute(allow: str | None, feature: str, src_origin: str) -> list[str] | None:
    """The allowlist an iframe's ``allow`` attribute gives ``feature`` (None: not declared).
    Tokens: ``*``, ``'self'``, ``'src'`` (the default), ``'none'``, origins."""
    if not allow:
        return None
    for directive in allow.split(";"):
        tokens = directive.split()
        if not tokens or tokens[0] != feature:
            continue
        out: list[str] = []
        for t in tokens[1:] or ["'src'"]:
            if t == "'src'":
                out.append(src_origin)
            elif t == "'none'":
                continue
            else:
                out.append(t if t in ("*", "'self'") else origin_of(t))
        return out
    return None


@dataclass
class FrameLink:
    """One step of a frame chain: the frame's origin and, if it is a child, its container."""

    origin: str
    allow: str | None = None  # the <iframe allow> attribute (None: top-level frame)
    src: str | None = None  # the <iframe src> attribute, for the 'src' allowlist keyword


def policy_allows(chain: list[FrameLink], feature: str) -> bool:
    """Permissions Policy for a feature whose default allowlist is ``'self'`` (both WebAuthn
    features): ``chain`` runs from the top-level frame down to the calling frame."""
    enabled = True  # the top-level document (no Permissions-Policy header read)
    for parent, child in zip(chain, chain[1:], strict=False):
        if not enabled:
            return False
        src_origin = origin_of(child.src) if child.src else child.origin
        declared = allow_attribute(child.allow, feature, src_origin)
        if declared is None:
            enabled = child.origin == parent.origin  # 'self' of the parent
        else:
            enabled = "*" in declared or child.origin in declared or (
                "'self'" in declared and child.origin == parent.origin
            )
    return enabled


@dataclass
class Frame:
    """Where a call came from, as the browser (not the page) says."""

    origin: str
    top_origin: str
    same_origin_with_ancestors: bool = True
    create_allowed: bool = True
    get_allowed: bool = True
    deliver: Callable[[dict[str, Any]], Any] | None = None  # sends a late reply to the page
    url: str = ""

    @classmethod
    def from_chain(cls, chain: list[FrameLink], **kw: Any) -> Frame:
        same = all(link.origin == chain[-1].origin for link in chain)
        return cls(
            origin=chain[-1].origin,
            top_origin=chain[0].origin,
            same_origin_with_ancestors=same,
            create_allowed=policy_allows(chain, CREATE_FEATURE),
            get_allowed=policy_allows(chain, GET_FEATURE),
            **kw,
        )


# -- what tests assert on ---------------------------------------------------------------------


@dataclass
class BridgeEvent:
    """One call the page made: ``kind`` create/get/signal/cancel, and how it ended."""

    kind: str
    origin: str
    top_origin: str
    mediation: str | None = None
    ok: bool = True
    error: str | None = None  # "NotAllowedError: ..." when the page saw a rejection
    result: dict[str, Any] | None = None  # the toJSON() form the page received


@dataclass
class Signal:
    """A ``PublicKeyCredential.signal*`` call and what it did to the store."""

    kind: str  # unknownCredential / allAcceptedCredentials / currentUserDetails
    origin: str
    options: dict[str, Any]
    hidden: list[bytes] = field(default_factory=list)
    deleted: list[bytes] = field(default_factory=list)
    restored: list[bytes] = field(default_factory=list)
    updated: list[bytes] = field(default_factory=list)


@dataclass
class Account:
    """A discoverable credential the autofill list would show."""

    credential_id: bytes
    user_id: bytes
    user_name: str | None
    display_name: str | None


@dataclass
class ConditionalRequest:
    """A pending ``get({mediation: "conditional"})``: the page waits for an account pick."""

    id: str
    frame: Frame
    options: dict[str, Any]
    accounts: list[Account]


# -- the bridge -------------------------------------------------------------------------------


class PageBridge:
    """Answers the page shim's requests with our core. Channel-independent: the attach
    functions below feed it requests with a :class:`Frame` built from the browser's view."""

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        pin: str | None = None,
        unknown_credential: UnknownCredentialAction = "hide",
        min_timeout_ms: int = 10_000,
    ) -> None:
        from transports.inprocess import InProcessDevice

        if unknown_credential not in ("hide", "delete", "ignore"):
            raise ValueError("unknown_credential must be 'hide', 'delete' or 'ignore'")
        self.authenticator = authenticator
        self.pin = pin
        self.unknown_credential = unknown_credential
        self.min_timeout_ms = min_timeout_ms
        cfg = authenticator.config
        self.device = InProcessDevice(authenticator, transport=cfg.transports[0], u2f=cfg.u2f)
        self.events: list[BridgeEvent] = []
        self.signals: list[Signal] = []
        self._pending: dict[str, ConditionalRequest] = {}
        self._clients: dict[str, WebAuthnClient] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self.deliver_name = "__fidoEmuDeliver_" + secrets.token_hex(8)
        # Playwright's sync API runs binding calls only while the test thread is inside a
        # Playwright call: waits then "pump" with a browser round trip instead of blocking.
        self.pump: Callable[[], None] | None = None
        self._on_close: list[Callable[[], None]] = []  # channels detach themselves

    # -- what the page sees ----------------------------------------------------------------

    @property
    def faults(self):
        """The core's faults: ``bridge.faults.arm("bad-signature")`` before a ceremony."""
        return self.authenticator.faults

    def page_config(self) -> dict[str, Any]:
        """What the shim answers without a round trip (statics), from the profile."""
        cfg = self.authenticator.config
        uv = bool(cfg.builtin_uv or self.authenticator.pin.is_set)
        uvpaa = bool(cfg.platform_attachment and cfg.builtin_uv)
        ext = set(cfg.extensions)
        caps: dict[str, bool] = {
            "conditionalCreate": True,
            "conditionalGet": True,
            "hybridTransport": "hybrid" in cfg.transports,
            "passkeyPlatformAuthenticator": bool(
                cfg.platform_attachment and cfg.resident_keys and uv
            ),
            "userVerifyingPlatformAuthenticator": uvpaa,
            "relatedOrigins": False,
            "signalAllAcceptedCredentials": True,
            "signalCurrentUserDetails": True,
            "signalUnknownCredential": True,
            "extension:credProps": True,
            "extension:appid": False,
            "extension:prf": "hmac-secret" in ext,
            "extension:largeBlob": "largeBlobKey" in ext,
            "extension:credentialProtectionPolicy": "credProtect" in ext,
            "extension:enforceCredentialProtectionPolicy": "credProtect" in ext,
            "extension:minPinLength": "minPinLength" in ext,
        }
        return {"uvpaa": uvpaa, "capabilities": caps, "minTimeoutMs": self.min_timeout_ms}

    def script(self, send_expression: str) -> str:
        """The init script: the shim called with a channel expression ``send(request)``."""
        shim = resources.files(__package__).joinpath("page_bridge.js").read_text("utf-8")
        return (
            f"{shim.strip().rstrip(';')}({send_expression}, "
            f"{json.dumps(self.deliver_name)}, {json.dumps(self.page_config())});"
        )

    # -- requests --------------------------------------------------------------------------

    def handle(self, request: Any, frame: Frame) -> dict[str, Any]:
        """One request from the shim -> ``{ok}`` / ``{error}`` / ``{pending}``. Never raises:
        bad input becomes the DOMException a browser would give."""
        try:
            if not isinstance(request, dict):
                raise BridgeError("TypeError", "bridge request is not an object")
            op = request.get("op")
            if op == "create":
                return {"ok": self._create(request, frame)}
            if op == "get":
                return self._get(request, frame)
            if op == "signal":
                self._signal(request, frame)
                return {"ok": None}
            if op == "cancel":
                self._cancel(str(request.get("id")), frame, str(request.get("reason")))
                return {"ok": None}
            raise BridgeError("NotSupportedError", f"unknown bridge operation {op!r}")
        except BridgeError as e:
            return e.reply()
        except Exception as e:  # never a traceback in the page: one line naming the cause
            return BridgeError("UnknownError", f"{type(e).__name__}: {e}").reply()

    def _client(self, frame: Frame) -> WebAuthnClient:
        with self._lock:
            if frame.origin not in self._clients:
                cfg = self.authenticator.config
                self._clients[frame.origin] = WebAuthnClient(
                    self.device,
                    frame.origin,
                    pin=self.pin,
                    transports=list(cfg.transports),
                    attachment="platform" if cfg.platform_attachment else "cross-platform",
                )
            return self._clients[frame.origin]

    @staticmethod
    def _top(frame: Frame) -> str | None:
        """The top origin the client data names: only for a cross-origin caller."""
        return None if frame.same_origin_with_ancestors else frame.top_origin

    def _record(self, kind: str, frame: Frame, mediation: str | None, fn: Callable[[], Any]):
        event = BridgeEvent(kind, frame.origin, frame.top_origin, mediation)
        try:
            out = fn()
        except BridgeError as e:
            event.ok, event.error = False, str(e)
            raise
        except WebAuthnError as e:
            err = _from_webauthn_error(e)
            event.ok, event.error = False, str(err)
            raise err from e
        finally:
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        event.result = out
        return out

    def _options(self, request: dict[str, Any]) -> dict[str, Any]:
        options = request.get("options")
        if not isinstance(options, dict):
            raise BridgeError("TypeError", "publicKey options are not an object")
        return options

    def _create(self, request: dict[str, Any], frame: Frame) -> dict[str, Any]:
        options = self._options(request)

        def run() -> dict[str, Any]:
            if not frame.same_origin_with_ancestors:
                if not frame.create_allowed:
                    raise BridgeError(
                        "NotAllowedError",
                        f"The '{CREATE_FEATURE}' feature is not enabled in this document "
                        "(permissions policy of the cross-origin iframe)",
                    )
                if request.get("activation") is False:
                    raise BridgeError(
                        "NotAllowedError",
                        "create() in a cross-origin iframe needs transient user activation",
                    )
            return self._client(frame).create(options, top_origin=self._top(frame))

        return self._record("create", frame, str(request.get("mediation")), run)

    def _get(self, request: dict[str, Any], frame: Frame) -> dict[str, Any]:
        options = self._options(request)
        mediation = str(request.get("mediation") or "optional")
        if not frame.same_origin_with_ancestors and not frame.get_allowed:
            return self._error_event(
                "get", frame, mediation,
                BridgeError(
                    "NotAllowedError",
                    f"The '{GET_FEATURE}' feature is not enabled in this document "
                    "(permissions policy of the cross-origin iframe)",
                ),
            )
        if mediation == "conditional":
            if frame.deliver is None:
                raise BridgeError("NotSupportedError", "this channel cannot deliver late replies")
            rp_id = self._rp_id(options.get("rpId"), frame.origin)
            req = ConditionalRequest(
                id=str(request.get("id")),
                frame=frame,
                options=options,
                accounts=self.accounts(rp_id, options.get("allowCredentials")),
            )
            with self._changed:
                self._pending[req.id + "@" + frame.origin] = req
                self._changed.notify_all()
            return {"pending": req.id}
        if mediation == "immediate":
            rp_id = self._rp_id(options.get("rpId"), frame.origin)
            if not self.accounts(rp_id, options.get("allowCredentials")):
                return self._error_event(
                    "get", frame, mediation,
                    BridgeError("NotAllowedError", "no credential available for immediate mediation"),
                )
        return {"ok": self._record(
            "get", frame, mediation,
            lambda: self._client(frame).get(options, top_origin=self._top(frame)),
        )}

    def _error_event(self, kind: str, frame: Frame, mediation: str, err: BridgeError):
        with self._changed:
            self.events.append(
                BridgeEvent(kind, frame.origin, frame.top_origin, mediation, ok=False, error=str(err))
            )
            self._changed.notify_all()
        return err.reply()

    def _cancel(self, call_id: str, frame: Frame, reason: str) -> None:
        with self._changed:
            dropped = self._pending.pop(call_id + "@" + frame.origin, None)
            self.events.append(
                BridgeEvent("cancel", frame.origin, frame.top_origin,
                            "conditional" if dropped else None, ok=False, error=reason)
            )
            self._changed.notify_all()

    # -- conditional mediation -------------------------------------------------------------

    def conditional_requests(self) -> list[ConditionalRequest]:
        """Pending conditional get() calls, oldest first."""
        with self._lock:
            return list(self._pending.values())

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        import time

        deadline = time.monotonic() + timeout
        with self._changed:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(what)
                if self.pump is None:
                    self._changed.wait(left)
                    continue
                self._changed.release()
                try:
                    self.pump()
                finally:
                    self._changed.acquire()

    def wait_conditional(self, timeout: float = 10.0) -> ConditionalRequest:
        """The first pending conditional request, waiting for the page to make one."""
        self._wait(lambda: bool(self._pending), timeout, "no conditional get() is pending")
        with self._lock:
            return next(iter(self._pending.values()))

    def resolve_conditional(
        self, request: ConditionalRequest | None = None, *, user_name: str | None = None,
        credential_id: bytes | None = None,
    ) -> dict[str, Any]:
        """Pick an account for a conditional request (the first pending one by default) and
        compute the page's reply; :meth:`choose` also delivers it."""
        with self._lock:
            if request is None:
                if not self._pending:
                    raise LookupError("no conditional get() is pending")
                request = next(iter(self._pending.values()))
            self._pending.pop(request.id + "@" + request.frame.origin, None)
        accounts = request.accounts
        if user_name is not None:
            accounts = [a for a in accounts if user_name in (a.user_name, a.display_name)]
        if credential_id is not None:
            accounts = [a for a in accounts if a.credential_id == credential_id]
        if not accounts:
            raise LookupError(f"no such account for this request (user_name={user_name!r})")
        chosen = accounts[0]
        options = dict(request.options)
        options["allowCredentials"] = [{"type": "public-key", "id": _b64url(chosen.credential_id)}]
        try:
            result = self._record(
                "get", request.frame, "conditional",
                lambda: self._client(request.frame).get(
                    options, top_origin=self._top(request.frame)
                ),
            )
            return {"ok": result}
        except BridgeError as e:
            return e.reply()

    def choose(self, request: ConditionalRequest | None = None, **kw: Any) -> dict[str, Any]:
        """Resolve a conditional request (sync channels) and deliver the reply to the page."""
        if request is None:
            request = self.wait_conditional()
        reply = self.resolve_conditional(request, **kw)
        assert request.frame.deliver is not None
        request.frame.deliver({"id": request.id, "reply": reply})
        return reply

    async def choose_async(self, request: ConditionalRequest | None = None, **kw: Any):
        """:meth:`choose` for Playwright's async API."""
        import asyncio

        if request is None:
            request = await asyncio.to_thread(self.wait_conditional)
        reply = await asyncio.to_thread(self.resolve_conditional, request, **kw)
        assert request.frame.deliver is not None
        await request.frame.deliver({"id": request.id, "reply": reply})
        return reply

    def accounts(self, rp_id: str, allow: Any = None) -> list[Account]:
        """Discoverable credentials for ``rp_id`` (narrowed to ``allow`` if non-empty)."""
        records = self.authenticator.store.credentials_for_rp(hashlib.sha256(rp_id.encode()).digest())
        wanted = None
        if isinstance(allow, list) and allow:
            wanted = {_unb64url(d.get("id"), "allowCredentials[].id") for d in allow if isinstance(d, dict)}
        return [
            Account(r.credential_id, r.user_id, r.user_name, r.user_display_name)
            for r in records
            if r.discoverable and (wanted is None or r.credential_id in wanted)
        ]

    @staticmethod
    def _rp_id(rp_id: Any, origin: str) -> str:
        from fido2.rpid import verify_rp_id

        if rp_id is None:
            rp_id = urlsplit(origin).hostname or ""
        if not isinstance(rp_id, str) or not verify_rp_id(rp_id, origin):
            raise BridgeError("SecurityError", f"rpId {rp_id!r} is not valid for origin {origin}")
        return rp_id

    # -- signals ---------------------------------------------------------------------------

    def _signal(self, request: dict[str, Any], frame: Frame) -> None:
        kind = request.get("kind")
        opts = request.get("options")
        if not isinstance(opts, dict):
            raise BridgeError("TypeError", "signal options are not an object")
        rp_id = self._rp_id(opts.get("rpId"), frame.origin)
        sig = Signal(str(kind), frame.origin, dict(opts))
        store = self.authenticator.store
        rp_hash = hashlib.sha256(rp_id.encode()).digest()
        if kind == "unknownCredential":
            cred_id = _unb64url(opts.get("credentialId"), "credentialId")
            rec = store.get_credential(cred_id)
            if rec is not None and rec.rp_id_hash == rp_hash:
                self._drop(rec, sig)
        elif kind == "allAcceptedCredentials":
            user_id = _unb64url(opts.get("userId"), "userId")
            ids = opts.get("allAcceptedCredentialIds")
            if not isinstance(ids, list):
                raise BridgeError("TypeError", "allAcceptedCredentialIds is not a sequence")
            accepted = {_unb64url(i, "allAcceptedCredentialIds[]") for i in ids}
            for rec in store.credentials_for_rp(rp_hash):
                if rec.user_id == user_id and rec.credential_id not in accepted:
                    self._drop(rec, sig)
            for cred_id, entry in self.hidden().items():
                if (cred_id in accepted and entry["rp_id_hash"] == rp_hash
                        and entry["user_id"] == user_id):
                    self._restore(cred_id)
                    sig.restored.append(cred_id)
        elif kind == "currentUserDetails":
            user_id = _unb64url(opts.get("userId"), "userId")
            name, display = opts.get("name"), opts.get("displayName")
            if not isinstance(name, str) or not isinstance(display, str):
                raise BridgeError("TypeError", "name and displayName must be strings")
            for rec in store.credentials_for_rp(rp_hash):
                if rec.user_id == user_id and store.update_user(rec.credential_id, user_id, name, display):
                    sig.updated.append(rec.credential_id)
        else:
            raise BridgeError("TypeError", f"unknown signal {kind!r}")
        with self._changed:
            self.signals.append(sig)
            self._changed.notify_all()

    def _drop(self, rec: CredentialRecord, sig: Signal) -> None:
        """Hide (restorable, counter kept) or delete a credential, as configured."""
        store = self.authenticator.store
        if self.unknown_credential == "ignore":
            return
        if self.unknown_credential == "delete":
            if store.delete_credential(rec.credential_id):
                sig.deleted.append(rec.credential_id)
            return
        lease = store.load_counter(rec.credential_id)

        def add(blob: bytes | None) -> bytes:
            hidden = cbor2.loads(blob) if blob else {}
            hidden[rec.credential_id] = {"record": asdict(rec), "lease": lease}
            return cbor2.dumps(hidden)

        store.update_state(HIDDEN_STATE, add)
        store.delete_credential(rec.credential_id)
        sig.hidden.append(rec.credential_id)

    def hidden(self) -> dict[bytes, dict[str, Any]]:
        """Credentials hidden by signals: id -> stored record fields."""
        blob = self.authenticator.store.get_state(HIDDEN_STATE)
        entries = cbor2.loads(blob) if blob else {}
        return {k: v["record"] for k, v in entries.items()}

    def _restore(self, cred_id: bytes) -> None:
        store = self.authenticator.store
        taken: dict[str, Any] = {}

        def take(blob: bytes | None) -> bytes | None:
            hidden = cbor2.loads(blob) if blob else {}
            if cred_id in hidden:
                taken.update(hidden.pop(cred_id))
            return cbor2.dumps(hidden) if hidden else None

        store.update_state(HIDDEN_STATE, take)
        if not taken:
            return
        store.put_credential(CredentialRecord(**taken["record"]))
        if taken["lease"] is not None and (store.load_counter(cred_id) or 0) < taken["lease"]:
            store.store_counter(cred_id, taken["lease"])

    # -- waiting and closing ---------------------------------------------------------------

    def wait_for_event(self, predicate: Callable[[BridgeEvent], bool], timeout: float = 10.0):
        """The first event matching ``predicate``, waiting for it (channels on other threads)."""
        found: list[BridgeEvent] = []

        def check() -> bool:
            found[:] = [e for e in self.events if predicate(e)]
            return bool(found)

        self._wait(check, timeout, "no matching bridge event")
        return found[0]

    def close(self) -> None:
        """Detach from the browser (BiDi: the preload script and the channel) and stop the
        in-process device. Pages loaded afterwards see the browser's own WebAuthn."""
        hooks, self._on_close = self._on_close, []
        for hook in reversed(hooks):
            try:
                hook()
            except Exception:  # the browser may already be gone
                pass
        self.device.close()


# -- Playwright (expose_binding + add_init_script) --------------------------------------------

BINDING = "__fidoEmuBridgeCall"
# the binding is taken out of the page's reach before any page script runs
_B = json.dumps(BINDING)
PLAYWRIGHT_SEND = (
    f"(() => {{ const b = globalThis[{_B}]; try {{ delete globalThis[{_B}]; }} catch (e) {{}}"
    " return (request) => b(request); })()"
)
DELIVER_JS = "([name, id, reply]) => globalThis[name](id, reply)"


def _link(url: str, parent: FrameLink | None, allow: str | None, src: str | None) -> FrameLink:
    origin = origin_of(url)
    if origin == "null" and parent is not None and url.split("#")[0] in ("about:blank", "about:srcdoc", ""):
        origin = parent.origin  # about:blank/srcdoc frames inherit their creator's origin
    return FrameLink(origin, allow if parent is not None else None, src)


def _playwright_frame(pw_frame: Any, bridge: PageBridge) -> Frame:
    frames = []
    f = pw_frame
    while f is not None:
        frames.append(f)
        f = f.parent_frame
    chain: list[FrameLink] = []
    for f in reversed(frames):
        allow = src = None
        if chain:
            element = f.frame_element()
            allow, src = element.get_attribute("allow"), element.get_attribute("src")
            element.dispose()
        chain.append(_link(f.url, chain[-1] if chain else None, allow, src))

    def deliver(message: dict[str, Any]) -> Any:
        return pw_frame.evaluate(DELIVER_JS, [bridge.deliver_name, message["id"], message["reply"]])

    return Frame.from_chain(chain, deliver=deliver, url=pw_frame.url)


async def _playwright_frame_async(pw_frame: Any, bridge: PageBridge) -> Frame:
    frames = []
    f = pw_frame
    while f is not None:
        frames.append(f)
        f = f.parent_frame
    chain: list[FrameLink] = []
    for f in reversed(frames):
        allow = src = None
        if chain:
            element = await f.frame_element()
            allow, src = await element.get_attribute("allow"), await element.get_attribute("src")
            await element.dispose()
        chain.append(_link(f.url, chain[-1] if chain else None, allow, src))

    async def deliver(message: dict[str, Any]) -> Any:
        return await pw_frame.evaluate(
            DELIVER_JS, [bridge.deliver_name, message["id"], message["reply"]]
        )

    return Frame.from_chain(chain, deliver=deliver, url=pw_frame.url)


def attach_playwright(
    target: Any, authenticator: Authenticator | None = None, *, bridge: PageBridge | None = None,
    **kw: Any,
) -> PageBridge:
    """Bridge a Playwright (sync API) page or browser context: every frame of every later
    navigation gets the shim. Call before ``page.goto``."""
    bridge = bridge or PageBridge(_need(authenticator), **kw)

    def on_call(source: dict[str, Any], request: Any) -> dict[str, Any]:
        try:
            frame = _playwright_frame(source["frame"], bridge)
        except Exception as e:  # the frame went away mid-call
            return BridgeError("NotAllowedError", f"frame unavailable: {e}").reply()
        return bridge.handle(request, frame)

    target.expose_binding(BINDING, on_call)
    target.add_init_script(script=bridge.script(PLAYWRIGHT_SEND))

    def pump() -> None:
        pages = [p for p in getattr(target, "pages", [target]) if not p.is_closed()]
        if pages:
            try:
                pages[-1].evaluate("0")  # a round trip: Playwright dispatches queued calls
            except Exception:  # mid-navigation: the round trip still dispatched
                pass

    bridge.pump = pump
    return bridge


async def attach_playwright_async(
    target: Any, authenticator: Authenticator | None = None, *, bridge: PageBridge | None = None,
    **kw: Any,
) -> PageBridge:
    """:func:`attach_playwright` for Playwright's async API (resolve conditional requests
    with ``await bridge.choose_async(...)``)."""
    import asyncio

    bridge = bridge or PageBridge(_need(authenticator), **kw)

    async def on_call(source: dict[str, Any], request: Any) -> dict[str, Any]:
        try:
            frame = await _playwright_frame_async(source["frame"], bridge)
        except Exception as e:
            return BridgeError("NotAllowedError", f"frame unavailable: {e}").reply()
        return await asyncio.to_thread(bridge.handle, request, frame)

    await target.expose_binding(BINDING, on_call)
    await target.add_init_script(script=bridge.script(PLAYWRIGHT_SEND))
    return bridge


def attach(target: Any, authenticator: Authenticator | None = None, **kw: Any) -> Any:
    """Whichever driver ``target`` belongs to: a Playwright sync page/context (returns the
    bridge), a Playwright async one (returns an awaitable of it), a Selenium driver."""
    import inspect

    if hasattr(target, "execute_script") and hasattr(target, "session_id"):
        return attach_selenium(target, authenticator, **kw)
    if inspect.iscoroutinefunction(getattr(target, "expose_binding", None)):
        return attach_playwright_async(target, authenticator, **kw)
    if hasattr(target, "expose_binding"):
        return attach_playwright(target, authenticator, **kw)
    raise TypeError(f"cannot bridge a {type(target).__name__}: give a Playwright page or "
                    "context, or a Selenium driver started with enable_bidi")


def _need(authenticator: Authenticator | None) -> Authenticator:
    if authenticator is None:
        raise TypeError("give an authenticator or a bridge")
    return authenticator


# -- WebDriver BiDi (Selenium with enable_bidi, or FirefoxBidi) --------------------------------


class BidiLink:
    """A BiDi connection: ``send(method, params)`` and event callbacks. Wraps Selenium's
    ``WebSocketConnection`` (the one a BiDi-enabled driver opens, or one to Firefox)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._lock = threading.Lock()

    def send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        reply = self.connection.send_cmd(method, params)
        if "error" in reply:
            raise RuntimeError(f"BiDi {method}: {reply['error']}: {reply.get('message', '')}")
        return reply.get("result", {})

    def on(self, event: str, callback: Callable[[dict[str, Any]], None]) -> None:
        # Selenium's connection runs each raw event callback on its own thread
        self.connection.callbacks.setdefault(event, []).append(callback)


def remote_value(value: Any) -> Any:
    """A BiDi RemoteValue as plain Python (windows as ``{"context": id}``)."""
    if not isinstance(value, dict):
        return value
    kind, inner = value.get("type"), value.get("value")
    if kind in ("undefined", "null"):
        return None
    if kind == "number" and isinstance(inner, str):
        return float(inner.replace("Infinity", "inf")) if inner != "-0" else -0.0
    if kind in ("string", "number", "boolean"):
        return inner
    if kind == "bigint":
        return int(inner)
    if kind in ("array", "set"):
        return [remote_value(v) for v in inner or []]
    if kind in ("object", "map"):
        return {
            (k if isinstance(k, str) else str(remote_value(k))): remote_value(v)
            for k, v in inner or []
        }
    if kind == "window":
        return {"context": (inner or {}).get("context")}
    return {"type": kind}


FRAMES_JS = (
    "() => Array.from(document.querySelectorAll('iframe,frame'),"
    " f => [f.contentWindow, f.getAttribute('allow'), f.getAttribute('src')])"
)


class BidiChannel:
    """The shim as a BiDi preload script whose messages come back on a channel."""

    def __init__(self, link: BidiLink, bridge: PageBridge) -> None:
        self.link = link
        self.bridge = bridge
        self.channel = "fido-emu-" + secrets.token_hex(6)
        self.script_id: str | None = None

    def install(self, contexts: list[str] | None = None) -> None:
        self.link.on("script.message", self._on_message)
        self.link.send("session.subscribe", {"events": ["script.message"]})
        body = self.bridge.script("send")
        declaration = (
            "(channel) => { const send = (request) => { channel(JSON.stringify(request));"
            " return Promise.resolve({pending: request.id}); }; " + body + " }"
        )
        params: dict[str, Any] = {
            "functionDeclaration": declaration,
            "arguments": [{"type": "channel", "value": {"channel": self.channel}}],
        }
        if contexts:
            params["contexts"] = contexts
        self.script_id = self.link.send("script.addPreloadScript", params).get("script")
        self.bridge._on_close.append(self.detach)

    def detach(self) -> None:
        callbacks = self.link.connection.callbacks.get("script.message", [])
        if self._on_message in callbacks:
            callbacks.remove(self._on_message)
        if self.script_id is not None:
            self.link.send("script.removePreloadScript", {"script": self.script_id})
            self.script_id = None

    def _on_message(self, params: dict[str, Any]) -> None:
        if params.get("channel") != self.channel:
            return
        source = params.get("source") or {}
        realm = source.get("realm")
        try:
            request = json.loads(remote_value(params.get("data")))
            frame = self._frame(realm, source.get("context"))
        except Exception as e:  # a malformed message or a frame that went away
            request = request if isinstance(locals().get("request"), dict) else {}
            reply = BridgeError("UnknownError", f"bridge: {e}").reply()
        else:
            reply = self.bridge.handle(request, frame)
        if "pending" in reply or request.get("op") == "cancel" or "id" not in request:
            return
        self._deliver(realm, {"id": str(request["id"]), "reply": reply})

    def _deliver(self, realm: str, message: dict[str, Any]) -> None:
        self.link.send(
            "script.callFunction",
            {
                "functionDeclaration": "(name, id, reply) => globalThis[name](id, JSON.parse(reply))",
                "awaitPromise": False,
                "target": {"realm": realm},
                "arguments": [
                    {"type": "string", "value": self.bridge.deliver_name},
                    {"type": "string", "value": message["id"]},
                    {"type": "string", "value": json.dumps(message["reply"])},
                ],
            },
        )

    def _origin(self, context: str, realm: str | None = None) -> str:
        realms = self.link.send("script.getRealms", {"context": context, "type": "window"})
        for r in realms.get("realms", []):
            if (realm is None and not r.get("sandbox")) or r.get("realm") == realm:
                return r.get("origin", "null")
        return "null"

    def _frame(self, realm: str, context: str) -> Frame:
        tree = self.link.send("browsingContext.getTree", {}).get("contexts", [])
        path: list[dict[str, Any]] = []

        def find(nodes: list[dict[str, Any]], trail: list[dict[str, Any]]) -> bool:
            for n in nodes:
                if n["context"] == context:
                    path[:] = [*trail, n]
                    return True
                if find(n.get("children") or [], [*trail, n]):
                    return True
            return False

        if not find(tree, []):
            raise BridgeError("NotAllowedError", "the calling frame is gone")
        chain: list[FrameLink] = []
        for i, node in enumerate(path):
            allow = src = None
            if i:
                allow, src = self._container(path[i - 1]["context"], node["context"])
            origin = self._origin(node["context"], realm if i == len(path) - 1 else None)
            link = _link(node.get("url", ""), chain[-1] if chain else None, allow, src)
            if origin != "null":
                link.origin = origin
            chain.append(link)

        def deliver(message: dict[str, Any]) -> None:
            self._deliver(realm, message)

        return Frame.from_chain(chain, deliver=deliver, url=path[-1].get("url", ""))

    def _container(self, parent: str, child: str) -> tuple[str | None, str | None]:
        """The ``allow`` and ``src`` attributes of the parent's <iframe> holding ``child``."""
        out = self.link.send(
            "script.callFunction",
            {
                "functionDeclaration": FRAMES_JS,
                "awaitPromise": False,
                "target": {"context": parent, "sandbox": "fido-emu"},
            },
        )
        for win, allow, src in remote_value(out.get("result")) or []:
            if isinstance(win, dict) and win.get("context") == child:
                return allow, src
        return None, None


def attach_bidi(
    link: BidiLink, authenticator: Authenticator | None = None, *, bridge: PageBridge | None = None,
    contexts: list[str] | None = None, **kw: Any,
) -> PageBridge:
    """Bridge every frame of later navigations over a BiDi connection."""
    bridge = bridge or PageBridge(_need(authenticator), **kw)
    BidiChannel(link, bridge).install(contexts)
    return bridge


def attach_selenium(
    driver: Any, authenticator: Authenticator | None = None, **kw: Any
) -> PageBridge:
    """Bridge a Selenium driver started with ``options.enable_bidi = True`` (chromedriver
    speaks BiDi). Call before ``driver.get``."""
    _ = driver.script  # opens the driver's BiDi connection
    return attach_bidi(BidiLink(driver._websocket_connection), authenticator, **kw)


class FirefoxBidi:
    """Debian's ``firefox-esr`` driven over WebDriver BiDi directly: Firefox's Remote Agent
    is the BiDi server, so neither geckodriver nor a browser download is needed."""

    def __init__(
        self, executable: str = "firefox-esr", *, headless: bool = True, timeout: float = 60.0
    ) -> None:
        import subprocess
        import tempfile

        from selenium.webdriver.remote.websocket_connection import WebSocketConnection

        self._profile = tempfile.TemporaryDirectory(prefix="fido-emu-firefox-")
        with open(f"{self._profile.name}/user.js", "w", encoding="utf-8") as f:
            for name, value in FIREFOX_PREFS.items():
                f.write(f"user_pref({json.dumps(name)}, {json.dumps(value)});\n")
        args = [executable, "--no-remote", "--profile", self._profile.name,
                "--remote-debugging-port=0"]
        if headless:
            args.append("--headless")
        self.process = subprocess.Popen(
            [*args, "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        url = self._listening_url(timeout)
        self.connection = WebSocketConnection(url + "/session", timeout, 0.005)
        self.link = BidiLink(self.connection)
        self.link.send("session.new", {"capabilities": {"alwaysMatch": {"acceptInsecureCerts": True}}})
        self.context = self.link.send("browsingContext.getTree", {"maxDepth": 0})["contexts"][0]["context"]

    def _listening_url(self, timeout: float) -> str:
        found: list[str] = []
        ready = threading.Event()
        lines: list[str] = []

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                m = re.search(r"WebDriver BiDi listening on (ws://\S+)", line)
                if m and not found:
                    found.append(m.group(1))
                    ready.set()
                elif not found:
                    lines.append(line.strip())
            ready.set()

        threading.Thread(target=read, daemon=True, name="firefox-stderr").start()
        ready.wait(timeout)
        if not found:
            self.process.kill()
            self._profile.cleanup()
            raise RuntimeError("Firefox did not start its BiDi server: " + " | ".join(lines[-5:]))
        return found[0]

    def attach(self, authenticator: Authenticator | None = None, **kw: Any) -> PageBridge:
        return attach_bidi(self.link, authenticator, **kw)

    def navigate(self, url: str, context: str | None = None) -> None:
        self.link.send(
            "browsingContext.navigate",
            {"context": context or self.context, "url": url, "wait": "complete"},
        )

    def frames(self, context: str | None = None) -> list[str]:
        """The child browsing contexts (iframes) of a page, in document order."""
        tree = self.link.send("browsingContext.getTree", {"root": context or self.context})
        return [c["context"] for c in tree["contexts"][0].get("children") or []]

    def evaluate(self, expression: str, *, context: str | None = None,
                 user_activation: bool = True) -> Any:
        """Evaluate (awaiting promises) in the page; a thrown error becomes RuntimeError."""
        out = self.link.send(
            "script.evaluate",
            {
                "expression": expression,
                "awaitPromise": True,
                "target": {"context": context or self.context},
                "userActivation": user_activation,
            },
        )
        if out.get("type") == "exception":
            details = out.get("exceptionDetails", {})
            raise RuntimeError(details.get("text") or "script threw")
        return remote_value(out.get("result"))

    def close(self) -> None:
        try:
            self.link.send("browser.close", {})
        except Exception:
            pass
        self.connection.close()
        try:
            self.process.wait(timeout=20)
        except Exception:
            self.process.kill()
            self.process.wait()
        self._profile.cleanup()

    def __enter__(self) -> FirefoxBidi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


FIREFOX_PREFS: dict[str, Any] = {
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.auto": False,
    "network.proxy.type": 0,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
}

"""A demo WebAuthn relying party: the other side the emulator and browser tests need.

Stdlib ``http.server`` in a thread (no extra dependency) with python-fido2's
``Fido2Server`` doing the verification, so a passing ceremony here means the response
would pass a real server too. The browser side uses ``parse*OptionsFromJSON`` and
``toJSON()``: the server speaks WebAuthn L3 JSON only.

Pages: ``/register`` (residentKey required, UV preferred; query parameters
``residentKey``, ``userVerification`` and ``attachment`` override), ``/signin`` (modal account
picker: empty allowCredentials), ``/reauth`` (allowCredentials of one user) and
``/conditional`` (``mediation: "conditional"`` behind an ``autocomplete="username
webauthn"`` input). JSON endpoints: ``/register/begin|complete``,
``/authenticate/begin|complete``, ``/api/credentials`` (the RP's database, for tests).
Sign counters are stored and a counter that does not grow is rejected, as an RP that
detects cloned authenticators does.

Run ``python tools/rp-demo/server.py --port 8080`` and open http://localhost:8080/ (a
secure context without TLS). From tests: ``url, stop = start(port=0)``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fido2.server import Fido2Server
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import (
    AttestedCredentialData,
    AuthenticationResponse,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
)


class RpError(Exception):
    """A ceremony the RP refuses; becomes a 400 with ``{"error": ...}``."""


@dataclass
class StoredCredential:
    """What an RP keeps per passkey. Bytes fields are base64url so the DB is plain JSON."""

    credential_id: str
    username: str
    user_id: str
    credential_data: str  # AttestedCredentialData (aaguid, id, COSE public key)
    sign_count: int
    backup_eligible: bool
    backup_state: bool
    user_verified: bool
    transports: list[str] = field(default_factory=list)
    sign_ins: int = 0

    def attested(self) -> AttestedCredentialData:
        return AttestedCredentialData(websafe_decode(self.credential_data))


class DemoRP:
    """RP state and ceremonies, independent of HTTP so tests can also call it directly."""

    def __init__(self, rp_id: str = "localhost", name: str = "fido-emu demo RP",
                 db_path: Path | None = None) -> None:
        self.server = Fido2Server(PublicKeyCredentialRpEntity(name=name, id=rp_id))
        self.db_path = db_path
        self.users: dict[str, dict[str, str]] = {}
        self.credentials: dict[str, StoredCredential] = {}
        self._flows: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        if db_path is not None and db_path.exists():
            data = json.loads(db_path.read_text())
            self.users = data["users"]
            self.credentials = {k: StoredCredential(**v) for k, v in data["credentials"].items()}

    # -- persistence -----------------------------------------------------------------
    def _save(self) -> None:
        if self.db_path is None:
            return
        data = {"users": self.users,
                "credentials": {k: asdict(v) for k, v in self.credentials.items()}}
        tmp = self.db_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.db_path)

    def _flow(self, flow: Any) -> dict[str, Any]:
        state = self._flows.pop(str(flow), None)
        if state is None:
            raise RpError("unknown or used ceremony (call begin first)")
        return state

    def _descriptors(self, username: str) -> list[PublicKeyCredentialDescriptor]:
        return [
            PublicKeyCredentialDescriptor(
                type=PublicKeyCredentialType.PUBLIC_KEY,
                id=websafe_decode(c.credential_id),
                transports=c.transports or None,
            )
            for c in self.credentials.values()
            if c.username == username
        ]

    # -- registration ----------------------------------------------------------------
    def register_begin(self, body: dict[str, Any]) -> dict[str, Any]:
        username = str(body.get("username") or "").strip()
        if not username:
            raise RpError("username required")
        with self._lock:
            user = self.users.setdefault(
                username,
                {"id": websafe_encode(secrets.token_bytes(16)),
                 "displayName": str(body.get("displayName") or username)},
            )
            options, state = self.server.register_begin(
                PublicKeyCredentialUserEntity(
                    id=websafe_decode(user["id"]), name=username, display_name=user["displayName"]
                ),
                credentials=self._descriptors(username),
                resident_key_requirement=body.get("residentKey", "required"),
                user_verification=body.get("userVerification", "preferred"),
                authenticator_attachment=body.get("attachment"),
            )
            flow = secrets.token_urlsafe(12)
            self._flows[flow] = {"state": state, "username": username}
        return {"flow": flow, **dict(options)}

    def register_complete(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            flow = self._flow(body.get("flow"))
            try:
                response = RegistrationResponse.from_dict(body["credential"])
                auth_data = self.server.register_complete(flow["state"], response)
            except (KeyError, TypeError, ValueError) as e:
                raise RpError(f"registration rejected: {e}") from e
            cred_data = auth_data.credential_data
            assert cred_data is not None
            cred_id = websafe_encode(cred_data.credential_id)
            if cred_id in self.credentials:
                raise RpError("credential already registered")
            username = flow["username"]
            stored = StoredCredential(
                credential_id=cred_id,
                username=username,
                user_id=self.users[username]["id"],
                credential_data=websafe_encode(bytes(cred_data)),
                sign_count=auth_data.counter,
                backup_eligible=auth_data.is_backup_eligible(),
                backup_state=auth_data.is_backed_up(),
                user_verified=auth_data.is_user_verified(),
                transports=list(body["credential"].get("response", {}).get("transports") or []),
            )
            self.credentials[cred_id] = stored
            self._save()
        return {"ok": True, "username": username, "credentialId": cred_id,
                "signCount": stored.sign_count, "uv": stored.user_verified,
                "be": stored.backup_eligible, "bs": stored.backup_state}

    # -- authentication --------------------------------------------------------------
    def authenticate_begin(self, body: dict[str, Any]) -> dict[str, Any]:
        username = str(body.get("username") or "").strip()
        with self._lock:
            creds = None
            if username:  # re-authentication of a known user: allowCredentials
                creds = self._descriptors(username)
                if not creds:
                    raise RpError(f"no passkeys registered for {username!r}")
            options, state = self.server.authenticate_begin(
                creds, user_verification=body.get("userVerification", "preferred")
            )
            flow = secrets.token_urlsafe(12)
            self._flows[flow] = {"state": state, "username": username or None}
        return {"flow": flow, **dict(options)}

    def authenticate_complete(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            flow = self._flow(body.get("flow"))
            try:
                response = AuthenticationResponse.from_dict(body["credential"])
            except (KeyError, TypeError, ValueError) as e:
                raise RpError(f"malformed assertion: {e}") from e
            cred_id = websafe_encode(response.raw_id)
            stored = self.credentials.get(cred_id)
            if stored is None:
                raise RpError("unknown credential")
            if flow["username"] and stored.username != flow["username"]:
                raise RpError("credential belongs to another user")
            handle = response.response.user_handle
            if handle is not None and websafe_encode(handle) != stored.user_id:
                raise RpError("userHandle does not match the credential's user")
            try:
                self.server.authenticate_complete(flow["state"], [stored.attested()], response)
            except ValueError as e:
                raise RpError(f"assertion rejected: {e}") from e
            auth_data = response.response.authenticator_data
            if auth_data.is_backed_up() and not auth_data.is_backup_eligible():
                raise RpError("assertion rejected: BS set without BE (invalid authenticator data)")
            if auth_data.is_backup_eligible() != stored.backup_eligible:
                raise RpError("assertion rejected: backup eligibility changed since registration")
            count = auth_data.counter
            if (count or stored.sign_count) and count <= stored.sign_count:
                raise RpError(
                    f"signature counter regressed: stored {stored.sign_count}, got {count} "
                    "(possible cloned authenticator)"
                )
            stored.sign_count = count
            stored.backup_state = auth_data.is_backed_up()
            stored.sign_ins += 1
            self._save()
        return {"ok": True, "username": stored.username, "credentialId": cred_id,
                "signCount": count, "uv": auth_data.is_user_verified(),
                "bs": stored.backup_state}

    def dump(self) -> dict[str, Any]:
        with self._lock:
            return {"users": dict(self.users),
                    "credentials": [asdict(c) for c in self.credentials.values()]}


# -- HTTP ------------------------------------------------------------------------------

_SCRIPT = r"""
const $ = (s) => document.querySelector(s);
function show(state, data) {
  const out = $('#result');
  out.textContent = JSON.stringify(data, null, 2);
  out.dataset.state = state;
}
async function post(path, body) {
  const r = await fetch(path, {method: 'POST', headers: {'content-type': 'application/json'},
                               body: JSON.stringify(body)});
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}
async function run(fn) {
  delete $('#result').dataset.state;
  try { show('ok', await fn()); }
  catch (e) { show('error', {error: `${e.name}: ${e.message}`}); }
}
async function register(username) {
  // ?residentKey=discouraged&userVerification=required&attachment=platform override the RP's choice
  const q = new URLSearchParams(location.search), body = {username};
  for (const k of ['residentKey', 'userVerification', 'attachment']) if (q.get(k)) body[k] = q.get(k);
  const begin = await post('/register/begin', body);
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(begin.publicKey);
  const cred = await navigator.credentials.create({publicKey});
  return post('/register/complete', {flow: begin.flow, credential: cred.toJSON()});
}
async function signIn(username, mediation) {
  const begin = await post('/authenticate/begin', {username});
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(begin.publicKey);
  const request = {publicKey};
  if (mediation) request.mediation = mediation;
  const cred = await navigator.credentials.get(request);
  return post('/authenticate/complete', {flow: begin.flow, credential: cred.toJSON()});
}
window.demo = {register, signIn, run};
"""

_PAGES: dict[str, tuple[str, str]] = {
    "/register": (
        "Register a passkey",
        """<form onsubmit="event.preventDefault(); run(() => register($('#username').value))">
  <input id="username" name="username" autocomplete="username" placeholder="username" required>
  <button id="go" type="submit">Create passkey</button></form>""",
    ),
    "/signin": (
        "Sign in with a passkey (account picker)",
        """<button id="go" onclick="run(() => signIn(''))">Sign in with a passkey</button>""",
    ),
    "/reauth": (
        "Re-authenticate (allowCredentials)",
        """<form onsubmit="event.preventDefault(); run(() => signIn($('#username').value))">
  <input id="username" name="username" placeholder="username" required>
  <button id="go" type="submit">Confirm it's you</button></form>""",
    ),
    "/conditional": (
        "Sign in (conditional mediation / autofill)",
        """<form onsubmit="event.preventDefault()">
  <input id="username" name="username" autocomplete="username webauthn" placeholder="username">
  </form>
<script>
(async () => {
  const ok = window.PublicKeyCredential && PublicKeyCredential.isConditionalMediationAvailable
    && await PublicKeyCredential.isConditionalMediationAvailable();
  document.body.dataset.conditional = ok ? 'available' : 'unavailable';
  if (ok) run(() => signIn('', 'conditional'));
  else show('error', {error: 'conditional mediation unavailable'});
})();
</script>""",
    ),
}


def _page(title: str, body: str) -> bytes:
    links = " · ".join(f'<a href="{p}">{p[1:]}</a>' for p in _PAGES)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{title}</title><script>{_SCRIPT}</script></head>
<body><nav>{links}</nav><h1>{title}</h1>{body}
<pre id="result" aria-live="polite"></pre></body></html>""".encode()


class _Handler(BaseHTTPRequestHandler):
    rp: DemoRP  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
        pass

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.send_header("cache-control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            path = "/register"
        if path in _PAGES:
            self._send(200, _page(*_PAGES[path]), "text/html; charset=utf-8")
        elif path == "/api/credentials":
            self._json(200, self.rp.dump())
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        routes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "/register/begin": self.rp.register_begin,
            "/register/complete": self.rp.register_complete,
            "/authenticate/begin": self.rp.authenticate_begin,
            "/authenticate/complete": self.rp.authenticate_complete,
        }
        route = routes.get(self.path)
        if route is None:
            self._json(404, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise RpError("body must be a JSON object")
            self._json(200, route(body))
        except (RpError, json.JSONDecodeError) as e:
            self._json(400, {"error": str(e)})


class Stop:
    """Callable that shuts the server down; ``.rp`` is the running :class:`DemoRP`."""

    def __init__(self, httpd: ThreadingHTTPServer, thread: threading.Thread, rp: DemoRP) -> None:
        self.httpd, self.thread, self.rp = httpd, thread, rp

    def __call__(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def start(port: int = 0, *, rp_id: str = "localhost", db_path: Path | None = None,
          host: str = "127.0.0.1") -> tuple[str, Stop]:
    """Serve in a daemon thread; returns ``(url, stop)``. The URL uses ``localhost`` so
    the browser treats it as a secure context and the origin matches the rpId."""
    rp = DemoRP(rp_id=rp_id, db_path=db_path)
    handler = type("Handler", (_Handler,), {"rp": rp})
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True, name="rp-demo")
    thread.start()
    return f"http://{rp_id}:{httpd.server_address[1]}", Stop(httpd, thread, rp)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--db", type=Path, default=None, help="keep users and passkeys in this JSON file")
    args = p.parse_args(argv)
    url, stop = start(args.port, db_path=args.db)
    print(f"demo RP on {url}/ (Ctrl-C to stop)", flush=True)
    try:
        stop.thread.join()
    except KeyboardInterrupt:
        stop()


if __name__ == "__main__":
    main()


__all__ = ["DemoRP", "RpError", "StoredCredential", "Stop", "start"]

"""A relying party made of other people's code: ``@simplewebauthn/browser`` (npm, unmodified,
its UMD bundle served as is) in the page and py_webauthn verifying on the server. Tests
read the verifier's verdicts (AAGUID, fmt, x5c chain to the given roots, counters, BE/BS).

The page exposes ``rp.register(username, opts)``, ``rp.login(username)`` and
``rp.autofill()`` / ``rp.autofillResult()``; each resolves to the server's JSON or to
``{error, code, cause}`` (SimpleWebAuthn's error and the browser's DOMException name).
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AttestationFormat,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>SimpleWebAuthn RP</title>
<script src="/swa.js"></script></head>
<body>
<form onsubmit="event.preventDefault()">
  <input id="username" name="username" autocomplete="username webauthn">
  <button id="signup" type="button">Sign up</button>
</form>
<script>
const SWA = SimpleWebAuthnBrowser;
async function post(path, body) {
  const r = await fetch(path, {method: 'POST', headers: {'content-type': 'application/json'},
                               body: JSON.stringify(body)});
  return r.json();
}
function failure(e) {
  return {error: `${e.name}: ${e.message}`, code: e.code || null,
          cause: e.cause ? e.cause.name : null};
}
window.rp = {
  async register(username, opts = {}) {
    try {
      const optionsJSON = await post('/reg/options', {username, ...opts});
      const response = await SWA.startRegistration({optionsJSON});
      return await post('/reg/verify', {username, response});
    } catch (e) { return failure(e); }
  },
  async login(username = '', opts = {}) {
    try {
      const optionsJSON = await post('/auth/options', {username, ...opts});
      const response = await SWA.startAuthentication({optionsJSON});
      return await post('/auth/verify', {response});
    } catch (e) { return failure(e); }
  },
  autofill() {
    rp.pending = (async () => {
      try {
        const optionsJSON = await post('/auth/options', {});
        const response = await SWA.startAuthentication({optionsJSON, useBrowserAutofill: true});
        return await post('/auth/verify', {response});
      } catch (e) { return failure(e); }
    })();
    return SWA.browserSupportsWebAuthnAutofill();
  },
  autofillResult() { return rp.pending; },
};
document.getElementById('signup').onclick = async () => {
  document.body.dataset.result = JSON.stringify(await rp.register(
    document.getElementById('username').value));
};
</script></body></html>
"""


@dataclass
class StoredCredential:
    public_key: bytes
    sign_count: int
    username: str
    user_id: bytes


@dataclass
class RelyingParty:
    """py_webauthn's checks, with the state a real RP keeps (users, credentials, counters)."""

    rp_id: str
    origins: list[str]
    roots_pem: list[bytes] = field(default_factory=list)
    users: dict[str, bytes] = field(default_factory=dict)
    credentials: dict[bytes, StoredCredential] = field(default_factory=dict)
    challenges: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def registration_options(self, body: dict[str, Any]) -> dict[str, Any]:
        username = body["username"]
        user_id = self.users.setdefault(username, secrets.token_bytes(16))
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name="SimpleWebAuthn test RP",
            user_name=username,
            user_id=user_id,
            attestation=AttestationConveyancePreference.DIRECT,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement(body.get("residentKey", "required")),
                user_verification=UserVerificationRequirement(
                    body.get("userVerification", "preferred")
                ),
            ),
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=cid)
                for cid, c in self.credentials.items() if c.username == username
            ],
        )
        self.challenges["reg:" + username] = options.challenge
        return json.loads(options_to_json(options))

    def registration_verify(self, body: dict[str, Any]) -> dict[str, Any]:
        username = body["username"]
        verified = verify_registration_response(
            credential=body["response"],
            expected_challenge=self.challenges.pop("reg:" + username),
            expected_rp_id=self.rp_id,
            expected_origin=self.origins,
            require_user_verification=bool(body.get("requireUv")),
            pem_root_certs_bytes_by_fmt={AttestationFormat.PACKED: self.roots_pem}
            if self.roots_pem else None,
        )
        self.credentials[verified.credential_id] = StoredCredential(
            verified.credential_public_key, verified.sign_count, username, self.users[username]
        )
        return {
            "verified": True,
            "credentialId": bytes_to_base64url(verified.credential_id),
            "aaguid": verified.aaguid,
            "fmt": getattr(verified.fmt, "value", verified.fmt),
            "signCount": verified.sign_count,
            "backedUp": verified.credential_backed_up,
            "deviceType": getattr(verified.credential_device_type, "value", verified.credential_device_type),
            "userVerified": verified.user_verified,
        }

    def authentication_options(self, body: dict[str, Any]) -> dict[str, Any]:
        username = body.get("username") or ""
        allow = [
            PublicKeyCredentialDescriptor(id=cid)
            for cid, c in self.credentials.items() if username and c.username == username
        ]
        options = generate_authentication_options(
            rp_id=self.rp_id,
            allow_credentials=allow,
            user_verification=UserVerificationRequirement(body.get("userVerification", "preferred")),
        )
        self.challenges["auth"] = options.challenge
        self.require_uv = body.get("userVerification") == "required"
        return json.loads(options_to_json(options))

    def authentication_verify(self, body: dict[str, Any]) -> dict[str, Any]:
        response = body["response"]
        cred_id = base64url_to_bytes(response["rawId"])
        stored = self.credentials.get(cred_id)
        if stored is None:
            return {"verified": False, "error": "unknown credential"}
        verified = verify_authentication_response(
            credential=response,
            expected_challenge=self.challenges.pop("auth"),
            expected_rp_id=self.rp_id,
            expected_origin=self.origins,
            credential_public_key=stored.public_key,
            credential_current_sign_count=stored.sign_count,
            require_user_verification=getattr(self, "require_uv", False),
        )
        stored.sign_count = verified.new_sign_count
        user_handle = response["response"].get("userHandle")
        return {
            "verified": True,
            "username": stored.username,
            "userHandleMatches": user_handle is None
            or base64url_to_bytes(user_handle) == stored.user_id,
            "signCount": verified.new_sign_count,
            "backedUp": verified.credential_backed_up,
            "userVerified": verified.user_verified,
        }


def _handler(rp: RelyingParty, bundle: Path, pages: dict[str, str]):
    routes = {
        "/reg/options": rp.registration_options,
        "/reg/verify": rp.registration_verify,
        "/auth/options": rp.authentication_options,
        "/auth/verify": rp.authentication_verify,
    }

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/swa.js":
                self._send(200, bundle.read_bytes(), "text/javascript")
            elif path in pages:
                self._send(200, pages[path].encode(), "text/html; charset=utf-8")
            else:
                self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            route = routes.get(self.path)
            if route is None:
                return self._send(404, b"{}", "application/json")
            length = int(self.headers.get("content-length") or 0)
            if length > 1 << 20:
                return self._send(413, b"{}", "application/json")
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                with rp.lock:
                    out = route(body)
                status = 200
            except Exception as e:  # the verifier's verdict, for the page and the test
                out, status = {"verified": False, "error": f"{type(e).__name__}: {e}"}, 400
            self._send(status, json.dumps(out).encode(), "application/json")

    return Handler


class Server:
    """One HTTP origin (``http://localhost:PORT``) serving pages and, optionally, an RP."""

    def __init__(self, rp: RelyingParty | None, bundle: Path, pages: dict[str, str]) -> None:
        self.rp = rp
        handler = _handler(rp or RelyingParty("localhost", []), bundle, pages)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://localhost:{self.httpd.server_address[1]}"
        if rp is not None:
            rp.origins.append(self.url)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """The RP's JSON API from Python (what the CLI side of a test sends)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def cli(*args: str, input: str | None = None):
    """``fido-emu ...`` from this tree, as a user would run it."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "authenticator.frontdoor.cli", *args],
        input=input, capture_output=True, text=True, timeout=120,
    )


FRAME = """<!doctype html><meta charset="utf-8"><body>
<button id="make">Create</button> <button id="use">Sign in</button>
<script>
const pk = {rp: {name: 'frames', id: 'localhost'}, user: {id: new Uint8Array([7]), name: 'f',
  displayName: 'F'}, challenge: new Uint8Array(16), pubKeyCredParams: [{type: 'public-key', alg: -7}],
  authenticatorSelection: {residentKey: 'required'}};
async function outcome(p) {
  try {
    const c = await p;
    return {ok: true, clientData: JSON.parse(new TextDecoder().decode(c.response.clientDataJSON))};
  } catch (e) { return {error: e.name, message: e.message}; }
}
const show = async (p) => { document.body.dataset.result = JSON.stringify(await outcome(p)); };
document.getElementById('make').onclick = () => show(navigator.credentials.create({publicKey: pk}));
document.getElementById('use').onclick = () => show(navigator.credentials.get(
  {publicKey: {challenge: new Uint8Array(16), rpId: 'localhost'}}));
</script></body>"""


def cross_origin_servers(bundle: Path) -> tuple[Server, Server]:
    """(top, frame): two origins on localhost; the top pages embed the frame page with and
    without the WebAuthn permission policy, and same-origin."""
    frame = Server(None, bundle, {"/frame": FRAME})
    src = frame.url + "/frame"
    top = Server(None, bundle, {
        "/allow": f'<iframe src="{src}" allow="publickey-credentials-create; '
                  f'publickey-credentials-get"></iframe>',
        "/deny": f'<iframe src="{src}"></iframe>',
        "/same": '<iframe src="/frame"></iframe>',
        "/frame": FRAME,
    })
    return top, frame

"""The Locust user's RP shapes for SimpleWebAuthn- and py_webauthn-style servers.

The RP here is py_webauthn verifying every ceremony, with the challenge kept in a session
cookie, serving both URL/JSON layouts: SimpleWebAuthn's example server (GET options, POST
the credential to /verify-*, ``{"verified": true}``) and a py_webauthn-style one (POST
``{"username"}`` for options). Locust runs headless in a subprocess (it monkey-patches
the process it runs in); the RP's own counters judge the run.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.structs import AuthenticatorSelectionCriteria, ResidentKeyRequirement

ROOT = Path(__file__).resolve().parents[3]
USERS, PER_USER = 3, 3


class Rp:
    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.sessions: dict[str, dict] = {}
        self.creds: dict[bytes, dict] = {}
        self.verified = {"register": 0, "login": 0}
        self.lock = threading.Lock()

    def options(self, session: dict, kind: str, body: dict | None) -> str:
        if kind == "register":
            name = (body or {}).get("username") or session.setdefault(
                "name", f"swa-{secrets.token_hex(4)}")
            opts = generate_registration_options(
                rp_id="localhost", rp_name="Shapes", user_name=name,
                authenticator_selection=AuthenticatorSelectionCriteria(
                    resident_key=ResidentKeyRequirement.REQUIRED),
            )
        else:
            opts = generate_authentication_options(rp_id="localhost")
        session["challenge"] = opts.challenge
        return options_to_json(opts)

    def verify(self, session: dict, kind: str, credential: dict) -> dict:
        challenge = session.pop("challenge")
        with self.lock:
            if kind == "register":
                v = verify_registration_response(
                    credential=credential, expected_challenge=challenge,
                    expected_rp_id="localhost", expected_origin=self.origin)
                self.creds[v.credential_id] = {"key": v.credential_public_key,
                                               "count": v.sign_count}
            else:
                from webauthn.helpers import base64url_to_bytes

                stored = self.creds[base64url_to_bytes(credential["rawId"])]
                v = verify_authentication_response(
                    credential=credential, expected_challenge=challenge,
                    expected_rp_id="localhost", expected_origin=self.origin,
                    credential_public_key=stored["key"],
                    credential_current_sign_count=stored["count"])
                stored["count"] = v.new_sign_count
            self.verified[kind] += 1
        return {"verified": True}


ROUTES = {
    "/generate-registration-options": ("options", "register"),
    "/generate-authentication-options": ("options", "login"),
    "/verify-registration": ("verify", "register"),
    "/verify-registration-response": ("verify", "register"),
    "/verify-authentication": ("verify", "login"),
    "/verify-authentication-response": ("verify", "login"),
}


def serve(rp_box: list) -> tuple[str, ThreadingHTTPServer]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

        def _session(self) -> tuple[str, dict]:
            cookie = SimpleCookie(self.headers.get("cookie") or "")
            sid = cookie["sid"].value if "sid" in cookie else secrets.token_urlsafe(8)
            return sid, rp_box[0].sessions.setdefault(sid, {})

        def _answer(self, sid: str, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("set-cookie", f"sid={sid}; Path=/; HttpOnly")
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, body: dict | None) -> None:
            sid, session = self._session()
            what, kind = ROUTES.get(self.path, (None, None))
            try:
                if what == "options":
                    self._answer(sid, 200, rp_box[0].options(session, kind, body))
                elif what == "verify" and body is not None:
                    self._answer(sid, 200, json.dumps(rp_box[0].verify(session, kind, body)))
                else:
                    self._answer(sid, 404, '{"error": "not found"}')
            except Exception as e:  # the RP's verdict: not verified
                self._answer(sid, 400, json.dumps({"verified": False, "error": str(e)}))

        def do_GET(self) -> None:
            self._handle(None)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self._handle(json.loads(self.rfile.read(length) or b"{}"))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://localhost:{httpd.server_address[1]}"
    rp_box.append(Rp(url))
    return url, httpd


LOCUSTFILE = """
from authenticator.rp_testing.locust import {shape}, WebAuthnUser, quit_after
from locust import events

class User(WebAuthnUser):
    shape = {shape}
    ceremonies_per_user = {per_user}

@events.test_start.add_listener
def _bounded(environment, **kw):
    quit_after(environment, {total})
"""


@pytest.mark.parametrize("shape", ["SIMPLEWEBAUTHN", "PY_WEBAUTHN"])
def test_shape_drives_the_rp_and_every_ceremony_is_verified(tmp_path, shape):
    box: list = []
    url, httpd = serve(box)
    f = tmp_path / "locustfile.py"
    f.write_text(LOCUSTFILE.format(shape=shape, per_user=PER_USER, total=USERS * PER_USER))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(f), "--headless", "-u", str(USERS),
             "-r", str(USERS), "--host", url, "--run-time", "120s", "--json", "--skip-log"],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
            timeout=180,
        )
    finally:
        httpd.shutdown()
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = {(s["method"], s["name"]): s for s in json.loads(proc.stdout)}
    assert stats[("WEBAUTHN", "register")]["num_requests"] == USERS
    assert stats[("WEBAUTHN", "login")]["num_requests"] == USERS * (PER_USER - 1)
    assert all(s["num_failures"] == 0 for s in stats.values())
    assert box[0].verified == {"register": USERS, "login": USERS * (PER_USER - 1)}

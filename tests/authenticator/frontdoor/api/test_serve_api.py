"""``fido-emu serve``: the W3C WebAuthn WebDriver vocabulary and L3 JSON ceremonies over HTTP,
verified by python-fido2's Fido2Server (an independent RP implementation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from fido2.server import Fido2Server
from fido2.webauthn import PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity

from authenticator import Authenticator, Config
from authenticator.core.presence import AutoApprove
from authenticator.frontdoor.api import ApiServer
from storage.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[4]
ORIGIN = "https://example.com"
RP = Fido2Server(PublicKeyCredentialRpEntity(id="example.com", name="Example"))


@pytest.fixture
async def api():
    server = ApiServer(port=0)
    server.add(Authenticator(Config.for_profile("security-key"), MemoryStore(), AutoApprove()),
               "default")
    await server.start()
    async with aiohttp.ClientSession(
        base_url=server.url, headers={"X-Fido-Emu-Token": server.token}
    ) as session:
        session.server = server  # type: ignore[attr-defined]
        yield session
    await server.close()


async def call(session, method: str, path: str, body=None) -> tuple[int, object]:
    async with session.request(method, path, json=body) as r:
        return r.status, (await r.json())["value"]


async def test_token_on_every_request(api):
    server = api.server
    async with aiohttp.ClientSession(base_url=server.url) as bare:
        for method, path in [("GET", "/openapi.json"), ("POST", "/webauthn/authenticator"),
                             ("POST", "/webauthn/create"), ("GET", "/webauthn/authenticators")]:
            async with bare.request(method, path, json={}) as r:
                assert r.status == 401, path
            async with bare.request(method, path + "?token=wrong", json={}) as r:
                assert r.status == 401, path
        async with bare.get(f"/webauthn/authenticators?token={server.token}") as r:
            assert r.status == 200
        async with bare.get("/webauthn/authenticators",
                            headers={"Authorization": f"Bearer {server.token}"}) as r:
            assert r.status == 200
        # a browser page elsewhere cannot drive it, even with the token
        async with bare.post(f"/webauthn/authenticator?token={server.token}", json={},
                             headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403
    assert list(server.entries) == ["default"]


async def test_w3c_vocabulary_and_l3_ceremonies_verified_by_fido2_server(api):
    status, auth_id = await call(api, "POST", "/webauthn/authenticator", {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True, "fidoEmu:profile": "synced-passkey"})
    assert status == 200 and isinstance(auth_id, str)
    user = PublicKeyCredentialUserEntity(id=b"user-1", name="alice", display_name="")
    options, state = RP.register_begin(user, resident_key_requirement="required",
                                       user_verification="required")
    status, reg = await call(api, "POST", "/webauthn/create", {
        "authenticatorId": auth_id, "origin": ORIGIN, "options": dict(options)["publicKey"]})
    assert status == 200, reg
    auth_data = RP.register_complete(state, reg)
    assert auth_data.is_user_verified() and auth_data.is_backup_eligible()
    cred = auth_data.credential_data

    status, creds = await call(api, "GET", f"/webauthn/authenticator/{auth_id}/credentials")
    assert status == 200 and len(creds) == 1 and creds[0]["userName"] == "alice"

    options, state = RP.authenticate_begin([cred], user_verification="required")
    status, assertion = await call(api, "POST", "/webauthn/get", {
        "authenticatorId": auth_id, "origin": ORIGIN, "options": dict(options)["publicKey"]})
    assert status == 200, assertion
    RP.authenticate_complete(state, [cred], assertion)

    # W3C Set User Verified false: UV required now fails like a browser
    assert (await call(api, "POST", f"/webauthn/authenticator/{auth_id}/uv",
                       {"isUserVerified": False}))[0] == 200
    options, _ = RP.authenticate_begin([cred], user_verification="required")
    status, err = await call(api, "POST", "/webauthn/get", {
        "authenticatorId": auth_id, "origin": ORIGIN, "options": dict(options)["publicKey"]})
    assert status == 400 and err["name"] == "NotAllowedError"

    # the credential moves to the default authenticator through W3C Add Credential
    status, none = await call(api, "POST", "/webauthn/authenticator/default/credential", creds[0])
    assert status == 200 and none is None
    await call(api, "POST", f"/webauthn/authenticator/{auth_id}/uv", {"isUserVerified": True})
    from urllib.parse import quote

    cid = quote(creds[0]["credentialId"], safe="")
    assert (await call(api, "DELETE", f"/webauthn/authenticator/{auth_id}/credentials/{cid}"))[0] == 200
    status, err = await call(api, "DELETE", f"/webauthn/authenticator/{auth_id}/credentials/{cid}")
    assert status == 400 and err["error"] == "invalid argument"
    options, state = RP.authenticate_begin([cred], user_verification="discouraged")
    status, assertion = await call(api, "POST", "/webauthn/get", {
        "authenticatorId": "default", "origin": ORIGIN, "options": dict(options)["publicKey"]})
    assert status == 200, assertion
    RP.authenticate_complete(state, [cred], assertion)

    # presence deny, faults, power cycle, removal
    await call(api, "POST", "/webauthn/authenticator/default/presence", {"mode": "deny"})
    options, _ = RP.authenticate_begin([cred], user_verification="discouraged")
    status, err = await call(api, "POST", "/webauthn/get", {
        "authenticatorId": "default", "origin": ORIGIN, "options": dict(options)["publicKey"]})
    assert status == 400 and err["name"] == "NotAllowedError"
    await call(api, "POST", "/webauthn/authenticator/default/presence", {"mode": "auto"})
    status, faults = await call(api, "POST", "/webauthn/authenticator/default/faults",
                                {"arm": "bad-signature"})
    assert faults["active"] == ["bad-signature"]
    assert (await call(api, "DELETE", "/webauthn/authenticator/default/faults"))[1]["active"] == []
    assert (await call(api, "POST", "/webauthn/authenticator/default/power-cycle"))[0] == 200
    assert (await call(api, "DELETE", f"/webauthn/authenticator/{auth_id}"))[0] == 200
    status, err = await call(api, "GET", f"/webauthn/authenticator/{auth_id}/credentials")
    assert status == 400 and "no authenticator" in err["message"]


async def test_bad_input_is_one_line_and_bodies_are_bounded(api):
    for body, field in [({"origin": 5, "options": {}}, "origin"),
                        ({"origin": ORIGIN, "options": {"challenge": "!!!"}}, "")]:
        status, err = await call(api, "POST", "/webauthn/create", body)
        assert status == 400 and "\n" not in err["message"] and field in err["message"]
    async with api.post("/webauthn/create", data=b"[" * (300 * 1024)) as r:
        assert r.status == 413
    async with api.post("/webauthn/create", data=b"{nope") as r:
        assert r.status == 400
    status, err = await call(api, "POST", "/webauthn/authenticator", {"transport": "carrier-pigeon"})
    assert status == 400 and "transport" in err["message"]


async def test_openapi_document_covers_every_route(api):
    status, _ = await call(api, "GET", "/webauthn/authenticators")
    async with api.get("/openapi.json") as r:
        doc = await r.json()
    assert doc["openapi"].startswith("3.")
    try:
        from openapi_spec_validator import validate
    except ImportError:
        validate = None
    if validate is not None:
        validate(doc)
    import re
    for method, pattern, _fn in api.server._routes:
        templated = [p for p in doc["paths"]
                     if pattern.fullmatch(re.sub(r"\{[^}]+\}", "x", p))]
        assert templated and any(method.lower() in doc["paths"][p] for p in templated), pattern


def test_cli_serve_prints_its_url_with_a_token(tmp_path):
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "authenticator.frontdoor.cli", "serve", "--port", "0",
         "--store", ":memory:"], stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        line = proc.stderr.readline()
        assert "serving on http://127.0.0.1:" in line and "?token=" in line, line
        url = line.split("serving on ")[1].split()[0]
        import urllib.request
        with urllib.request.urlopen(url.replace("/?token=", "/webauthn/authenticators?token="),
                                    timeout=10) as r:
            assert r.status == 200 and b"default" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0


async def test_presence_ask_waits_for_an_answer_over_the_api(api):
    import asyncio

    await call(api, "POST", "/webauthn/authenticator/default/presence", {"mode": "ask"})
    options = {"challenge": "AAAAAAAAAAAAAAAAAAAAAA", "rp": {"id": "example.com", "name": "Ex"},
               "user": {"id": "dQ", "name": "u", "displayName": "U"},
               "pubKeyCredParams": [{"type": "public-key", "alg": -7}]}
    for answer, expected in (("deny", 400), ("approve", 200)):
        task = asyncio.ensure_future(call(api, "POST", "/webauthn/create",
                                          {"origin": ORIGIN, "options": options}))
        pending = []
        for _ in range(500):  # polls the server's state, bounded; no ordering by sleeping
            pending = (await call(api, "GET", "/webauthn/authenticator/default/presence"))[1]["pending"]
            if pending:
                break
            await asyncio.sleep(0.02)
        [request] = pending
        assert request["command"] == "makeCredential" and request["rpId"] == "example.com"
        status, _ = await call(api, "POST",
                               f"/webauthn/authenticator/default/presence/{request['id']}",
                               {"answer": answer})
        assert status == 200
        status, result = await task
        assert status == expected, result
        if answer == "deny":
            assert result["name"] == "NotAllowedError"


def test_cli_serve_creates_its_store_and_gives_counter_leases_back(tmp_path):
    """A stopped ``serve`` leaves counters where the last signature left them."""
    import json
    import signal
    import urllib.request

    store = tmp_path / "new" / "store.db"
    store.parent.mkdir()
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}

    def session(n: int) -> list[int]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "authenticator.frontdoor.cli", "serve", "--port", "0",
             "--store", str(store)], stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        counters = []
        try:
            line = proc.stderr.readline()
            assert "serving on" in line, line + proc.stderr.read()
            url = line.split("serving on ")[1].split()[0]
            base, token = url.split("?token=")

            def post(path: str, body: dict) -> dict:
                req = urllib.request.Request(base + path.lstrip("/"), json.dumps(body).encode(),
                                             {"X-Fido-Emu-Token": token})
                with urllib.request.urlopen(req, timeout=30) as r:
                    return json.loads(r.read())["value"]

            if not counters and n == 0:
                post("/webauthn/create", {"origin": ORIGIN, "options": {
                    "challenge": "AAAAAAAAAAAAAAAAAAAAAA", "rp": {"id": "example.com", "name": "E"},
                    "user": {"id": "dQ", "name": "u", "displayName": "U"},
                    "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
                    "authenticatorSelection": {"residentKey": "required"}}})
            for _ in range(2):
                got = post("/webauthn/get", {"origin": ORIGIN, "options": {
                    "challenge": "AAAAAAAAAAAAAAAAAAAAAA", "rpId": "example.com"}})
                import base64
                data = base64.urlsafe_b64decode(got["response"]["authenticatorData"] + "==")
                counters.append(int.from_bytes(data[33:37], "big"))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        assert proc.returncode == 0
        return counters

    first, second = session(0), session(1)
    assert first + second == [first[0] + i for i in range(4)]


@pytest.mark.parametrize("profile", ["security-key", "synced-passkey", "platform"])
async def test_py_webauthn_defaults_untouched_against_serve(api, profile):
    """py_webauthn 3 (an independent RP library) with its default options, through the API."""
    webauthn = pytest.importorskip("webauthn")
    from webauthn.helpers import options_to_json

    status, auth_id = await call(api, "POST", "/webauthn/authenticator",
                                 {"fidoEmu:profile": profile})
    assert status == 200
    reg_options = webauthn.generate_registration_options(
        rp_id="example.com", rp_name="Example", user_name="alice")
    status, reg = await call(api, "POST", "/webauthn/create", {
        "authenticatorId": auth_id, "origin": ORIGIN,
        "options": json.loads(options_to_json(reg_options))})
    assert status == 200, reg
    verified = webauthn.verify_registration_response(
        credential=reg, expected_challenge=reg_options.challenge, expected_rp_id="example.com",
        expected_origin=ORIGIN)
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor

    # py_webauthn's default registration asks for no discoverable credential: list it
    auth_options = webauthn.generate_authentication_options(
        rp_id="example.com",
        allow_credentials=[PublicKeyCredentialDescriptor(id=verified.credential_id)])
    status, assertion = await call(api, "POST", "/webauthn/get", {
        "authenticatorId": auth_id, "origin": ORIGIN,
        "options": json.loads(options_to_json(auth_options))})
    assert status == 200, assertion
    result = webauthn.verify_authentication_response(
        credential=assertion, expected_challenge=auth_options.challenge,
        expected_rp_id="example.com", expected_origin=ORIGIN,
        credential_public_key=verified.credential_public_key,
        credential_current_sign_count=verified.sign_count)
    assert result.new_sign_count >= verified.sign_count

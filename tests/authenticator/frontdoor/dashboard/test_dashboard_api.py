"""The dashboard's HTTP API in-process: presence, credentials, PIN, reset, faults, the log
and, above all, that forged or unauthenticated requests are refused and change nothing."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import stat

import pytest
from dashboard_support import http, register
from fido2.client import ClientError
from fido2.ctap import CtapError

from authenticator import Authenticator, Config
from authenticator.core.presence import AutoApprove, FirstOf
from authenticator.frontdoor.dashboard import start_dashboard
from authenticator.frontdoor.dashboard.device import LoopDevice
from authenticator.frontdoor.dashboard.presence import WebPresence
from authenticator.frontdoor.dashboard.security import AccessPolicy, load_token
from authenticator.frontdoor.dashboard.server import Dashboard
from storage.memory import MemoryStore

PIN = "pin-Alpha7"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
async def dash():
    web = WebPresence()
    auth = Authenticator(Config.for_profile("security-key"), MemoryStore(), web)
    d = Dashboard(auth, host="127.0.0.1", port=0, web_presence=web, transports=["udp"])
    await d.start()
    yield d
    await d.close()


async def answer_next(web: WebPresence, answer: str = "approve", timeout: float = 10) -> dict:
    """Wait for the next pending presence request and answer it like the page does."""
    for _ in range(int(timeout / 0.02)):
        if web.pending:
            break
        await asyncio.sleep(0.02)
    assert web.pending, "no presence request arrived"
    req = web.snapshot()[0]
    assert web.answer(req["id"], answer)  # type: ignore[arg-type]
    return req


async def registered(d: Dashboard, user: str, pin: str | None = None) -> bytes:
    device = LoopDevice(d.auth, asyncio.get_running_loop())
    task = asyncio.ensure_future(asyncio.to_thread(register, device, user, pin))
    await answer_next(d.web)
    return await task


async def test_presence_approve_and_deny_through_the_api(dash: Dashboard):
    device = LoopDevice(dash.auth, asyncio.get_running_loop())
    task = asyncio.ensure_future(asyncio.to_thread(register, device, "alice"))
    for _ in range(500):
        if dash.web.pending:
            break
        await asyncio.sleep(0.02)
    [req] = dash.web.snapshot()
    assert (req["command"], req["rpId"], req["user"], req["transport"]) == (
        "makeCredential", "example.com", "alice", "dashboard")
    assert req["deadline"] - req["created"] == pytest.approx(30)
    r = await http(dash, "POST", "/api/presence", {"id": req["id"], "answer": "approve"})
    assert r.status == 200
    cred_id = await task
    assert dash.auth.store.get_credential(cred_id) is not None
    # answering again: it is gone
    r = await http(dash, "POST", "/api/presence", {"id": req["id"], "answer": "deny"})
    assert r.status == 409

    task = asyncio.ensure_future(asyncio.to_thread(register, device, "bob"))
    await answer_next(dash.web, "deny")
    with pytest.raises(ClientError) as e:
        await task
    assert e.value.cause.code == CtapError.ERR.OPERATION_DENIED
    statuses = [(e["command"], e["status"]) for e in dash.log]
    assert ("makeCredential", "OK") in statuses and ("makeCredential", "OPERATION_DENIED") in statuses


async def test_credentials_listed_without_secrets_renamed_and_deleted(dash: Dashboard):
    cred_id = await registered(dash, "alice")
    r = await http(dash, "GET", "/api/credentials")
    [rp] = r.json()
    [c] = rp["credentials"]
    assert rp["rpId"] == "example.com"
    assert c["credentialId"] == b64url(cred_id) and c["userName"] == "alice"
    assert c["algorithm"] == "ES256" and c["discoverable"] and c["counter"] == 0
    assert c["created"] and not c["backupEligible"]
    text = r.body.decode().lower()
    assert "sealed" not in text and "private" not in text

    r = await http(dash, "POST", "/api/credentials/update",
                   {"credentialId": b64url(cred_id), "name": "alice2", "displayName": ""})
    assert r.status == 200
    rec = dash.auth.store.get_credential(cred_id)
    assert (rec.user_name, rec.user_display_name, rec.user_id) == ("alice2", None, b"alice")

    dash.auth.counters.next(cred_id)
    r = await http(dash, "POST", "/api/credentials/delete", {"credentialId": b64url(cred_id)})
    assert r.status == 200
    assert dash.auth.store.get_credential(cred_id) is None
    assert dash.auth.store.load_counter(cred_id) is None
    assert (await http(dash, "POST", "/api/credentials/delete",
                       {"credentialId": b64url(cred_id)})).status == 404
    assert any(e["command"] == "delete credential" for e in dash.log)


async def test_forged_requests_are_refused_and_change_nothing(dash: Dashboard):
    cred_id = await registered(dash, "alice")
    body = {"credentialId": b64url(cred_id)}
    port = dash.port
    forged = [
        {"Origin": "http://evil.example"},  # cross-origin page
        {"Origin": "null"},  # sandboxed frame
        {"Origin": f"http://127.0.0.1:{port + 1}"},  # another local port: same site, not same origin
        {"X-Fido-Emu-Csrf": None},  # a plain form post cannot add the header
        {"X-Fido-Emu-Csrf": None, "Origin": None},
        {"Sec-Fetch-Site": "cross-site", "Origin": None},
        {"Host": "evil.example", "Origin": "http://evil.example"},  # DNS rebinding
    ]
    for headers in forged:
        r = await http(dash, "POST", "/api/credentials/delete", body, headers)
        assert r.status == 403, headers
    assert (await http(dash, "GET", "/api/credentials", headers={"Host": "rebind.example"})).status == 403
    assert (await http(dash, "GET", "/api/credentials",
                       headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"})).status == 403
    assert dash.auth.store.get_credential(cred_id) is not None
    # other verbs and the faults: still nothing changed
    r = await http(dash, "POST", "/api/faults", {"arm": "bad-signature"}, {"Origin": "http://evil.example"})
    assert r.status == 403 and dash.auth.faults.active() == []
    # a non-browser client with the custom header and no Origin is fine
    r = await http(dash, "POST", "/api/faults", {"arm": "up-0"}, {"Origin": None})
    assert r.status == 200 and dash.auth.faults.active() == ["up-0"]


ROUTES = [("GET", "/"), ("GET", "/api/state"), ("GET", "/api/events"), ("GET", "/api/log"),
          ("GET", "/api/credentials"), ("GET", "/static/app.js"), ("POST", "/api/faults"),
          ("POST", "/api/presence"), ("POST", "/api/credentials/export"),
          ("POST", "/api/credentials/import"), ("POST", "/api/credentials/delete"),
          ("POST", "/api/reset"), ("POST", "/api/power-cycle"), ("POST", "/api/presence/mode")]


async def test_D1_loopback_dashboard_needs_the_token_on_every_request(dash: Dashboard):
    """Issue 13 D1: any local process had full control of a loopback dashboard."""
    cred_id = await registered(dash, "alice")
    port = dash.port
    power_up = dash.auth.power_up_time
    for method, path in ROUTES:
        body = {"arm": "up-0", "credentialId": b64url(cred_id), "mode": "deny"}
        for headers in ({"X-Fido-Emu-Token": None}, {"X-Fido-Emu-Token": "x" * 43},
                        {"X-Fido-Emu-Token": None, "Authorization": "Bearer nope"}):
            r = await http(port, method, path, body if method == "POST" else None, headers)
            assert r.status == 401, (method, path, headers)
            assert b"privateKey" not in r.body
    assert dash.auth.faults.active() == [] and dash.auth.power_up_time == power_up
    assert dash.auth.store.get_credential(cred_id) is not None
    assert dash.switch is not None and dash.switch.mode == "ask"
    # the token in a header or as a bearer token works
    assert (await http(dash, "GET", "/api/state")).status == 200
    r = await http(port, "GET", "/api/state", headers={"Authorization": f"Bearer {dash.token}"})
    assert r.status == 200 and dash.token not in r.body.decode()


async def test_token_login_cookie_and_token_file(tmp_path):
    token_file = tmp_path / "token"
    token = load_token(token_file)  # created, 0600
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600 and load_token(token_file) == token
    auth = Authenticator(Config(), MemoryStore(), AutoApprove())
    d = Dashboard(auth, port=0, token=token)
    await d.start()
    try:
        r = await http(d, "GET", "/api/state")
        assert r.status == 200 and "token" not in r.body.decode().lower().replace("tokenrequired", "")
        # ?token= logs in: an HttpOnly SameSite=Strict cookie, then a redirect that drops it
        r = await http(d.port, "GET", f"/?token={token}")
        assert r.status == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert (await http(d.port, "GET", "/?token=wrong")).status == 401
        assert (await http(d.port, "GET", f"/api/state?token={token}")).status == 401  # page only
        jar = cookie.split(";")[0]
        r = await http(d.port, "POST", "/api/faults", {"arm": "up-0"}, {"Cookie": jar})
        assert r.status == 200 and auth.faults.active() == ["up-0"]
        # the token does not excuse a forged Origin
        r = await http(d.port, "POST", "/api/faults", {"clear": True},
                       {"Cookie": jar, "Origin": "http://evil.example"})
        assert r.status == 403 and auth.faults.active() == ["up-0"]
    finally:
        await d.close()


@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0"])
async def test_start_prints_a_reachable_url_with_the_token_and_writes_a_0600_token_file(
        bind, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(ValueError):
        AccessPolicy.for_binding("127.0.0.1", 1, None)
    auth = Authenticator(Config(), MemoryStore(), AutoApprove())
    args = argparse.Namespace(dashboard=f"{bind}:0", dashboard_token_file=None)
    d = await start_dashboard(auth, args)
    try:
        printed = capsys.readouterr().err
        url = printed.split("dashboard on ")[1].split()[0]
        assert url.startswith(f"http://127.0.0.1:{d.port}/?token=")  # never 0.0.0.0
        token = url.split("?token=")[1]
        token_file = tmp_path / "fido-emu" / f"dashboard-{d.port}.token"
        assert str(token_file) in printed and token_file.read_text().strip() == token
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        assert (await http(d.port, "GET", "/api/state")).status == 401
        assert (await http(d.port, "POST", "/api/power-cycle", {})).status == 401
        r = await http(d.port, "GET", "/api/state", headers={"X-Fido-Emu-Token": token})
        assert r.status == 200
    finally:
        await d.close()
    assert not token_file.exists()


async def test_prompt_presence_races_the_web_buttons(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    class Never:
        async def request_presence(self, request):
            await asyncio.Event().wait()

        async def verify_user(self, request):
            await asyncio.Event().wait()

    auth = Authenticator(Config(), MemoryStore(), Never())
    args = argparse.Namespace(dashboard="127.0.0.1:0", dashboard_token_file=None)
    d = await start_dashboard(auth, args)
    try:
        assert d.switch is not None and d.switch.mode == "ask"
        assert isinstance(d.switch.ask_source, FirstOf) and d.web is not None
        cred = asyncio.ensure_future(registered(d, "carol"))
        assert await asyncio.wait_for(cred, 10)
    finally:
        await d.close()


async def test_pin_set_and_change_are_ctap_and_never_echoed(dash: Dashboard):
    r = await http(dash, "POST", "/api/pin", {"action": "set", "newPin": "12"})
    assert r.status == 400 and not dash.auth.pin.is_set
    r = await http(dash, "POST", "/api/pin", {"action": "set", "newPin": PIN})
    assert r.status == 200 and dash.auth.pin.is_set and PIN not in r.body.decode()
    r = await http(dash, "POST", "/api/pin",
                   {"action": "change", "currentPin": "0000", "newPin": "pin-Bravo8"})
    assert r.status == 409 and "PIN_INVALID" in r.json()["error"]
    assert dash.auth.pin.retries == 7
    r = await http(dash, "POST", "/api/pin",
                   {"action": "change", "currentPin": PIN, "newPin": "pin-Bravo8"})
    assert r.status == 200
    state = (await http(dash, "GET", "/api/state")).json()
    assert state["pin"]["set"] and state["pin"]["retries"] == 8
    commands = [e["command"] for e in dash.log]
    assert "clientPIN" in commands and "PIN changed" in commands
    everything = json.dumps(list(dash.log)) + json.dumps(state)
    assert PIN not in everything and "pin-Bravo8" not in everything


async def test_reset_needs_the_window_and_presence(dash: Dashboard):
    await registered(dash, "alice")
    dash.auth.power_up_time -= 60  # long after power-up
    r = await http(dash, "POST", "/api/reset", {"confirm": "RESET"})
    assert r.status == 409 and "NOT_ALLOWED" in r.json()["error"]
    assert (await http(dash, "POST", "/api/reset", {})).status == 400
    assert dash.auth.store.count_discoverable() == 1
    assert (await http(dash, "POST", "/api/power-cycle", {})).status == 200
    task = asyncio.ensure_future(http(dash, "POST", "/api/reset", {"confirm": "RESET"}))
    req = await answer_next(dash.web)
    assert req["command"] == "reset"
    assert (await task).status == 200
    assert dash.auth.store.count_discoverable() == 0


async def test_faults_toggle(dash: Dashboard):
    for body, active in [
        ({"arm": "bad-signature"}, ["bad-signature"]),
        ({"arm": "delay=0.5"}, ["bad-signature", "delay=0.5"]),
        ({"disarm": "bad-signature"}, ["delay=0.5"]),
        ({"disarm": "delay"}, []),
        ({"arm": "error=PIN_INVALID"}, ["error=0x31"]),
        ({"clear": True}, []),
    ]:
        r = await http(dash, "POST", "/api/faults", body)
        assert r.status == 200 and r.json()["active"] == active, body
    assert (await http(dash, "POST", "/api/faults", {"arm": "nonsense"})).status == 400


async def test_D1_export_and_import_never_touch_a_client_named_server_path(
        dash: Dashboard, tmp_path):
    """Issue 13 D1: export wrote every private key to a server path of the client's choice;
    import told whether a path exists, is JSON or is a directory."""
    await registered(dash, "alice")
    target = tmp_path / "stolen.json"
    r = await http(dash, "POST", "/api/credentials/export", {"path": str(target)})
    assert not target.exists()
    assert r.status == 400 and str(tmp_path) not in r.body.decode()
    # the same attack with an injected user name through import, then export
    evil = tmp_path / "evil.json"
    payload = {"credentials": [{"credentialId": b64url(b"x" * 16), "rpId": "evil.example",
                                "isResidentCredential": True, "userName": "$(touch /tmp/pwn)",
                                "userHandle": b64url(b"u"), "signCount": 0,
                                "privateKey": "not a key"}]}
    evil.write_text(json.dumps(payload))
    answers = set()
    for path in ["/etc/passwd", "/nonexistent/x.json", str(tmp_path), str(evil), "relative"]:
        r = await http(dash, "POST", "/api/credentials/import", {"path": path})
        answers.add((r.status, r.body))
    assert len(answers) == 1, answers  # nothing about the file system leaks
    [(status, body)] = answers
    assert status == 400 and b"nonexistent" not in body and b"passwd" not in body
    assert dash.auth.store.get_credential(b"x" * 16) is None
    assert [p.name for p in tmp_path.iterdir()] == ["evil.json"]


async def test_export_is_a_download_and_import_an_upload(dash: Dashboard):
    cred_id = await registered(dash, "alice")
    r = await http(dash, "POST", "/api/credentials/export", {})
    assert r.status == 200 and "attachment" in r.headers["content-disposition"]
    [exported] = r.json()["credentials"]
    assert exported["rpId"] == "example.com" and exported["privateKey"]
    # a GET (a navigation or an <img>) does not export
    assert (await http(dash, "GET", "/api/credentials/export")).status == 404
    public = await http(dash, "GET", "/api/credentials/public.json")
    assert "attachment" in public.headers["content-disposition"]
    assert "privateKey" not in public.body.decode() and b64url(cred_id) in public.body.decode()

    # import into a fresh authenticator through its own dashboard, the file as the body
    other = Authenticator(Config(), MemoryStore(), AutoApprove())
    d2 = Dashboard(other, port=0)
    await d2.start()
    try:
        r = await http(d2, "POST", "/api/credentials/import", r.body)
        assert r.status == 200 and r.json()["added"] == 1
        assert other.store.get_credential(cred_id).user_name == "alice"
        r = await http(d2, "POST", "/api/credentials/import", {"credentials": [{"rpId": 1}]})
        assert r.status == 400 and "\n" not in r.json()["error"]
    finally:
        await d2.close()


async def test_live_log_over_sse(dash: Dashboard):
    reader, writer = await asyncio.open_connection("127.0.0.1", dash.port)
    writer.write(f"GET /api/events HTTP/1.0\r\nHost: 127.0.0.1:{dash.port}\r\n"
                 f"X-Fido-Emu-Token: {dash.token}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b"text/event-stream" in head
    assert (await reader.readuntil(b"\n\n")).startswith(b"retry: 2000\nevent: hello")
    await registered(dash, "dave")
    seen = []
    def is_log(s: bytes) -> bool:
        return s.startswith(b"event: log") and b"makeCredential" in s

    while not any(is_log(s) for s in seen):
        seen.append(await asyncio.wait_for(reader.readuntil(b"\n\n"), 5))
    kinds = [s.split(b"\n")[0] for s in seen]
    assert b"event: presence" in kinds and b"event: log" in kinds
    event = json.loads(next(s for s in seen if is_log(s)).split(b"data: ")[1])
    assert set(event) == {"kind", "time", "transport", "command", "rp_id", "status", "duration_ms",
                          "details"}
    details = event["details"]
    assert details["user"] == "dave" and details["flags"] == "UP AT" and details["counter"] == 0
    assert details["credential_id"] == b64url(dash.auth.store.credentials_for_rp(
        hashlib.sha256(b"example.com").digest())[0].credential_id)
    writer.close()


async def test_static_page_and_headers(dash: Dashboard):
    r = await http(dash, "GET", "/")
    assert r.status == 200 and b"/static/app.js" in r.body
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert (await http(dash, "GET", "/static/app.js")).status == 200
    assert (await http(dash, "GET", "/static/../server.py")).status == 404
    assert (await http(dash, "DELETE", "/api/state")).status == 403  # no CSRF header
    r = await http(dash, "DELETE", "/api/state", headers={"X-Fido-Emu-Csrf": "1"})
    assert r.status == 405


@pytest.mark.parametrize("source", ["text", "image"])
async def test_hybrid_scan_from_qr(source: str):
    """The page's paste-``FIDO:/`` and upload-a-QR-image paths: the dashboard plays the
    phone for our desktop role."""
    import websockets  # noqa: F401  (dev dependencies: missing is a failure, not a skip)

    if source == "image":
        import io
        from urllib.parse import quote

        import segno
        import zxingcpp  # noqa: F401  (the dashboard decodes uploads with these)
        from PIL import Image  # noqa: F401
    from fido2.client import DefaultClientDataCollector, Fido2Client
    from fido2.server import Fido2Server
    from fido2.webauthn import PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity

    from transports.hybrid.client_role import HybridClient, HybridCtapDevice
    from transports.hybrid.tunnel_server import TunnelServer

    auth = Authenticator(Config.for_profile("synced-passkey"), MemoryStore(), AutoApprove())
    d = Dashboard(auth, port=0)
    await d.start()
    try:
        async with TunnelServer() as tunnel:
            client = HybridClient(tunnel_url=tunnel.url(), request_type="mc")
            r = await http(d, "POST", "/api/hybrid", {"qr": "FIDO:/123"})
            assert r.status == 400
            if source == "text":
                r = await http(d, "POST", "/api/hybrid",
                               {"qr": client.qr_url, "tunnelUrl": tunnel.url()})
            else:
                png = io.BytesIO()
                segno.make(client.qr_url, micro=False).save(png, kind="png", scale=6)
                r = await http(d, "POST", f"/api/hybrid/image?tunnelUrl={quote(tunnel.url())}",
                               png.getvalue(), {"Content-Type": "image/png"})
            assert r.status == 200, r.body
            for _ in range(500):
                if "advert" in d.hybrid:
                    break
                await asyncio.sleep(0.02)
            assert d.hybrid["state"] == "advertising"
            advert = bytes.fromhex(d.hybrid["advert"])
            device = await asyncio.to_thread(HybridCtapDevice.open, client, advert)
            rp = Fido2Server(PublicKeyCredentialRpEntity(id="example.com", name="Example"))
            user = PublicKeyCredentialUserEntity(id=b"u", name="erin", display_name="Erin")
            options, state = rp.register_begin(user, resident_key_requirement="required")
            fido = await asyncio.to_thread(
                Fido2Client, device, DefaultClientDataCollector("https://example.com"))
            response = await asyncio.to_thread(fido.make_credential, options.public_key)
            rp.register_complete(state, response)
            await asyncio.to_thread(device.close)
            for _ in range(500):
                if d.hybrid["state"] != "advertising":
                    break
                await asyncio.sleep(0.02)
            assert d.hybrid["state"] == "finished", d.hybrid
        [rp_entry] = (await http(d, "GET", "/api/credentials")).json()
        assert rp_entry["credentials"][0]["userName"] == "erin"
        assert rp_entry["credentials"][0]["backupEligible"]
        r = await http(d, "POST", "/api/hybrid/image", headers={"Content-Type": "image/png"})
        assert r.status == 400
    finally:
        await d.close()


async def test_presence_mode_last_used_log_export_and_qr(dash: Dashboard):
    """Issue 11 item 8: presence mode at run time, "last used", log JSON export, QR image."""
    from dashboard_support import ORIGIN, Pin
    from fido2.client import Fido2Client
    cred_id = await registered(dash, "alice")
    assert (await http(dash, "POST", "/api/presence/mode", {"mode": "sometimes"})).status == 400
    r = await http(dash, "POST", "/api/presence/mode", {"mode": "auto"})
    assert r.status == 200 and dash.switch.mode == "auto"
    device = LoopDevice(dash.auth, asyncio.get_running_loop())

    def sign_in():
        from fido2.client import DefaultClientDataCollector
        client = Fido2Client(device, DefaultClientDataCollector(ORIGIN), Pin(None))
        return client.get_assertion({"challenge": b"c" * 32, "rpId": "example.com",
                                     "userVerification": "discouraged"})

    await asyncio.to_thread(sign_in)  # auto: no presence card needed
    assert not dash.web.pending
    [rp] = (await http(dash, "GET", "/api/credentials")).json()
    assert rp["credentials"][0]["lastUsed"] == pytest.approx(dash.log[-1]["time"])
    await http(dash, "POST", "/api/presence/mode", {"mode": "deny"})
    with pytest.raises(ClientError):
        await asyncio.to_thread(sign_in)
    assert (await http(dash, "GET", "/api/state")).json()["presence"]["mode"] == "deny"
    r = await http(dash, "GET", "/api/log.json")
    assert "attachment" in r.headers["content-disposition"]
    entries = r.json()["entries"]
    ok = [e for e in entries if e["command"] == "getAssertion" and e["status"] == "OK"]
    assert ok[0]["details"]["credential_id"] == b64url(cred_id)
    assert ok[0]["details"]["counter"] >= 1 and "UP" in ok[0]["details"]["flags"]
    r = await http(dash, "POST", "/api/hybrid/qr", {"text": "FIDO:/0123456789"})
    if r.status != 501:
        assert r.status == 200 and r.headers["content-type"] == "image/png"
        assert r.body.startswith(b"\x89PNG")
    assert (await http(dash, "POST", "/api/hybrid/qr", {"text": "http://x"})).status == 400
    await dash.close()  # flushes "last used" into the store
    saved = json.loads(dash.auth.store.get_state("dashboard.last_used"))
    assert b64url(cred_id) in saved


async def test_D7_live_log_streams_end_after_their_lifetime(dash: Dashboard, monkeypatch):
    """Issue 13 D7: SSE connections never timed out. Each now ends after its lifetime (the
    page's EventSource reconnects), and its slot is freed."""
    from authenticator.frontdoor.dashboard import server

    monkeypatch.setattr(server, "EVENT_STREAM_LIFETIME", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", dash.port)
    writer.write(f"GET /api/events HTTP/1.0\r\nHost: 127.0.0.1:{dash.port}\r\n"
                 f"X-Fido-Emu-Token: {dash.token}\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)  # EOF: the server ended the stream
    assert b"event: hello" in data
    writer.close()
    assert not dash._subscribers

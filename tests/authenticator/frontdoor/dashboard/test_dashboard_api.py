"""The dashboard's HTTP API in-process: presence, credentials, PIN, reset, faults, the log
and, above all, that forged or unauthenticated requests are refused and change nothing."""

from __future__ import annotations

import argparse
import asyncio
import base64
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
    r = await http(dash.port, "POST", "/api/presence", {"id": req["id"], "answer": "approve"})
    assert r.status == 200
    cred_id = await task
    assert dash.auth.store.get_credential(cred_id) is not None
    # answering again: it is gone
    r = await http(dash.port, "POST", "/api/presence", {"id": req["id"], "answer": "deny"})
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
    r = await http(dash.port, "GET", "/api/credentials")
    [rp] = r.json()
    [c] = rp["credentials"]
    assert rp["rpId"] == "example.com"
    assert c["credentialId"] == b64url(cred_id) and c["userName"] == "alice"
    assert c["algorithm"] == "ES256" and c["discoverable"] and c["counter"] == 0
    assert c["created"] and not c["backupEligible"]
    text = r.body.decode().lower()
    assert "sealed" not in text and "private" not in text

    r = await http(dash.port, "POST", "/api/credentials/update",
                   {"credentialId": b64url(cred_id), "name": "alice2", "displayName": ""})
    assert r.status == 200
    rec = dash.auth.store.get_credential(cred_id)
    assert (rec.user_name, rec.user_display_name, rec.user_id) == ("alice2", None, b"alice")

    dash.auth.counters.next(cred_id)
    r = await http(dash.port, "POST", "/api/credentials/delete", {"credentialId": b64url(cred_id)})
    assert r.status == 200
    assert dash.auth.store.get_credential(cred_id) is None
    assert dash.auth.store.load_counter(cred_id) is None
    assert (await http(dash.port, "POST", "/api/credentials/delete",
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
        r = await http(port, "POST", "/api/credentials/delete", body, headers)
        assert r.status == 403, headers
    assert (await http(port, "GET", "/api/credentials", headers={"Host": "rebind.example"})).status == 403
    assert (await http(port, "GET", "/api/credentials",
                       headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"})).status == 403
    assert dash.auth.store.get_credential(cred_id) is not None
    # other verbs and the faults: still nothing changed
    r = await http(port, "POST", "/api/faults", {"arm": "bad-signature"}, {"Origin": "http://evil.example"})
    assert r.status == 403 and dash.auth.faults.active() == []
    # a non-browser client with the custom header and no Origin is fine
    r = await http(port, "POST", "/api/faults", {"arm": "up-0"}, {"Origin": None})
    assert r.status == 200 and dash.auth.faults.active() == ["up-0"]


async def test_token_required_everywhere_when_configured(tmp_path):
    token_file = tmp_path / "token"
    token = load_token(token_file)  # created, 0600
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600 and load_token(token_file) == token
    auth = Authenticator(Config(), MemoryStore(), AutoApprove())
    d = Dashboard(auth, port=0, token=token)
    await d.start()
    try:
        for method, path in [("GET", "/"), ("GET", "/api/state"), ("GET", "/api/events"),
                             ("GET", "/static/app.js"), ("POST", "/api/faults")]:
            r = await http(d.port, method, path, {"arm": "up-0"} if method == "POST" else None)
            assert r.status == 401, path
            r = await http(d.port, method, path, {"arm": "up-0"} if method == "POST" else None,
                           {"X-Fido-Emu-Token": "x" * len(token)})
            assert r.status == 401, path
        assert auth.faults.active() == []
        r = await http(d.port, "GET", "/api/state", headers={"X-Fido-Emu-Token": token})
        assert r.status == 200 and "token" not in r.body.decode().lower().replace("tokenrequired", "")
        # ?token= logs in: an HttpOnly SameSite=Strict cookie, then a redirect that drops it
        r = await http(d.port, "GET", f"/?token={token}")
        assert r.status == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert (await http(d.port, "GET", "/?token=wrong")).status == 401
        jar = cookie.split(";")[0]
        r = await http(d.port, "POST", "/api/faults", {"arm": "up-0"}, {"Cookie": jar})
        assert r.status == 200 and auth.faults.active() == ["up-0"]
        # the token does not excuse a forged Origin
        r = await http(d.port, "POST", "/api/faults", {"clear": True},
                       {"Cookie": jar, "Origin": "http://evil.example"})
        assert r.status == 403 and auth.faults.active() == ["up-0"]
    finally:
        await d.close()


async def test_non_loopback_binding_generates_a_token(capsys):
    with pytest.raises(ValueError):
        AccessPolicy.for_binding("0.0.0.0", 1, None)
    auth = Authenticator(Config(), MemoryStore(), AutoApprove())
    args = argparse.Namespace(dashboard="0.0.0.0:0", dashboard_token_file=None)
    d = await start_dashboard(auth, args)
    try:
        printed = capsys.readouterr().err
        assert "?token=" in printed
        token = printed.split("?token=")[1].split()[0]
        assert (await http(d.port, "GET", "/api/state")).status == 401
        r = await http(d.port, "POST", "/api/power-cycle", {})
        assert r.status == 401
        r = await http(d.port, "GET", "/api/state", headers={"X-Fido-Emu-Token": token})
        assert r.status == 200
    finally:
        await d.close()


async def test_prompt_presence_races_the_web_buttons():
    class Never:
        async def request_presence(self, request):
            await asyncio.Event().wait()

        async def verify_user(self, request):
            await asyncio.Event().wait()

    auth = Authenticator(Config(), MemoryStore(), Never())
    args = argparse.Namespace(dashboard="127.0.0.1:0", dashboard_token_file=None)
    d = await start_dashboard(auth, args)
    try:
        assert isinstance(auth.presence, FirstOf) and d.web is not None
        cred = asyncio.ensure_future(registered(d, "carol"))
        assert await asyncio.wait_for(cred, 10)
    finally:
        await d.close()


async def test_pin_set_and_change_are_ctap_and_never_echoed(dash: Dashboard):
    r = await http(dash.port, "POST", "/api/pin", {"action": "set", "newPin": "12"})
    assert r.status == 400 and not dash.auth.pin.is_set
    r = await http(dash.port, "POST", "/api/pin", {"action": "set", "newPin": PIN})
    assert r.status == 200 and dash.auth.pin.is_set and PIN not in r.body.decode()
    r = await http(dash.port, "POST", "/api/pin",
                   {"action": "change", "currentPin": "0000", "newPin": "pin-Bravo8"})
    assert r.status == 409 and "PIN_INVALID" in r.json()["error"]
    assert dash.auth.pin.retries == 7
    r = await http(dash.port, "POST", "/api/pin",
                   {"action": "change", "currentPin": PIN, "newPin": "pin-Bravo8"})
    assert r.status == 200
    state = (await http(dash.port, "GET", "/api/state")).json()
    assert state["pin"]["set"] and state["pin"]["retries"] == 8
    commands = [e["command"] for e in dash.log]
    assert "clientPIN" in commands and "PIN changed" in commands
    everything = json.dumps(list(dash.log)) + json.dumps(state)
    assert PIN not in everything and "pin-Bravo8" not in everything


async def test_reset_needs_the_window_and_presence(dash: Dashboard):
    await registered(dash, "alice")
    dash.auth.power_up_time -= 60  # long after power-up
    r = await http(dash.port, "POST", "/api/reset", {"confirm": "RESET"})
    assert r.status == 409 and "NOT_ALLOWED" in r.json()["error"]
    assert (await http(dash.port, "POST", "/api/reset", {})).status == 400
    assert dash.auth.store.count_discoverable() == 1
    assert (await http(dash.port, "POST", "/api/power-cycle", {})).status == 200
    task = asyncio.ensure_future(http(dash.port, "POST", "/api/reset", {"confirm": "RESET"}))
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
        r = await http(dash.port, "POST", "/api/faults", body)
        assert r.status == 200 and r.json()["active"] == active, body
    assert (await http(dash.port, "POST", "/api/faults", {"arm": "nonsense"})).status == 400


async def test_export_writes_keys_only_to_a_server_file(dash: Dashboard, tmp_path):
    cred_id = await registered(dash, "alice")
    target = tmp_path / "export.json"
    r = await http(dash.port, "POST", "/api/credentials/export", {"path": "relative.json"})
    assert r.status == 400
    r = await http(dash.port, "POST", "/api/credentials/export", {"path": str(target)})
    assert r.status == 200 and r.json()["count"] == 1 and "privateKey" not in r.body.decode()
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    [exported] = json.loads(target.read_text())["credentials"]
    assert exported["rpId"] == "example.com" and exported["privateKey"]
    assert (await http(dash.port, "POST", "/api/credentials/export", {"path": str(target)})).status == 409
    public = await http(dash.port, "GET", "/api/credentials/public.json")
    assert "attachment" in public.headers["content-disposition"]
    assert "privateKey" not in public.body.decode() and b64url(cred_id) in public.body.decode()

    # import into a fresh authenticator through its own dashboard
    other = Authenticator(Config(), MemoryStore(), AutoApprove())
    d2 = Dashboard(other, port=0)
    await d2.start()
    try:
        r = await http(d2.port, "POST", "/api/credentials/import", {"path": str(target)})
        assert r.status == 200 and r.json()["added"] == 1
        assert other.store.get_credential(cred_id).user_name == "alice"
    finally:
        await d2.close()


async def test_live_log_over_sse(dash: Dashboard):
    reader, writer = await asyncio.open_connection("127.0.0.1", dash.port)
    writer.write(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{dash.port}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b"text/event-stream" in head
    assert (await reader.readuntil(b"\n\n")).startswith(b"event: hello")
    await registered(dash, "dave")
    seen = []
    def is_log(s: bytes) -> bool:
        return s.startswith(b"event: log") and b"makeCredential" in s

    while not any(is_log(s) for s in seen):
        seen.append(await asyncio.wait_for(reader.readuntil(b"\n\n"), 5))
    kinds = [s.split(b"\n")[0] for s in seen]
    assert b"event: presence" in kinds and b"event: log" in kinds
    event = json.loads(next(s for s in seen if is_log(s)).split(b"data: ")[1])
    assert set(event) == {"kind", "time", "transport", "command", "rp_id", "status", "duration_ms"}
    writer.close()


async def test_static_page_and_headers(dash: Dashboard):
    r = await http(dash.port, "GET", "/")
    assert r.status == 200 and b"/static/app.js" in r.body
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert (await http(dash.port, "GET", "/static/app.js")).status == 200
    assert (await http(dash.port, "GET", "/static/../server.py")).status == 404
    assert (await http(dash.port, "DELETE", "/api/state")).status == 403  # no CSRF header


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
            r = await http(d.port, "POST", "/api/hybrid", {"qr": "FIDO:/123"})
            assert r.status == 400
            if source == "text":
                r = await http(d.port, "POST", "/api/hybrid",
                               {"qr": client.qr_url, "tunnelUrl": tunnel.url()})
            else:
                png = io.BytesIO()
                segno.make(client.qr_url, micro=False).save(png, kind="png", scale=6)
                r = await http(d.port, "POST", f"/api/hybrid/image?tunnelUrl={quote(tunnel.url())}",
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
        [rp_entry] = (await http(d.port, "GET", "/api/credentials")).json()
        assert rp_entry["credentials"][0]["userName"] == "erin"
        assert rp_entry["credentials"][0]["backupEligible"]
        r = await http(d.port, "POST", "/api/hybrid/image", headers={"Content-Type": "image/png"})
        assert r.status == 400
    finally:
        await d.close()

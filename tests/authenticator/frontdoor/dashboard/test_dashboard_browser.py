"""``fido-emu run --presence web --dashboard`` as a subprocess, driven by headless Chromium
(Playwright) on one side and python-fido2 over UDP on the other.

Screenshots go to test-artifacts/ (gitignored); with FIDO_EMU_UPDATE_DOCS=1 the overview is
also written to docs/dashboard.png (kept out of normal runs so tests do not churn a tracked
binary)."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dashboard_support import register
from fido2.client import ClientError
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, CredentialManagement, Ctap2

from transports.udp import open_udp_device

ROOT = Path(__file__).resolve().parents[4]
ARTIFACTS = ROOT / "test-artifacts"
PIN = "pin-Charlie9"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Emulator:
    """The emulator process; its stderr is collected by a thread (never a full pipe)."""

    def __init__(self, tmp: Path, dashboard: str, *extra: str) -> None:
        self.udp, self.reply = free_port(), free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "authenticator.frontdoor.cli", "run", "--transport", "udp",
             "--udp-port", str(self.udp), "--udp-reply-port", str(self.reply),
             "--presence", "web", "--dashboard", dashboard, "--store", str(tmp / "store.db"), *extra],
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=ROOT,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in self.lines:
                if text in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not printed; stderr:\n{''.join(self.lines)}")

    def device(self):
        return open_udp_device(("127.0.0.1", self.udp), ("127.0.0.1", self.reply), timeout=30)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        time.sleep(0.1)
        return "".join(self.lines)


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, body, {"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def shot(page, name: str, docs: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if docs and os.environ.get("FIDO_EMU_UPDATE_DOCS", "") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "docs" / "dashboard.png"), full_page=True)


def stored_credentials(dev) -> list[bytes]:
    """Through CTAP credentialManagement, as a platform would see them (not via the page)."""
    ctap = Ctap2(dev)
    client_pin = ClientPin(ctap)
    token = client_pin.get_pin_token(PIN, ClientPin.PERMISSION.CREDENTIAL_MGMT)
    cm = CredentialManagement(ctap, client_pin.protocol, token)
    R = CredentialManagement.RESULT
    return [c[R.CREDENTIAL_ID]["id"] for rp in cm.enumerate_rps() for c in cm.enumerate_creds(rp[R.RP_ID_HASH])]


def test_approve_deny_table_delete_log_and_forgery(fido_chromium, tmp_path):
    dport = free_port(socket.SOCK_STREAM)
    emu = Emulator(tmp_path, f"127.0.0.1:{dport}")
    url = f"http://127.0.0.1:{dport}/"
    context = fido_chromium.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    try:
        line = emu.wait_for("dashboard on")
        login = line.split("dashboard on ")[1].split()[0]
        token = login.split("?token=")[1]
        assert login == f"{url}?token={token}"
        emu.wait_for("serving profile")
        dev = emu.device()
        ClientPin(Ctap2(dev)).set_pin(PIN)
        response = page.goto(url)  # loopback is no excuse: no token, no dashboard (D1)
        assert response is not None and response.status == 401
        page.goto(login)
        assert "token" not in page.url
        page.wait_for_selector("#conn.live")

        with ThreadPoolExecutor(1) as pool:
            # 1. makeCredential waits; Approve in the page completes it
            pending = pool.submit(register, dev, "alice", PIN)
            card = page.wait_for_selector(".presence-card", timeout=15_000)
            text = card.text_content() or ""
            assert "makeCredential" in text and "example.com" in text and "alice" in text and "udp" in text
            shot(page, "dashboard-presence")
            card.query_selector("button[data-answer=approve]").click()
            alice = pending.result(timeout=30)
            page.wait_for_selector(".presence-card", state="detached")

            # 2. Deny gives OPERATION_DENIED
            pending = pool.submit(register, dev, "bob", PIN)
            page.wait_for_selector(".presence-card button[data-answer=deny]", timeout=15_000).click()
            with pytest.raises(ClientError) as e:
                pending.result(timeout=30)
            assert e.value.cause.code == CtapError.ERR.OPERATION_DENIED

            # 3. the credential appears in the table, live
            row = page.wait_for_selector(f'tr[data-credential-id="{b64url(alice)}"]')
            assert "alice" in (row.text_content() or "") and "ES256" in (row.text_content() or "")

            # the overview for the docs: a pending request over the credentials table
            pending = pool.submit(register, dev, "carol", PIN)
            page.wait_for_selector(".presence-card", timeout=15_000)
            page.wait_for_timeout(300)
            shot(page, "dashboard-overview", docs=True)
            page.click(".presence-card button[data-answer=approve]")
            carol = pending.result(timeout=30)
        page.wait_for_selector(f'tr[data-credential-id="{b64url(carol)}"]')
        shot(page, "dashboard-credentials")
        assert set(stored_credentials(dev)) == {alice, carol}

        # 4. forged requests are refused and change nothing
        body = f'{{"credentialId": "{b64url(alice)}"}}'.encode()
        delete = url + "api/credentials/delete"
        assert post(delete, body, {"X-Fido-Emu-Csrf": "1"}) == 401  # no token
        auth = {"X-Fido-Emu-Token": token}
        assert post(delete, body, {**auth, "X-Fido-Emu-Csrf": "1", "Origin": "http://evil.example"}) == 403
        assert post(delete, body, {**auth, "Origin": url.rstrip("/")}) == 403  # no custom header
        status = page.evaluate(
            """async ([id]) => (await fetch('/api/credentials/delete', {method: 'POST',
                 headers: {'Content-Type': 'text/plain'}, body: JSON.stringify({credentialId: id})})).status""",
            [b64url(alice)],
        )
        assert status == 403  # a "simple" cross-site-style request from the page itself
        assert set(stored_credentials(dev)) == {alice, carol}

        # 5. delete in the page; gone from the store as CTAP credentialManagement sees it
        page.once("dialog", lambda d: d.accept())
        page.click(f'tr[data-credential-id="{b64url(alice)}"] button.delete')
        page.wait_for_selector(f'tr[data-credential-id="{b64url(alice)}"]', state="detached")
        assert stored_credentials(dev) == [carol]

        # 6. the live log shows the commands, filterable
        page.click("#tabs button[data-tab=log]")
        page.wait_for_selector('#log tbody tr[data-command="makeCredential"]')
        rows = page.eval_on_selector_all("#log tbody tr", "rs => rs.map(r => r.innerText)")
        joined = "\n".join(rows)
        assert "OPERATION_DENIED" in joined and "delete credential" in joined
        assert "credentialManagement" in joined and "clientPIN" in joined
        assert PIN not in joined
        shot(page, "dashboard-log")
        page.fill("#log-filter", "makeCredential")
        page.select_option("#log-status", "error")
        rows = page.eval_on_selector_all("#log tbody tr", "rs => rs.map(r => r.innerText)")
        assert rows and all("OPERATION_DENIED" in r for r in rows)

        # 7. the device view: PIN set, retries
        page.click("#tabs button[data-tab=device]")
        page.wait_for_selector("#device tr")
        device_text = page.text_content("#device") or ""
        assert "set · 8 of 8 retries left" in device_text and "udp" in device_text
        shot(page, "dashboard-device")
        # 8. presence mode switched in the page: auto-approve needs no card
        page.select_option("#presence-mode", "auto")
        page.wait_for_selector("#device td:has-text('auto (ask')")
        erin = register(dev, "erin", PIN)
        page.click("#tabs button[data-tab=log]")
        page.select_option("#log-status", "")
        row = page.wait_for_selector(
            f'#log tbody tr[data-command="makeCredential"]:has-text("{b64url(erin)[:8]}")')
        text = row.inner_text()
        assert "erin" in text and "UP UV AT" in text
        page.select_option("#presence-mode", "ask")
        page.click("#tabs button[data-tab=hybrid]")
        page.fill("#qr-text", "FIDO:/0123456789")
        page.click("#qr-form button")
        page.wait_for_selector("#qr-image:not([hidden])")
        shot(page, "dashboard-hybrid")

        # 9. export is a download into the browser, import an upload from it (D1)
        page.click("#tabs button[data-tab=credentials]")
        with page.expect_download() as download:
            page.click("#export-form button")
        exported = json.loads(Path(download.value.path()).read_text())
        ids = {c["credentialId"] for c in exported["credentials"]}
        assert all(c["privateKey"] for c in exported["credentials"]) and len(ids) == 2
        page.set_input_files("#import-file", download.value.path())
        page.wait_for_selector("#toast:has-text('Imported')")
        assert not list(tmp_path.glob("*.json"))  # nothing written on the server side
        dev.close()
    finally:
        context.close()
        err = emu.stop()
    assert emu.proc.returncode == 0, err
    assert PIN not in err


def test_token_login_when_bound_beyond_loopback(fido_chromium, tmp_path):
    dport = free_port(socket.SOCK_STREAM)
    emu = Emulator(tmp_path, f"0.0.0.0:{dport}")
    context = fido_chromium.new_context()
    page = context.new_page()
    try:
        line = emu.wait_for("dashboard on")
        token = line.split("?token=")[1].split()[0]
        url = f"http://127.0.0.1:{dport}/"
        response = page.goto(url)
        assert response is not None and response.status == 401
        assert post(url + "api/power-cycle", b"{}", {"X-Fido-Emu-Csrf": "1"}) == 401
        assert post(url + "api/faults", b'{"arm": "up-0"}',
                    {"X-Fido-Emu-Csrf": "1", "X-Fido-Emu-Token": "nope" * 8}) == 401
        page.goto(f"{url}?token={token}")
        assert "token" not in page.url  # redirected: the token left the address bar
        page.wait_for_selector("#conn.live")
        page.click("#tabs button[data-tab=device]")
        page.check("#fault-up-0")  # a state change through the page, authorised by the cookie
        page.wait_for_selector("#device td:has-text('up-0')")  # (CSP forbids wait_for_function)
    finally:
        context.close()
        emu.stop()

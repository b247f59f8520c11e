"""A bounded fuzz/soak over the HTTP listeners (``fido-emu serve`` and ``fido-emu run
--dashboard``): random and malformed requests, with and without the token, for a fixed count
and a deadline. Afterwards the process is alive, a normal ceremony still works, RSS grew by
less than 40 MB and the log holds no traceback and no ERROR line (issue 13)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
REQUESTS = 1200
DEADLINE = 60.0  # seconds for the whole flood, whatever the machine's load
RSS_BOUND_MB = 40

API_PATHS = ["/openapi.json", "/webauthn/authenticators", "/webauthn/authenticator",
             "/webauthn/authenticator/default", "/webauthn/authenticator/default/credential",
             "/webauthn/authenticator/default/credentials",
             "/webauthn/authenticator/default/credentials/AAAA", "/webauthn/authenticator/default/uv",
             "/webauthn/authenticator/default/presence", "/webauthn/authenticator/default/faults",
             "/webauthn/authenticator/default/power-cycle", "/webauthn/create", "/webauthn/get",
             "/webauthn/authenticator/%2F..%2F/credentials", "/nope", "/" + "a" * 3000]
DASH_PATHS = ["/", "/api/state", "/api/credentials", "/api/log", "/api/log.json",
              "/api/credentials/public.json", "/api/presence", "/api/presence/mode",
              "/api/credentials/delete", "/api/credentials/update", "/api/credentials/export",
              "/api/credentials/import", "/api/pin", "/api/faults", "/api/hybrid", "/api/hybrid/qr",
              "/static/app.js", "/static/../server.py", "/api/events?x=" + "%00" * 10]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def random_json(rng: random.Random, depth: int = 0):
    choice = rng.randrange(8 if depth < 3 else 5)
    if choice == 0:
        return rng.randrange(-2**70, 2**70)
    if choice == 1:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(12)))
    if choice == 2:
        return rng.choice([None, True, False, 1.5e308, "", "!!!", "FIDO:/123"])
    if choice == 3:
        return rng.choice(["approve", "auto", "deny", "RESET", "bad-signature", "error=0x27"])
    if choice == 4:
        return b64(rng.randbytes(rng.randrange(40)))
    if choice == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["origin", "options", "mode", "answer", "arm", "id", "credentialId", "rpId",
            "privateKey", "confirm", "action", "newPin", "qr", "text", "isUserVerified",
            "authenticatorId", "transport", "protocol", "challenge", "rp", "user", "path"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def request_bytes(rng: random.Random, port: int, token: str, paths: list[str]) -> bytes:
    kind = rng.randrange(10)
    if kind == 0:  # not HTTP at all
        return rng.randbytes(rng.randrange(1, 300))
    method = rng.choice(["GET", "POST", "POST", "DELETE", "PUT", "OPTIONS", "G\x00T"])
    path = rng.choice(paths)
    body = json.dumps(random_json(rng)).encode() if kind < 8 else rng.randbytes(rng.randrange(500))
    headers = [f"Host: 127.0.0.1:{port}"]
    if rng.random() < 0.7:
        headers.append(f"X-Fido-Emu-Token: {token}")
    if rng.random() < 0.8:
        headers.append("X-Fido-Emu-Csrf: 1")
    if rng.random() < 0.2:
        headers.append(rng.choice(["Origin: http://evil.example", "Host: evil.example",
                                   "Transfer-Encoding: chunked", "Content-Length: -1",
                                   "Content-Length: 99999999999", "X: " + "y" * 20000]))
    length = len(body) if rng.random() < 0.9 else rng.randrange(0, 2 * len(body) + 2)
    headers.append(f"Content-Length: {length}")
    head = f"{method} {path} HTTP/1.{rng.choice([0, 1])}\r\n" + "\r\n".join(headers) + "\r\n\r\n"
    return head.encode("utf-8", "surrogateescape") + body


async def send_one(port: int, data: bytes) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, TimeoutError):
        return
    try:
        writer.write(data)
        await asyncio.wait_for(writer.drain(), 5)
        writer.write_eof()
        await asyncio.wait_for(reader.read(65536), 5)  # the head is enough; SSE is cut off
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


class Proc:
    def __init__(self, argv: list[str], tmp: Path, ready: str) -> None:
        env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp)}
        self.proc = subprocess.Popen([sys.executable, "-m", "authenticator.frontdoor.cli", *argv],
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                     cwd=ROOT, env=env)
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()
        end = time.monotonic() + 30
        while not any(ready in line for line in self.lines):
            assert time.monotonic() < end and self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.05)
        url = next(line for line in self.lines if "?token=" in line).split(" on ")[1].split()[0]
        self.port = int(url.split(":")[2].split("/")[0])
        self.token = url.split("?token=")[1]

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        return "".join(self.lines)


def ceremony(port: int, token: str) -> None:
    """makeCredential + getAssertion through ``fido-emu serve``."""
    import http.client

    def post(path: str, body: dict | None, method: str = "POST") -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(method, path, json.dumps(body) if body is not None else None,
                     {"X-Fido-Emu-Token": token})
        r = conn.getresponse()
        out = json.loads(r.read())
        conn.close()
        assert r.status == 200, out
        return out["value"]

    # the fuzzer may have removed "default" or added authenticators up to the cap
    for entry in post("/webauthn/authenticators", None, "GET"):
        post(f"/webauthn/authenticator/{entry['authenticatorId']}", None, "DELETE")
    auth_id = post("/webauthn/authenticator", {"hasResidentKey": True})
    post("/webauthn/create", {"authenticatorId": auth_id, "origin": "https://example.com",
                              "options": {"challenge": b64(os.urandom(32)),
                                          "rp": {"id": "example.com", "name": ""},
                                          "user": {"id": b64(b"u"), "name": "", "displayName": ""},
                                          "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
                                          "authenticatorSelection": {"residentKey": "required"}}})
    got = post("/webauthn/get", {"authenticatorId": auth_id, "origin": "https://example.com",
                                 "options": {"challenge": b64(os.urandom(32)),
                                             "rpId": "example.com"}})
    assert got["type"] == "public-key"


async def flood(port: int, token: str, paths: list[str], seed: int) -> int:
    rng = random.Random(seed)
    sem = asyncio.Semaphore(32)
    end = asyncio.get_running_loop().time() + DEADLINE
    sent = 0

    async def one(data: bytes) -> None:
        async with sem:
            if asyncio.get_running_loop().time() < end:
                await send_one(port, data)

    batch = [request_bytes(rng, port, token, paths) for _ in range(REQUESTS)]
    tasks = [asyncio.ensure_future(one(d)) for d in batch]
    await asyncio.wait(tasks, timeout=DEADLINE + 15)
    for t in tasks:
        sent += t.done()
        t.cancel()
    return sent


@pytest.mark.parametrize("listener", ["serve", "dashboard"])
async def test_fuzz_soak_listener_survives_and_still_serves(listener, tmp_path):
    if listener == "serve":
        proc = Proc(["serve", "--port", "0", "--store", str(tmp_path / "s.db"), "--create"],
                    tmp_path, "serving on")
        paths = API_PATHS
    else:
        udp, reply, dport = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM), free_port()
        proc = Proc(["run", "--transport", "udp", "--udp-port", str(udp), "--udp-reply-port",
                     str(reply), "--presence", "auto", "--dashboard", f"127.0.0.1:{dport}",
                     "--store", str(tmp_path / "d.db")], tmp_path, "serving profile")
        paths = DASH_PATHS
    try:
        await flood(proc.port, proc.token, paths, seed=1)  # warm-up: imports, caches
        before = proc.rss_mb()
        sent = await flood(proc.port, proc.token, paths, seed=2)
        growth = proc.rss_mb() - before
        assert proc.proc.poll() is None, proc.stop()
        assert sent > REQUESTS // 2
        assert growth < RSS_BOUND_MB, f"RSS grew by {growth:.0f} MB"
        if listener == "serve":
            await asyncio.to_thread(ceremony, proc.port, proc.token)
        else:
            from fido2.ctap2 import Ctap2

            from transports.udp import open_udp_device
            dev = await asyncio.to_thread(open_udp_device, ("127.0.0.1", udp),
                                          ("127.0.0.1", reply), timeout=30)
            info = await asyncio.to_thread(lambda: Ctap2(dev).get_info())
            assert "FIDO_2_0" in info.versions
            dev.close()
    finally:
        log = proc.stop()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]

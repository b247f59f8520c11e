"""``fido-emu serve`` per ceremony: the HTTP JSON API in its own process, one keep-alive
client connection, ``POST /webauthn/create`` and ``POST /webauthn/get`` with WebAuthn L3 JSON
options (the same work as the JSON client rows), each against its floor."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from measure import Result, interleaved
from paths import ORIGIN, _creation_options, _request_options

REPO = Path(__file__).resolve().parents[2]


class Serve:
    def __init__(self, tmp: Path) -> None:
        token_file = tmp / "serve.token"
        self.log = tmp / "serve.log"
        args = [sys.executable, "-m", "authenticator.frontdoor.cli", "serve", "--port", "0",
                "--store", str(tmp / "serve.db"), "--create", "--token-file", str(token_file)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        url = None
        while url is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fido-emu serve did not start: {self.log.read_text()[-500:]}")
            found = re.search(r"serving on (\S+)", self.log.read_text())
            if found:
                url = urlparse(found.group(1))
            else:
                time.sleep(0.05)
        self.token = token_file.read_text().strip()
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)

    def post(self, path: str, body: dict) -> dict:
        data = json.dumps(body).encode()
        self.conn.request("POST", path, data, {"Content-Type": "application/json",
                                               "X-Fido-Emu-Token": self.token})
        response = self.conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status} {payload[:200]!r}")
        return json.loads(payload)

    def close(self) -> None:
        self.conn.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run(tmp: Path, n: int, rounds: int) -> list[Result]:
    serve = Serve(tmp)
    group = "fido-emu serve (HTTP JSON API, separate process, keep-alive connection)"
    users = iter(range(10**9))
    try:
        created = serve.post("/webauthn/create", {
            "origin": ORIGIN, "options": _creation_options(b"serve-user", resident=False)})
        raw_id = (created.get("value") or created)["rawId"]

        def batch(fn):
            def run_batch(k: int) -> float:
                t = time.perf_counter()
                for _ in range(k):
                    fn()
                return time.perf_counter() - t

            return run_batch

        m = max(10, n // 10)
        results = [
            interleaved("POST /webauthn/get", batch(lambda: serve.post(
                "/webauthn/get", {"origin": ORIGIN, "options": _request_options(raw_id)})),
                m, rounds, "sign"),
            interleaved("POST /webauthn/create, non-resident", batch(lambda: serve.post(
                "/webauthn/create", {"origin": ORIGIN, "options": _creation_options(
                    next(users).to_bytes(8, "big"), resident=False)})), m, rounds, "keygen+sign"),
        ]
    finally:
        serve.close()
    for r in results:
        r.group = group
        print(f"  {r.name}: {r.median_us:.0f} µs, ratio {r.median_ratio:.2f}", flush=True)
    return results

"""Ceremonies per second through ``fido-emu serve`` vs one ``fido-emu webauthn get`` call.

RP test suites in any language drive the emulator over HTTP; a ceremony there must cost far
less than a CLI call (issue 11). Measures ``POST /webauthn/get`` (a discoverable-credential
sign-in, SQLite store) on one keep-alive connection and with a new connection per request,
and the median wall time of the equivalent CLI call.

Usage: python tools/bench/serve_rate.py [--seconds S] [--cli-runs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "https://example.com"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def create_options() -> dict:
    return {"challenge": b64(os.urandom(32)), "rp": {"id": "example.com", "name": "Example"},
            "user": {"id": b64(b"bench"), "name": "bench", "displayName": "Bench"},
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
            "authenticatorSelection": {"residentKey": "required", "userVerification": "discouraged"}}


def get_options() -> dict:
    return {"challenge": b64(os.urandom(32)), "rpId": "example.com",
            "userVerification": "discouraged"}


def post(conn: http.client.HTTPConnection, token: str, path: str, body: dict) -> dict:
    data = json.dumps(body).encode()
    conn.request("POST", path, data, {"Content-Type": "application/json",
                                      "X-Fido-Emu-Token": token})
    r = conn.getresponse()
    out = json.loads(r.read())
    if r.status != 200:
        raise SystemExit(f"{path}: {r.status} {out}")
    return out["value"]


def rate(port: int, token: str, seconds: float, keep_alive: bool) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n, end = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        if not keep_alive:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        post(conn, token, "/webauthn/get", {"origin": ORIGIN, "options": get_options()})
        n += 1
    conn.close()
    return n / (time.perf_counter() - start)


def cli_seconds(store: Path, runs: int) -> float:
    times = []
    opts = json.dumps(get_options())
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "authenticator.frontdoor.cli", "webauthn", "get",
                        "--origin", ORIGIN, "--store", str(store), "--options", "-"],
                       input=opts, capture_output=True, text=True, check=True, cwd=ROOT)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--cli-runs", type=int, default=5)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store.db"
        env = {**os.environ, "XDG_RUNTIME_DIR": tmp, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "authenticator.frontdoor.cli", "serve", "--port", "0",
             "--store", str(store), "--create"], stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env=env)
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            url = line.split("serving on ")[1].split()[0]
            port = int(url.split(":")[2].split("/")[0])
            token = url.split("?token=")[1]
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            post(conn, token, "/webauthn/create", {"origin": ORIGIN, "options": create_options()})
            conn.close()
            keep = rate(port, token, args.seconds, True)
            fresh = rate(port, token, args.seconds, False)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        cli = cli_seconds(store, args.cli_runs)
    result = {"serve_keepalive_per_s": round(keep, 1), "serve_new_connection_per_s": round(fresh, 1),
              "cli_call_s": round(cli, 3), "speedup_vs_cli": round(keep * cli, 1)}
    print(f"serve: {keep:.0f} ceremonies/s (keep-alive), {fresh:.0f}/s (new connection each); "
          f"CLI: {cli * 1000:.0f} ms per call -> serve is {keep * cli:.0f}x cheaper")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

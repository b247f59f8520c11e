"""In the guest: sign in to the demo RP with `fido-emu webauthn get` on the store that
Chromium registered into over USB (the same credential through the CLI)."""

import json
import subprocess
import sys
import urllib.request

BASE = "http://localhost:8080"


def post(path: str, body: dict) -> dict:
    req = urllib.request.Request(BASE + path, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


store, python = sys.argv[1], sys.argv[2]
begin = post("/authenticate/begin", {"username": ""})
out = subprocess.run(
    # no --set: the store remembers the profile and overrides `fido-emu run` was given
    [python, "-m", "authenticator.frontdoor.cli", "webauthn", "get", "--origin", BASE, "--store", store],
    input=json.dumps({"publicKey": begin["publicKey"]}), capture_output=True, text=True, timeout=300,
)
if out.returncode != 0:
    sys.exit(f"fido-emu webauthn get failed: {out.stderr}")
result = post("/authenticate/complete", {"flow": begin["flow"], "credential": json.loads(out.stdout)})
assert result.get("ok"), result
print("CHECK ok cli-signin-same-store", json.dumps(result)[:160])

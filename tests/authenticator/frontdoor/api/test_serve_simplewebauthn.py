"""SimpleWebAuthn server 14 (Node, its defaults untouched) registers and signs in through
``fido-emu serve`` for every profile: an RP test suite in another language, as issue 11 asks.
Uses the Node quickstart's ``node_modules`` (tools/quickstart/node, installed by .ci/run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from authenticator import Authenticator, Config
from authenticator.core.presence import AutoApprove
from authenticator.frontdoor.api import ApiServer
from storage.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[4]
NODE_DIR = ROOT / "tools/quickstart/node"
REQUIRED = os.environ.get("FIDO_EMU_REQUIRE_BROWSER", "").lower() in ("1", "true", "yes")

SCRIPT = r"""
import { generateAuthenticationOptions, generateRegistrationOptions,
         verifyAuthenticationResponse, verifyRegistrationResponse } from '@simplewebauthn/server';
const base = process.env.SERVE_URL, token = process.env.SERVE_TOKEN;
const origin = 'http://localhost:8080', rpID = 'localhost';
async function api(path, body) {
  const r = await fetch(base + path, { method: 'POST', body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json', 'X-Fido-Emu-Token': token } });
  const out = await r.json();
  if (r.status !== 200) throw new Error(`${path}: ${r.status} ${JSON.stringify(out)}`);
  return out.value;
}
const id = await api('webauthn/authenticator', { 'fidoEmu:profile': process.env.PROFILE });
const reg = await generateRegistrationOptions({ rpName: 'serve', rpID, userName: 'alice' });
const created = await api('webauthn/create', { authenticatorId: id, origin, options: reg });
const v = await verifyRegistrationResponse({ response: created, expectedChallenge: reg.challenge,
  expectedOrigin: origin, expectedRPID: rpID, requireUserVerification: false });
if (!v.verified) throw new Error('registration not verified');
const { credential } = v.registrationInfo;
const counters = [];
let counter = credential.counter;
for (let i = 0; i < 2; i++) {
  const opts = await generateAuthenticationOptions({ rpID,
    allowCredentials: [{ id: credential.id, transports: credential.transports }] });
  const got = await api('webauthn/get', { authenticatorId: id, origin, options: opts });
  const a = await verifyAuthenticationResponse({ response: got, expectedChallenge: opts.challenge,
    expectedOrigin: origin, expectedRPID: rpID, credential: { ...credential, counter },
    requireUserVerification: false });
  if (!a.verified) throw new Error('authentication not verified');
  counter = a.authenticationInfo.newCounter;
  counters.push(counter);
}
console.log(JSON.stringify({ ok: true, counters }));
"""


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    if not node or not (NODE_DIR / "node_modules/@simplewebauthn/server/package.json").exists():
        reason = "node or tools/quickstart/node/node_modules missing (.ci/run installs them)"
        if REQUIRED:
            pytest.fail(f"FIDO_EMU_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return node


@pytest.mark.parametrize("profile", ["security-key", "synced-passkey", "platform"])
async def test_simplewebauthn_defaults_through_serve(node, profile):
    import asyncio

    server = ApiServer(port=0)
    server.add(Authenticator(Config(), MemoryStore(), AutoApprove()), "default")
    await server.start()
    try:
        env = {**os.environ, "SERVE_URL": server.url, "SERVE_TOKEN": server.token,
               "PROFILE": profile}
        proc = await asyncio.create_subprocess_exec(
            node, "--input-type=module", "-e", SCRIPT, cwd=NODE_DIR, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        await server.close()
    assert proc.returncode == 0, err.decode()[-2000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    counters = result["counters"]
    assert result["ok"]
    if profile == "security-key":
        assert counters == [1, 2]
    else:  # synced passkeys keep 0; a platform key counts up
        assert counters == [0, 0] or 0 < counters[0] < counters[1]

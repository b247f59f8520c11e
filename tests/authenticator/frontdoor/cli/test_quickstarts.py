"""The quickstarts CI runs: SimpleWebAuthn server 14 (Node) and py_webauthn 3, each with its
defaults untouched, register and sign in against the fido-emu CLI for every profile,
residentKey required/discouraged, allowCredentials listed/empty, every algorithm, and
attestation direct (self and x5c to our own root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
NODE_DIR = ROOT / "tools/quickstart/node"
PY_SCRIPT = ROOT / "tools/quickstart/python/quickstart.py"
CLI = f"{sys.executable} -m authenticator.frontdoor.cli"
PROFILES = ["security-key", "synced-passkey", "platform"]
REQUIRED = os.environ.get("FIDO_EMU_REQUIRE_BROWSER", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"FIDO_EMU_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node_quickstart() -> list[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        unavailable("node/npm missing (apt-get install nodejs npm); .ci/run installs them")
    if not (NODE_DIR / "node_modules/@simplewebauthn/server/package.json").exists():
        out = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR, capture_output=True, text=True, timeout=600,
        )
        if out.returncode != 0:
            unavailable(f"npm install @simplewebauthn/server failed: {out.stderr[-500:]}")
    return [node, str(NODE_DIR / "quickstart.mjs")]


@pytest.fixture(scope="module")
def python_quickstart() -> list[str]:
    pytest.importorskip("webauthn", reason="py_webauthn is a dev dependency")
    return [sys.executable, str(PY_SCRIPT)]


@pytest.fixture(params=["node", "python"])
def quickstart(request) -> tuple[str, list[str]]:
    fixture = "node_quickstart" if request.param == "node" else "python_quickstart"
    return request.param, request.getfixturevalue(fixture)


def run(argv: list[str], *args: str) -> tuple[int, dict]:
    out = subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT), "FIDO_EMU": CLI},
    )
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr[-2000:]
    return out.returncode, json.loads(lines[-1])


def test_defaults_untouched(quickstart, tmp_path):
    _, argv = quickstart
    status, result = run(argv, "--store", str(tmp_path / "s.db"))
    assert status == 0 and result["ok"], result
    assert result["fmt"] == "none"  # attestation "none": the client strips it, as browsers do
    assert [s["counter"] for s in result["signIns"]] == [1, 2]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("rk", ["required", "discouraged"])
@pytest.mark.parametrize("allow", ["listed", "empty"])
def test_profiles_rk_allow(quickstart, tmp_path, profile, rk, allow):
    _, argv = quickstart
    status, result = run(argv, "--store", str(tmp_path / "s.db"), "--profile", profile,
                         "--rk", rk, "--allow", allow)
    if rk == "discouraged" and allow == "empty":
        # a non-discoverable credential cannot be found without its id: the browser's error
        assert status == 1 and result["step"] == "get", result
        assert "NotAllowedError" in result["error"] and "NO_CREDENTIALS" in result["error"]
        return
    assert status == 0 and result["ok"], result
    counters = [s["counter"] for s in result["signIns"]]
    if profile == "synced-passkey":
        assert counters == [0, 0] and result["backedUp"] is True
    else:
        assert counters == [1, 2] and result["backedUp"] is False
    assert all(s["userVerified"] == (profile != "security-key") for s in result["signIns"])


ALGS = {"node": [-7, -8, -35, -257], "python": [-7, -8, -257]}  # py_webauthn 3 has no ES384


@pytest.mark.parametrize("alg", [-7, -8, -35, -257])
def test_every_algorithm_with_direct_self_attestation(quickstart, tmp_path, alg):
    name, argv = quickstart
    if alg not in ALGS[name]:
        pytest.skip(f"{name}'s RP library does not verify COSE algorithm {alg}")
    status, result = run(argv, "--store", str(tmp_path / "s.db"), f"--alg={alg}",
                         "--attestation", "direct")
    assert status == 0 and result["ok"], result
    assert result["alg"] == alg and result["fmt"] == "packed"


def test_direct_x5c_attestation_chains_to_our_root(quickstart, tmp_path):
    _, argv = quickstart
    store, ca = tmp_path / "s.db", tmp_path / "ca"
    init = subprocess.run(
        [sys.executable, "-m", "authenticator.frontdoor.cli", "attestation", "init",
         "--dir", str(ca), "--store", str(store)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )
    assert init.returncode == 0, init.stderr
    status, result = run(argv, "--store", str(store), "--attestation", "direct",
                         "--root", str(ca / "root-ca.pem"))
    assert status == 0 and result["ok"] and result["fmt"] == "packed", result
    # and a foreign root is refused: the chain really is checked
    other = tmp_path / "other"
    subprocess.run(
        [sys.executable, "-m", "authenticator.frontdoor.cli", "attestation", "init",
         "--dir", str(other), "--store", str(tmp_path / "o.db")],
        capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120, check=True,
    )
    bad = subprocess.run(
        [*argv, "--store", str(store), "--attestation", "direct", "--root", str(other / "root-ca.pem")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT), "FIDO_EMU": CLI},
    )
    assert bad.returncode != 0

"""Fixtures of the page-bridge suites: a store with an attestation root made by the CLI, the
SimpleWebAuthn bundle from npm, and relying parties on local origins."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from authenticator.rp_testing.pytest_plugin import browser_unavailable

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture(scope="session")
def swa_bundle() -> Path:
    """@simplewebauthn/browser's UMD bundle, installed by tools/browser/setup-page-bridge.sh."""
    node_dir = Path(os.environ.get("FIDO_EMU_NODE_DIR") or ROOT / ".vm/node")
    bundle = node_dir / "node_modules/@simplewebauthn/browser/dist/bundle/index.umd.min.js"
    if not bundle.exists():
        run = subprocess.run(
            ["bash", str(ROOT / "tools/browser/setup-page-bridge.sh")],
            capture_output=True, text=True, timeout=300,
        )
        if run.returncode != 0 or not bundle.exists():
            browser_unavailable(f"@simplewebauthn/browser not installed: {run.stderr.strip()[-300:]}")
    return bundle


@pytest.fixture
def profile(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("fido_profile")
    return marker.args[0] if marker else "security-key"


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def attestation_root(tmp_path: Path, store_path: Path, profile: str) -> bytes:
    """``fido-emu attestation init`` on the test's store: the root CA's PEM."""
    from authenticator.frontdoor.attestation_ca import ROOT_CERT_FILE

    directory = tmp_path / "attestation"
    from swa_rp import cli

    run = cli("attestation", "init", "--store", str(store_path), "--profile", profile,
              "--dir", str(directory))
    assert run.returncode == 0, run.stderr
    return (directory / ROOT_CERT_FILE).read_bytes()


@pytest.fixture
def fido_authenticator(store_path: Path, profile: str, attestation_root: bytes):
    """The plugin's fixture, on the store the CLI prepared (so the CLI can share it)."""
    from authenticator import Authenticator, Config
    from storage.sqlite import SqliteStore

    store = SqliteStore(store_path)
    auth = Authenticator(Config.for_profile(profile), store)
    yield auth
    store.close()


@pytest.fixture
def swa_server(swa_bundle: Path, attestation_root: bytes):
    """A SimpleWebAuthn page + py_webauthn verifier trusting our attestation root."""
    from swa_rp import PAGE, RelyingParty, Server

    server = Server(RelyingParty("localhost", [], [attestation_root]), swa_bundle, {"/": PAGE})
    yield server
    server.close()

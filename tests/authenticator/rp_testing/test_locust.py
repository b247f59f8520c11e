"""Locust, distributed: one master and two workers on loopback drive the demo RP with
virtual users that each own an authenticator; every ceremony must be verified by the RP.

The run is bounded by work (FIDO_LOAD_CEREMONIES per user; the master quits when all were
reported), not by time. The RP's own database is the judge: one credential per user and
exactly the sign-ins Locust reported, none failed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.authenticator.rp_testing.browser.browser_support import load_rp_demo

ROOT = Path(__file__).resolve().parents[3]
USERS, PER_USER = 6, 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("store", ["memory", "postgres"])
def test_master_and_two_workers_every_ceremony_verified_at_the_rp(tmp_path, request, store):
    """``postgres``: both workers' users share one PostgreSQL store (two processes)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FIDO_LOAD_CEREMONIES": str(PER_USER)}
    if store == "postgres":
        env["FIDO_LOAD_STORE"] = request.getfixturevalue("postgres_url")
        env["FIDO_EMU_KEY_FILE"] = str(tmp_path / "fleet.key")
    url, stop = load_rp_demo().start(port=0)
    port = _free_port()
    locust = [sys.executable, "-m", "locust", "-f", str(ROOT / "tools/load/locustfile.py")]
    workers = [
        subprocess.Popen(
            [*locust, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    try:
        master = subprocess.run(
            [*locust, "--master", "--master-bind-host", "127.0.0.1",
             "--master-bind-port", str(port), "--expect-workers", "2", "--headless",
             "-u", str(USERS), "-r", str(USERS), "--host", url, "--run-time", "240s",
             "--json", "--skip-log"],
            env=env, capture_output=True, text=True, timeout=300,
        )
        for w in workers:
            w.wait(60)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        rp = stop.rp
        stop()
    assert master.returncode == 0, master.stderr[-2000:]
    stats = {(s["method"], s["name"]): s for s in json.loads(master.stdout)}
    register, login = stats[("WEBAUTHN", "register")], stats[("WEBAUTHN", "login")]
    assert register["num_failures"] == login["num_failures"] == 0
    assert register["num_requests"] == USERS
    assert login["num_requests"] == USERS * (PER_USER - 1)
    assert all(s["num_failures"] == 0 for s in stats.values())
    # the RP's own record: every ceremony Locust counted was verified there
    creds = rp.dump()["credentials"]
    assert len(creds) == USERS and len({c["username"] for c in creds}) == USERS
    assert sum(c["sign_ins"] for c in creds) == USERS * (PER_USER - 1)
    # each user signs in with its own passkey: its own authenticator (memory), or, on the
    # shared store, by picking its own account as a person would on a shared phone
    assert all(c["sign_ins"] == PER_USER - 1 for c in creds)
    if store == "postgres":  # one shared store holds every user's passkey
        from storage.postgres import PostgresStore

        shared = PostgresStore(env["FIDO_LOAD_STORE"], key_path=tmp_path / "fleet.key")
        try:
            assert shared.count_discoverable() == USERS
        finally:
            shared.close()

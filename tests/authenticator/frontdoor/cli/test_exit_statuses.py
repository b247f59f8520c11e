"""Verbs exit with the documented status (README, --help: 2 usage, 3 store or I/O), not 1.

No PostgreSQL server is needed: an unreachable one is a TCP port bound but not listening.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]


def _migrate(store: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FIDO_EMU_STORE", None)
    return subprocess.run(
        [sys.executable, "-m", "authenticator.frontdoor.cli", "store", "migrate", "--store", store],
        capture_output=True, text=True, env=env, timeout=60,
    )


def test_unreachable_server_is_a_store_error_exit_3():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = s.getsockname()[1]
        proc = _migrate(f"postgresql://fido:secret-pw@127.0.0.1:{port}/fido")
    assert proc.returncode == 3, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"fido-emu: error: cannot connect to PostgreSQL at 127.0.0.1:{port}/fido")
    assert "secret-pw" not in proc.stderr


def test_a_sqlite_path_is_a_usage_error_exit_2(tmp_path):
    proc = _migrate(str(tmp_path / "store.db"))
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "needs a PostgreSQL store" in line
    assert not (tmp_path / "store.db").exists()


def test_an_unreadable_cxf_file_is_an_io_error_exit_3(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "authenticator.frontdoor.cli", "credentials", "import",
         str(tmp_path / "missing.cxf"), "--store", str(tmp_path / "s.db")],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("fido-emu: error: cannot read ")
    assert not (tmp_path / "s.db").exists()


def _cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "authenticator.frontdoor.cli", *argv],
                          capture_output=True, text=True, env=env, timeout=60)


def test_attestation_bad_country_is_usage_exit_2(tmp_path):
    proc = _cli("attestation", "init", "--country", "USA", "--dir", str(tmp_path / "ca"),
                "--store", str(tmp_path / "s.db"))
    assert proc.returncode == 2, proc.stderr
    assert "--country" in proc.stderr and not (tmp_path / "ca").exists()


def test_attestation_metadata_without_a_root_ca_is_exit_3(tmp_path):
    proc = _cli("attestation", "metadata", "--dir", str(tmp_path / "ca"),
                "--store", str(tmp_path / "s.db"), "--create")
    assert proc.returncode == 3, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "no root CA in" in line

"""A throwaway PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` in a temp dir.

Debian's ``postgresql`` package (``.ci/run`` installs it) puts the binaries in
/usr/lib/postgresql/*/bin. PostgreSQL refuses to run as root, so as root (CI) the cluster
runs as ``nobody`` through ``runuser``. Password (SCRAM) authentication on 127.0.0.1 only:
loopback is not a trust boundary. Without PostgreSQL the tests skip, unless
``FIDO_EMU_REQUIRE_VM=1`` (CI), where a missing PostgreSQL is a failure.

Use the ``postgres_url`` fixture: a fresh database on the session's cluster per test.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _required() -> bool:
    return os.environ.get("FIDO_EMU_REQUIRE_VM", "") not in ("", "0")


def unavailable(reason: str) -> None:
    if _required():
        pytest.fail(f"FIDO_EMU_REQUIRE_VM=1 but PostgreSQL is unavailable: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {reason}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    bindir: Path
    root: Path
    port: int
    password: str
    runas: list[str]
    _n: int = 0

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://fido:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.runas, *args], check=True, capture_output=True, timeout=120)

    def new_database(self) -> str:
        import psycopg

        self._n += 1
        name = f"t{os.getpid()}_{self._n}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self.runas, str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"),
             "-m", "immediate", "stop"],
            capture_output=True, timeout=60,
        )

    def start(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-w", "-t", "60",
            "-l", str(self.root / "log"),
            "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1",
            "start",
        )


def start_cluster() -> Cluster:
    bindir = _bindir()
    if bindir is None:
        unavailable("no pg_ctl (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="fido-pg-"))
    runas: list[str] = []
    if os.geteuid() == 0:
        runas = ["runuser", "-u", "nobody", "--"]
        os.chmod(root, 0o700)
        shutil.chown(root, "nobody")
    password = secrets.token_urlsafe(16)
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    if runas:
        shutil.chown(pwfile, "nobody")
    cluster = Cluster(bindir, root, _free_port(), password, runas)
    try:
        cluster._run(
            str(bindir / "initdb"), "-D", str(root / "data"), "-U", "fido",
            "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-instructions",
        )
        cluster.start()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        err = getattr(e, "stderr", b"") or b""
        shutil.rmtree(root, ignore_errors=True)
        unavailable(f"cannot start a cluster: {err.decode(errors='replace')[-300:]} {log[-300:]}")
    pwfile.unlink()
    return cluster


@pytest.fixture(scope="session")
def postgres_cluster():
    cluster = start_cluster()
    yield cluster
    cluster.stop()
    shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster) -> str:
    """A fresh, migrated database on the session's cluster."""
    from storage.postgres import migrate

    url = postgres_cluster.new_database()
    migrate(url)
    return url

"""SQLite store: key file integrity (D2), race-free key creation (D3), atomic range-checked
counters (D4), one truth across processes (D10-D12), file modes (D8), and counts that stay
right through SIGKILL and concurrent writers (issue 14)."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from storage.base import CounterRangeError
from storage.sealing import DeviceKeys
from storage.sqlite import (
    KeyFileError,
    KeyFileMismatch,
    KeyFileMissing,
    SqliteStore,
    key_check,
)
from tests.storage.contract import record, rp_hash

REPO = Path(__file__).resolve().parents[2]


def sealed_record(store: SqliteStore, **kw):
    """A record sealed the way the core seals it, so a wrong key is detectable."""
    rec = record(**kw)
    rec.sealed_key = DeviceKeys(store.device_secret()).records.seal(b"k" * 32, rec.credential_id)
    return rec


# -- D2: key file integrity --------------------------------------------------------------


def test_d2_missing_key_for_a_non_empty_store_is_fatal_not_a_new_key(tmp_path):
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    store.put_credential(sealed_record(store))
    store.close()
    (tmp_path / "s.db.key").unlink()
    with pytest.raises(KeyFileMissing) as err:
        SqliteStore(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and str(path) + ".key" in msg
    assert "restore" in msg
    assert not (tmp_path / "s.db.key").exists()  # no silently new key


def test_d2_missing_key_with_only_state_is_fatal_too(tmp_path):
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    store.set_state("pin", b"sealed pin hash")
    store.close()
    (tmp_path / "s.db.key").unlink()
    with pytest.raises(KeyFileMissing):
        SqliteStore(path)


@pytest.mark.parametrize("bit", [0, 37 * 8 - 1, 4 * 8 + 5])
def test_d2_a_flipped_bit_in_the_key_is_fatal(tmp_path, bit):
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    store.put_credential(sealed_record(store))
    store.close()
    key = tmp_path / "s.db.key"
    data = bytearray(key.read_bytes())
    bit = min(bit, len(data) * 8 - 1)
    data[bit // 8] ^= 1 << (bit % 8)
    key.write_bytes(bytes(data))
    with pytest.raises(KeyFileError) as err:
        SqliteStore(path)
    assert "\n" not in str(err.value) and str(key) in str(err.value)
    assert key.read_bytes() == bytes(data)  # left as it was, for the user to restore


def test_d2_another_stores_key_is_a_mismatch(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    store = SqliteStore(a)
    store.put_credential(sealed_record(store))
    store.close()
    SqliteStore(b).close()
    os.replace(tmp_path / "b.db.key", tmp_path / "a.db.key")
    with pytest.raises(KeyFileMismatch) as err:
        SqliteStore(a)
    assert str(a) in str(err.value) and str(a) + ".key" in str(err.value)


def test_d2_unreadable_key_is_a_clear_error(tmp_path):
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    key = tmp_path / "s.db.key"
    key.unlink()
    key.mkdir()  # unreadable as a file, even for root
    with pytest.raises(KeyFileError) as err:
        SqliteStore(path)
    assert str(key) in str(err.value) and "\n" not in str(err.value)


def test_d2_a_new_empty_store_gets_a_key_and_records_its_check_value(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    secret = store.device_secret()
    store.close()
    db = sqlite3.connect(tmp_path / "s.db")
    (check,) = db.execute("SELECT value FROM meta WHERE name='key_check'").fetchone()
    assert check == key_check(secret) and secret not in check
    # the secret itself is nowhere in the database files
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*") if not p.name.endswith(".key"))
    assert secret not in blob
    db.close()


V1_SCHEMA = """
CREATE TABLE credentials (
    credential_id BLOB PRIMARY KEY, rp_id TEXT NOT NULL, rp_id_hash BLOB NOT NULL,
    rp_name TEXT, user_id BLOB NOT NULL, user_name TEXT, user_display_name TEXT,
    algorithm INTEGER NOT NULL, sealed_key BLOB NOT NULL, public_key BLOB NOT NULL,
    discoverable INTEGER NOT NULL, cred_protect INTEGER NOT NULL,
    backup_eligible INTEGER NOT NULL, backup_state INTEGER NOT NULL,
    hmac_secret INTEGER NOT NULL, large_blob_key INTEGER NOT NULL, cred_blob BLOB,
    created REAL NOT NULL, extra TEXT NOT NULL DEFAULT '{}') WITHOUT ROWID;
CREATE INDEX credentials_by_rp ON credentials (rp_id_hash, created);
CREATE UNIQUE INDEX credentials_rp_user ON credentials (rp_id_hash, user_id) WHERE discoverable = 1;
CREATE TABLE counters (key BLOB PRIMARY KEY, lease INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE state (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
"""


def _v1_store(tmp_path: Path, secret: bytes, n: int) -> Path:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    keys = DeviceKeys(secret)
    for i in range(n):
        cid = os.urandom(16)
        db.execute(
            "INSERT INTO credentials VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (cid, f"r{i % 3}", rp_hash(f"r{i % 3}"), None, b"u%d" % i, None, None, -7,
             keys.records.seal(b"k" * 32, cid), b"", int(i % 4 != 0), 1, 0, 0, 0, 0, None,
             float(i), "{}"),
        )
    db.commit()
    db.close()
    (tmp_path / "old.db.key").write_bytes(b"FEK0" + secret)
    return path


def test_a_store_from_before_check_values_is_migrated_with_right_counts(tmp_path):
    secret = os.urandom(32)
    path = _v1_store(tmp_path, secret, 20)
    store = SqliteStore(path)
    assert store.device_secret() == secret
    assert store.count_discoverable() == 15
    assert {s.rp_id: s.count for s in store.list_rps()} == {"r0": 5, "r1": 5, "r2": 5}
    assert store.count_rps() == 3


def test_a_store_from_before_check_values_refuses_a_wrong_key(tmp_path):
    path = _v1_store(tmp_path, os.urandom(32), 3)
    (tmp_path / "old.db.key").write_bytes(b"FEK0" + os.urandom(32))
    with pytest.raises(KeyFileMismatch):
        SqliteStore(path)


def test_d2_wrong_pin_retries_are_not_burnt_by_a_broken_key(tmp_path):
    """Before: a changed key made each *correct* PIN fail with ERR_OTHER and burn a retry.
    Now the store refuses to open, and with the key restored the PIN works, retries intact."""
    from fido2.ctap2 import Ctap2
    from fido2.ctap2.pin import ClientPin

    from authenticator import Authenticator, Config
    from transports.inprocess import InProcessDevice

    path = tmp_path / "pin.db"
    auth = Authenticator(Config(), SqliteStore(path))
    dev = InProcessDevice(auth)
    ClientPin(Ctap2(dev)).set_pin("123456")
    dev.close()
    auth.store.close()
    key = tmp_path / "pin.db.key"
    good = key.read_bytes()
    key.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    for _ in range(3):
        with pytest.raises(KeyFileMismatch):
            SqliteStore(path)
    key.write_bytes(good)
    auth = Authenticator(Config(), SqliteStore(path))
    dev = InProcessDevice(auth)
    pin = ClientPin(Ctap2(dev))
    assert pin.get_pin_retries()[0] == 8
    assert pin.get_pin_token("123456")
    dev.close()
    auth.store.close()


# -- D3: key creation races --------------------------------------------------------------


def _open_new(paths: list[str], start, out) -> None:
    """Open each new store in turn; the processes race on every one of them."""
    start.wait()
    for path in paths:
        try:
            store = SqliteStore(path)
            rec = record(user=b"p%d" % os.getpid())
            keys = DeviceKeys(store.device_secret())
            rec.sealed_key = keys.records.seal(b"x" * 32, rec.credential_id)
            store.put_credential(rec)
            out.put((path, store.device_secret(), rec.credential_id))
            store.close()
        except Exception as e:  # reported, so the test names what went wrong
            out.put((path, repr(e), None))


def test_d3_processes_creating_one_store_at_once_agree_on_its_key(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    paths = [str(tmp_path / f"race{i}.db") for i in range(15)]
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_open_new, args=(paths, start, out)) for _ in range(6)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=120) for _ in range(len(procs) * len(paths))]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    errors = [(path, err) for path, err, cid in results if cid is None]
    assert errors == []
    for path in paths:
        mine = [(secret, cid) for p, secret, cid in results if p == path]
        assert len({secret for secret, _ in mine}) == 1, path
        store = SqliteStore(path)
        assert store.device_secret() == mine[0][0]
        keys = DeviceKeys(store.device_secret())
        for _, cid in mine:  # every process's credential opens under the final key
            keys.records.open(store.get_credential(cid).sealed_key, cid)
        assert store.count_discoverable() == 6
        store.close()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# -- crash-safe reset ----------------------------------------------------------------


def test_reset_interrupted_after_commit_finishes_on_next_open(tmp_path, monkeypatch):
    path = tmp_path / "w.db"
    store = SqliteStore(path)
    store.put_credential(sealed_record(store))
    import storage.sqlite as mod

    real_replace = os.replace

    def crash(src, dst):
        if str(src).endswith(".key.new"):
            raise OSError("power cut")
        return real_replace(src, dst)

    monkeypatch.setattr(mod.os, "replace", crash)
    with pytest.raises(OSError):
        store.wipe()
    monkeypatch.setattr(mod.os, "replace", real_replace)
    store.close()
    assert (tmp_path / "w.db.key.new").exists()
    reopened = SqliteStore(path)
    assert reopened.count_discoverable() == 0
    assert not (tmp_path / "w.db.key.new").exists()
    assert (tmp_path / "w.db.key").read_bytes()[4:] == reopened.device_secret()


def test_reset_interrupted_before_commit_keeps_the_old_store(tmp_path, monkeypatch):
    path = tmp_path / "w.db"
    store = SqliteStore(path)
    rec = sealed_record(store)
    store.put_credential(rec)
    secret = store.device_secret()
    import storage.sqlite as mod

    real_write = mod.SqliteStore._write

    def broken_write(self, same_key=True):
        raise OSError("disk full")

    monkeypatch.setattr(mod.SqliteStore, "_write", broken_write)
    with pytest.raises(OSError):
        store.wipe()
    monkeypatch.setattr(mod.SqliteStore, "_write", real_write)
    store.close()
    assert (tmp_path / "w.db.key.new").exists()
    reopened = SqliteStore(path)
    assert reopened.device_secret() == secret
    assert reopened.get_credential(rec.credential_id) == rec
    assert not (tmp_path / "w.db.key.new").exists()


# -- D4: counters --------------------------------------------------------------------


def test_d4_out_of_range_counter_changes_nothing_even_after_restart(tmp_path):
    path = tmp_path / "c.db"
    store = SqliteStore(path)
    store.store_counter(b"cred", 100)
    with pytest.raises(CounterRangeError) as err:
        store.set_counter(b"cred", 2**63)
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)
    store.close()
    assert SqliteStore(path).load_counter(b"cred") == 100


def test_d4_set_counter_is_one_transaction(tmp_path):
    """A reader never sees the counter missing in the middle of a set (the old code
    deleted the lease and inserted it in two commits)."""
    store = SqliteStore(tmp_path / "c.db")
    store.store_counter(b"cred", 100)
    commits = []
    store._db.set_trace_callback(commits.append)
    store.set_counter(b"cred", 5)
    store._db.set_trace_callback(None)
    writes = [s for s in commits if s.split()[0].upper() in ("INSERT", "DELETE", "UPDATE")]
    assert len(writes) == 1 and writes[0].upper().startswith("INSERT"), commits


# -- D10-D12: one truth across processes ----------------------------------------------

OTHER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from storage.sqlite import SqliteStore
    s = SqliteStore(sys.argv[1])
    op = sys.argv[2]
    if op == "wipe":
        s.wipe()
    elif op == "delete":
        s.delete_credential(bytes.fromhex(sys.argv[3]))
    elif op == "state":
        s.set_state("config", b"alwaysUv")
    print(s.device_secret().hex())
    """
)


def _other(tmp_path: Path, *args: str) -> str:
    script = tmp_path / "other.py"
    script.write_text(OTHER.format(repo=str(REPO)))
    return subprocess.run(
        [sys.executable, str(script), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_d12_a_reset_by_another_process_gives_this_one_the_new_device_secret(tmp_path):
    path = tmp_path / "x.db"
    store = SqliteStore(path)
    rec = sealed_record(store)
    store.put_credential(rec)
    assert store.get_credential(rec.credential_id) is not None  # cached
    old, gen = store.device_secret(), store.generation()
    new = _other(tmp_path, str(path), "wipe")
    assert store.generation() != gen
    assert store.device_secret().hex() == new and bytes.fromhex(new) != old
    assert store.get_credential(rec.credential_id) is None
    # what this process writes now survives its restart (was dead under the old key)
    rec2 = sealed_record(store)
    store.put_credential(rec2)
    store.close()
    again = SqliteStore(path)
    DeviceKeys(again.device_secret()).records.open(rec2.sealed_key, rec2.credential_id)


def test_d11_cached_reads_follow_another_process(tmp_path):
    path = tmp_path / "x.db"
    store = SqliteStore(path)
    recs = [sealed_record(store, user=b"u%d" % i) for i in range(3)]
    store.put_credentials(recs)
    store.command_begin()
    assert len(store.credentials_for_rp(rp_hash("example.com"))) == 3
    assert store.count_discoverable() == 3
    store.command_end()
    _other(tmp_path, str(path), "delete", recs[0].credential_id.hex())
    _other(tmp_path, str(path), "state")
    store.command_begin()
    assert store.get_credential(recs[0].credential_id) is None
    assert len(store.credentials_for_rp(rp_hash("example.com"))) == 2
    assert store.count_discoverable() == 2
    assert store.get_state("config") == b"alwaysUv"
    store.command_end()


# -- D8: file modes ------------------------------------------------------------------


def _modes(tmp_path: Path, name: str) -> dict[str, int]:
    return {
        p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir() if p.name.startswith(name)
    }


def test_d8_every_file_the_store_creates_is_0600(tmp_path):
    old = os.umask(0o022)
    try:
        store = SqliteStore(tmp_path / "m.db")
        store.put_credential(sealed_record(store))
        store.set_state("x", b"y")
        modes = _modes(tmp_path, "m.db")
        assert {"m.db", "m.db-wal", "m.db-shm", "m.db.key", "m.db.lock"} <= set(modes)
        assert set(modes.values()) == {0o600}, modes
        store.wipe()
        assert set(_modes(tmp_path, "m.db").values()) == {0o600}
        store.close()
        # a second process-like open (wal recreated after the last close)
        store = SqliteStore(tmp_path / "m.db")
        store.set_state("x", b"z")
        assert set(_modes(tmp_path, "m.db").values()) == {0o600}
        store.close()
    finally:
        os.umask(old)


def test_d8_files_left_0644_by_older_versions_are_tightened(tmp_path):
    SqliteStore(tmp_path / "o.db").close()
    os.chmod(tmp_path / "o.db", 0o644)
    store = SqliteStore(tmp_path / "o.db")
    store.set_state("x", b"y")
    assert set(_modes(tmp_path, "o.db").values()) == {0o600}
    store.close()


# -- issue 14: counts through SIGKILL and concurrent writers --------------------------

CHURN = textwrap.dedent(
    """
    import os, random, sys
    sys.path.insert(0, {repo!r})
    from storage.sqlite import SqliteStore
    from tests.storage.contract import record
    s = SqliteStore(sys.argv[1])
    rng = random.Random(int(sys.argv[2]))
    print("ready", flush=True)
    while True:
        op = rng.random()
        if op < 0.5:
            s.put_credential(record(f"r{{rng.randrange(20)}}", b"u%d" % rng.randrange(50)))
        elif op < 0.7:
            s.put_credentials([record(f"r{{rng.randrange(20)}}", b"u%d" % rng.randrange(50))
                               for _ in range(rng.randrange(1, 30))])
        else:
            rp = s.list_rps_page(None, 1)
            if rp:
                victim = s.credentials_for_rp_page(rp[0].rp_id_hash, None, 1)
                if victim:
                    s.delete_credential(victim[0].credential_id)
    """
)


def _assert_counts_exact(path: Path) -> None:
    db = sqlite3.connect(path)
    truth = dict(
        db.execute(
            "SELECT rp_id_hash, COUNT(*) FROM credentials WHERE discoverable=1 GROUP BY rp_id_hash"
        ).fetchall()
    )
    (total,) = db.execute("SELECT COUNT(*) FROM credentials WHERE discoverable=1").fetchone()
    db.close()
    store = SqliteStore(path)
    assert store.count_discoverable() == total
    assert {s.rp_id_hash: s.count for s in store.list_rps()} == truth
    assert store.count_rps() == len(truth)
    store.close()


def test_counts_stay_exact_through_sigkill_and_concurrent_writers(tmp_path):
    script = tmp_path / "churn.py"
    script.write_text(CHURN.format(repo=str(REPO)))
    path = tmp_path / "churn.db"
    SqliteStore(path).close()
    rng = random.Random(11)
    for round_ in range(4):
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), str(path), str(round_ * 10 + i)],
                stdout=subprocess.PIPE, text=True,
            )
            for i in range(2)
        ]
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        # let them write: wait until the store has grown by a random amount
        grow = rng.randrange(5, 60)
        probe = SqliteStore(path)
        base = probe.generation()
        while probe.generation() < base + grow:
            assert all(p.poll() is None for p in procs), "a writer died"
        probe.close()
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        _assert_counts_exact(path)


def test_d2_the_cli_says_what_to_do_in_one_line_without_a_traceback(tmp_path):
    path = tmp_path / "cli.db"
    store = SqliteStore(path)
    store.put_credential(sealed_record(store))
    store.close()
    (tmp_path / "cli.db.key").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "authenticator.frontdoor.cli", "info", "--store", str(path)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 3  # exit status 3: store or I/O
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and f"{path}.key" in lines[0], done.stderr
    assert not (tmp_path / "cli.db.key").exists()


def test_d12_nothing_sealed_under_the_old_key_lands_after_a_reset_elsewhere(tmp_path):
    """A reset by another process in the middle of a command: the write that follows is
    refused (the command fails once), and the next command works under the new key."""
    from storage.sqlite import StaleStoreError

    path = tmp_path / "r.db"
    a, b = SqliteStore(path), SqliteStore(path)
    a.command_begin()
    rec = sealed_record(a)  # sealed under the key a knows
    b.wipe()
    with pytest.raises(StaleStoreError):
        a.put_credential(rec)
    with pytest.raises(StaleStoreError):
        a.set_state("pin.hash", b"sealed under the old key")
    a.command_end()
    assert b.count_discoverable() == 0 and b.get_state("pin.hash") is None
    a.command_begin()
    assert a.device_secret() == b.device_secret()
    a.put_credential(sealed_record(a))
    a.command_end()
    assert b.count_discoverable() == 1

"""SQLite credential store (the default).

WAL journal with ``synchronous=FULL``: a write has reached the disk when it returns, so a
credential handed to a client survives SIGKILL and power loss. Writes are rare by design
(new credentials, counter leases, PIN state), so durability costs little.

Files (all created 0600; see docs/storage.md): ``store.db`` (+ SQLite's ``-wal``/``-shm``),
``store.db.key`` (the device secret, optionally wrapped with a passphrase: scrypt + AES-GCM,
from ``FIDO_EMU_PASSPHRASE``), ``store.db.lock`` (serialises key creation and reset across
processes) and, only during a reset, ``store.db.key.new``. The database records a check
value of the device secret (an HMAC of a constant under it, never the secret), so a lost or
changed key file is a clear error instead of a silently new key that kills every credential.

Counts and per-RP summaries are kept by triggers in the same transaction as the write that
changes them: ``count_discoverable``, ``count_rps`` and ``rp_summary`` are single-row reads
at any size, and enumeration pages through indexes with a cursor.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from storage.base import (
    CredentialRecord,
    RpSummary,
    StoreError,
    cap_lease,
    check_counter,
)
from storage.sealing import NONCE_LEN, DeviceKeys, SealError, passphrase_key

SCHEMA_VERSION = 2

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS credentials (
        credential_id BLOB PRIMARY KEY,
        rp_id TEXT NOT NULL,
        rp_id_hash BLOB NOT NULL,
        rp_name TEXT,
        user_id BLOB NOT NULL,
        user_name TEXT,
        user_display_name TEXT,
        algorithm INTEGER NOT NULL,
        sealed_key BLOB NOT NULL,
        public_key BLOB NOT NULL,
        discoverable INTEGER NOT NULL,
        cred_protect INTEGER NOT NULL,
        backup_eligible INTEGER NOT NULL,
        backup_state INTEGER NOT NULL,
        hmac_secret INTEGER NOT NULL,
        large_blob_key INTEGER NOT NULL,
        cred_blob BLOB,
        created REAL NOT NULL,
        extra TEXT NOT NULL DEFAULT '{}'
    ) WITHOUT ROWID""",
    "DROP INDEX IF EXISTS credentials_by_rp",  # v1; superseded by credentials_rp_page
    """CREATE INDEX IF NOT EXISTS credentials_rp_page
        ON credentials (rp_id_hash, created, credential_id) WHERE discoverable = 1""",
    """CREATE UNIQUE INDEX IF NOT EXISTS credentials_rp_user
        ON credentials (rp_id_hash, user_id) WHERE discoverable = 1""",
    """CREATE TABLE IF NOT EXISTS counters (key BLOB PRIMARY KEY, lease INTEGER NOT NULL)
        WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value BLOB NOT NULL)
        WITHOUT ROWID""",
    # store bookkeeping that wipe keeps: counts and the device key's check value
    """CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS rps (
        rp_id_hash BLOB PRIMARY KEY,
        rp_id TEXT NOT NULL,
        rp_name TEXT,
        count INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS rps_by_id ON rps (rp_id, rp_id_hash)",
    """CREATE TRIGGER IF NOT EXISTS rps_added AFTER INSERT ON rps BEGIN
        UPDATE meta SET value = value + 1 WHERE name = 'rps';
    END""",
    """CREATE TRIGGER IF NOT EXISTS rps_removed AFTER DELETE ON rps BEGIN
        UPDATE meta SET value = value - 1 WHERE name = 'rps';
    END""",
    """CREATE TRIGGER IF NOT EXISTS cred_added AFTER INSERT ON credentials
    WHEN NEW.discoverable = 1 BEGIN
        INSERT INTO rps (rp_id_hash, rp_id, rp_name, count)
            VALUES (NEW.rp_id_hash, NEW.rp_id, NEW.rp_name, 1)
            ON CONFLICT (rp_id_hash) DO UPDATE SET count = count + 1,
                rp_id = excluded.rp_id, rp_name = COALESCE(excluded.rp_name, rp_name);
        UPDATE meta SET value = value + 1 WHERE name = 'discoverable';
    END""",
    """CREATE TRIGGER IF NOT EXISTS cred_removed AFTER DELETE ON credentials
    WHEN OLD.discoverable = 1 BEGIN
        UPDATE rps SET count = count - 1 WHERE rp_id_hash = OLD.rp_id_hash;
        DELETE FROM rps WHERE rp_id_hash = OLD.rp_id_hash AND count <= 0;
        UPDATE meta SET value = value - 1 WHERE name = 'discoverable';
    END""",
    """CREATE TRIGGER IF NOT EXISTS cred_moved_out
    AFTER UPDATE OF discoverable, rp_id_hash ON credentials WHEN OLD.discoverable = 1 BEGIN
        UPDATE rps SET count = count - 1 WHERE rp_id_hash = OLD.rp_id_hash;
        DELETE FROM rps WHERE rp_id_hash = OLD.rp_id_hash AND count <= 0;
        UPDATE meta SET value = value - 1 WHERE name = 'discoverable';
    END""",
    """CREATE TRIGGER IF NOT EXISTS cred_moved_in
    AFTER UPDATE OF discoverable, rp_id_hash ON credentials WHEN NEW.discoverable = 1 BEGIN
        INSERT INTO rps (rp_id_hash, rp_id, rp_name, count)
            VALUES (NEW.rp_id_hash, NEW.rp_id, NEW.rp_name, 1)
            ON CONFLICT (rp_id_hash) DO UPDATE SET count = count + 1;
        UPDATE meta SET value = value + 1 WHERE name = 'discoverable';
    END""",
]

# (Re)build the summaries from the credentials themselves: a v1 store, or a fresh one.
REBUILD = [
    "DELETE FROM rps",
    "INSERT OR REPLACE INTO meta (name, value) VALUES ('rps', 0)",
    """INSERT INTO rps (rp_id_hash, rp_id, rp_name, count)
        SELECT rp_id_hash, MAX(rp_id), MAX(rp_name), COUNT(*) FROM credentials
        WHERE discoverable = 1 GROUP BY rp_id_hash""",
    """INSERT OR REPLACE INTO meta (name, value)
        SELECT 'discoverable', COUNT(*) FROM credentials WHERE discoverable = 1""",
]

COLUMNS = (
    "credential_id, rp_id, rp_id_hash, rp_name, user_id, user_name, user_display_name, "
    "algorithm, sealed_key, public_key, discoverable, cred_protect, backup_eligible, "
    "backup_state, hmac_secret, large_blob_key, cred_blob, created, extra"
)
INSERT = f"INSERT INTO credentials ({COLUMNS}) VALUES ({','.join('?' * 19)})"

KEYFILE_MAGIC_PLAIN = b"FEK0"
KEYFILE_MAGIC_WRAPPED = b"FEK1"
KEY_CHECK_LABEL = b"fido-emu/key-check/v1"


def default_store_path() -> Path:
    """``FIDO_EMU_STORE`` if set, else ``<user data dir>/fido-emulator/store.db``."""
    env = os.environ.get("FIDO_EMU_STORE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("fido-emulator")) / "store.db"


def _row_to_record(row: tuple) -> CredentialRecord:
    return CredentialRecord(
        credential_id=row[0],
        rp_id=row[1],
        rp_id_hash=row[2],
        rp_name=row[3],
        user_id=row[4],
        user_name=row[5],
        user_display_name=row[6],
        algorithm=row[7],
        sealed_key=row[8],
        public_key=row[9],
        discoverable=bool(row[10]),
        cred_protect=row[11],
        backup_eligible=bool(row[12]),
        backup_state=bool(row[13]),
        hmac_secret=bool(row[14]),
        large_blob_key=bool(row[15]),
        cred_blob=row[16],
        created=row[17],
        extra=json.loads(row[18]),
    )


def _record_row(rec: CredentialRecord) -> tuple:
    return (
        rec.credential_id,
        rec.rp_id,
        rec.rp_id_hash,
        rec.rp_name,
        rec.user_id,
        rec.user_name,
        rec.user_display_name,
        rec.algorithm,
        rec.sealed_key,
        rec.public_key,
        int(rec.discoverable),
        rec.cred_protect,
        int(rec.backup_eligible),
        int(rec.backup_state),
        int(rec.hmac_secret),
        int(rec.large_blob_key),
        rec.cred_blob,
        rec.created,
        json.dumps(rec.extra),
    )


# -- the device key file ----------------------------------------------------------------


class StaleStoreError(StoreError):
    """Another process reset the store in the middle of this handle's command."""


class KeyFileError(StoreError):
    """The device key file cannot be used (unreadable, not ours, wrong passphrase)."""


class KeyFileMissing(KeyFileError):
    """The store holds data sealed under a device key whose file is gone."""


class KeyFileMismatch(KeyFileError):
    """The key file does not hold the device key the store was sealed under."""


def key_check(secret: bytes) -> bytes:
    """What the database records about its device key: an HMAC of a constant under it.
    It identifies the key without revealing anything about it."""
    return hmac.new(secret, KEY_CHECK_LABEL, hashlib.sha256).digest()


@contextmanager
def _private_umask() -> Iterator[None]:
    """Files created inside are 0600 whatever the caller's umask (process-wide while it
    lasts: other threads creating files at that moment get stricter modes, never looser)."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode_key(secret: bytes, passphrase: str | None) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not passphrase:
        return KEYFILE_MAGIC_PLAIN + secret
    salt, nonce = os.urandom(16), os.urandom(NONCE_LEN)
    wrapped = nonce + AESGCM(passphrase_key(passphrase, salt)).encrypt(
        nonce, secret, KEYFILE_MAGIC_WRAPPED
    )
    return KEYFILE_MAGIC_WRAPPED + salt + wrapped


def _read_key(key_path: Path, passphrase: str | None) -> bytes | None:
    """The secret in ``key_path``; None if the file does not exist."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        data = key_path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise KeyFileError(
            f"cannot read device key {key_path}: {e.strerror}; fix its permissions "
            "(it must be readable by this user, mode 0600)"
        ) from e
    if data[:4] == KEYFILE_MAGIC_PLAIN and len(data) == 36:
        if passphrase:
            raise KeyFileError(f"{key_path} is not passphrase-protected: unset FIDO_EMU_PASSPHRASE")
        return data[4:]
    if data[:4] == KEYFILE_MAGIC_WRAPPED and len(data) > 20 + NONCE_LEN:
        if not passphrase:
            raise KeyFileError(f"{key_path} is passphrase-protected: set FIDO_EMU_PASSPHRASE")
        salt, blob = data[4:20], data[20:]
        try:
            return AESGCM(passphrase_key(passphrase, salt)).decrypt(
                blob[:NONCE_LEN], blob[NONCE_LEN:], KEYFILE_MAGIC_WRAPPED
            )
        except Exception as e:
            raise KeyFileError(f"wrong passphrase for the device key {key_path}") from e
    raise KeyFileError(
        f"{key_path} is not a fido-emulator key file (damaged?): restore it from a backup"
    )


def _write_key(key_path: Path, data: bytes, *, exclusive: bool) -> None:
    """Durably put ``data`` at ``key_path`` via a unique temporary file in the same
    directory. ``exclusive``: never replace an existing file (FileExistsError)."""
    fd, tmp = tempfile.mkstemp(prefix=key_path.name + ".", suffix=".tmp", dir=key_path.parent)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(tmp, key_path)
        else:
            os.replace(tmp, key_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _fsync_dir(key_path.parent)


class SqliteStore:
    def __init__(self, path: str | os.PathLike[str], passphrase: str | None = None) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key_path = self.path.with_name(self.path.name + ".key")
        self.pending_key_path = self.path.with_name(self.path.name + ".key.new")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        if passphrase is None:
            passphrase = os.environ.get("FIDO_EMU_PASSPHRASE") or None
        self._passphrase = passphrase
        self._mutex = threading.RLock()
        # Read caches, dropped on our own writes and when another connection commits
        # (PRAGMA data_version changes): lookups stay O(1) without going stale.
        self._version = -1
        self._gen = 0
        self._by_id: dict[bytes, CredentialRecord | None] = {}
        self._by_rp: dict[bytes, list[CredentialRecord]] = {}
        self._count: int | None = None
        self._held = False
        self._check: bytes | None = None  # the device key's check value, once known
        with _private_umask():
            # SQLite gives -wal and -shm the database file's mode: make that 0600 first
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # one cursor for the per-command freshness check: no cursor object per command
            self._version_cursor = self._db.cursor()
            try:
                self._db.execute("PRAGMA busy_timeout=10000")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA recursive_triggers=ON")  # REPLACE fires delete triggers
                self._migrate()
            except BaseException:
                self._db.close()
                raise
        for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            try:  # files made 0644 by older versions
                if p.stat().st_mode & 0o077:
                    os.chmod(p, 0o600)
            except OSError:
                pass
        try:
            self._secret, self._check = self._open_key()
        except BaseException:
            self._db.close()
            raise

    # -- schema -----------------------------------------------------------------------
    def _migrate(self) -> None:
        db = self._db
        if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with self._write(same_key=False):
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema {version}, newer than this fido-emulator "
                    f"({SCHEMA_VERSION}): upgrade fido-emulator"
                )
            if version < SCHEMA_VERSION:
                for stmt in SCHEMA + REBUILD:
                    db.execute(stmt)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _write(self, same_key: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction (the database's write lock held from its start).
        ``same_key``: refuse it if another process reset the store since this handle last
        looked, so nothing sealed under the old device key lands in the new store."""
        with self._mutex:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if same_key and self._check is not None:
                    row = db.execute("SELECT value FROM meta WHERE name='key_check'").fetchone()
                    if row is None or row[0] != self._check:
                        raise StaleStoreError(
                            f"store {self.path} was reset by another process during this "
                            "command: nothing was written, try again"
                        )
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            finally:
                self._invalidate()

    # -- the device key ---------------------------------------------------------------
    @contextmanager
    def _key_lock(self) -> Iterator[None]:
        """Serialises key creation, reset and key reloads across processes."""
        with _private_umask():
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _is_empty(self, db: sqlite3.Connection) -> bool:
        return not any(
            db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
            for table in ("credentials", "counters", "state")
        )

    def _missing(self) -> KeyFileMissing:
        return KeyFileMissing(
            f"device key {self.key_path} is missing but store {self.path} holds data sealed "
            "under it: restore the key file from a backup, or move both files away to start "
            "an empty store"
        )

    def _mismatch(self) -> KeyFileMismatch:
        return KeyFileMismatch(
            f"device key {self.key_path} is not the key store {self.path} was sealed under "
            "(changed or damaged): restore the right key file from a backup, or move both "
            "files away to start an empty store"
        )

    def _legacy_key_fits(self, db: sqlite3.Connection, secret: bytes) -> bool:
        """A store from before check values: does the key open one of its credentials?"""
        row = db.execute("SELECT credential_id, sealed_key FROM credentials LIMIT 1").fetchone()
        if row is None:
            return True
        try:
            DeviceKeys(secret).records.open(row[1], row[0])
        except (SealError, ValueError):
            return False
        return True

    def _settle_key(self, db: sqlite3.Connection, create: bool) -> tuple[bytes, bytes]:
        """The secret matching the recorded check value (finishing a reset a crash
        interrupted); ``create``: make the key of a new, empty store. Holds the key lock."""
        recorded = db.execute("SELECT value FROM meta WHERE name='key_check'").fetchone()
        recorded = recorded[0] if recorded else None
        primary = _read_key(self.key_path, self._passphrase)
        try:
            pending = _read_key(self.pending_key_path, self._passphrase)
        except KeyFileError:
            pending = None  # only a reset writes it, completely or not at all
        if recorded is not None:
            if primary is not None and hmac.compare_digest(key_check(primary), recorded):
                self.pending_key_path.unlink(missing_ok=True)  # a reset that never committed
                return primary, recorded
            if pending is not None and hmac.compare_digest(key_check(pending), recorded):
                os.replace(self.pending_key_path, self.key_path)  # a reset that committed
                _fsync_dir(self.key_path.parent)
                return pending, recorded
            raise self._missing() if primary is None else self._mismatch()
        if not create:
            raise StoreError(f"store {self.path} lost its key check value")
        if primary is not None:  # a store from before check values, or a crash at creation
            if not self._legacy_key_fits(db, primary):
                raise self._mismatch()
        elif not self._is_empty(db):
            raise self._missing()
        else:
            primary = os.urandom(32)
            try:
                _write_key(self.key_path, _encode_key(primary, self._passphrase), exclusive=True)
            except FileExistsError:  # someone without our lock made one: theirs wins
                primary = _read_key(self.key_path, self._passphrase)
                assert primary is not None
        self.pending_key_path.unlink(missing_ok=True)
        check = key_check(primary)
        db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('key_check', ?)", (check,))
        return primary, check

    def _open_key(self) -> tuple[bytes, bytes]:
        with self._mutex, self._key_lock(), self._write(same_key=False) as db:
            return self._settle_key(db, create=True)

    def _reload_key(self) -> None:
        """Another process reset the store: adopt its new device key."""
        with self._mutex, self._key_lock():  # always in this order: mutex, then key lock
            self._secret, self._check = self._settle_key(self._db, create=False)

    # -- freshness --------------------------------------------------------------------
    def command_begin(self) -> None:
        """One freshness check for a whole CTAP command (commands run one at a time)."""
        self._held = False
        self._fresh()
        self._held = True

    def command_end(self) -> None:
        self._held = False

    def _fresh(self) -> None:
        if self._held:
            return
        with self._mutex:
            version = self._version_cursor.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                self._version = version
                self._invalidate()
                row = self._db.execute("SELECT value FROM meta WHERE name='key_check'").fetchone()
                if row is not None and row[0] != self._check:
                    self._reload_key()

    def generation(self) -> int:
        """Changes after every committed write: this handle's or another process's."""
        self._fresh()
        return self._gen

    def _invalidate(self) -> None:
        self._gen += 1
        self._by_id.clear()
        self._by_rp.clear()
        self._count = None

    def device_secret(self) -> bytes:
        self._fresh()
        return self._secret

    # -- credentials ------------------------------------------------------------------
    def _put(self, db: sqlite3.Connection, rec: CredentialRecord) -> CredentialRecord | None:
        replaced = None
        if rec.discoverable:
            row = db.execute(
                f"SELECT {COLUMNS} FROM credentials "
                "WHERE rp_id_hash=? AND user_id=? AND discoverable=1",
                (rec.rp_id_hash, rec.user_id),
            ).fetchone()
            if row and row[0] != rec.credential_id:
                replaced = _row_to_record(row)
                db.execute("DELETE FROM credentials WHERE credential_id=?", (row[0],))
                db.execute("DELETE FROM counters WHERE key=?", (row[0],))
        row = db.execute(
            f"SELECT {COLUMNS} FROM credentials WHERE credential_id=?", (rec.credential_id,)
        ).fetchone()
        if row:  # the same id again: the new record replaces it, its counter stays
            replaced = replaced or _row_to_record(row)
            db.execute("DELETE FROM credentials WHERE credential_id=?", (rec.credential_id,))
        db.execute(INSERT, _record_row(rec))
        return replaced

    def put_credential(self, rec: CredentialRecord) -> CredentialRecord | None:
        with self._write() as db:
            return self._put(db, rec)

    def put_credentials(self, recs: Iterable[CredentialRecord]) -> list[CredentialRecord]:
        with self._write() as db:
            return [r for r in (self._put(db, rec) for rec in recs) if r is not None]

    def get_credential(self, credential_id: bytes) -> CredentialRecord | None:
        """Records returned are shared with the read cache: treat them as read-only."""
        self._fresh()
        with self._mutex:
            if credential_id in self._by_id:
                return self._by_id[credential_id]
            row = self._db.execute(
                f"SELECT {COLUMNS} FROM credentials WHERE credential_id=?", (credential_id,)
            ).fetchone()
            rec = _row_to_record(row) if row else None
            if len(self._by_id) > 10_000:
                self._by_id.clear()
            self._by_id[credential_id] = rec
            return rec

    def credentials_for_rp(self, rp_id_hash: bytes) -> list[CredentialRecord]:
        self._fresh()
        with self._mutex:
            cached = self._by_rp.get(rp_id_hash)
            if cached is None:
                rows = self._db.execute(
                    f"SELECT {COLUMNS} FROM credentials WHERE rp_id_hash=? AND discoverable=1 "
                    "ORDER BY created DESC, credential_id DESC",
                    (rp_id_hash,),
                ).fetchall()
                cached = [_row_to_record(r) for r in rows]
                if len(self._by_rp) > 1_000:
                    self._by_rp.clear()
                self._by_rp[rp_id_hash] = cached
            return list(cached)

    def credentials_for_rp_page(
        self, rp_id_hash: bytes, after: CredentialRecord | None, limit: int
    ) -> list[CredentialRecord]:
        sql = f"SELECT {COLUMNS} FROM credentials WHERE rp_id_hash=? AND discoverable=1 "
        args: tuple = (rp_id_hash,)
        if after is not None:
            sql += "AND (created, credential_id) < (?, ?) "
            args += (after.created, after.credential_id)
        sql += "ORDER BY created DESC, credential_id DESC LIMIT ?"
        with self._mutex:
            rows = self._db.execute(sql, (*args, max(0, limit))).fetchall()
        return [_row_to_record(r) for r in rows]

    def delete_credential(self, credential_id: bytes) -> bool:
        with self._write() as db:
            cur = db.execute("DELETE FROM credentials WHERE credential_id=?", (credential_id,))
            db.execute("DELETE FROM counters WHERE key=?", (credential_id,))
            return cur.rowcount > 0

    def update_user(
        self, credential_id: bytes, user_id: bytes, name: str | None, display_name: str | None
    ) -> bool:
        with self._write() as db:
            cur = db.execute(
                "UPDATE credentials SET user_name=?, user_display_name=? "
                "WHERE credential_id=? AND user_id=?",
                (name, display_name, credential_id, user_id),
            )
            return cur.rowcount > 0

    def list_rps(self) -> list[RpSummary]:
        with self._mutex:
            rows = self._db.execute(
                "SELECT rp_id, rp_id_hash, rp_name, count FROM rps ORDER BY rp_id, rp_id_hash"
            ).fetchall()
        return [RpSummary(*r) for r in rows]

    def list_rps_page(self, after: RpSummary | None, limit: int) -> list[RpSummary]:
        sql = "SELECT rp_id, rp_id_hash, rp_name, count FROM rps "
        args: tuple = ()
        if after is not None:
            sql += "WHERE (rp_id, rp_id_hash) > (?, ?) "
            args = (after.rp_id, after.rp_id_hash)
        sql += "ORDER BY rp_id, rp_id_hash LIMIT ?"
        with self._mutex:
            rows = self._db.execute(sql, (*args, max(0, limit))).fetchall()
        return [RpSummary(*r) for r in rows]

    def rp_summary(self, rp_id_hash: bytes) -> RpSummary | None:
        with self._mutex:
            row = self._db.execute(
                "SELECT rp_id, rp_id_hash, rp_name, count FROM rps WHERE rp_id_hash=?",
                (rp_id_hash,),
            ).fetchone()
        return RpSummary(*row) if row else None

    def _meta_int(self, name: str) -> int:
        with self._mutex:
            row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return row[0] if row else 0

    def count_rps(self) -> int:
        return self._meta_int("rps")

    def count_discoverable(self) -> int:
        self._fresh()
        if self._count is None:
            self._count = self._meta_int("discoverable")
        return self._count

    # -- counters ---------------------------------------------------------------------
    def load_counter(self, key: bytes) -> int | None:
        with self._mutex:
            row = self._db.execute("SELECT lease FROM counters WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def store_counter(self, key: bytes, lease: int) -> None:
        lease = cap_lease(lease)
        with self._write() as db:
            db.execute(
                "INSERT INTO counters (key, lease) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET lease=MAX(lease, excluded.lease)",
                (key, lease),
            )

    def set_counter(self, key: bytes, value: int) -> None:
        value = check_counter(value)
        with self._write() as db:
            db.execute(
                "INSERT INTO counters (key, lease) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET lease=excluded.lease",
                (key, value),
            )

    def delete_counter(self, key: bytes) -> None:
        with self._write() as db:
            db.execute("DELETE FROM counters WHERE key=?", (key,))

    def release_counter(self, key: bytes, lease: int, value: int) -> bool:
        """Give an unused lease back: lower it to ``value`` only if it is still ``lease``
        (no other process raised it since). One statement, so no race with a raise."""
        value = check_counter(value)
        with self._write() as db:
            cur = db.execute(
                "UPDATE counters SET lease=? WHERE key=? AND lease=? AND ?<=lease",
                (value, key, lease, value),
            )
        return cur.rowcount == 1

    # -- state ------------------------------------------------------------------------
    def get_state(self, name: str) -> bytes | None:
        with self._mutex:
            row = self._db.execute("SELECT value FROM state WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    @staticmethod
    def _set_state(db: sqlite3.Connection, name: str, value: bytes | None) -> None:
        if value is None:
            db.execute("DELETE FROM state WHERE name=?", (name,))
        else:
            db.execute(
                "INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)", (name, bytes(value))
            )

    def set_state(self, name: str, value: bytes | None) -> None:
        with self._write() as db:
            self._set_state(db, name, value)

    def update_state(
        self, name: str, fn: Callable[[bytes | None], bytes | None]
    ) -> bytes | None:
        with self._write() as db:
            row = db.execute("SELECT value FROM state WHERE name=?", (name,)).fetchone()
            new = fn(row[0] if row else None)
            self._set_state(db, name, new)
            return None if new is None else bytes(new)

    # -- reset ------------------------------------------------------------------------
    def wipe(self) -> None:
        """Crash-safe order: the new key is written beside the old one, the database
        switches to it (data gone, new check value) in one commit, then the new key takes
        the old one's place. Opening after a crash at any point finishes or undoes it."""
        secret = os.urandom(32)
        check = key_check(secret)
        with self._mutex, self._key_lock():
            _write_key(self.pending_key_path, _encode_key(secret, self._passphrase), exclusive=False)
            with self._write(same_key=False) as db:
                # without the per-row count triggers (recreated below, same transaction)
                # the deletes are truncations: a reset costs the same at any size
                names = [r[0] for r in db.execute(
                    "SELECT name FROM sqlite_master WHERE type='trigger'").fetchall()]
                for name in names:
                    db.execute(f'DROP TRIGGER "{name}"')
                for table in ("credentials", "rps", "counters", "state"):
                    db.execute(f"DELETE FROM {table}")
                db.execute("UPDATE meta SET value=0 WHERE name IN ('discoverable', 'rps')")
                db.execute("UPDATE meta SET value=? WHERE name='key_check'", (check,))
                for stmt in SCHEMA:
                    if stmt.startswith("CREATE TRIGGER"):
                        db.execute(stmt)
            os.replace(self.pending_key_path, self.key_path)
            _fsync_dir(self.key_path.parent)
            self._secret, self._check = secret, check

    def close(self) -> None:
        with self._mutex:
            self._db.close()


def open_store(path: str | os.PathLike[str] | None = None, *, memory: bool = False):
    """The store the CLI and `fido-emu run` use: SQLite at PATH (or the default), memory,
    or PostgreSQL for a ``postgresql://`` URL (in PATH or ``FIDO_EMU_STORE``)."""
    if memory or (path is not None and str(path) == ":memory:"):
        from storage.memory import MemoryStore

        return MemoryStore()
    spec = str(path) if path is not None else os.environ.get("FIDO_EMU_STORE", "")
    if spec.startswith(("postgresql://", "postgres://")):
        try:  # imported only here: the core CLI stays fast without psycopg
            from storage.postgres import PostgresStore
        except ImportError as e:
            raise StoreError(
                f"a PostgreSQL store needs the [postgres] extra ({e.name} is missing): "
                "pip install 'fido-emulator[postgres]'"
            ) from e
        return PostgresStore(spec)
    return SqliteStore(path if path is not None else default_store_path())


__all__ = [
    "KeyFileError",
    "KeyFileMismatch",
    "KeyFileMissing",
    "SealError",
    "SqliteStore",
    "StaleStoreError",
    "default_store_path",
    "key_check",
    "open_store",
]

"""SQLite credential store (the default).

WAL journal with ``synchronous=FULL``: a write has reached the disk when it returns, so a
credential handed to a client survives SIGKILL and power loss. Writes are rare by design
(new credentials, counter leases, PIN state), so durability costs little. The device
secret lives in a sidecar key file (mode 0600), optionally wrapped with a passphrase
(scrypt + AES-GCM) taken from ``FIDO_EMU_PASSPHRASE``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from storage.base import CredentialRecord, RpSummary
from storage.sealing import NONCE_LEN, SealError, passphrase_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS credentials (
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
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS credentials_by_rp ON credentials (rp_id_hash, created);
CREATE UNIQUE INDEX IF NOT EXISTS credentials_rp_user
    ON credentials (rp_id_hash, user_id) WHERE discoverable = 1;
CREATE TABLE IF NOT EXISTS counters (key BLOB PRIMARY KEY, lease INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
"""

COLUMNS = (
    "credential_id, rp_id, rp_id_hash, rp_name, user_id, user_name, user_display_name, "
    "algorithm, sealed_key, public_key, discoverable, cred_protect, backup_eligible, "
    "backup_state, hmac_secret, large_blob_key, cred_blob, created, extra"
)

KEYFILE_MAGIC_PLAIN = b"FEK0"
KEYFILE_MAGIC_WRAPPED = b"FEK1"


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


class KeyFileError(Exception):
    pass


def _load_or_create_secret(key_path: Path, passphrase: str | None) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if key_path.exists():
        data = key_path.read_bytes()
        if data[:4] == KEYFILE_MAGIC_PLAIN and len(data) == 36:
            if passphrase:
                raise KeyFileError(f"{key_path} is not passphrase-protected")
            return data[4:]
        if data[:4] == KEYFILE_MAGIC_WRAPPED:
            if not passphrase:
                raise KeyFileError(f"{key_path} is passphrase-protected: set FIDO_EMU_PASSPHRASE")
            salt, blob = data[4:20], data[20:]
            try:
                return AESGCM(passphrase_key(passphrase, salt)).decrypt(
                    blob[:NONCE_LEN], blob[NONCE_LEN:], KEYFILE_MAGIC_WRAPPED
                )
            except Exception as e:
                raise KeyFileError("wrong passphrase for the device key") from e
        raise KeyFileError(f"{key_path} is not a fido-emulator key file")
    secret = os.urandom(32)
    if passphrase:
        salt, nonce = os.urandom(16), os.urandom(NONCE_LEN)
        wrapped = nonce + AESGCM(passphrase_key(passphrase, salt)).encrypt(
            nonce, secret, KEYFILE_MAGIC_WRAPPED
        )
        data = KEYFILE_MAGIC_WRAPPED + salt + wrapped
    else:
        data = KEYFILE_MAGIC_PLAIN + secret
    tmp = key_path.with_name(key_path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, key_path)
    dfd = os.open(key_path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return secret


class SqliteStore:
    def __init__(self, path: str | os.PathLike[str], passphrase: str | None = None) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key_path = self.path.with_name(self.path.name + ".key")
        if passphrase is None:
            passphrase = os.environ.get("FIDO_EMU_PASSPHRASE") or None
        self._passphrase = passphrase
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass
        self._secret = _load_or_create_secret(self.key_path, passphrase)
        # Read caches, dropped on our own writes and when another connection commits
        # (PRAGMA data_version changes): lookups stay O(1) without going stale.
        self._version = -1
        self._by_id: dict[bytes, CredentialRecord | None] = {}
        self._by_rp: dict[bytes, list[CredentialRecord]] = {}
        self._count: int | None = None
        self._held = False

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
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:
            self._version = version
            self._invalidate()

    def generation(self) -> int:
        """Changes whenever another connection (another process) committed a write."""
        self._fresh()
        return self._version

    def _invalidate(self) -> None:
        self._by_id.clear()
        self._by_rp.clear()
        self._count = None

    def device_secret(self) -> bytes:
        return self._secret

    def put_credential(self, rec: CredentialRecord) -> CredentialRecord | None:
        db = self._db
        replaced = None
        db.execute("BEGIN IMMEDIATE")
        try:
            if rec.discoverable:
                row = db.execute(
                    f"SELECT {COLUMNS} FROM credentials WHERE rp_id_hash=? AND user_id=? AND discoverable=1",
                    (rec.rp_id_hash, rec.user_id),
                ).fetchone()
                if row:
                    replaced = _row_to_record(row)
                    db.execute("DELETE FROM credentials WHERE credential_id=?", (row[0],))
                    db.execute("DELETE FROM counters WHERE key=?", (row[0],))
            db.execute(
                f"INSERT OR REPLACE INTO credentials ({COLUMNS}) VALUES ({','.join('?' * 19)})",
                (
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
                ),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            self._invalidate()
        return replaced

    def get_credential(self, credential_id: bytes) -> CredentialRecord | None:
        """Records returned are shared with the read cache: treat them as read-only."""
        self._fresh()
        if credential_id in self._by_id:
            rec = self._by_id[credential_id]
            return rec
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
        cached = self._by_rp.get(rp_id_hash)
        if cached is None:
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM credentials WHERE rp_id_hash=? AND discoverable=1 "
                "ORDER BY created DESC",
                (rp_id_hash,),
            ).fetchall()
            cached = [_row_to_record(r) for r in rows]
            if len(self._by_rp) > 1_000:
                self._by_rp.clear()
            self._by_rp[rp_id_hash] = cached
        return list(cached)

    def delete_credential(self, credential_id: bytes) -> bool:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        cur = db.execute("DELETE FROM credentials WHERE credential_id=?", (credential_id,))
        db.execute("DELETE FROM counters WHERE key=?", (credential_id,))
        db.execute("COMMIT")
        self._invalidate()
        return cur.rowcount > 0

    def update_user(
        self, credential_id: bytes, user_id: bytes, name: str | None, display_name: str | None
    ) -> bool:
        cur = self._db.execute(
            "UPDATE credentials SET user_name=?, user_display_name=? "
            "WHERE credential_id=? AND user_id=?",
            (name, display_name, credential_id, user_id),
        )
        self._invalidate()
        return cur.rowcount > 0

    def list_rps(self) -> list[RpSummary]:
        rows = self._db.execute(
            "SELECT rp_id, rp_id_hash, MAX(rp_name), COUNT(*) FROM credentials "
            "WHERE discoverable=1 GROUP BY rp_id_hash ORDER BY rp_id"
        ).fetchall()
        return [RpSummary(r[0], r[1], r[2], r[3]) for r in rows]

    def count_discoverable(self) -> int:
        self._fresh()
        if self._count is None:
            self._count = self._db.execute(
                "SELECT COUNT(*) FROM credentials WHERE discoverable=1"
            ).fetchone()[0]
        return self._count

    def load_counter(self, key: bytes) -> int | None:
        row = self._db.execute("SELECT lease FROM counters WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def store_counter(self, key: bytes, lease: int) -> None:
        self._db.execute(
            "INSERT INTO counters (key, lease) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET lease=MAX(lease, excluded.lease)",
            (key, lease),
        )

    def delete_counter(self, key: bytes) -> None:
        self._db.execute("DELETE FROM counters WHERE key=?", (key,))

    def get_state(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM state WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def set_state(self, name: str, value: bytes | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM state WHERE name=?", (name,))
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)", (name, bytes(value))
            )

    def wipe(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM credentials")
        db.execute("DELETE FROM counters")
        db.execute("DELETE FROM state")
        db.execute("COMMIT")
        self._invalidate()
        self.key_path.unlink(missing_ok=True)
        self._secret = _load_or_create_secret(self.key_path, self._passphrase)

    def close(self) -> None:
        self._db.close()


def open_store(path: str | os.PathLike[str] | None = None, *, memory: bool = False):
    """The store the CLI and `fido-emu run` use: SQLite at PATH (or the default), or memory."""
    if memory or (path is not None and str(path) == ":memory:"):
        from storage.memory import MemoryStore

        return MemoryStore()
    return SqliteStore(path if path is not None else default_store_path())


__all__ = ["SqliteStore", "default_store_path", "open_store", "KeyFileError", "SealError"]

"""PostgreSQL credential store: one store shared by many emulator instances and machines.

Selected by ``--store postgresql://…`` (or ``FIDO_EMU_STORE``); needs the ``[postgres]`` extra
(psycopg 3 + psycopg_pool). The same guarantees as the SQLite store (docs/fleet.md):

- **Key material.** Credential keys are sealed under the device secret exactly as in SQLite.
  The device secret is never in the database: it is HKDF(fleet key, epoch), where the fleet
  key lives in a key file beside each instance (``FIDO_EMU_KEY_FILE``, the SQLite store's key
  file format, optionally passphrase-wrapped with ``FIDO_EMU_PASSPHRASE``) and the epoch is a
  random value in the database that ``wipe`` replaces (so a reset on one machine gives every
  machine the new device secret). The database records a check value of the fleet key, so an
  instance with the wrong key file stops with a clear error.
- **One writer at a time.** Every write transaction starts by bumping the ``generation`` row
  (a row lock), so writes are serialised like SQLite's ``BEGIN IMMEDIATE`` and every
  read-modify-write (replacing put, ``update_state``, lease raise) is atomic across machines.
- **Freshness.** ``generation()`` reads that row (once per CTAP command between
  ``command_begin``/``command_end``); a change drops every cache and re-reads the epoch.
- **Schema.** Versioned migrations (:data:`MIGRATIONS`) applied only by :func:`migrate`
  (``fido-emu store migrate``); opening an unmigrated or older database is a one-line error.
- **Failures.** An unreachable server is a one-line :class:`StoreError`; a connection lost
  mid-command rolls back that transaction, raises :class:`StoreUnavailable`, and the pool
  hands the next command a fresh connection.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.base import CredentialRecord, RpSummary, StoreError, cap_lease, check_counter
from storage.sealing import derive
from storage.sqlite import (
    COLUMNS,
    KeyFileMismatch,
    KeyFileMissing,
    _encode_key,
    _private_umask,
    _read_key,
    _record_row,
    _row_to_record,
    _write_key,
    key_check,
)

ADVISORY_LOCK = 0x46494430  # "FID0": serialises migrations and key set-up

# Each entry moves the schema from version i to i+1, in one transaction. Never edit a
# released entry: append a new one.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE fido_credentials (
            credential_id BYTEA PRIMARY KEY,
            rp_id TEXT NOT NULL,
            rp_id_hash BYTEA NOT NULL,
            rp_name TEXT,
            user_id BYTEA NOT NULL,
            user_name TEXT,
            user_display_name TEXT,
            algorithm INTEGER NOT NULL,
            sealed_key BYTEA NOT NULL,
            public_key BYTEA NOT NULL,
            discoverable BOOLEAN NOT NULL,
            cred_protect INTEGER NOT NULL,
            backup_eligible BOOLEAN NOT NULL,
            backup_state BOOLEAN NOT NULL,
            hmac_secret BOOLEAN NOT NULL,
            large_blob_key BOOLEAN NOT NULL,
            cred_blob BYTEA,
            created DOUBLE PRECISION NOT NULL,
            extra TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE INDEX fido_credentials_rp_page
            ON fido_credentials (rp_id_hash, created, credential_id) WHERE discoverable""",
        """CREATE UNIQUE INDEX fido_credentials_rp_user
            ON fido_credentials (rp_id_hash, user_id) WHERE discoverable""",
        "CREATE TABLE fido_counters (key BYTEA PRIMARY KEY, lease BIGINT NOT NULL)",
        "CREATE TABLE fido_state (name TEXT PRIMARY KEY, value BYTEA NOT NULL)",
        # bookkeeping wipe keeps: the fleet key's check value, the device epoch
        "CREATE TABLE fido_meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL)",
        # O(1) counts and the write generation
        "CREATE TABLE fido_counts (name TEXT PRIMARY KEY, n BIGINT NOT NULL)",
        """INSERT INTO fido_counts (name, n)
            VALUES ('generation', 0), ('discoverable', 0), ('rps', 0)""",
        """CREATE TABLE fido_rps (
            rp_id_hash BYTEA PRIMARY KEY,
            rp_id TEXT NOT NULL,
            rp_name TEXT,
            count BIGINT NOT NULL
        )""",
        "CREATE INDEX fido_rps_by_id ON fido_rps (rp_id, rp_id_hash)",
        """CREATE FUNCTION fido_rps_count() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE fido_counts SET n = n + (CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE -1 END)
                WHERE name = 'rps';
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER fido_rps_count AFTER INSERT OR DELETE ON fido_rps
            FOR EACH ROW EXECUTE FUNCTION fido_rps_count()""",
        """CREATE FUNCTION fido_cred_count() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('DELETE', 'UPDATE') AND OLD.discoverable THEN
                UPDATE fido_rps SET count = count - 1 WHERE rp_id_hash = OLD.rp_id_hash;
                DELETE FROM fido_rps WHERE rp_id_hash = OLD.rp_id_hash AND count <= 0;
                UPDATE fido_counts SET n = n - 1 WHERE name = 'discoverable';
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.discoverable THEN
                INSERT INTO fido_rps (rp_id_hash, rp_id, rp_name, count)
                    VALUES (NEW.rp_id_hash, NEW.rp_id, NEW.rp_name, 1)
                    ON CONFLICT (rp_id_hash) DO UPDATE SET count = fido_rps.count + 1,
                        rp_id = EXCLUDED.rp_id,
                        rp_name = COALESCE(EXCLUDED.rp_name, fido_rps.rp_name);
                UPDATE fido_counts SET n = n + 1 WHERE name = 'discoverable';
            END IF;
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER fido_cred_count
            AFTER INSERT OR DELETE OR UPDATE OF discoverable, rp_id_hash ON fido_credentials
            FOR EACH ROW EXECUTE FUNCTION fido_cred_count()""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)

_SELECT = f"SELECT {COLUMNS} FROM fido_credentials "
_INSERT = f"INSERT INTO fido_credentials ({COLUMNS}) VALUES ({','.join(['%s'] * 19)})"


class StoreUnavailable(StoreError):
    """The PostgreSQL server cannot be reached (now); the command changed nothing."""


def is_postgres_url(spec: object) -> bool:
    return isinstance(spec, str) and spec.startswith(("postgresql://", "postgres://"))


def describe(url: str) -> str:
    """host:port/dbname of a connection URL, never its password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(malformed URL)"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"{host}:{port}/{info.get('dbname') or info.get('user') or ''}"


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def default_key_path() -> Path:
    """``FIDO_EMU_KEY_FILE``, else ``<user data dir>/fido-emulator/fleet.key``."""
    env = os.environ.get("FIDO_EMU_KEY_FILE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("fido-emulator")) / "fleet.key"


def _connect(url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as e:
        raise StoreUnavailable(
            f"cannot connect to PostgreSQL at {describe(url)}: {_one_line(e)}"
        ) from e


def schema_version(conn: psycopg.Connection) -> int:
    exists = conn.execute("SELECT to_regclass('fido_schema') IS NOT NULL").fetchone()[0]
    if not exists:
        return 0
    return conn.execute("SELECT COALESCE(MAX(version), 0) FROM fido_schema").fetchone()[0]


def migrate(url: str) -> tuple[int, int]:
    """Apply every pending migration, each in its own transaction; (from, to) versions.
    Concurrent runs are serialised by an advisory lock (the loser finds nothing to do)."""
    with _connect(url) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS fido_schema (version INTEGER PRIMARY KEY, "
                "applied TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
        start = None
        while True:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))
                version = schema_version(conn)
                start = version if start is None else start
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"PostgreSQL store {describe(url)} has schema {version}, newer than this "
                        f"fido-emulator ({SCHEMA_VERSION}): upgrade fido-emulator"
                    )
                if version == SCHEMA_VERSION:
                    return start, version
                for stmt in MIGRATIONS[version]:
                    conn.execute(stmt)
                conn.execute("INSERT INTO fido_schema (version) VALUES (%s)", (version + 1,))


class PostgresStore:
    """A :class:`storage.base.CredentialStore` on PostgreSQL (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        key_path: str | os.PathLike[str] | None = None,
        passphrase: str | None = None,
        pool_size: int = 4,
    ) -> None:
        self.url = url
        self.where = describe(url)
        self.key_path = Path(key_path).expanduser() if key_path else default_key_path()
        if passphrase is None:
            passphrase = os.environ.get("FIDO_EMU_PASSPHRASE") or None
        self._passphrase = passphrase
        self._mutex = threading.RLock()
        self._gen: int | None = None  # the database's generation when last seen (None: unknown)
        self._local = 0  # what generation() returns: bumped on every cache drop
        self._held = False
        self._by_id: dict[bytes, CredentialRecord | None] = {}
        self._by_rp: dict[bytes, list[CredentialRecord]] = {}
        self._state: dict[str, bytes | None] = {}
        self._counts: dict[str, int] = {}
        with _connect(url) as conn:
            version = schema_version(conn)
            if version != SCHEMA_VERSION:
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"PostgreSQL store {self.where} has schema {version}, newer than this "
                        f"fido-emulator ({SCHEMA_VERSION}): upgrade fido-emulator"
                    )
                raise StoreError(
                    f"PostgreSQL store {self.where} is at schema {version}, this fido-emulator "
                    f"needs {SCHEMA_VERSION}: run `fido-emu store migrate --store URL`"
                )
            self._root = self._settle_key(conn)
            self._epoch, self._gen = self._read_epoch(conn)
        self._secret = self._derive(self._epoch)
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"connect_timeout": 10},
            timeout=5,  # a command waits at most this long for a connection
            name="fido-emu",
            open=True,
        )

    # -- the fleet key ----------------------------------------------------------------
    def _settle_key(self, conn: psycopg.Connection) -> bytes:
        """The fleet key from the key file, matching the database's check value; a new
        database and no key file yet: create both (under the advisory lock)."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))
            row = conn.execute("SELECT value FROM fido_meta WHERE name='key_check'").fetchone()
            root = _read_key(self.key_path, self._passphrase)
            if row is not None:
                if root is None:
                    raise KeyFileMissing(
                        f"fleet key {self.key_path} is missing but PostgreSQL store "
                        f"{self.where} is sealed under one: copy the key file from an instance "
                        "that uses this store (or set FIDO_EMU_KEY_FILE to it)"
                    )
                if not hmac.compare_digest(key_check(root), bytes(row[0])):
                    raise KeyFileMismatch(
                        f"fleet key {self.key_path} is not the key PostgreSQL store "
                        f"{self.where} was sealed under: copy the right key file from an "
                        "instance that uses this store"
                    )
                return root
            if root is None:
                root = os.urandom(32)
                self.key_path.parent.mkdir(parents=True, exist_ok=True)
                with _private_umask():
                    try:
                        _write_key(
                            self.key_path, _encode_key(root, self._passphrase), exclusive=True
                        )
                    except FileExistsError:
                        root = _read_key(self.key_path, self._passphrase)
                        assert root is not None
            conn.execute(
                "INSERT INTO fido_meta (name, value) VALUES ('key_check', %s), ('epoch', %s) "
                "ON CONFLICT (name) DO NOTHING",
                (key_check(root), os.urandom(16)),
            )
            return root

    def _derive(self, epoch: bytes) -> bytes:
        return derive(self._root, "device-secret/" + epoch.hex())

    @staticmethod
    def _read_epoch(conn: psycopg.Connection) -> tuple[bytes, int]:
        row = conn.execute(
            "SELECT m.value, c.n FROM fido_meta m, fido_counts c "
            "WHERE m.name='epoch' AND c.name='generation'"
        ).fetchone()
        if row is None:
            raise StoreError("PostgreSQL store lost its device epoch: restore it from a backup")
        return bytes(row[0]), row[1]

    # -- connections ------------------------------------------------------------------
    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in one transaction (committed at the end, else rolled
        back); a lost or unreachable server is a one-line StoreUnavailable."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as e:
            raise StoreUnavailable(
                f"cannot reach PostgreSQL at {self.where}: no connection within 5 s"
            ) from e
        except psycopg.OperationalError as e:
            self._invalidate()
            try:  # drop the pool's other dead connections too: the next command gets live ones
                self._pool.check()
            except Exception:  # the server is still down: the next command says so
                pass
            raise StoreUnavailable(
                f"PostgreSQL at {self.where} went away: {_one_line(e)}; the command was not "
                "completed, retry it"
            ) from e

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection]:
        """One write transaction, holding the generation row lock (one writer at a time)."""
        with self._mutex:
            seen, committed = self._gen, None
            try:
                with self._conn() as conn:
                    committed = conn.execute(
                        "UPDATE fido_counts SET n = n + 1 WHERE name='generation' RETURNING n"
                    ).fetchone()[0]
                    yield conn
            finally:
                self._invalidate()
            # committed: if ours is the only write since we last looked, we are fresh
            if seen is not None and committed == seen + 1:
                self._gen = committed

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._mutex, self._conn() as conn:
            return conn.execute(sql, args).fetchall()

    # -- freshness --------------------------------------------------------------------
    def command_begin(self) -> None:
        """One freshness check for a whole CTAP command."""
        self._held = False
        self._fresh()
        self._held = True

    def command_end(self) -> None:
        self._held = False

    def _fresh(self) -> None:
        if self._held:
            return
        with self._mutex:
            with self._conn() as conn:
                epoch, gen = self._read_epoch(conn)
            if gen != self._gen:
                self._invalidate()
                self._gen = gen
                if epoch != self._epoch:
                    self._epoch, self._secret = epoch, self._derive(epoch)

    def generation(self) -> int:
        self._fresh()
        return self._local

    def _invalidate(self) -> None:
        self._gen = None
        self._local += 1
        self._by_id.clear()
        self._by_rp.clear()
        self._state.clear()
        self._counts.clear()

    def device_secret(self) -> bytes:
        self._fresh()
        return self._secret

    # -- credentials ------------------------------------------------------------------
    @staticmethod
    def _row(row: tuple) -> CredentialRecord:
        return _row_to_record(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row))

    def _put(self, conn: psycopg.Connection, rec: CredentialRecord) -> CredentialRecord | None:
        replaced = None
        if rec.discoverable:
            row = conn.execute(
                _SELECT + "WHERE rp_id_hash=%s AND user_id=%s AND discoverable",
                (rec.rp_id_hash, rec.user_id),
            ).fetchone()
            if row and bytes(row[0]) != rec.credential_id:
                replaced = self._row(row)
                conn.execute("DELETE FROM fido_credentials WHERE credential_id=%s", (row[0],))
                conn.execute("DELETE FROM fido_counters WHERE key=%s", (row[0],))
        row = conn.execute(_SELECT + "WHERE credential_id=%s", (rec.credential_id,)).fetchone()
        if row:  # the same id again: the new record replaces it, its counter stays
            replaced = replaced or self._row(row)
            conn.execute("DELETE FROM fido_credentials WHERE credential_id=%s", (rec.credential_id,))
        values = list(_record_row(rec))
        for i in (10, 12, 13, 14, 15):  # SQLite stores these as 0/1
            values[i] = bool(values[i])
        conn.execute(_INSERT, values)
        return replaced

    def put_credential(self, rec: CredentialRecord) -> CredentialRecord | None:
        with self._write() as conn:
            return self._put(conn, rec)

    def put_credentials(self, recs: Iterable[CredentialRecord]) -> list[CredentialRecord]:
        with self._write() as conn:
            return [r for r in (self._put(conn, rec) for rec in recs) if r is not None]

    def get_credential(self, credential_id: bytes) -> CredentialRecord | None:
        """Records returned are shared with the read cache: treat them as read-only."""
        self._fresh()
        with self._mutex:
            if credential_id in self._by_id:
                return self._by_id[credential_id]
            rows = self._read(_SELECT + "WHERE credential_id=%s", (credential_id,))
            rec = self._row(rows[0]) if rows else None
            if len(self._by_id) > 10_000:
                self._by_id.clear()
            self._by_id[credential_id] = rec
            return rec

    def credentials_for_rp(self, rp_id_hash: bytes) -> list[CredentialRecord]:
        self._fresh()
        with self._mutex:
            cached = self._by_rp.get(rp_id_hash)
            if cached is None:
                rows = self._read(
                    _SELECT + "WHERE rp_id_hash=%s AND discoverable "
                    "ORDER BY created DESC, credential_id DESC",
                    (rp_id_hash,),
                )
                cached = [self._row(r) for r in rows]
                if len(self._by_rp) > 1_000:
                    self._by_rp.clear()
                self._by_rp[rp_id_hash] = cached
            return list(cached)

    def credentials_for_rp_page(
        self, rp_id_hash: bytes, after: CredentialRecord | None, limit: int
    ) -> list[CredentialRecord]:
        sql = _SELECT + "WHERE rp_id_hash=%s AND discoverable "
        args: tuple = (rp_id_hash,)
        if after is not None:
            sql += "AND (created, credential_id) < (%s, %s) "
            args += (after.created, after.credential_id)
        sql += "ORDER BY created DESC, credential_id DESC LIMIT %s"
        return [self._row(r) for r in self._read(sql, (*args, max(0, limit)))]

    def delete_credential(self, credential_id: bytes) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "DELETE FROM fido_credentials WHERE credential_id=%s", (credential_id,)
            )
            conn.execute("DELETE FROM fido_counters WHERE key=%s", (credential_id,))
            return cur.rowcount > 0

    def update_user(
        self, credential_id: bytes, user_id: bytes, name: str | None, display_name: str | None
    ) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE fido_credentials SET user_name=%s, user_display_name=%s "
                "WHERE credential_id=%s AND user_id=%s",
                (name, display_name, credential_id, user_id),
            )
            return cur.rowcount > 0

    @staticmethod
    def _summary(row: tuple) -> RpSummary:
        return RpSummary(row[0], bytes(row[1]), row[2], row[3])

    def list_rps(self) -> list[RpSummary]:
        rows = self._read(
            "SELECT rp_id, rp_id_hash, rp_name, count FROM fido_rps ORDER BY rp_id, rp_id_hash"
        )
        return [self._summary(r) for r in rows]

    def list_rps_page(self, after: RpSummary | None, limit: int) -> list[RpSummary]:
        sql = "SELECT rp_id, rp_id_hash, rp_name, count FROM fido_rps "
        args: tuple = ()
        if after is not None:
            sql += "WHERE (rp_id, rp_id_hash) > (%s, %s) "
            args = (after.rp_id, after.rp_id_hash)
        sql += "ORDER BY rp_id, rp_id_hash LIMIT %s"
        return [self._summary(r) for r in self._read(sql, (*args, max(0, limit)))]

    def rp_summary(self, rp_id_hash: bytes) -> RpSummary | None:
        rows = self._read(
            "SELECT rp_id, rp_id_hash, rp_name, count FROM fido_rps WHERE rp_id_hash=%s",
            (rp_id_hash,),
        )
        return self._summary(rows[0]) if rows else None

    def _count_of(self, name: str) -> int:
        self._fresh()
        with self._mutex:
            if name not in self._counts:
                rows = self._read("SELECT n FROM fido_counts WHERE name=%s", (name,))
                self._counts[name] = rows[0][0] if rows else 0
            return self._counts[name]

    def count_rps(self) -> int:
        return self._count_of("rps")

    def count_discoverable(self) -> int:
        return self._count_of("discoverable")

    # -- counters ---------------------------------------------------------------------
    def load_counter(self, key: bytes) -> int | None:
        rows = self._read("SELECT lease FROM fido_counters WHERE key=%s", (key,))
        return rows[0][0] if rows else None

    def store_counter(self, key: bytes, lease: int) -> None:
        lease = cap_lease(lease)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO fido_counters (key, lease) VALUES (%s, %s) ON CONFLICT (key) "
                "DO UPDATE SET lease = GREATEST(fido_counters.lease, EXCLUDED.lease)",
                (key, lease),
            )

    def set_counter(self, key: bytes, value: int) -> None:
        value = check_counter(value)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO fido_counters (key, lease) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET lease = EXCLUDED.lease",
                (key, value),
            )

    def delete_counter(self, key: bytes) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM fido_counters WHERE key=%s", (key,))

    def release_counter(self, key: bytes, lease: int, value: int) -> bool:
        """Give an unused lease back: lower it to ``value`` only if it is still ``lease``
        (no other instance raised it since). One statement, so no race with a raise."""
        value = check_counter(value)
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE fido_counters SET lease=%s WHERE key=%s AND lease=%s AND %s<=lease",
                (value, key, lease, value),
            )
            return cur.rowcount == 1

    # -- state ------------------------------------------------------------------------
    def get_state(self, name: str) -> bytes | None:
        """Cached until the generation changes (state is read several times per command)."""
        self._fresh()
        with self._mutex:
            if name not in self._state:
                rows = self._read("SELECT value FROM fido_state WHERE name=%s", (name,))
                self._state[name] = bytes(rows[0][0]) if rows else None
            return self._state[name]

    @staticmethod
    def _set_state(conn: psycopg.Connection, name: str, value: bytes | None) -> None:
        if value is None:
            conn.execute("DELETE FROM fido_state WHERE name=%s", (name,))
        else:
            conn.execute(
                "INSERT INTO fido_state (name, value) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                (name, bytes(value)),
            )

    def set_state(self, name: str, value: bytes | None) -> None:
        with self._write() as conn:
            self._set_state(conn, name, value)

    def update_state(
        self, name: str, fn: Callable[[bytes | None], bytes | None]
    ) -> bytes | None:
        with self._write() as conn:  # the generation lock is held: nobody writes in between
            row = conn.execute("SELECT value FROM fido_state WHERE name=%s", (name,)).fetchone()
            new = fn(bytes(row[0]) if row else None)
            self._set_state(conn, name, new)
            return None if new is None else bytes(new)

    # -- reset ------------------------------------------------------------------------
    def wipe(self) -> None:
        """One transaction: data gone and a new epoch (so a new device secret on every
        instance); the fleet key file stays."""
        epoch = os.urandom(16)
        with self._write() as conn:
            conn.execute("DELETE FROM fido_credentials")
            conn.execute("DELETE FROM fido_counters")
            conn.execute("DELETE FROM fido_state")
            conn.execute("UPDATE fido_meta SET value=%s WHERE name='epoch'", (epoch,))
        self._epoch, self._secret = epoch, self._derive(epoch)

    def close(self) -> None:
        self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"


def stats(store: PostgresStore) -> dict[str, Any]:
    """Pool statistics (for `fido-emu store` diagnostics and the benchmarks)."""
    return dict(store._pool.get_stats())


__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "PostgresStore",
    "StoreUnavailable",
    "default_key_path",
    "describe",
    "is_postgres_url",
    "migrate",
]

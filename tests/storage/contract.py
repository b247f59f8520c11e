"""The `CredentialStore` contract: what every store must do, whatever it is built on.

`test_contract.py` runs :class:`StoreContract` once per store kind through the
``store_factory`` fixture (tests/storage/conftest.py). A new store joins by adding one
:class:`StoreFactory` there (and, if other processes can open it, one branch in
:func:`open_spec`). Expected values come from a plain model kept by the tests, never from
the store under test.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from storage.base import COUNTER_MAX, CounterRangeError, CredentialRecord, CredentialStore


@dataclass
class StoreFactory:
    """How a contract test gets store handles.

    ``open()`` returns a handle on one store (for an in-process store: the same object every
    time). ``spec`` is a picklable description another process passes to
    :func:`open_spec`; None when the store cannot be shared across processes.
    """

    name: str
    open: Callable[[], CredentialStore]
    persistent: bool
    spec: tuple | None = None
    handles: list = field(default_factory=list)


def open_spec(spec: tuple) -> CredentialStore:
    """Open a store from a factory's ``spec`` (in a child process)."""
    kind = spec[0]
    if kind == "sqlite":
        from storage.sqlite import SqliteStore

        return SqliteStore(spec[1])
    if kind == "postgres":
        from storage.postgres import PostgresStore

        return PostgresStore(spec[1], key_path=spec[2])
    raise ValueError(f"unknown store spec {kind}")


def rp_hash(rp_id: str) -> bytes:
    return hashlib.sha256(rp_id.encode()).digest()


def record(
    rp_id: str = "example.com",
    user: bytes = b"u1",
    *,
    cid: bytes | None = None,
    created: float = 1.0,
    discoverable: bool = True,
    **kw,
) -> CredentialRecord:
    return CredentialRecord(
        credential_id=cid or os.urandom(16),
        rp_id=rp_id,
        rp_id_hash=rp_hash(rp_id),
        user_id=user,
        algorithm=-7,
        sealed_key=os.urandom(48),
        public_key=b"\xa1\x01\x02",
        created=created,
        discoverable=discoverable,
        **kw,
    )


def ids(recs) -> list[bytes]:
    return [r.credential_id for r in recs]


def all_pages(fetch: Callable, limit: int, most: int) -> list:
    """Every page ``fetch(after, limit)`` gives, following the cursor; a cursor that
    does not advance fails (instead of looping) once more items came than exist."""
    got: list = []
    after = None
    while page := fetch(after, limit):
        assert len(page) <= limit
        got += page
        assert len(got) <= most, "the cursor does not advance"
        after = page[-1]
    return got


def _worker(spec: tuple, n: int, seed: int, start) -> None:
    """One process of the concurrency test: puts, replaces, deletes and leases."""
    import random

    store = open_spec(spec)
    rng = random.Random(seed)
    start.wait()
    mine: list[bytes] = []
    for i in range(n):
        rp = f"rp{rng.randrange(4)}.example"
        # users are shared between processes: replacements race across them
        rec = record(rp, b"user%d" % rng.randrange(6), created=float(i), rp_name=rp.upper())
        store.put_credential(rec)
        mine.append(rec.credential_id)
        store.store_counter(b"shared", seed * 1000 + i)
        if i % 5 == 4:
            store.delete_credential(mine.pop(rng.randrange(len(mine))))
    store.close()


def _incrementer(spec: tuple, n: int, start) -> None:
    store = open_spec(spec)
    start.wait()
    for _ in range(n):
        store.update_state("n", lambda old: (int.from_bytes(old, "big") + 1).to_bytes(4, "big"))
    store.close()


def _writer_until_killed(spec: tuple, conn) -> None:
    """Writes forever, reporting each write once it returned (then it must be durable)."""
    store = open_spec(spec)
    i = 0
    while True:
        i += 1
        rec = record("kill.example", b"u%d" % (i % 7), created=float(i))
        store.put_credential(rec)
        store.store_counter(b"c", i * 10)
        conn.send((i, rec.credential_id))


class StoreContract:
    """Tests every store must pass. Needs a ``store_factory`` fixture."""

    @pytest.fixture
    def store(self, store_factory: StoreFactory) -> CredentialStore:
        return store_factory.open()

    # -- device secret ----------------------------------------------------------------
    def test_device_secret_is_32_stable_bytes(self, store):
        s = store.device_secret()
        assert isinstance(s, bytes) and len(s) == 32
        assert store.device_secret() == s

    # -- credentials ------------------------------------------------------------------
    def test_put_get_round_trips_every_field(self, store):
        rec = record(
            rp_name="Example",
            user_name="alice",
            user_display_name="Alice",
            cred_protect=3,
            backup_eligible=True,
            backup_state=True,
            hmac_secret=True,
            large_blob_key=True,
            cred_blob=b"blob",
            created=12.5,
            extra={"k": [1, "v"]},
        )
        assert store.put_credential(rec) is None
        assert store.get_credential(rec.credential_id) == rec
        assert store.get_credential(os.urandom(16)) is None

    def test_same_user_replaces_and_the_old_one_is_gone(self, store):
        old = record(user=b"alice", created=1.0)
        store.put_credential(old)
        store.store_counter(old.credential_id, 50)
        new = record(user=b"alice", created=2.0)
        replaced = store.put_credential(new)
        assert replaced is not None and replaced.credential_id == old.credential_id
        assert store.get_credential(old.credential_id) is None
        assert store.load_counter(old.credential_id) is None
        assert ids(store.credentials_for_rp(rp_hash("example.com"))) == [new.credential_id]
        assert store.count_discoverable() == 1
        assert store.rp_summary(rp_hash("example.com")).count == 1

    def test_replace_is_per_rp_and_per_user_and_only_for_discoverable(self, store):
        a = record("a.example", b"u")
        b = record("b.example", b"u")
        c = record("a.example", b"v")
        server_side = record("a.example", b"u", discoverable=False)
        for r in (a, b, c, server_side):
            assert store.put_credential(r) is None
        for r in (a, b, c, server_side):
            assert store.get_credential(r.credential_id) == r
        assert store.count_discoverable() == 3
        assert server_side.credential_id not in ids(store.credentials_for_rp(a.rp_id_hash))
        # a discoverable credential does not replace a server-side one of the same user
        d = record("a.example", b"u", created=5.0)
        assert store.put_credential(d).credential_id == a.credential_id
        assert store.get_credential(server_side.credential_id) == server_side

    def test_same_id_again_keeps_one_record_and_its_counter(self, store):
        rec = record(user=b"u", user_name="first")
        store.put_credential(rec)
        store.store_counter(rec.credential_id, 9)
        again = record(user=b"u", cid=rec.credential_id, user_name="second")
        store.put_credential(again)
        assert store.get_credential(rec.credential_id).user_name == "second"
        assert store.count_discoverable() == 1
        assert store.load_counter(rec.credential_id) == 9

    def test_server_side_credentials_are_not_counted_or_listed(self, store):
        rec = record(discoverable=False)
        store.put_credential(rec)
        assert store.get_credential(rec.credential_id) == rec
        assert store.count_discoverable() == 0
        assert store.list_rps() == [] and store.count_rps() == 0
        assert store.credentials_for_rp(rec.rp_id_hash) == []
        assert store.delete_credential(rec.credential_id)
        assert store.count_discoverable() == 0

    def test_credentials_for_rp_newest_first_and_pages_agree(self, store):
        recs = [record(user=b"u%d" % i, created=float(i % 7)) for i in range(23)]
        store.put_credentials(recs)
        full = store.credentials_for_rp(rp_hash("example.com"))
        assert len(full) == 23
        assert [r.created for r in full] == sorted((r.created for r in recs), reverse=True)
        for limit in (1, 4, 23, 50):
            got = all_pages(
                lambda after, n: store.credentials_for_rp_page(rp_hash("example.com"), after, n),
                limit,
                len(full),
            )
            assert ids(got) == ids(full)
        assert store.credentials_for_rp_page(rp_hash("example.com"), None, 0) == []
        assert store.credentials_for_rp_page(rp_hash("other"), None, 5) == []

    def test_delete_removes_credential_counter_and_summary(self, store):
        a, b = record("x.example", b"a"), record("x.example", b"b")
        store.put_credentials([a, b])
        store.store_counter(a.credential_id, 7)
        assert store.delete_credential(a.credential_id) is True
        assert store.delete_credential(a.credential_id) is False
        assert store.get_credential(a.credential_id) is None
        assert store.load_counter(a.credential_id) is None
        assert store.rp_summary(a.rp_id_hash).count == 1
        assert store.delete_credential(b.credential_id)
        assert store.rp_summary(a.rp_id_hash) is None
        assert store.count_rps() == 0 and store.count_discoverable() == 0

    def test_update_user_needs_the_matching_user_id(self, store):
        rec = record(user=b"u", user_name="old", user_display_name="Old")
        store.put_credential(rec)
        assert store.update_user(rec.credential_id, b"someone else", "x", "X") is False
        assert store.get_credential(rec.credential_id).user_name == "old"
        assert store.update_user(rec.credential_id, b"u", "new", None) is True
        got = store.get_credential(rec.credential_id)
        assert (got.user_name, got.user_display_name) == ("new", None)
        assert store.update_user(os.urandom(16), b"u", "x", None) is False

    def test_rps_listed_in_order_counted_and_paged(self, store):
        names = [f"rp{i:02d}.example" for i in range(17)]
        model = {}
        for i, rp in enumerate(reversed(names)):
            n = 1 + i % 3
            store.put_credentials(
                [record(rp, b"u%d" % j, rp_name=rp.upper()) for j in range(n)]
            )
            model[rp] = n
        rps = store.list_rps()
        assert [s.rp_id for s in rps] == names
        assert {s.rp_id: s.count for s in rps} == model
        assert all(s.rp_name == s.rp_id.upper() and s.rp_id_hash == rp_hash(s.rp_id) for s in rps)
        assert store.count_rps() == 17
        assert store.count_discoverable() == sum(model.values())
        for limit in (1, 5, 17, 100):
            assert all_pages(store.list_rps_page, limit, len(rps)) == rps
        assert store.rp_summary(rp_hash(names[3])) == rps[3]
        assert store.rp_summary(rp_hash("nobody.example")) is None

    def test_rp_name_is_the_latest_one_given(self, store):
        store.put_credential(record("n.example", b"a", rp_name="First"))
        store.put_credential(record("n.example", b"b", rp_name="Second"))
        store.put_credential(record("n.example", b"c", rp_name=None))
        assert store.rp_summary(rp_hash("n.example")).rp_name == "Second"

    def test_count_follows_every_kind_of_change(self, store):
        import random

        rng = random.Random(3)
        model: dict[bytes, CredentialRecord] = {}
        for _ in range(300):
            op = rng.random()
            if op < 0.6 or not model:
                rec = record(f"r{rng.randrange(5)}", b"u%d" % rng.randrange(12),
                             discoverable=rng.random() < 0.8)
                store.put_credential(rec)
                if rec.discoverable:
                    model = {k: v for k, v in model.items()
                             if not (v.discoverable and v.rp_id_hash == rec.rp_id_hash
                                     and v.user_id == rec.user_id)}
                model[rec.credential_id] = rec
            else:
                victim = rng.choice(list(model))
                assert store.delete_credential(victim)
                del model[victim]
            assert store.count_discoverable() == sum(r.discoverable for r in model.values())
        per_rp: dict[str, int] = {}
        for r in model.values():
            if r.discoverable:
                per_rp[r.rp_id] = per_rp.get(r.rp_id, 0) + 1
        assert {s.rp_id: s.count for s in store.list_rps()} == per_rp
        assert store.count_rps() == len(per_rp)

    def test_bulk_put_replaces_within_the_batch(self, store):
        first, second = record(user=b"same", created=1.0), record(user=b"same", created=2.0)
        others = [record(user=b"o%d" % i) for i in range(10)]
        replaced = store.put_credentials([first, *others, second])
        assert ids(replaced) == [first.credential_id]
        assert store.get_credential(first.credential_id) is None
        assert store.count_discoverable() == 11

    def test_bulk_put_is_all_or_nothing(self, store):
        store.put_credential(record(user=b"before"))

        def batch():
            yield record(user=b"a")
            yield record(user=b"b")
            raise RuntimeError("import source broke")

        with pytest.raises(RuntimeError):
            store.put_credentials(batch())
        assert store.count_discoverable() == 1
        assert len(store.credentials_for_rp(rp_hash("example.com"))) == 1

    # -- counters ---------------------------------------------------------------------
    def test_counter_leases_never_go_down(self, store):
        k = b"k"
        assert store.load_counter(k) is None
        store.store_counter(k, 10)
        store.store_counter(k, 5)
        assert store.load_counter(k) == 10
        store.store_counter(k, 64)
        assert store.load_counter(k) == 64

    def test_leases_are_capped_at_the_32_bit_maximum(self, store):
        store.store_counter(b"k", COUNTER_MAX - 3)
        store.store_counter(b"k", COUNTER_MAX + 60)
        assert store.load_counter(b"k") == COUNTER_MAX
        with pytest.raises(CounterRangeError):
            store.store_counter(b"k", -1)

    def test_set_counter_may_lower_but_stays_in_range(self, store):
        k = b"k"
        store.store_counter(k, 100)
        store.set_counter(k, 3)
        assert store.load_counter(k) == 3
        for bad in (2**32, 2**63, -1):
            with pytest.raises(ValueError) as err:
                store.set_counter(k, bad)
            assert isinstance(err.value, CounterRangeError)
            assert "\n" not in str(err.value) and str(bad) in str(err.value)
            assert store.load_counter(k) == 3
        store.set_counter(k, COUNTER_MAX)
        assert store.load_counter(k) == COUNTER_MAX
        store.delete_counter(k)
        assert store.load_counter(k) is None

    def test_release_gives_an_unused_lease_back_only_if_still_ours(self, store):
        # a clean exit lowers its lease to the last value it handed out, so the next
        # process counts +1 (issue 11); compare-and-set, so never below another's lease
        k = b"k"
        store.store_counter(k, 100)
        assert not store.release_counter(k, 99, 10)  # not our lease: untouched
        assert store.load_counter(k) == 100
        assert not store.release_counter(k, 100, 101)  # a release never raises a lease
        assert store.load_counter(k) == 100
        assert store.release_counter(k, 100, 10)
        assert store.load_counter(k) == 10
        store.store_counter(k, 266)  # another process leased meanwhile
        assert not store.release_counter(k, 10, 5)
        assert store.load_counter(k) == 266
        assert not store.release_counter(b"missing", 1, 0)

    # -- state ------------------------------------------------------------------------
    def test_state_set_get_delete(self, store):
        assert store.get_state("pin") is None
        store.set_state("pin", b"\x00\x01")
        assert store.get_state("pin") == b"\x00\x01"
        store.set_state("pin", None)
        assert store.get_state("pin") is None
        store.set_state("pin", None)  # deleting nothing is fine

    def test_update_state_reads_modifies_writes(self, store):
        seen = []

        def bump(old):
            seen.append(old)
            return bytes([(old or b"\x00")[0] + 1])

        assert store.update_state("n", bump) == b"\x01"
        assert store.update_state("n", bump) == b"\x02"
        assert seen == [None, b"\x01"]
        assert store.update_state("n", lambda old: None) is None
        assert store.get_state("n") is None

        store.set_state("n", b"keep")

        def broken(old):
            raise KeyError("no")

        with pytest.raises(KeyError):
            store.update_state("n", broken)
        assert store.get_state("n") == b"keep"

    # -- reset ------------------------------------------------------------------------
    def test_wipe_forgets_everything_and_changes_the_secret(self, store):
        secret = store.device_secret()
        rec = record()
        store.put_credentials([rec, record(discoverable=False)])
        store.store_counter(rec.credential_id, 5)
        store.store_counter(b"global", 5)
        store.set_state("pin", b"x")
        store.wipe()
        assert store.device_secret() != secret and len(store.device_secret()) == 32
        assert store.get_credential(rec.credential_id) is None
        assert store.load_counter(b"global") is None
        assert store.get_state("pin") is None
        assert store.count_discoverable() == 0 and store.count_rps() == 0
        assert store.list_rps() == [] and store.list_rps_page(None, 10) == []
        store.put_credential(record())
        assert store.count_discoverable() == 1

    # -- generation and other handles -------------------------------------------------
    def test_generation_changes_with_every_write_and_only_then(self, store):
        rec = record()
        writes = [
            lambda: store.put_credential(rec),
            lambda: store.put_credentials([record(user=b"x")]),
            lambda: store.update_user(rec.credential_id, rec.user_id, "n", None),
            lambda: store.store_counter(b"c", 5),
            lambda: store.set_counter(b"c", 1),
            lambda: store.delete_counter(b"c"),
            lambda: store.set_state("s", b"1"),
            lambda: store.update_state("s", lambda old: b"2"),
            lambda: store.delete_credential(rec.credential_id),
            store.wipe,
        ]
        for write in writes:
            before = store.generation()
            store.get_credential(rec.credential_id)
            store.count_discoverable()
            store.get_state("s")
            assert store.generation() == before  # reads change nothing
            write()
            assert store.generation() != before

    def test_another_handle_sees_every_change(self, store_factory):
        a, b = store_factory.open(), store_factory.open()
        rec = record(user=b"u")
        a.put_credential(rec)
        # warm a's caches, then change everything through b
        assert a.get_credential(rec.credential_id) == rec
        assert ids(a.credentials_for_rp(rec.rp_id_hash)) == [rec.credential_id]
        assert a.count_discoverable() == 1
        gen = a.generation()
        newer = record(user=b"u", created=9.0)
        b.put_credential(newer)
        b.set_state("settings", b"alwaysUv")
        b.store_counter(b"g", 77)
        assert a.generation() != gen
        assert a.get_credential(rec.credential_id) is None
        assert ids(a.credentials_for_rp(rec.rp_id_hash)) == [newer.credential_id]
        assert a.get_state("settings") == b"alwaysUv"
        assert a.load_counter(b"g") == 77
        b.wipe()
        assert a.device_secret() == b.device_secret()
        assert a.get_credential(newer.credential_id) is None
        assert a.count_discoverable() == 0

    def test_update_state_from_processes_at_once_loses_no_update(self, store_factory):
        if store_factory.spec is None:
            pytest.skip(f"{store_factory.name} lives in one process")
        store_factory.open().set_state("n", (0).to_bytes(4, "big"))
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Event()
        procs = [ctx.Process(target=_incrementer, args=(store_factory.spec, 60, start))
                 for _ in range(3)]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        assert int.from_bytes(store_factory.open().get_state("n"), "big") == 180

    # -- persistence ------------------------------------------------------------------
    def test_everything_survives_reopen(self, store_factory):
        if not store_factory.persistent:
            pytest.skip(f"{store_factory.name} keeps nothing across reopen by design")
        a = store_factory.open()
        recs = [record(f"p{i % 3}.example", b"u%d" % i, created=float(i)) for i in range(9)]
        a.put_credentials(recs)
        a.store_counter(recs[0].credential_id, 123)
        a.set_state("pin", b"sealed")
        secret, rps = a.device_secret(), a.list_rps()
        a.close()
        b = store_factory.open()
        assert b.device_secret() == secret
        assert [b.get_credential(r.credential_id) for r in recs] == recs
        assert b.load_counter(recs[0].credential_id) == 123
        assert b.get_state("pin") == b"sealed"
        assert b.list_rps() == rps and b.count_discoverable() == 9 and b.count_rps() == 3

    def test_processes_writing_at_once_keep_counts_and_counters_right(self, store_factory):
        if store_factory.spec is None:
            pytest.skip(f"{store_factory.name} lives in one process")
        store_factory.open()  # created before the race (the key race has its own test)
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Event()
        procs = [
            ctx.Process(target=_worker, args=(store_factory.spec, 40, seed, start))
            for seed in range(1, 5)
        ]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        store = store_factory.open()
        per_rp: dict[str, int] = {}
        total = 0
        for rp in (f"rp{i}.example" for i in range(4)):
            creds = store.credentials_for_rp(rp_hash(rp))
            users = [c.user_id for c in creds]
            assert len(users) == len(set(users))  # one credential per user and RP
            if creds:
                per_rp[rp] = len(creds)
            total += len(creds)
        assert store.count_discoverable() == total
        assert {s.rp_id: s.count for s in store.list_rps()} == per_rp
        assert store.count_rps() == len(per_rp)
        assert store.load_counter(b"shared") == max(seed * 1000 + 39 for seed in range(1, 5))

    def test_sigkill_loses_no_acknowledged_write(self, store_factory):
        if store_factory.spec is None:
            pytest.skip(f"{store_factory.name} lives in one process")
        import signal

        store_factory.open()
        ctx = multiprocessing.get_context("spawn")
        for target in (5, 40):
            ours, theirs = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_writer_until_killed, args=(store_factory.spec, theirs))
            proc.start()
            acked = [ours.recv() for _ in range(target)]
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            store = store_factory.open()
            last, _ = acked[-1]
            assert store.load_counter(b"c") >= last * 10  # never below an acknowledged lease
            # each user's newest acknowledged credential (or a later one) is there, counted
            creds = store.credentials_for_rp(rp_hash("kill.example"))
            by_user = {r.user_id: r for r in creds}
            newest = {b"u%d" % (i % 7): i for i, _ in acked}
            for user, i in newest.items():
                assert user in by_user and by_user[user].created >= i, "acknowledged write lost"
            assert store.count_discoverable() == len(creds) <= 7

"""Giving a counter lease back on a clean exit never lets a value repeat, on either engine,
even when another process on the same store raised the lease meanwhile."""

from __future__ import annotations

import pytest

from authenticator.core.counters import Counters
from storage.memory import MemoryStore
from storage.sqlite import SqliteStore


@pytest.fixture(params=["memory", "sqlite"])
def opener(request, tmp_path):
    if request.param == "memory":
        store = MemoryStore()
        return lambda: store
    return lambda: SqliteStore(tmp_path / "c.db")


def test_release_gives_back_the_unused_lease(opener):
    a = Counters(opener(), lease=256)
    assert [a.next(b"k") for _ in range(3)] == [1, 2, 3]
    assert a.release() == 1
    b = Counters(opener(), lease=256)
    assert b.next(b"k") == 4  # +1, not +257


def test_release_never_lowers_a_lease_another_process_raised(opener):
    a = Counters(opener(), lease=256)
    b = Counters(opener(), lease=256)
    assert a.next(b"k") == 1  # a's lease: 257
    # b jumps past a's lease (it cannot know which values a handed out) and raises it
    store_b = b._store
    store_b.store_counter(b"k", 257 + 1 + 256)
    b.drop_cache()
    taken_by_b = b.next(b"k")
    assert taken_by_b > 257
    assert a.release() == 0  # the lease is no longer a's: untouched
    c = Counters(opener(), lease=256)
    assert c.next(b"k") > taken_by_b


def test_store_release_is_compare_and_set(opener):
    store = opener()
    store.store_counter(b"k", 100)
    assert not store.release_counter(b"k", 99, 10)  # not our lease
    assert not store.release_counter(b"k", 100, 101)  # never raises through release
    assert store.release_counter(b"k", 100, 10)
    assert store.load_counter(b"k") == 10

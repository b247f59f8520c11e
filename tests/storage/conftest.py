"""``store_factory``: every store kind the contract suite runs against.

A new store (PostgreSQL) joins the contract by adding one parameter here.
"""

from __future__ import annotations

import pytest

from storage.memory import MemoryStore
from storage.sqlite import SqliteStore
from tests.storage.contract import StoreFactory


def _memory(tmp_path) -> StoreFactory:
    store = MemoryStore()
    return StoreFactory("memory", lambda: store, persistent=False)


def _sqlite(tmp_path) -> StoreFactory:
    path = tmp_path / "contract.db"
    factory = StoreFactory("sqlite", lambda: None, persistent=True, spec=("sqlite", str(path)))

    def open_() -> SqliteStore:
        store = SqliteStore(path)
        factory.handles.append(store)
        return store

    factory.open = open_
    return factory


def _postgres(tmp_path, request) -> StoreFactory:
    from storage.postgres import PostgresStore, migrate

    url = request.getfixturevalue("postgres_cluster").new_database()
    migrate(url)
    key = tmp_path / "fleet.key"
    factory = StoreFactory("postgres", lambda: None, persistent=True, spec=("postgres", url, str(key)))

    def open_() -> PostgresStore:
        store = PostgresStore(url, key_path=key)
        factory.handles.append(store)
        return store

    factory.open = open_
    return factory


STORES = {"memory": _memory, "sqlite": _sqlite, "postgres": _postgres}


@pytest.fixture(params=sorted(STORES))
def store_factory(request, tmp_path):
    make = STORES[request.param]
    factory = make(tmp_path, request) if make is _postgres else make(tmp_path)
    yield factory
    for handle in factory.handles:
        handle.close()

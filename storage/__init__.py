"""Credential storage: one protocol, SQLite by default, memory for tests."""

from storage.base import CredentialRecord, CredentialStore, RpSummary
from storage.memory import MemoryStore
from storage.sqlite import SqliteStore, default_store_path, open_store

__all__ = [
    "CredentialRecord",
    "CredentialStore",
    "MemoryStore",
    "RpSummary",
    "SqliteStore",
    "default_store_path",
    "open_store",
]

"""Credential storage: one protocol (:mod:`storage.base`), several engines.

``sqlite`` is the default engine (one file, WAL), ``memory`` a volatile one for tests and
demos, ``sealing`` the pure crypto that wraps key files. This is the bottom layer: it
imports nothing from ``authenticator`` or ``transports`` (import-linter contracts in
pyproject.toml). Engines are imported lazily, so importing the protocol (as the core does)
never loads an engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from storage.base import CredentialRecord, CredentialStore, RpSummary

if TYPE_CHECKING:
    from storage.memory import MemoryStore
    from storage.sqlite import SqliteStore, default_store_path, open_store

_LAZY = {
    "MemoryStore": "storage.memory",
    "SqliteStore": "storage.sqlite",
    "default_store_path": "storage.sqlite",
    "open_store": "storage.sqlite",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "CredentialRecord",
    "CredentialStore",
    "MemoryStore",
    "RpSummary",
    "SqliteStore",
    "default_store_path",
    "open_store",
]

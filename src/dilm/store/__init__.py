"""Durable state behind one interface (`Store`). SQLite is the default (and, for now, the only) implementation."""

from __future__ import annotations

from pathlib import Path

from dilm.store.base import AdapterStore, FactStore, KeyStore, LogStore, MemoryStore, Store, UserStore
from dilm.store.sqlite import DB_FILE, SQLiteStore


def open_store(data_dir: Path) -> Store:
    """The store of a data dir (today: SQLite, `data_dir / DB_FILE`). Raises StorageError when it cannot be
    opened or written, or was written by a newer dilm."""
    return SQLiteStore.open(data_dir)


__all__ = [
    "DB_FILE",
    "AdapterStore",
    "FactStore",
    "KeyStore",
    "LogStore",
    "MemoryStore",
    "SQLiteStore",
    "Store",
    "UserStore",
    "open_store",
]

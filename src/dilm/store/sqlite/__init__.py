"""The SQLite store (default): one database file per data dir, WAL, numbered migrations on open, one writer at a
time, scope checks inside. `SQLiteStore` composes one mixin per concern and satisfies `dilm.store.base.Store`."""

from __future__ import annotations

from pathlib import Path

from dilm.store.sqlite.adapters import AdaptersMixin
from dilm.store.sqlite.connection import DB_FILE, SQLiteBase
from dilm.store.sqlite.facts import FactsMixin
from dilm.store.sqlite.keys import KeysMixin
from dilm.store.sqlite.learned import LearnedMixin
from dilm.store.sqlite.lifecycle import LifecycleMixin
from dilm.store.sqlite.log import LogMixin
from dilm.store.sqlite.memories import MemoriesMixin
from dilm.store.sqlite.rows import text_key
from dilm.store.sqlite.stats import LogQueriesMixin
from dilm.store.sqlite.users import UserStateMixin


class SQLiteStore(
    LifecycleMixin,
    LearnedMixin,
    UserStateMixin,
    MemoriesMixin,
    FactsMixin,
    AdaptersMixin,
    LogMixin,
    LogQueriesMixin,
    KeysMixin,
    SQLiteBase,
):
    """All durable state of one data dir. Methods are thread-safe; each write is one transaction."""

    @classmethod
    def open(cls, data_dir: Path) -> SQLiteStore:
        """The store of `data_dir` (its `dilm.db`, created if missing). Raises StorageError."""
        return cls(data_dir / DB_FILE)


__all__ = ["DB_FILE", "SQLiteStore", "text_key"]

"""Durable state behind one interface. SQLite is the default (and, for now, the only) implementation."""

from dilm.store.sqlite import DB_FILE, SQLiteStore

Store = SQLiteStore

__all__ = ["DB_FILE", "SQLiteStore", "Store"]

"""The SQLite connection every mixin shares: WAL, foreign keys, numbered migrations on open, one writer at a time."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dilm.errors import StorageError
from dilm.store import migrations

DB_FILE = "dilm.db"


class SQLiteBase:
    """One connection shared by threads behind a re-entrant lock; each write is one transaction."""

    def __init__(self, path: Path) -> None:
        """Open (creating and migrating) the database at `path`. Raises StorageError when it cannot be opened
        or written, or was written by a newer dilm."""
        self.path = path
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            # FULL: a commit is on disk before we acknowledge it (feedback must survive a crash).
            self._db.execute("PRAGMA synchronous=FULL")
            self.migrate()
        except (OSError, sqlite3.OperationalError) as e:
            raise StorageError(
                f"cannot open the database at {path}: {e}; choose a writable folder with --data-dir or DILM_DATA_DIR"
            ) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def schema_version(self) -> int:
        """How many migrations the database has had (`PRAGMA user_version`)."""
        row = self._one("PRAGMA user_version")
        return int(row[0]) if row else 0

    def pragma(self, name: str) -> Any:
        """The value of `PRAGMA name` on this store's connection (e.g. "journal_mode" -> "wal")."""
        if not name.replace("_", "").isalpha():
            raise ValueError(f"not a pragma name: {name!r}")
        row = self._one(f"PRAGMA {name}")
        return row[0] if row else None

    def migrate(self, upto: int | None = None) -> None:
        """Apply pending migrations (up to number `upto`, default all), each in its own transaction (all of it
        or none of it). Raises StorageError for a database newer than this code."""
        known = migrations.MIGRATIONS
        target = len(known) if upto is None else upto
        with self._lock:
            current = self.schema_version
            if current > len(known):
                raise StorageError(
                    f"{self.path} has schema version {current}, newer than this dilm ({len(known)}): upgrade dilm"
                )
            for number in range(current, target):
                with self._tx() as db:
                    known[number](db)
                    db.execute(f"PRAGMA user_version={number + 1}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE … COMMIT, rolled back on any error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every read inside sees one consistent state."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, args).fetchone()
            return row

"""SQLite store: WAL, foreign keys, numbered migrations on open, one writer at a time, scope checks inside."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dilm.errors import (
    MessageNotFoundError,
    PermissionDeniedError,
    SessionNotFoundError,
    StorageError,
)
from dilm.store.migrations import MIGRATIONS
from dilm.types import Feedback, Message, Session, new_id, utcnow

DB_FILE = "dilm.db"


class SQLiteStore:
    """All durable state of one data dir. Methods are thread-safe; each write is one transaction."""

    def __init__(self, path: Path) -> None:
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

    @classmethod
    def open(cls, data_dir: Path) -> SQLiteStore:
        return cls(data_dir / DB_FILE)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- plumbing ---------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self, upto: int | None = None) -> None:
        """Apply pending migrations, each in its own transaction (all of it or none of it)."""
        target = len(MIGRATIONS) if upto is None else upto
        with self._lock:
            current = self.schema_version
            if current > len(MIGRATIONS):
                raise StorageError(
                    f"{self.path} has schema version {current}, newer than this dilm ({len(MIGRATIONS)}): upgrade dilm"
                )
            for number in range(current, target):
                with self.tx() as db:
                    MIGRATIONS[number](db)
                    db.execute(f"PRAGMA user_version={number + 1}")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
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

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    # -- users and sessions -----------------------------------------------------------------------
    @staticmethod
    def _ensure_user(db: sqlite3.Connection, user_id: str) -> None:
        db.execute("INSERT OR IGNORE INTO users (id, created_at) VALUES (?, ?)", (user_id, utcnow()))

    def user_settings(self, user_id: str) -> dict[str, Any]:
        row = self._one("SELECT settings FROM users WHERE id = ?", (user_id,))
        return json.loads(row["settings"]) if row else {}

    def set_user_settings(self, user_id: str, settings: dict[str, Any]) -> None:
        with self.tx() as db:
            self._ensure_user(db, user_id)
            db.execute("UPDATE users SET settings = ? WHERE id = ?", (json.dumps(settings), user_id))

    def create_session(self, user_id: str, title: str | None = None) -> Session:
        now = utcnow()
        session = Session(id=new_id("ses"), user_id=user_id, created_at=now, updated_at=now, title=title)
        with self.tx() as db:
            self._ensure_user(db, user_id)
            db.execute(
                "INSERT INTO sessions (id, user_id, created_at, updated_at, title) VALUES (?, ?, ?, ?, ?)",
                (session.id, user_id, now, now, title),
            )
        return session

    def session(self, session_id: str, user_id: str | None = None) -> Session:
        """The session, checked to belong to `user_id` when given."""
        row = self._one("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if row is None:
            raise SessionNotFoundError(f"no session {session_id!r}: start a new one by leaving out --session")
        if user_id is not None and row["user_id"] != user_id:
            raise PermissionDeniedError(f"session {session_id!r} belongs to another user")
        return Session(**dict(row))

    def sessions(self, user_id: str, limit: int = 50) -> list[Session]:
        rows = self._all("SELECT * FROM sessions WHERE user_id = ? ORDER BY updated_at DESC LIMIT ?", (user_id, limit))
        return [Session(**dict(r)) for r in rows]

    # -- messages ---------------------------------------------------------------------------------
    def add_turn(self, user_msg: Message, assistant_msg: Message, title: str | None = None) -> None:
        """Both sides of a turn in one transaction: a turn is logged whole or not at all."""
        with self.tx() as db:
            self._ensure_user(db, user_msg.user_id)
            for m in (user_msg, assistant_msg):
                db.execute(
                    """INSERT INTO messages (id, session_id, user_id, role, content, model, adapter_version,
                       decoding, prompt_tokens, completion_tokens, latency_ms, created_at, parent_id, meta)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
                        m.id,
                        m.session_id,
                        m.user_id,
                        m.role,
                        m.content,
                        m.model,
                        m.adapter_version,
                        json.dumps(m.decoding) if m.decoding is not None else None,
                        m.prompt_tokens,
                        m.completion_tokens,
                        m.latency_ms,
                        m.created_at,
                        m.parent_id,
                        json.dumps(m.meta, ensure_ascii=False),
                    ),
                )
            db.execute(
                "UPDATE sessions SET updated_at = ?, title = COALESCE(title, ?) WHERE id = ?",
                (assistant_msg.created_at, title, assistant_msg.session_id),
            )

    @staticmethod
    def _message(row: sqlite3.Row) -> Message:
        d = dict(row)
        d["decoding"] = json.loads(d["decoding"]) if d["decoding"] else None
        d["meta"] = json.loads(d["meta"] or "{}")
        return Message(**d)

    def message(self, message_id: str) -> Message:
        row = self._one("SELECT * FROM messages WHERE id = ?", (message_id,))
        if row is None:
            raise MessageNotFoundError(f"no message {message_id!r}: see `dilm history` for message ids")
        return self._message(row)

    def session_messages(self, session_id: str) -> list[Message]:
        rows = self._all("SELECT * FROM messages WHERE session_id = ? ORDER BY rowid", (session_id,))
        return [self._message(r) for r in rows]

    def messages(self, user_id: str | None = None, session_id: str | None = None, limit: int = 50) -> list[Message]:
        """The newest `limit` messages (oldest first), filtered by user and/or session."""
        where, args = [], []
        if user_id is not None:
            where.append("user_id = ?")
            args.append(user_id)
        if session_id is not None:
            where.append("session_id = ?")
            args.append(session_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._all(f"SELECT * FROM messages {clause} ORDER BY rowid DESC LIMIT ?", (*args, limit))
        return [self._message(r) for r in reversed(rows)]

    # -- feedback ---------------------------------------------------------------------------------
    def add_feedback(self, fb: Feedback) -> None:
        with self.tx() as db:
            db.execute(
                """INSERT INTO feedback (id, message_id, user_id, kind, rating, text, reasons, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    fb.id,
                    fb.message_id,
                    fb.user_id,
                    fb.kind,
                    fb.rating,
                    fb.text,
                    json.dumps(fb.reasons, ensure_ascii=False),
                    fb.created_at,
                ),
            )

    def feedback_for(self, message_ids: list[str]) -> dict[str, list[Feedback]]:
        if not message_ids:
            return {}
        marks = ",".join("?" * len(message_ids))
        rows = self._all(f"SELECT * FROM feedback WHERE message_id IN ({marks}) ORDER BY rowid", tuple(message_ids))
        out: dict[str, list[Feedback]] = {}
        for r in rows:
            d = dict(r)
            d["reasons"] = json.loads(d["reasons"])
            out.setdefault(d["message_id"], []).append(Feedback(**d))
        return out

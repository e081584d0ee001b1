"""Per-user state in typed tables: decoding defaults, profile, the pending question, facts already confirmed.

Every read-modify-write runs inside one BEGIN IMMEDIATE transaction, so two concurrent turns of one user
cannot lose each other's update."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from dilm.store.sqlite import rows
from dilm.store.sqlite.connection import SQLiteBase
from dilm.types import utcnow

ASKED_KEPT = 200  # confirmed facts remembered per user: an older one may be asked about again


class UserStateMixin(SQLiteBase):
    # -- decoding defaults ------------------------------------------------------------------------
    def user_decoding(self, user_id: str) -> dict[str, Any]:
        with self._lock:
            return _decoding(self._db, user_id)

    def update_user_decoding(
        self, user_id: str, changes: dict[str, Any], check: Callable[[dict[str, Any]], object] | None = None
    ) -> dict[str, Any]:
        with self._tx() as db:
            rows.ensure_user(db, user_id)
            for key, value in changes.items():
                _put(db, "user_decoding", user_id, key, None if value is None else json.dumps(value))
            saved = _decoding(db, user_id)
            if check is not None:
                check(saved)  # raising rolls the whole update back
            return saved

    # -- profile ----------------------------------------------------------------------------------
    def profile(self, user_id: str) -> dict[str, str]:
        with self._lock:
            return _profile(self._db, user_id)

    def update_profile(self, user_id: str, change: Callable[[dict[str, str]], dict[str, str]]) -> dict[str, str]:
        with self._tx() as db:
            rows.ensure_user(db, user_id)
            before = _profile(db, user_id)
            after = change(dict(before))
            for key in before.keys() | after.keys():
                if before.get(key) != after.get(key):
                    _put(db, "profiles", user_id, key, after.get(key))
            return _profile(db, user_id)

    def reset_profile(self, user_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM profiles WHERE user_id = ?", (user_id,))

    # -- the pending question ---------------------------------------------------------------------
    def pending_question(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            return _pending(self._db, user_id)

    def set_pending_question(self, user_id: str, pending: dict[str, Any] | None) -> None:
        with self._tx() as db:
            rows.ensure_user(db, user_id)
            _set_pending(db, user_id, pending)

    def take_pending_question(self, user_id: str) -> dict[str, Any] | None:
        with self._tx() as db:
            pending = _pending(db, user_id)
            if pending is not None:
                db.execute("DELETE FROM pending_questions WHERE user_id = ?", (user_id,))
            return pending

    # -- facts the user confirmed -----------------------------------------------------------------
    def mark_asked(self, user_id: str, fact_id: str) -> bool:
        with self._tx() as db:
            rows.ensure_user(db, user_id)
            cur = db.execute(
                "INSERT OR IGNORE INTO asked_facts (user_id, fact_id, asked_at) VALUES (?, ?, ?)",
                (user_id, fact_id, utcnow()),
            )
            if cur.rowcount == 0:
                return False
            db.execute(
                """DELETE FROM asked_facts WHERE user_id = ? AND rowid NOT IN (
                       SELECT rowid FROM asked_facts WHERE user_id = ? ORDER BY rowid DESC LIMIT ?)""",
                (user_id, user_id, ASKED_KEPT),
            )
            return True


def _decoding(db: sqlite3.Connection, user_id: str) -> dict[str, Any]:
    found = db.execute("SELECT key, value FROM user_decoding WHERE user_id = ? ORDER BY rowid", (user_id,))
    return {k: json.loads(v) for k, v in found.fetchall()}


def _profile(db: sqlite3.Connection, user_id: str) -> dict[str, str]:
    found = db.execute("SELECT key, value FROM profiles WHERE user_id = ? ORDER BY rowid", (user_id,))
    return {k: v for k, v in found.fetchall()}


def _put(db: sqlite3.Connection, table: str, user_id: str, key: str, value: str | None) -> None:
    """Set (None: remove) one key of a per-user key/value table ("user_decoding" or "profiles")."""
    if value is None:
        db.execute(f"DELETE FROM {table} WHERE user_id = ? AND key = ?", (user_id, key))
    else:
        db.execute(
            f"""INSERT INTO {table} (user_id, key, value) VALUES (?, ?, ?)
                ON CONFLICT(user_id, key) DO UPDATE SET value = excluded.value""",
            (user_id, key, value),
        )


def _pending(db: sqlite3.Connection, user_id: str) -> dict[str, Any] | None:
    row = db.execute("SELECT kind, message_id, data FROM pending_questions WHERE user_id = ?", (user_id,)).fetchone()
    if row is None:
        return None
    head: dict[str, Any] = {"kind": row["kind"]}
    if row["message_id"] is not None:
        head["message"] = row["message_id"]
    return {**head, **json.loads(row["data"])}


def _set_pending(db: sqlite3.Connection, user_id: str, pending: dict[str, Any] | None) -> None:
    if not pending:
        db.execute("DELETE FROM pending_questions WHERE user_id = ?", (user_id,))
        return
    data = {k: v for k, v in pending.items() if k not in ("kind", "message")}
    db.execute(
        """INSERT INTO pending_questions (user_id, kind, message_id, data) VALUES (?, ?, ?, ?)
           ON CONFLICT(user_id) DO UPDATE SET kind = excluded.kind, message_id = excluded.message_id,
           data = excluded.data""",
        (user_id, pending["kind"], pending.get("message"), json.dumps(data, ensure_ascii=False)),
    )


def _asked(db: sqlite3.Connection, user_id: str) -> list[str]:
    found = db.execute("SELECT fact_id FROM asked_facts WHERE user_id = ? ORDER BY rowid", (user_id,))
    return [r[0] for r in found.fetchall()]


def _extra(db: sqlite3.Connection, user_id: str) -> dict[str, Any]:
    """Keys of the old users.settings blob that have no table of their own."""
    row = db.execute("SELECT settings FROM users WHERE id = ?", (user_id,)).fetchone()
    return dict(json.loads(row[0] or "{}")) if row else {}


def read_settings(db: sqlite3.Connection, user_id: str) -> dict[str, Any]:
    """All per-user state as the old settings dict; sections without data are left out."""
    parts: dict[str, Any] = {
        "decoding": _decoding(db, user_id),
        "profile": _profile(db, user_id),
        "pending": _pending(db, user_id),
        "asked": _asked(db, user_id),
    }
    return {**_extra(db, user_id), **{k: v for k, v in parts.items() if v}}

"""Sessions, messages and feedback: the interaction log."""

from __future__ import annotations

import json
from typing import Any

from dilm.errors import MessageNotFoundError, PermissionDeniedError, SessionNotFoundError
from dilm.store.sqlite import rows
from dilm.store.sqlite.connection import SQLiteBase
from dilm.types import Feedback, Message, Session, new_id, utcnow

_INSERT_MESSAGE = """INSERT INTO messages (id, session_id, user_id, role, content, model, adapter_version,
    decoding, prompt_tokens, completion_tokens, latency_ms, created_at, parent_id, meta)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


class LogMixin(SQLiteBase):
    def create_session(self, user_id: str, title: str | None = None) -> Session:
        now = utcnow()
        session = Session(id=new_id("ses"), user_id=user_id, created_at=now, updated_at=now, title=title)
        with self._tx() as db:
            rows.ensure_user(db, user_id)
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
        found = self._all("SELECT * FROM sessions WHERE user_id = ? ORDER BY updated_at DESC LIMIT ?", (user_id, limit))
        return [Session(**dict(r)) for r in found]

    def add_turn(self, user_msg: Message, assistant_msg: Message, title: str | None = None) -> None:
        """Both sides of a turn in one transaction: a turn is logged whole or not at all."""
        with self._tx() as db:
            rows.ensure_user(db, user_msg.user_id)
            for m in (user_msg, assistant_msg):
                db.execute(
                    _INSERT_MESSAGE,
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

    def message(self, message_id: str) -> Message:
        row = self._one("SELECT * FROM messages WHERE id = ?", (message_id,))
        if row is None:
            raise MessageNotFoundError(f"no message {message_id!r}: see `dilm history` for message ids")
        return rows.message(row)

    def session_messages(self, session_id: str) -> list[Message]:
        found = self._all("SELECT * FROM messages WHERE session_id = ? ORDER BY rowid", (session_id,))
        return [rows.message(r) for r in found]

    def messages(self, user_id: str | None = None, session_id: str | None = None, limit: int = 50) -> list[Message]:
        """The newest `limit` messages (oldest first), filtered by user and/or session."""
        where: list[str] = []
        args: list[Any] = []
        if user_id is not None:
            where.append("user_id = ?")
            args.append(user_id)
        if session_id is not None:
            where.append("session_id = ?")
            args.append(session_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        found = self._all(f"SELECT * FROM messages {clause} ORDER BY rowid DESC LIMIT ?", (*args, limit))
        return [rows.message(r) for r in reversed(found)]

    def add_feedback(self, fb: Feedback) -> None:
        with self._tx() as db:
            # The rowid is past every training window already consumed: after a user is forgotten, the freed
            # top rowids must not be reused, or new feedback would look already trained on.
            db.execute(
                """INSERT INTO feedback (rowid, id, message_id, user_id, kind, rating, text, reasons, created_at)
                   VALUES (max(coalesce((SELECT max(rowid) FROM feedback), 0),
                               coalesce((SELECT max(data_to) FROM adapters), 0)) + 1,
                           ?, ?, ?, ?, ?, ?, ?, ?)""",
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
            if fb.kind == "rating":  # the newest rating of a message by its user is the one that counts
                db.execute(
                    """UPDATE feedback SET superseded_by = ? WHERE message_id = ? AND user_id = ? AND kind = 'rating'
                       AND superseded_by IS NULL AND id != ?""",
                    (fb.id, fb.message_id, fb.user_id, fb.id),
                )

    def feedback_for(self, message_ids: list[str]) -> dict[str, list[Feedback]]:
        if not message_ids:
            return {}
        found = self._all(
            f"SELECT * FROM feedback WHERE message_id IN ({rows.marks(message_ids)}) ORDER BY rowid",
            tuple(message_ids),
        )
        out: dict[str, list[Feedback]] = {}
        for r in found:
            d = dict(r)
            d["reasons"] = json.loads(d["reasons"])
            out.setdefault(d["message_id"], []).append(Feedback(**d))
        return out

    def feedback_users(self) -> list[str]:
        """Users who have given feedback."""
        return [r["user_id"] for r in self._all("SELECT DISTINCT user_id FROM feedback ORDER BY user_id")]

    def feedback_high_water(self) -> int:
        row = self._one("SELECT max(rowid) AS m FROM feedback")
        return int(row["m"] or 0) if row else 0

    def first_feedback_after(self, user_id: str, after: int) -> str | None:
        row = self._one("SELECT min(created_at) AS t FROM feedback WHERE user_id = ? AND rowid > ?", (user_id, after))
        return row["t"] if row else None

"""A user's data as a whole: export and forget."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from dilm.store.sqlite import rows
from dilm.store.sqlite.adapters import AdaptersMixin
from dilm.store.sqlite.facts import FactsMixin
from dilm.store.sqlite.memories import MemoriesMixin
from dilm.store.sqlite.users import UserStateMixin, read_settings
from dilm.types import user_scope, utcnow

# Per-user tables emptied by forget_user, besides the log and the scope's knowledge.
_STATE_TABLES = ("user_decoding", "profiles", "pending_questions", "asked_facts")


class LifecycleMixin(UserStateMixin, MemoriesMixin, FactsMixin, AdaptersMixin):
    def export_user(self, user_id: str) -> dict[str, Any]:
        """Everything stored about one user (their scope's memories, facts and adapters included)."""
        scope = user_scope(user_id)
        with self._snapshot() as db:  # one consistent snapshot
            user = db.execute("SELECT created_at FROM users WHERE id = ?", (user_id,)).fetchone()
            settings = read_settings(db, user_id) if user else {}
            sessions = [
                dict(r) for r in self._all("SELECT * FROM sessions WHERE user_id = ? ORDER BY rowid", (user_id,))
            ]
            messages = [
                rows.message(r).model_dump()
                for r in self._all("SELECT * FROM messages WHERE user_id = ? ORDER BY rowid", (user_id,))
            ]
            feedback = [
                {**dict(r), "reasons": json.loads(r["reasons"])}
                for r in self._all("SELECT * FROM feedback WHERE user_id = ? ORDER BY rowid", (user_id,))
            ]
            memories = [m.model_dump() for m in self.memories([scope], include_superseded=True, limit=1_000_000)]
            facts = [f.model_dump() for f in self.facts([scope], current_only=False, limit=1_000_000)]
            adapters = [a.model_dump() for a in self.adapters(scope, deleted=True)]
        return {
            "user": user_id,
            "created_at": user["created_at"] if user else None,
            "settings": settings,
            "sessions": sessions,
            "messages": messages,
            "feedback": feedback,
            "memories": list(reversed(memories)),
            "facts": facts,
            "adapters": adapters,
        }

    def forget_user(self, user_id: str) -> tuple[dict[str, int], list[str]]:
        """Delete one user's messages, feedback, sessions, settings, memories, facts and adapter records in one
        transaction. Returns (counts, adapter folders relative to the data dir, for the caller to remove)."""
        scope = user_scope(user_id)
        with self._tx() as db:
            counts = _counts(db, user_id, scope)
            folders = [r[0] for r in db.execute("SELECT path FROM adapters WHERE scope = ?", (scope,)).fetchall()]
            db.execute("DELETE FROM feedback WHERE user_id = ?", (user_id,))
            db.execute(
                "DELETE FROM feedback WHERE message_id IN (SELECT id FROM messages WHERE user_id = ?)", (user_id,)
            )
            db.execute("DELETE FROM messages WHERE user_id = ?", (user_id,))
            db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            for table in _STATE_TABLES:
                db.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
            db.execute("DELETE FROM users WHERE id = ?", (user_id,))
            db.execute("DELETE FROM memories_fts WHERE scope = ?", (scope,))
            db.execute("DELETE FROM memories WHERE scope = ?", (scope,))
            db.execute("DELETE FROM facts WHERE scope = ?", (scope,))
            db.execute("DELETE FROM adapter_live WHERE scope = ?", (scope,))
            db.execute("DELETE FROM adapters WHERE scope = ?", (scope,))
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", (utcnow(), user_id)
            )
            rows.bump(db, scope)
        return counts, folders


def _counts(db: sqlite3.Connection, user_id: str, scope: str) -> dict[str, int]:
    def count(sql: str, *args: Any) -> int:
        return int(db.execute(sql, args).fetchone()[0])

    return {
        "sessions": count("SELECT count(*) FROM sessions WHERE user_id = ?", user_id),
        "messages": count("SELECT count(*) FROM messages WHERE user_id = ?", user_id),
        "feedback": count("SELECT count(*) FROM feedback WHERE user_id = ?", user_id),
        "memories": count("SELECT count(*) FROM memories WHERE scope = ?", scope),
        "facts": count("SELECT count(*) FROM facts WHERE scope = ?", scope),
        "adapters": count("SELECT count(*) FROM adapters WHERE scope = ?", scope),
        "api_keys": count("SELECT count(*) FROM api_keys WHERE user_id = ? AND revoked_at IS NULL", user_id),
    }

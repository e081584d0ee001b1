"""The bi-temporal fact graph."""

from __future__ import annotations

from typing import Any

from dilm.errors import FactNotFoundError
from dilm.store.sqlite import rows
from dilm.store.sqlite.connection import SQLiteBase
from dilm.text import normalize
from dilm.types import Fact, utcnow


class FactsMixin(SQLiteBase):
    def add_fact(self, fact: Fact) -> tuple[Fact, list[Fact]]:
        """Record a fact. A current fact with the same scope, subject and relation but another object is
        invalidated (invalid_at set, superseded_by the new one), never deleted. Returns (fact, superseded);
        re-stating a current fact returns the existing one."""
        with self._tx() as db:
            return rows.add_fact(db, fact)

    def facts(
        self,
        scopes: list[str],
        subject: str | None = None,
        current_only: bool = True,
        limit: int = 1000,
        memory_id: str | None = None,
        newest_first: bool = False,
    ) -> list[Fact]:
        where = [f"scope IN ({rows.marks(scopes)})"]
        args: list[Any] = list(scopes)
        if subject is not None:
            where.append("subject_key = ?")
            args.append(normalize(subject))
        if memory_id is not None:
            where.append("memory_id = ?")
            args.append(memory_id)
        if current_only:
            where.append("invalid_at IS NULL AND expired_at IS NULL")
        order = "DESC" if newest_first else ""
        found = self._all(
            f"SELECT * FROM facts WHERE {' AND '.join(where)} ORDER BY rowid {order} LIMIT ?", (*args, limit)
        )
        return [rows.fact(r) for r in found]

    def facts_about(self, scopes: list[str], words: list[str], limit: int = 50) -> list[Fact]:
        """Current facts whose relation contains any of `words` (case-insensitive), newest first."""
        if not words:
            return []
        like = " OR ".join("relation_key LIKE ? ESCAPE '\\'" for _ in words)
        patterns = ["%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for w in words]
        found = self._all(
            f"""SELECT * FROM facts WHERE scope IN ({rows.marks(scopes)}) AND invalid_at IS NULL AND expired_at IS NULL
                AND ({like}) ORDER BY rowid DESC LIMIT ?""",
            (*scopes, *patterns, limit),
        )
        return [rows.fact(r) for r in found]

    def fact(self, fact_id: str, scopes: list[str]) -> Fact:
        row = self._one(f"SELECT * FROM facts WHERE id = ? AND scope IN ({rows.marks(scopes)})", (fact_id, *scopes))
        if row is None:
            raise FactNotFoundError(f"no fact {fact_id!r} here: see `dilm facts list`")
        return rows.fact(row)

    def retract_fact(self, fact_id: str, scopes: list[str]) -> Fact:
        """Mark a fact's record as expired (it was wrong to record); the row stays for history."""
        self.fact(fact_id, scopes)  # scope check
        with self._tx() as db:
            db.execute("UPDATE facts SET expired_at = ? WHERE id = ? AND expired_at IS NULL", (utcnow(), fact_id))
        return self.fact(fact_id, scopes)

    def fact_supporters(self, subject_key: str, relation_key: str, obj: str) -> list[str]:
        """Distinct user scopes holding this exact current fact (for consensus promotion to global)."""
        found = self._all(
            """SELECT DISTINCT scope, object FROM facts WHERE subject_key = ? AND relation_key = ?
               AND scope LIKE 'user:%' AND invalid_at IS NULL AND expired_at IS NULL""",
            (subject_key, relation_key),
        )
        return [r[0] for r in found if normalize(r[1]) == normalize(obj)]

    def replaced_facts(self, since: str) -> list[tuple[Fact, str | None]]:
        found = self._all(
            """SELECT f.*, g.object AS replaced_by FROM facts f LEFT JOIN facts g ON g.id = f.superseded_by
               WHERE f.scope LIKE 'user:%' AND f.invalid_at >= ? AND f.expired_at IS NULL
               AND f.invalid_at >= f.recorded_at ORDER BY f.invalid_at""",
            (since,),
        )
        return [(rows.fact(r), r["replaced_by"]) for r in found]

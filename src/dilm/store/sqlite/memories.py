"""Scoped memories: rows, embeddings, full-text terms, revisions."""

from __future__ import annotations

import json
from typing import Any

from dilm.errors import MemoryNotFoundError
from dilm.store.sqlite import rows
from dilm.store.sqlite.connection import SQLiteBase
from dilm.text import normalize, terms
from dilm.types import Memory, utcnow


class MemoriesMixin(SQLiteBase):
    def duplicate_memory(self, scope: str, text: str) -> Memory | None:
        """A current memory in `scope` with the same content terms (near-identical text), if any."""
        with self._lock:
            return rows.duplicate_memory(self._db, scope, text)

    def superseded_answers(self, scopes: list[str], question: str) -> list[str]:
        """Answers of earlier, superseded corrections of this question (values that are no longer true)."""
        found = self._all(
            f"""SELECT metadata FROM memories WHERE scope IN ({rows.marks(scopes)}) AND question_key = ?
                AND superseded_by IS NOT NULL""",
            (*scopes, normalize(question)),
        )
        return [a for r in found if (a := json.loads(r[0]).get("answer"))]

    def memories_for_question(self, scope: str, question: str, kind: str) -> list[str]:
        with self._lock:
            return rows.memories_for_question(self._db, scope, question, kind)

    def scope_rev(self, scope: str) -> int:
        with self._lock:
            return rows.scope_rev(self._db, scope)

    def memory(self, memory_id: str, scopes: list[str]) -> Memory:
        """The memory, if it is in one of `scopes` (another scope's memory is reported as not found)."""
        row = self._one(
            f"SELECT {rows.MEMORY_COLS} FROM memories WHERE id = ? AND scope IN ({rows.marks(scopes)})",
            (memory_id, *scopes),
        )
        if row is None:
            raise MemoryNotFoundError(f"no memory {memory_id!r} here: see `dilm memories list`")
        return rows.memory(row)

    def memories(
        self, scopes: list[str], include_superseded: bool = False, limit: int = 100, ids: list[str] | None = None
    ) -> list[Memory]:
        where = [f"scope IN ({rows.marks(scopes)})"]
        args: list[Any] = list(scopes)
        if not include_superseded:
            where.append("superseded_by IS NULL")
        if ids is not None:  # look up by primary key; "+" keeps the planner off the scope index
            where = [f"+{w}" for w in where]
            where.append(f"id IN ({rows.marks(ids)})")
            args.extend(ids)
        found = self._all(
            f"SELECT {rows.MEMORY_COLS} FROM memories WHERE {' AND '.join(where)} ORDER BY rowid DESC LIMIT ?",
            (*args, limit),
        )
        return [rows.memory(r) for r in found]

    def current_memory_texts(self, scope: str) -> list[str]:
        found = self._all("SELECT text FROM memories WHERE scope = ? AND superseded_by IS NULL", (scope,))
        return [r["text"] for r in found]

    def memory_vectors(self, scope: str) -> tuple[list[str], list[bytes]]:
        found = self._all(
            "SELECT id, embedding FROM memories WHERE scope = ? AND superseded_by IS NULL AND embedding IS NOT NULL "
            "ORDER BY rowid",
            (scope,),
        )
        return [r[0] for r in found], [r[1] for r in found]

    def memory_keys(self, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        found = self._all(f"SELECT id, key FROM memories WHERE id IN ({rows.marks(ids)})", tuple(ids))
        return {r[0]: r[1] for r in found}

    def term_counts(self, terms: list[str]) -> dict[str, int]:
        """How many memories (all scopes) contain each term: lets a query skip terms too common to matter."""
        if not terms:
            return {}
        found = self._all(f"SELECT term, doc FROM memories_fts_terms WHERE term IN ({rows.marks(terms)})", tuple(terms))
        return {r[0]: int(r[1]) for r in found}

    def fts_search(self, scopes: list[str], match: str, limit: int) -> list[tuple[str, float]]:
        """(memory id, bm25 — lower is better) for a prepared FTS5 MATCH expression, within `scopes`."""
        found = self._all(
            f"""SELECT memory_id, bm25(memories_fts) AS rank FROM memories_fts
                WHERE memories_fts MATCH ? AND scope IN ({rows.marks(scopes)}) ORDER BY rank LIMIT ?""",
            (match, *scopes, limit),
        )
        return [(r[0], float(r[1])) for r in found]

    def add_memories(self, items: list[tuple[Memory, str, bytes]]) -> None:
        with self._tx() as db:
            for m, key, embedding in items:
                rows.insert_memory(db, m, key, embedding, " ".join(terms(key)))

    def delete_memory(self, memory_id: str, scopes: list[str]) -> Memory:
        """Delete a memory; facts learned from it are expired (kept as history). Messages citing it stay."""
        mem = self.memory(memory_id, scopes)
        now = utcnow()
        with self._tx() as db:
            db.execute("DELETE FROM memories WHERE id = ?", (memory_id,))
            db.execute("DELETE FROM memories_fts WHERE memory_id = ?", (memory_id,))
            db.execute("UPDATE facts SET expired_at = ? WHERE memory_id = ? AND expired_at IS NULL", (now, memory_id))
            rows.bump(db, mem.scope)
        return mem

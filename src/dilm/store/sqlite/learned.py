"""Writing what was learned from one statement: memory, facts and what they supersede, in one transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence

from dilm.store.sqlite import rows
from dilm.store.sqlite.connection import SQLiteBase
from dilm.text import terms
from dilm.types import Fact, FactEnd, LearnedWrite, Memory


class LearnedMixin(SQLiteBase):
    def write_learned(
        self,
        memory: Memory,
        key: str,
        facts: list[Fact],
        embed: Callable[[str], bytes],
        ends: Sequence[FactEnd] = (),
    ) -> LearnedWrite:
        """See `MemoryStore.write_learned`. Replaced memories are superseded at `memory.created_at` (the time the
        new statement was learned)."""
        with self._tx() as db:
            out = LearnedWrite(memory=memory, created=False, rev_before=rows.scope_rev(db, memory.scope))
            # A statement that ends facts is news even when worded like an old memory ("was" for "is").
            existing = rows.duplicate_memory(db, memory.scope, memory.text) if not ends else None
            if existing is None:
                rows.insert_memory(db, memory, key, embed(key), " ".join(terms(key)))
                out.created = True
            else:
                out.memory = existing
            replaced: set[str] = set()
            for end in ends:
                ended = rows.end_facts(db, memory.scope, end)
                out.ended.extend(ended)
                replaced.update(e.memory_id for e in ended if e.memory_id and e.memory_id != out.memory.id)
                if not ended and end.otherwise is not None:
                    facts = [*facts, end.otherwise]
            for f in facts:
                new = f.model_copy(update={"memory_id": out.memory.id})
                stored, old = rows.add_fact(db, new)
                if stored.id == new.id:
                    out.facts.append(stored)
                out.superseded.extend(old)
                replaced.update(s.memory_id for s in old if s.memory_id and s.memory_id != out.memory.id)
            # A memory whose facts were all replaced or ended goes too; one with facts still current stays (a
            # correction replaces only the fact it corrects).
            replaced = {m for m in replaced if not _has_current_facts(db, m)}
            question = memory.metadata.get("question")
            if question and memory.kind == "correction":
                # A new correction of the same question replaces the previous correction of it, with its facts.
                found = rows.memories_for_question(db, memory.scope, question, "correction")
                replaced.update(m for m in found if m != out.memory.id)
            out.superseded_memories = sorted(replaced)
            _supersede_memories(db, out, memory.created_at)
        return out

    def write_flagged(self, memory: Memory) -> None:
        with self._tx() as db:
            # No embedding and no full-text row: a flagged memory can be listed and deleted, never retrieved.
            db.execute(
                """INSERT INTO memories (id, scope, text, key, text_key, embedding, kind, source_id, metadata,
                   created_at) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)""",
                (
                    memory.id,
                    memory.scope,
                    memory.text,
                    memory.text,
                    f"flagged:{memory.id}",
                    memory.kind,
                    memory.source_id,
                    json.dumps(memory.metadata, ensure_ascii=False),
                    memory.created_at,
                ),
            )


def _has_current_facts(db: sqlite3.Connection, memory_id: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM facts WHERE memory_id = ? AND invalid_at IS NULL AND expired_at IS NULL LIMIT 1", (memory_id,)
    ).fetchone()
    return row is not None


def _supersede_memories(db: sqlite3.Connection, out: LearnedWrite, now: str) -> None:
    """Supersede `out.superseded_memories` by `out.memory`; facts learned from a replaced memory go with it, even
    when their keys differ from the new ones (adds them to `out.superseded`)."""
    new_ids = {f.id for f in out.facts}
    by = out.facts[0].id if out.facts else None
    for old_id in out.superseded_memories:
        current = db.execute(
            "SELECT * FROM facts WHERE memory_id = ? AND invalid_at IS NULL AND expired_at IS NULL", (old_id,)
        ).fetchall()
        for row in current:
            if row["id"] in new_ids:
                continue
            old = rows.fact(row)
            rows.supersede_fact(db, old, now, by)
            out.superseded.append(old)
        db.execute(
            "UPDATE memories SET superseded_by = ?, superseded_at = ? WHERE id = ? AND superseded_by IS NULL",
            (out.memory.id, now, old_id),
        )
        db.execute("DELETE FROM memories_fts WHERE memory_id = ?", (old_id,))
    if out.superseded_memories:
        rows.bump(db, out.memory.scope)

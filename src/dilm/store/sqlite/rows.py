"""Row conversions and statements shared by the SQLite mixins; each writer takes the caller's open transaction."""

from __future__ import annotations

import json
import sqlite3

from dilm.text import normalize, terms
from dilm.types import AdapterVersion, Fact, FactEnd, Memory, Message, utcnow

MEMORY_COLS = "id, scope, text, kind, source_id, metadata, created_at, superseded_by, superseded_at"


def text_key(text: str) -> str:
    """Near-identical texts (case, punctuation, stopwords aside) share this key."""
    return " ".join(sorted(set(terms(text)))) or normalize(text)


def marks(values: list[str] | tuple[str, ...]) -> str:
    """ "?,?,?" for an IN (...) list of `values`."""
    return ",".join("?" * len(values))


def message(row: sqlite3.Row) -> Message:
    d = dict(row)
    d["decoding"] = json.loads(d["decoding"]) if d["decoding"] else None
    d["meta"] = json.loads(d["meta"] or "{}")
    return Message(**d)


def memory(row: sqlite3.Row) -> Memory:
    d = {k: v for k, v in dict(row).items() if k in Memory.model_fields}
    d["metadata"] = json.loads(row["metadata"] or "{}")
    return Memory(**d)


def fact(row: sqlite3.Row) -> Fact:
    return Fact(**{k: v for k, v in dict(row).items() if k in Fact.model_fields})


def adapter(row: sqlite3.Row, live: set[str]) -> AdapterVersion:
    d = dict(row)
    d.pop("seq", None)
    d["info"] = json.loads(d["info"])
    return AdapterVersion(**d, live=d["version"] in live)


def ensure_user(db: sqlite3.Connection, user_id: str) -> None:
    db.execute("INSERT OR IGNORE INTO users (id, created_at) VALUES (?, ?)", (user_id, utcnow()))


def bump(db: sqlite3.Connection, scope: str) -> None:
    """Count a change to the scope's memories (in-process indexes compare revisions to skip reloads)."""
    db.execute(
        "INSERT INTO scope_revisions (scope, rev) VALUES (?, 1) ON CONFLICT(scope) DO UPDATE SET rev = rev + 1",
        (scope,),
    )


def scope_rev(db: sqlite3.Connection, scope: str) -> int:
    row = db.execute("SELECT rev FROM scope_revisions WHERE scope = ?", (scope,)).fetchone()
    return int(row[0]) if row else 0


def insert_memory(db: sqlite3.Connection, m: Memory, key: str, embedding: bytes, key_terms: str) -> None:
    """A retrievable memory: its row, its full-text row (under `key_terms`) and a revision bump."""
    question = m.metadata.get("question")
    db.execute(
        """INSERT INTO memories (id, scope, text, key, text_key, question_key, embedding, kind, source_id,
           metadata, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            m.id,
            m.scope,
            m.text,
            key,
            text_key(m.text),
            normalize(question) if question else None,
            embedding,
            m.kind,
            m.source_id,
            json.dumps(m.metadata, ensure_ascii=False),
            m.created_at,
        ),
    )
    db.execute("INSERT INTO memories_fts (terms, memory_id, scope) VALUES (?, ?, ?)", (key_terms, m.id, m.scope))
    bump(db, m.scope)


def memories_for_question(db: sqlite3.Connection, scope: str, question: str, kind: str) -> list[str]:
    """Ids of the current memories of `kind` learned about `question` in `scope`."""
    found = db.execute(
        "SELECT id FROM memories WHERE scope = ? AND question_key = ? AND kind = ? AND superseded_by IS NULL",
        (scope, normalize(question), kind),
    )
    return [r[0] for r in found.fetchall()]


def duplicate_memory(db: sqlite3.Connection, scope: str, text: str) -> Memory | None:
    row = db.execute(
        f"SELECT {MEMORY_COLS} FROM memories WHERE scope = ? AND text_key = ? AND superseded_by IS NULL",
        (scope, text_key(text)),
    ).fetchone()
    return memory(row) if row else None


def add_fact(db: sqlite3.Connection, f: Fact) -> tuple[Fact, list[Fact]]:
    """The supersede rule (bi-temporal): a current fact with the same scope, subject and relation but another
    object is invalidated at the new fact's valid_at and points to it; its row stays. Re-stating a current fact
    returns the existing one. A multi-valued fact replaces nothing; a fact with invalid_at set is history and
    replaces nothing (re-stating a history fact returns it). Returns (stored fact, superseded facts)."""
    skey, rkey = normalize(f.subject), normalize(f.relation)
    state = "invalid_at IS NOT NULL" if f.invalid_at is not None else "invalid_at IS NULL"
    rows = db.execute(
        f"""SELECT * FROM facts WHERE scope = ? AND subject_key = ? AND relation_key = ?
           AND {state} AND expired_at IS NULL""",
        (f.scope, skey, rkey),
    ).fetchall()
    existing = [fact(r) for r in rows]
    same = next(
        (
            c
            for c in existing
            if normalize(c.object) == normalize(f.object)
            and (f.invalid_at is None or c.invalid_at == f.invalid_at or f.valid_at is None)
        ),
        None,
    )
    if same is not None:
        return same, []
    _insert_fact(db, f, skey, rkey)
    if f.invalid_at is not None or f.multi_valued:
        return f, []
    replaced = [c for c in existing if not c.multi_valued]
    for old in replaced:
        supersede_fact(db, old, _not_before(f.valid_at or f.recorded_at, old.valid_at), f.id)
    return f, replaced


def _not_before(at: str, start: str | None) -> str:
    """An end time never precedes the start it ends (a fact learned today, replaced by one "since 2021")."""
    return start if start is not None and at < start else at


def _insert_fact(db: sqlite3.Connection, f: Fact, skey: str, rkey: str) -> None:
    db.execute(
        """INSERT INTO facts (id, scope, subject, relation, object, subject_key, relation_key, valid_at, invalid_at,
           recorded_at, source_kind, source_id, memory_id, confidence, multi_valued, extractor)
           VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
        (
            f.id,
            f.scope,
            f.subject,
            f.relation,
            f.object,
            skey,
            rkey,
            f.valid_at,
            f.invalid_at,
            f.recorded_at,
            f.source_kind,
            f.source_id,
            f.memory_id,
            f.confidence,
            int(f.multi_valued),
            f.extractor,
        ),
    )


def end_facts(db: sqlite3.Connection, scope: str, end: FactEnd) -> list[Fact]:
    """Apply `end` (see `FactEnd`) in `scope`: the facts it ended, updated."""
    skey = normalize(end.subject)
    rows = db.execute(
        "SELECT * FROM facts WHERE scope = ? AND subject_key = ? AND invalid_at IS NULL AND expired_at IS NULL",
        (scope, skey),
    ).fetchall()
    current = [fact(r) for r in rows]
    wanted = normalize(end.object) if end.object else None
    hit = [
        c
        for c in current
        if normalize(c.relation) == normalize(end.relation) and (wanted is None or normalize(c.object) == wanted)
    ]
    if not hit and wanted is not None and end.loose:  # "I left Paris" ends "lives in Paris"
        hit = [c for c in current if normalize(c.object) == wanted]
    for old in hit:
        supersede_fact(db, old, _not_before(end.at, old.valid_at), None)
    return hit


def supersede_fact(db: sqlite3.Connection, old: Fact, at: str, by: str | None) -> None:
    """Invalidate `old` at `at` (it no longer holds), pointing to the fact that replaced it; updates `old` too."""
    db.execute("UPDATE facts SET invalid_at = ?, superseded_by = ? WHERE id = ?", (at, by, old.id))
    old.invalid_at, old.superseded_by = at, by

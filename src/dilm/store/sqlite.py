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
    AdapterNotFoundError,
    FactNotFoundError,
    MemoryNotFoundError,
    MessageNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    SessionNotFoundError,
    StorageError,
)
from dilm.store.migrations import MIGRATIONS
from dilm.text import normalize, terms
from dilm.types import AdapterVersion, Fact, Feedback, Memory, Message, Session, new_id, utcnow

DB_FILE = "dilm.db"


def text_key(text: str) -> str:
    """Near-identical texts (case, punctuation, stopwords aside) share this key."""
    return " ".join(sorted(set(terms(text)))) or normalize(text)


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

    # -- memories ---------------------------------------------------------------------------------
    def _insert_memory(self, db: sqlite3.Connection, m: Memory, key: str, embedding: bytes, terms: str) -> None:
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
        db.execute("INSERT INTO memories_fts (terms, memory_id, scope) VALUES (?, ?, ?)", (terms, m.id, m.scope))
        self._bump(db, m.scope)

    @staticmethod
    def _bump(db: sqlite3.Connection, scope: str) -> None:
        db.execute(
            "INSERT INTO scope_revisions (scope, rev) VALUES (?, 1) ON CONFLICT(scope) DO UPDATE SET rev = rev + 1",
            (scope,),
        )

    def duplicate_memory(self, scope: str, text: str) -> Memory | None:
        """A current memory in `scope` with the same content terms (near-identical text), if any."""
        row = self._one(
            f"SELECT {self._MEMORY_COLS} FROM memories WHERE scope = ? AND text_key = ? AND superseded_by IS NULL",
            (scope, text_key(text)),
        )
        return self._memory(row) if row else None

    def superseded_answers(self, scopes: list[str], question: str) -> list[str]:
        """Answers of earlier, superseded corrections of this question (values that are no longer true)."""
        marks = ",".join("?" * len(scopes))
        rows = self._all(
            f"""SELECT metadata FROM memories WHERE scope IN ({marks}) AND question_key = ?
                AND superseded_by IS NOT NULL""",
            (*scopes, normalize(question)),
        )
        return [a for r in rows if (a := json.loads(r[0]).get("answer"))]

    def memories_for_question(self, scope: str, question: str, kind: str) -> list[str]:
        rows = self._all(
            "SELECT id FROM memories WHERE scope = ? AND question_key = ? AND kind = ? AND superseded_by IS NULL",
            (scope, normalize(question), kind),
        )
        return [r[0] for r in rows]

    def scope_rev(self, scope: str) -> int:
        row = self._one("SELECT rev FROM scope_revisions WHERE scope = ?", (scope,))
        return int(row[0]) if row else 0

    @staticmethod
    def _memory(row: sqlite3.Row) -> Memory:
        d = {k: v for k, v in dict(row).items() if k in Memory.model_fields}
        d["metadata"] = json.loads(row["metadata"] or "{}")
        return Memory(**d)

    _MEMORY_COLS = "id, scope, text, kind, source_id, metadata, created_at, superseded_by, superseded_at"

    def memory(self, memory_id: str, scopes: list[str]) -> Memory:
        """The memory, if it is in one of `scopes` (another scope's memory is reported as not found)."""
        marks = ",".join("?" * len(scopes))
        row = self._one(
            f"SELECT {self._MEMORY_COLS} FROM memories WHERE id = ? AND scope IN ({marks})", (memory_id, *scopes)
        )
        if row is None:
            raise MemoryNotFoundError(f"no memory {memory_id!r} here: see `dilm memories list`")
        return self._memory(row)

    def memories(
        self, scopes: list[str], include_superseded: bool = False, limit: int = 100, ids: list[str] | None = None
    ) -> list[Memory]:
        marks = ",".join("?" * len(scopes))
        where = [f"scope IN ({marks})"]
        args: list[Any] = list(scopes)
        if not include_superseded:
            where.append("superseded_by IS NULL")
        if ids is not None:  # look up by primary key; "+" keeps the planner off the scope index
            where = [f"+{w}" for w in where]
            where.append(f"id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        rows = self._all(
            f"SELECT {self._MEMORY_COLS} FROM memories WHERE {' AND '.join(where)} ORDER BY rowid DESC LIMIT ?",
            (*args, limit),
        )
        return [self._memory(r) for r in rows]

    def memory_vectors(self, scope: str) -> tuple[list[str], list[bytes]]:
        rows = self._all(
            "SELECT id, embedding FROM memories WHERE scope = ? AND superseded_by IS NULL AND embedding IS NOT NULL "
            "ORDER BY rowid",
            (scope,),
        )
        return [r[0] for r in rows], [r[1] for r in rows]

    def memory_keys(self, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        rows = self._all(f"SELECT id, key FROM memories WHERE id IN ({','.join('?' * len(ids))})", tuple(ids))
        return {r[0]: r[1] for r in rows}

    def term_counts(self, terms: list[str]) -> dict[str, int]:
        """How many memories (all scopes) contain each term: lets a query skip terms too common to matter."""
        if not terms:
            return {}
        marks = ",".join("?" * len(terms))
        rows = self._all(f"SELECT term, doc FROM memories_fts_terms WHERE term IN ({marks})", tuple(terms))
        return {r[0]: int(r[1]) for r in rows}

    def fts_search(self, scopes: list[str], match: str, limit: int) -> list[tuple[str, float]]:
        """(memory id, bm25 — lower is better) for a prepared FTS5 MATCH expression, within `scopes`."""
        marks = ",".join("?" * len(scopes))
        rows = self._all(
            f"""SELECT memory_id, bm25(memories_fts) AS rank FROM memories_fts
                WHERE memories_fts MATCH ? AND scope IN ({marks}) ORDER BY rank LIMIT ?""",
            (match, *scopes, limit),
        )
        return [(r[0], float(r[1])) for r in rows]

    def delete_memory(self, memory_id: str, scopes: list[str]) -> Memory:
        """Delete a memory; facts learned from it are expired (kept as history). Messages citing it stay."""
        mem = self.memory(memory_id, scopes)
        now = utcnow()
        with self.tx() as db:
            db.execute("DELETE FROM memories WHERE id = ?", (memory_id,))
            db.execute("DELETE FROM memories_fts WHERE memory_id = ?", (memory_id,))
            db.execute("UPDATE facts SET expired_at = ? WHERE memory_id = ? AND expired_at IS NULL", (now, memory_id))
            self._bump(db, mem.scope)
        return mem

    # -- facts ------------------------------------------------------------------------------------
    @staticmethod
    def _fact(row: sqlite3.Row) -> Fact:
        return Fact(**{k: v for k, v in dict(row).items() if k in Fact.model_fields})

    def add_fact(self, fact: Fact, db: sqlite3.Connection | None = None) -> tuple[Fact, list[Fact]]:
        """Record a fact. A current fact with the same scope, subject and relation but another object is
        invalidated (invalid_at set, superseded_by the new one), never deleted. Returns (fact, superseded);
        re-stating a current fact returns the existing one."""
        if db is None:
            with self.tx() as tx:
                return self.add_fact(fact, tx)
        skey, rkey = normalize(fact.subject), normalize(fact.relation)
        rows = db.execute(
            """SELECT * FROM facts WHERE scope = ? AND subject_key = ? AND relation_key = ?
               AND invalid_at IS NULL AND expired_at IS NULL""",
            (fact.scope, skey, rkey),
        ).fetchall()
        current = [self._fact(r) for r in rows]
        same = next((f for f in current if normalize(f.object) == normalize(fact.object)), None)
        if same is not None:
            return same, []
        db.execute(
            """INSERT INTO facts (id, scope, subject, relation, object, subject_key, relation_key, valid_at,
               recorded_at, source_kind, source_id, memory_id, confidence) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            (
                fact.id,
                fact.scope,
                fact.subject,
                fact.relation,
                fact.object,
                skey,
                rkey,
                fact.valid_at,
                fact.recorded_at,
                fact.source_kind,
                fact.source_id,
                fact.memory_id,
                fact.confidence,
            ),
        )
        for old in current:
            db.execute(
                "UPDATE facts SET invalid_at = ?, superseded_by = ? WHERE id = ?", (fact.valid_at, fact.id, old.id)
            )
            old.invalid_at, old.superseded_by = fact.valid_at, fact.id
        return fact, current

    def facts(
        self,
        scopes: list[str],
        subject: str | None = None,
        current_only: bool = True,
        limit: int = 1000,
        memory_id: str | None = None,
    ) -> list[Fact]:
        marks = ",".join("?" * len(scopes))
        where = [f"scope IN ({marks})"]
        args: list[Any] = list(scopes)
        if subject is not None:
            where.append("subject_key = ?")
            args.append(normalize(subject))
        if memory_id is not None:
            where.append("memory_id = ?")
            args.append(memory_id)
        if current_only:
            where.append("invalid_at IS NULL AND expired_at IS NULL")
        rows = self._all(f"SELECT * FROM facts WHERE {' AND '.join(where)} ORDER BY rowid LIMIT ?", (*args, limit))
        return [self._fact(r) for r in rows]

    def facts_about(self, scopes: list[str], words: list[str], limit: int = 50) -> list[Fact]:
        """Current facts whose relation contains any of `words` (case-insensitive), newest first."""
        if not words:
            return []
        marks = ",".join("?" * len(scopes))
        like = " OR ".join("relation_key LIKE ? ESCAPE '\\'" for _ in words)
        patterns = ["%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for w in words]
        rows = self._all(
            f"""SELECT * FROM facts WHERE scope IN ({marks}) AND invalid_at IS NULL AND expired_at IS NULL
                AND ({like}) ORDER BY rowid DESC LIMIT ?""",
            (*scopes, *patterns, limit),
        )
        return [self._fact(r) for r in rows]

    def fact(self, fact_id: str, scopes: list[str]) -> Fact:
        marks = ",".join("?" * len(scopes))
        row = self._one(f"SELECT * FROM facts WHERE id = ? AND scope IN ({marks})", (fact_id, *scopes))
        if row is None:
            raise FactNotFoundError(f"no fact {fact_id!r} here: see `dilm facts list`")
        return self._fact(row)

    def retract_fact(self, fact_id: str, scopes: list[str]) -> Fact:
        """Mark a fact's record as expired (it was wrong to record); the row stays for history."""
        self.fact(fact_id, scopes)  # scope check
        with self.tx() as db:
            db.execute("UPDATE facts SET expired_at = ? WHERE id = ? AND expired_at IS NULL", (utcnow(), fact_id))
        return self.fact(fact_id, scopes)

    def fact_supporters(self, subject_key: str, relation_key: str, obj: str) -> list[str]:
        """Distinct user scopes holding this exact current fact (for consensus promotion to global)."""
        rows = self._all(
            """SELECT DISTINCT scope, object FROM facts WHERE subject_key = ? AND relation_key = ?
               AND scope LIKE 'user:%' AND invalid_at IS NULL AND expired_at IS NULL""",
            (subject_key, relation_key),
        )
        return [r[0] for r in rows if normalize(r[1]) == normalize(obj)]

    # -- adapters ---------------------------------------------------------------------------------
    def _adapter(self, row: sqlite3.Row, live: set[str]) -> AdapterVersion:
        d = dict(row)
        d.pop("seq", None)
        d["info"] = json.loads(d["info"])
        return AdapterVersion(**d, live=d["version"] in live)

    def _live_versions(self) -> set[str]:
        return {r["version"] for r in self._all("SELECT version FROM adapter_live")}

    def reserve_adapter_version(self, db: sqlite3.Connection, a: AdapterVersion) -> str:
        """Insert `a` inside the caller's transaction; its name comes from a sequence that never goes back."""
        cur = db.execute(
            """INSERT INTO adapters (version, scope, status, parent, base_model, path, checksum, data_from,
                                     data_to, info, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                new_id("pending"),
                a.scope,
                a.status,
                a.parent,
                a.base_model,
                a.path,
                a.checksum,
                a.data_from,
                a.data_to,
                json.dumps(a.info, ensure_ascii=False),
                a.created_at,
            ),
        )
        version = f"v{cur.lastrowid}"
        db.execute(
            "UPDATE adapters SET version = ?, path = replace(path, '{version}', ?) WHERE seq = ?",
            (version, version, cur.lastrowid),
        )
        return version

    def adapter(self, version: str) -> AdapterVersion:
        row = self._one("SELECT * FROM adapters WHERE version = ?", (version,))
        if row is None:
            raise AdapterNotFoundError(f"no adapter version {version!r}: see `dilm adapters list`")
        return self._adapter(row, self._live_versions())

    def adapters(self, scope: str | None = None, deleted: bool = False) -> list[AdapterVersion]:
        """Versions oldest first, of one scope or all."""
        where = [] if deleted else ["deleted_at IS NULL"]
        args: tuple[Any, ...] = ()
        if scope is not None:
            where.append("scope = ?")
            args = (scope,)
        sql = "SELECT * FROM adapters" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY seq"
        live = self._live_versions()
        return [self._adapter(r, live) for r in self._all(sql, args)]

    def trained_upto(self, scope: str) -> int:
        """The last feedback row any finished training job of `scope` consumed (0: none)."""
        row = self._one("SELECT max(data_to) AS m FROM adapters WHERE scope = ?", (scope,))
        return int(row["m"] or 0) if row else 0

    def live_adapter(self, scopes: list[str]) -> AdapterVersion | None:
        """The live version of the first scope in `scopes` that has one."""
        for scope in scopes:
            row = self._one(
                "SELECT a.* FROM adapter_live l JOIN adapters a ON a.version = l.version WHERE l.scope = ?", (scope,)
            )
            if row is not None:
                return self._adapter(row, {row["version"]})
        return None

    def set_live_adapter(self, scope: str, version: str | None, db: sqlite3.Connection | None = None) -> None:
        """Make `version` the live one of `scope` (None: the base model)."""

        def run(db: sqlite3.Connection) -> None:
            if version is None:
                db.execute("DELETE FROM adapter_live WHERE scope = ?", (scope,))
            else:
                db.execute(
                    """INSERT INTO adapter_live (scope, version, updated_at) VALUES (?, ?, ?)
                       ON CONFLICT(scope) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at""",
                    (scope, version, utcnow()),
                )

        if db is not None:
            run(db)
        else:
            with self.tx() as tx:
                run(tx)

    def mark_adapter_deleted(self, version: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE adapters SET deleted_at = ? WHERE version = ?", (utcnow(), version))

    def feedback_users(self) -> list[str]:
        """Users who have given feedback."""
        return [r["user_id"] for r in self._all("SELECT DISTINCT user_id FROM feedback ORDER BY user_id")]

    def feedback_high_water(self) -> int:
        row = self._one("SELECT max(rowid) AS m FROM feedback")
        return int(row["m"] or 0) if row else 0

    # -- API keys ---------------------------------------------------------------------------------
    def add_api_key(self, key_id: str, digest: str, role: str, user_id: str | None) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO api_keys (id, hash, role, user_id, created_at) VALUES (?, ?, ?, ?, ?)",
                (key_id, digest, role, user_id, utcnow()),
            )

    def api_key(self, digest: str) -> dict[str, Any] | None:
        """The live (not revoked) key with this hash, if any."""
        row = self._one("SELECT * FROM api_keys WHERE hash = ? AND revoked_at IS NULL", (digest,))
        return dict(row) if row else None

    def api_keys(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._all("SELECT * FROM api_keys ORDER BY created_at, id")]

    def touch_api_key(self, key_id: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (utcnow(), key_id))

    def revoke_api_key(self, key_id: str) -> dict[str, Any]:
        with self.tx() as db:
            db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (utcnow(), key_id))
        row = self._one("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        if row is None:
            raise NotFoundError(f"no API key {key_id!r}: see `dilm keys list`")
        return dict(row)

    # -- a user's data as a whole -----------------------------------------------------------------
    def export_user(self, user_id: str) -> dict[str, Any]:
        """Everything stored about one user (their scope's memories, facts and adapters included)."""
        scope = f"user:{user_id}"
        with self._lock:  # one consistent snapshot
            self._db.execute("BEGIN")
            try:
                user = self._one("SELECT created_at, settings FROM users WHERE id = ?", (user_id,))
                sessions = [
                    dict(r) for r in self._all("SELECT * FROM sessions WHERE user_id = ? ORDER BY rowid", (user_id,))
                ]
                messages = [
                    self._message(r).model_dump()
                    for r in self._all("SELECT * FROM messages WHERE user_id = ? ORDER BY rowid", (user_id,))
                ]
                feedback = [
                    {**dict(r), "reasons": json.loads(r["reasons"])}
                    for r in self._all("SELECT * FROM feedback WHERE user_id = ? ORDER BY rowid", (user_id,))
                ]
                memories = [m.model_dump() for m in self.memories([scope], include_superseded=True, limit=1_000_000)]
                facts = [f.model_dump() for f in self.facts([scope], current_only=False, limit=1_000_000)]
                adapters = [a.model_dump() for a in self.adapters(scope, deleted=True)]
            finally:
                self._db.execute("COMMIT")
        return {
            "user": user_id,
            "created_at": user["created_at"] if user else None,
            "settings": json.loads(user["settings"]) if user else {},
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
        scope = f"user:{user_id}"
        with self.tx() as db:

            def count(sql: str, *args: Any) -> int:
                return int(db.execute(sql, args).fetchone()[0])

            counts = {
                "sessions": count("SELECT count(*) FROM sessions WHERE user_id = ?", user_id),
                "messages": count("SELECT count(*) FROM messages WHERE user_id = ?", user_id),
                "feedback": count("SELECT count(*) FROM feedback WHERE user_id = ?", user_id),
                "memories": count("SELECT count(*) FROM memories WHERE scope = ?", scope),
                "facts": count("SELECT count(*) FROM facts WHERE scope = ?", scope),
                "adapters": count("SELECT count(*) FROM adapters WHERE scope = ?", scope),
                "api_keys": count("SELECT count(*) FROM api_keys WHERE user_id = ? AND revoked_at IS NULL", user_id),
            }
            folders = [r[0] for r in db.execute("SELECT path FROM adapters WHERE scope = ?", (scope,)).fetchall()]
            db.execute("DELETE FROM feedback WHERE user_id = ?", (user_id,))
            db.execute(
                "DELETE FROM feedback WHERE message_id IN (SELECT id FROM messages WHERE user_id = ?)", (user_id,)
            )
            db.execute("DELETE FROM messages WHERE user_id = ?", (user_id,))
            db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            db.execute("DELETE FROM users WHERE id = ?", (user_id,))
            db.execute("DELETE FROM memories_fts WHERE scope = ?", (scope,))
            db.execute("DELETE FROM memories WHERE scope = ?", (scope,))
            db.execute("DELETE FROM facts WHERE scope = ?", (scope,))
            db.execute("DELETE FROM adapter_live WHERE scope = ?", (scope,))
            db.execute("DELETE FROM adapters WHERE scope = ?", (scope,))
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", (utcnow(), user_id)
            )
            self._bump(db, scope)
        return counts, folders

    # -- statistics -------------------------------------------------------------------------------
    def satisfaction(self) -> dict[str, list[dict[str, Any]]]:
        """Share of rated answers rated positive (the latest rating per answer counts), per day and per adapter
        version that produced the answer ("base": none)."""
        latest = """SELECT f.rating, substr(m.created_at, 1, 10) AS day, coalesce(m.adapter_version, 'base') AS adapter,
                           m.rowid AS seq
                    FROM feedback f JOIN messages m ON m.id = f.message_id
                    WHERE f.kind = 'rating' AND f.rowid = (
                        SELECT max(rowid) FROM feedback g WHERE g.message_id = f.message_id AND g.kind = 'rating')"""
        out: dict[str, list[dict[str, Any]]] = {}
        for name, column in (("by_day", "day"), ("by_adapter", "adapter")):
            rows = self._all(
                f"""SELECT {column} AS key, count(*) AS rated, sum(rating > 0) AS positive FROM ({latest})
                    GROUP BY {column} ORDER BY min(seq)"""
            )
            out[name] = [
                {
                    "key": r["key"],
                    "rated": r["rated"],
                    "positive": r["positive"],
                    "satisfaction": r["positive"] / r["rated"],
                }
                for r in rows
            ]
        return out

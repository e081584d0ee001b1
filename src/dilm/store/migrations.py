"""Numbered schema migrations: migration i brings `PRAGMA user_version` from i to i+1. Append only."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Execute statements one by one; unlike `executescript`, this stays inside the open transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in migration: {statement.strip()[:80]}")


def m0001_turns_and_feedback(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL
        );
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX sessions_user ON sessions(user_id, updated_at);
        CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL,
            model TEXT,
            adapter_version TEXT,
            decoding TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            latency_ms REAL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX messages_session ON messages(session_id);
        CREATE INDEX messages_user ON messages(user_id);
        CREATE TABLE feedback (
            id TEXT PRIMARY KEY,
            message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            kind TEXT NOT NULL
                CHECK (kind IN ('rating', 'correction', 'supplement', 'preference', 'comment')),
            rating INTEGER CHECK (rating IN (-1, 1)),
            text TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX feedback_message ON feedback(message_id);
        """,
    )


def m0002_reasons_titles_meta(db: sqlite3.Connection) -> None:
    """Reason tags on feedback, session titles, per-user settings, message metadata and threading."""
    run_script(
        db,
        """
        ALTER TABLE feedback ADD COLUMN reasons TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE sessions ADD COLUMN title TEXT;
        ALTER TABLE users ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE messages ADD COLUMN parent_id TEXT REFERENCES messages(id) ON DELETE SET NULL;
        ALTER TABLE messages ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
        """,
    )


def m0003_memories_and_facts(db: sqlite3.Connection) -> None:
    """Scoped memories (text + embedding + full-text terms) and a bi-temporal fact graph."""
    run_script(
        db,
        """
        CREATE TABLE memories (
            id TEXT PRIMARY KEY,
            scope TEXT NOT NULL,
            text TEXT NOT NULL,
            key TEXT NOT NULL,
            text_key TEXT NOT NULL,
            question_key TEXT,
            embedding BLOB,
            kind TEXT NOT NULL,
            source_id TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            superseded_by TEXT,
            superseded_at TEXT
        );
        CREATE INDEX memories_scope ON memories(scope, superseded_by);
        CREATE INDEX memories_source ON memories(source_id);
        CREATE INDEX memories_text_key ON memories(scope, text_key);
        CREATE INDEX memories_question_key ON memories(scope, question_key);
        CREATE VIRTUAL TABLE memories_fts USING fts5(terms, memory_id UNINDEXED, scope UNINDEXED, tokenize='unicode61');
        CREATE VIRTUAL TABLE memories_fts_terms USING fts5vocab(memories_fts, 'row');
        CREATE TABLE scope_revisions (scope TEXT PRIMARY KEY, rev INTEGER NOT NULL);
        CREATE TABLE facts (
            id TEXT PRIMARY KEY,
            scope TEXT NOT NULL,
            subject TEXT NOT NULL,
            relation TEXT NOT NULL,
            object TEXT NOT NULL,
            subject_key TEXT NOT NULL,
            relation_key TEXT NOT NULL,
            valid_at TEXT NOT NULL,
            invalid_at TEXT,
            recorded_at TEXT NOT NULL,
            expired_at TEXT,
            superseded_by TEXT,
            source_kind TEXT NOT NULL,
            source_id TEXT,
            memory_id TEXT,
            confidence REAL NOT NULL DEFAULT 1.0
        );
        CREATE INDEX facts_key ON facts(scope, subject_key, relation_key);
        CREATE INDEX facts_subject ON facts(subject_key);
        """,
    )


def m0004_adapters(db: sqlite3.Connection) -> None:
    """Adapter versions (AUTOINCREMENT: a version name is never reused) and the live one per scope."""
    run_script(
        db,
        """
        CREATE TABLE adapters (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            version TEXT NOT NULL UNIQUE,
            scope TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
            parent TEXT,
            base_model TEXT NOT NULL,
            path TEXT NOT NULL,
            checksum TEXT NOT NULL,
            data_from INTEGER NOT NULL,
            data_to INTEGER NOT NULL,
            info TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            deleted_at TEXT
        );
        CREATE INDEX adapters_scope ON adapters(scope, seq);
        CREATE TABLE adapter_live (
            scope TEXT PRIMARY KEY,
            version TEXT NOT NULL REFERENCES adapters(version),
            updated_at TEXT NOT NULL
        );
        """,
    )


def m0005_api_keys(db: sqlite3.Connection) -> None:
    """HTTP API keys: only a SHA-256 hash of each secret is kept."""
    run_script(
        db,
        """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            hash TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL CHECK (role IN ('admin', 'user')),
            user_id TEXT,
            created_at TEXT NOT NULL,
            last_used_at TEXT,
            revoked_at TEXT,
            CHECK ((role = 'user') = (user_id IS NOT NULL))
        );
        """,
    )


def m0006_user_state(db: sqlite3.Connection) -> None:
    """Per-user state in typed tables (was one JSON blob in users.settings, read-modified-written as a whole):
    decoding defaults, profile keys, the pending question, facts already confirmed. Moves existing data; other
    keys stay in users.settings."""
    run_script(
        db,
        """
        CREATE TABLE user_decoding (
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (user_id, key)
        );
        CREATE TABLE profiles (
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (user_id, key)
        );
        CREATE TABLE pending_questions (
            user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            message_id TEXT,
            data TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE asked_facts (
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            fact_id TEXT NOT NULL,
            asked_at TEXT NOT NULL,
            PRIMARY KEY (user_id, fact_id)
        );
        """,
    )
    for user_id, blob in db.execute("SELECT id, settings FROM users").fetchall():
        settings = json.loads(blob or "{}")
        for key, value in (settings.pop("decoding", None) or {}).items():
            db.execute("INSERT INTO user_decoding VALUES (?, ?, ?)", (user_id, key, json.dumps(value)))
        for key, value in (settings.pop("profile", None) or {}).items():
            db.execute("INSERT INTO profiles VALUES (?, ?, ?)", (user_id, key, str(value)))
        pending = settings.pop("pending", None)
        if pending:
            rest = {k: v for k, v in pending.items() if k not in ("kind", "message")}
            db.execute(
                "INSERT INTO pending_questions VALUES (?, ?, ?, ?)",
                (user_id, pending.get("kind", ""), pending.get("message"), json.dumps(rest, ensure_ascii=False)),
            )
        for fact_id in dict.fromkeys(settings.pop("asked", None) or []):  # oldest first: rowid keeps the order
            db.execute("INSERT INTO asked_facts VALUES (?, ?, '')", (user_id, fact_id))
        db.execute("UPDATE users SET settings = ? WHERE id = ?", (json.dumps(settings, ensure_ascii=False), user_id))


def m0007_fact_event_time(db: sqlite3.Connection) -> None:
    """Facts: valid_at may be unknown (NULL: a past fact stated without a start), multi-valued relations, and
    which extractor read each fact. SQLite cannot drop NOT NULL in place: the table is rebuilt, rows kept."""
    run_script(
        db,
        """
        CREATE TABLE facts_new (
            id TEXT PRIMARY KEY,
            scope TEXT NOT NULL,
            subject TEXT NOT NULL,
            relation TEXT NOT NULL,
            object TEXT NOT NULL,
            subject_key TEXT NOT NULL,
            relation_key TEXT NOT NULL,
            valid_at TEXT,
            invalid_at TEXT,
            recorded_at TEXT NOT NULL,
            expired_at TEXT,
            superseded_by TEXT,
            source_kind TEXT NOT NULL,
            source_id TEXT,
            memory_id TEXT,
            confidence REAL NOT NULL DEFAULT 1.0,
            multi_valued INTEGER NOT NULL DEFAULT 0,
            extractor TEXT NOT NULL DEFAULT 'rule'
        );
        INSERT INTO facts_new (id, scope, subject, relation, object, subject_key, relation_key, valid_at, invalid_at,
            recorded_at, expired_at, superseded_by, source_kind, source_id, memory_id, confidence)
            SELECT id, scope, subject, relation, object, subject_key, relation_key, valid_at, invalid_at,
            recorded_at, expired_at, superseded_by, source_kind, source_id, memory_id, confidence FROM facts;
        DROP TABLE facts;
        ALTER TABLE facts_new RENAME TO facts;
        CREATE INDEX facts_key ON facts(scope, subject_key, relation_key);
        CREATE INDEX facts_subject ON facts(subject_key);
        """,
    )


def m0008_current_rating(db: sqlite3.Connection) -> None:
    """One current rating per (user, message): a newer rating supersedes the older one, which is kept."""
    run_script(
        db,
        """
        ALTER TABLE feedback ADD COLUMN superseded_by TEXT;
        UPDATE feedback SET superseded_by = (
            SELECT g.id FROM feedback g WHERE g.message_id = feedback.message_id AND g.user_id = feedback.user_id
            AND g.kind = 'rating' AND g.rowid > feedback.rowid ORDER BY g.rowid LIMIT 1)
        WHERE kind = 'rating';
        """,
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    m0001_turns_and_feedback,
    m0002_reasons_titles_meta,
    m0003_memories_and_facts,
    m0004_adapters,
    m0005_api_keys,
    m0006_user_state,
    m0007_fact_event_time,
    m0008_current_rating,
]

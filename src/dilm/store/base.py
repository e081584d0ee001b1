"""The `Store` interface: the only way to durable state. Split by concern; `Store` combines them.

Conventions for every implementation:
- Each write method is one transaction: all of it or none of it, durable when it returns.
- `scopes` arguments are the scopes the caller may read ("user:<name>", "global"); a row in another scope is
  reported as not found, never read or written.
- Times are ISO 8601 UTC strings (`dilm.types.utcnow`). Errors are `dilm.errors` types; a database that cannot
  be opened or written raises `StorageError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from dilm.types import (
    AdapterVersion,
    Fact,
    FactEnd,
    Feedback,
    LearnedWrite,
    LoggedFeedback,
    Memory,
    Message,
    Session,
)


class LogStore(Protocol):
    """Sessions, messages and feedback: the interaction log, and the questions asked of it."""

    def create_session(self, user_id: str, title: str | None = None) -> Session:
        """A new, empty session of `user_id` (the user is created on first use)."""
        ...

    def session(self, session_id: str, user_id: str | None = None) -> Session:
        """The session. Raises SessionNotFoundError; PermissionDeniedError when `user_id` is given and the
        session belongs to another user."""
        ...

    def sessions(self, user_id: str, limit: int = 50) -> list[Session]:
        """The user's newest `limit` sessions, most recently updated first."""
        ...

    def add_turn(self, user_msg: Message, assistant_msg: Message, title: str | None = None) -> None:
        """Log both sides of a turn (whole or not at all) and touch the session; `title` is set if it has none.
        Raises the database's integrity error on a duplicate message id."""
        ...

    def message(self, message_id: str) -> Message:
        """One message. Raises MessageNotFoundError."""
        ...

    def session_messages(self, session_id: str) -> list[Message]:
        """A session's messages, oldest first."""
        ...

    def messages(self, user_id: str | None = None, session_id: str | None = None, limit: int = 50) -> list[Message]:
        """The newest `limit` messages (returned oldest first), filtered by user and/or session."""
        ...

    def add_feedback(self, fb: Feedback) -> None:
        """Record feedback durably. Its row number is past every training window already consumed."""
        ...

    def feedback_for(self, message_ids: list[str]) -> dict[str, list[Feedback]]:
        """message id -> its feedback, oldest first (messages without feedback are left out)."""
        ...

    def feedback_users(self) -> list[str]:
        """Users who have given feedback, sorted."""
        ...

    def feedback_high_water(self) -> int:
        """The newest feedback row number (0: none)."""
        ...

    def first_feedback_after(self, user_id: str, after: int) -> str | None:
        """When the user's oldest feedback with row number > `after` was given (None: there is none)."""
        ...

    def logged_feedback(self, user: str | None = None, after: int = 0, upto: int | None = None) -> list[LoggedFeedback]:
        """Feedback (of one user, or all) with the question and answer it was given on, oldest first; feedback
        rows `after` < seq <= `upto` (a training window). Answers without a logged question are left out."""
        ...

    def answer_outcomes(self, limit: int = 2000) -> list[tuple[float, bool]]:
        """(mean log-probability, bad) of the newest `limit` plain model answers (not sampled, not known
        answers, not questions back) that users reacted to; bad: corrected or rated down. Newest first."""
        ...

    def user_questions(self, user_id: str, limit: int = 200) -> list[str]:
        """The texts of the user's newest `limit` messages, newest first."""
        ...

    def feedback_reasons(self, user_id: str, limit: int = 500) -> list[list[str]]:
        """The reason tags of the user's newest `limit` pieces of feedback, newest first."""
        ...

    def rejected_reward_picks(self) -> set[tuple[str, str]]:
        """(question, answer) of answers the reward model chose that users then corrected or rated down."""
        ...

    def satisfaction(self) -> dict[str, list[dict[str, Any]]]:
        """{"by_day"|"by_adapter": [{"key", "rated", "positive", "satisfaction"}]}: share of rated answers rated
        positive (the latest rating per answer counts), per day and per adapter version ("base": none)."""
        ...


class MemoryStore(Protocol):
    """Scoped memories: text, embedding and full-text terms, with supersede history."""

    def duplicate_memory(self, scope: str, text: str) -> Memory | None:
        """A current memory in `scope` with the same content terms (near-identical text), if any."""
        ...

    def superseded_answers(self, scopes: list[str], question: str) -> list[str]:
        """Answers of earlier, superseded corrections of this question (values that are no longer true)."""
        ...

    def memories_for_question(self, scope: str, question: str, kind: str) -> list[str]:
        """Ids of current memories of `kind` in `scope` keyed by this question (normalized)."""
        ...

    def scope_rev(self, scope: str) -> int:
        """A counter bumped by every change to the scope's memories (0: never changed)."""
        ...

    def memory(self, memory_id: str, scopes: list[str]) -> Memory:
        """The memory, if it is in one of `scopes`. Raises MemoryNotFoundError (another scope's memory too)."""
        ...

    def memories(
        self, scopes: list[str], include_superseded: bool = False, limit: int = 100, ids: list[str] | None = None
    ) -> list[Memory]:
        """Memories in `scopes` (only `ids` when given), newest first."""
        ...

    def current_memory_texts(self, scope: str) -> list[str]:
        """The texts of the scope's current (not superseded) memories, flagged ones included."""
        ...

    def memory_vectors(self, scope: str) -> tuple[list[str], list[bytes]]:
        """(ids, float32 embeddings as bytes) of the scope's current, retrievable memories, oldest first."""
        ...

    def memory_keys(self, ids: list[str]) -> dict[str, str]:
        """memory id -> the text its embedding was made from."""
        ...

    def term_counts(self, terms: list[str]) -> dict[str, int]:
        """How many memories (all scopes) contain each term; absent terms are left out."""
        ...

    def fts_search(self, scopes: list[str], match: str, limit: int) -> list[tuple[str, float]]:
        """(memory id, bm25 — lower is better) for a prepared FTS5 MATCH expression, within `scopes`."""
        ...

    def add_memories(self, items: list[tuple[Memory, str, bytes]]) -> None:
        """Insert (memory, key text, float32 embedding bytes) items in one transaction, indexed for full-text
        search under the key's terms. No duplicate check, no facts: a bulk load."""
        ...

    def delete_memory(self, memory_id: str, scopes: list[str]) -> Memory:
        """Delete a memory; facts learned from it are expired (kept as history). Returns what was deleted.
        Raises MemoryNotFoundError."""
        ...

    def write_learned(
        self,
        memory: Memory,
        key: str,
        facts: list[Fact],
        embed: Callable[[str], bytes],
        ends: Sequence[FactEnd] = (),
    ) -> LearnedWrite:
        """Write one learned statement in one transaction.

        Reuses a current memory of the same scope with near-identical text, else inserts `memory` with
        `embed(key)` (called only then) and full-text terms of `key`. `ends` are applied first (see `FactEnd`;
        an end that ends nothing records its `otherwise` fact), then each fact (its memory_id set to the
        memory's) is added as `add_fact` does. Memories left with no current fact by the ends and supersedes
        are superseded by this memory; for a "correction" with metadata["question"], so are the previous
        corrections of that question, together with their remaining current facts. Returns what changed."""
        ...

    def write_flagged(self, memory: Memory) -> None:
        """Store a memory as data only (suspected instructions or binary): listed and deletable, never
        retrieved (no embedding, no full-text row, a text key no other memory shares)."""
        ...


class FactStore(Protocol):
    """The bi-temporal fact graph: facts are superseded or expired, never deleted (except by forgetting a user)."""

    def add_fact(self, fact: Fact) -> tuple[Fact, list[Fact]]:
        """Record a fact. Current facts with the same scope, subject and relation but another object are
        invalidated (invalid_at = the new fact's valid_at, or its recorded_at when valid_at is None, never before
        their own valid_at; superseded_by = its id), unless either is multi-valued. A fact with invalid_at set is
        history and replaces nothing. Returns (fact, superseded); re-stating a current fact (or a history fact)
        returns the existing one and nothing superseded."""
        ...

    def facts(
        self,
        scopes: list[str],
        subject: str | None = None,
        current_only: bool = True,
        limit: int = 1000,
        memory_id: str | None = None,
        newest_first: bool = False,
    ) -> list[Fact]:
        """Facts in `scopes`, oldest first (`newest_first`: the reverse), optionally of one subject (normalized)
        or learned from one memory."""
        ...

    def facts_about(self, scopes: list[str], words: list[str], limit: int = 50) -> list[Fact]:
        """Current facts whose relation contains any of `words` (case-insensitive), newest first."""
        ...

    def fact(self, fact_id: str, scopes: list[str]) -> Fact:
        """One fact in `scopes`. Raises FactNotFoundError."""
        ...

    def retract_fact(self, fact_id: str, scopes: list[str]) -> Fact:
        """Mark a fact's record expired (it was wrong to record); the row stays. Raises FactNotFoundError."""
        ...

    def fact_supporters(self, subject_key: str, relation_key: str, obj: str) -> list[str]:
        """User scopes holding this exact current fact (for consensus promotion to global)."""
        ...

    def replaced_facts(self, since: str) -> list[tuple[Fact, str | None]]:
        """Facts of user scopes that stopped holding at or after `since` (ISO time), oldest first, each with the
        value that replaced it (None: ended with no replacement). Past facts recorded as history are left out."""
        ...


class AdapterStore(Protocol):
    """Trained adapter versions (names never reused) and the live one per scope."""

    def publish_adapter(self, a: AdapterVersion, make_live: bool, place: Callable[[str], None]) -> str:
        """Record `a` as a new version in one transaction: reserve its name ("v<n>", from a sequence that never
        goes back; "{version}" in `a.path` is replaced by it), call `place(version)` (e.g. rename the staged
        folder; an exception rolls the record back) and, when `make_live`, make it live. Returns the name."""
        ...

    def adapter(self, version: str) -> AdapterVersion:
        """One version. Raises AdapterNotFoundError."""
        ...

    def adapters(self, scope: str | None = None, deleted: bool = False) -> list[AdapterVersion]:
        """Versions oldest first, of one scope or all; deleted ones only when `deleted`."""
        ...

    def trained_upto(self, scope: str) -> int:
        """The last feedback row any finished training job of `scope` consumed (0: none)."""
        ...

    def live_adapter(self, scopes: list[str]) -> AdapterVersion | None:
        """The live version of the first scope in `scopes` that has one."""
        ...

    def set_live_adapter(self, scope: str, version: str | None) -> None:
        """Make `version` the live one of `scope` (None: the base model)."""
        ...

    def mark_adapter_deleted(self, version: str) -> None:
        """Set the version's deleted_at (the row stays)."""
        ...


class KeyStore(Protocol):
    """HTTP API keys, kept as SHA-256 digests. Key rows are dicts of the api_keys columns."""

    def add_api_key(self, key_id: str, digest: str, role: str, user_id: str | None) -> None:
        """Record a key; role "admin" (user_id None) or "user" (user_id required)."""
        ...

    def api_key(self, digest: str) -> dict[str, Any] | None:
        """The live (not revoked) key with this digest, if any."""
        ...

    def api_keys(self) -> list[dict[str, Any]]:
        """Every key, revoked ones included, oldest first."""
        ...

    def touch_api_key(self, key_id: str) -> None:
        """Set the key's last_used_at to now."""
        ...

    def revoke_api_key(self, key_id: str) -> dict[str, Any]:
        """Revoke a key (once; revoking again keeps the first time). Raises NotFoundError."""
        ...


class UserStore(Protocol):
    """Per-user state (decoding defaults, profile, the pending question, confirmed facts) and lifecycle."""

    def user_decoding(self, user_id: str) -> dict[str, Any]:
        """The user's saved decoding defaults ({} when none)."""
        ...

    def update_user_decoding(
        self, user_id: str, changes: dict[str, Any], check: Callable[[dict[str, Any]], object] | None = None
    ) -> dict[str, Any]:
        """Merge `changes` into the saved defaults (a None value removes the key) in one transaction; `check`
        runs on the merged result inside it, and an exception from it rolls the update back (and propagates).
        Returns what is saved."""
        ...

    def profile(self, user_id: str) -> dict[str, str]:
        """The user's stated preferences ({} when none)."""
        ...

    def update_profile(self, user_id: str, change: Callable[[dict[str, str]], dict[str, str]]) -> dict[str, str]:
        """Replace the profile by `change(current profile)`, read and written in one write transaction (so two
        concurrent updates cannot lose one); returns what is saved. `change` must not call the store."""
        ...

    def reset_profile(self, user_id: str) -> None:
        """Remove every profile key."""
        ...

    def pending_question(self, user_id: str) -> dict[str, Any] | None:
        """The question the assistant asked the user and waits an answer to: {"kind", "message", ...data}."""
        ...

    def set_pending_question(self, user_id: str, pending: dict[str, Any] | None) -> None:
        """Set (None: clear) the pending question; `pending` has "kind" and "message" plus JSON-able data."""
        ...

    def take_pending_question(self, user_id: str) -> dict[str, Any] | None:
        """Read and clear the pending question atomically (two concurrent turns cannot both take it)."""
        ...

    def mark_asked(self, user_id: str, fact_id: str) -> bool:
        """Note that the user was asked to confirm `fact_id`: True only the first time (among the user's last
        200 such facts); atomic."""
        ...

    def export_user(self, user_id: str) -> dict[str, Any]:
        """Everything stored about one user, as one consistent snapshot: {"user", "created_at", "settings",
        "sessions", "messages", "feedback", "memories", "facts", "adapters"}."""
        ...

    def forget_user(self, user_id: str) -> tuple[dict[str, int], list[str]]:
        """Delete one user's log, state, memories, facts and adapter records in one transaction and revoke
        their keys. Returns (counts per kind, adapter folders relative to the data dir for the caller to
        remove)."""
        ...


class Store(LogStore, MemoryStore, FactStore, AdapterStore, KeyStore, UserStore, Protocol):
    """All durable state of one data dir. Methods are thread-safe."""

    @property
    def path(self) -> Path:
        """Where the data lives (for SQLite: the database file)."""
        ...

    def close(self) -> None:
        """Release the connection; the store is unusable afterwards."""
        ...

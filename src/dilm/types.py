"""Public value types: what `Assistant` returns and what the store holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from ulid import ULID

Role = Literal["system", "user", "assistant"]
FeedbackKind = Literal["rating", "correction", "supplement", "preference", "comment"]
FEEDBACK_KINDS: tuple[str, ...] = ("rating", "correction", "supplement", "preference", "comment")


def new_id(prefix: str) -> str:
    """Time-sortable id with a readable prefix, e.g. msg_01JD3…"""
    return f"{prefix}_{ULID()}"


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Message(BaseModel):
    id: str
    session_id: str
    user_id: str
    role: Role
    content: str
    created_at: str
    parent_id: str | None = None
    model: str | None = None
    adapter_version: str | None = None
    decoding: dict[str, Any] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class Feedback(BaseModel):
    """One piece of feedback on an assistant message. A newer rating of the same message by the same user
    replaces the older one everywhere (training, profile, stats); the older row stays, `superseded_by` it."""

    id: str
    message_id: str
    user_id: str
    kind: FeedbackKind
    rating: int | None = None
    text: str | None = None
    reasons: list[str] = Field(default_factory=list)
    created_at: str
    superseded_by: str | None = None


class Session(BaseModel):
    id: str
    user_id: str
    created_at: str
    updated_at: str
    title: str | None = None


class ToolCall(BaseModel):
    """A function call the model made (OpenAI's tool call): `arguments` is a JSON object as text."""

    id: str
    name: str
    arguments: str


class Candidate(BaseModel):
    """One generated answer among the n of a turn: `finish_reason` is "stop", "length" (max_new_tokens reached)
    or "tool_calls" (the answer is `tool_calls`, not text)."""

    text: str
    completion_tokens: int
    finish_reason: str = "stop"
    mean_logprob: float | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = Field(
        default=None, description="per token, OpenAI's shape: token, logprob, bytes, top_logprobs (Decoding.logprobs)"
    )


class Reply(BaseModel):
    """The answer to one `chat` turn."""

    id: str
    text: str
    session_id: str
    user_id: str
    model: str
    citations: list[dict[str, Any]] = Field(default_factory=list)
    candidates: list[Candidate] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    decoding: dict[str, Any] = Field(default_factory=dict)
    adapter_version: str | None = None
    checks: dict[str, Any] = Field(
        default_factory=dict, description="what shaped the answer: known_answer (and any repair), learning effects"
    )
    finish_reason: str = Field(default="stop", description='"stop", "length" (max_new_tokens reached) or "tool_calls"')
    tool_calls: list[ToolCall] = Field(default_factory=list, description="the functions the answer calls")


class FeedbackResult(BaseModel):
    """What `feedback` stored and what it changed."""

    id: str
    message_id: str
    kind: FeedbackKind
    effects: list[str] = Field(default_factory=list)
    question: str | None = Field(None, description="a confirmation question for the user, when the policy asks one")


def user_scope(user: str) -> str:
    return f"user:{user}"


GLOBAL_SCOPE = "global"


def scopes_for(user: str | None) -> list[str]:
    """What a user may read: their own scope first, then global knowledge. None: global only."""
    return [user_scope(user), GLOBAL_SCOPE] if user else [GLOBAL_SCOPE]


class Memory(BaseModel):
    """A remembered piece of text in one scope; `score` is set on search results."""

    id: str
    text: str
    scope: str
    kind: str = "note"
    source_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: str = ""
    superseded_by: str | None = None
    superseded_at: str | None = None
    score: float | None = None


class Fact(BaseModel):
    """A (subject, relation, object) triple with bi-temporal validity and provenance.

    valid_at/invalid_at: when it held in the world (event time, ISO 8601, reduced precision allowed: "2016",
    "2021-03"): from the words when they say ("until 2016", "从2019年起"), else the time it was learned;
    valid_at None: a past fact whose start is unknown. recorded_at/expired_at: when dilm learned it and when the
    record was retracted. Superseded and ended facts keep their rows (history, never deleted).
    multi_valued: one of several values the relation holds at once ("likes", "speaks"): a new value is added
    beside it instead of replacing it. extractor: what read it from the words, "rule" or "model" ("api" when
    given as a triple)."""

    id: str
    scope: str
    subject: str
    relation: str
    object: str
    valid_at: str | None
    invalid_at: str | None = None
    recorded_at: str
    expired_at: str | None = None
    superseded_by: str | None = None
    source_kind: str = "statement"
    source_id: str | None = None
    memory_id: str | None = None
    confidence: float = 1.0
    multi_valued: bool = False
    extractor: str = "rule"

    @property
    def current(self) -> bool:
        return self.invalid_at is None and self.expired_at is None


class AdapterVersion(BaseModel):
    """One trained LoRA adapter: a PEFT folder plus what it was trained on and how the gate judged it."""

    version: str
    scope: str
    status: Literal["accepted", "rejected"]
    parent: str | None = None
    base_model: str
    path: str = Field(description="the PEFT folder, relative to the data dir")
    checksum: str
    data_from: int = Field(description="feedback window (log row numbers), exclusive start")
    data_to: int = Field(description="feedback window, inclusive end")
    info: dict[str, Any] = Field(default_factory=dict, description="examples, metrics, gate report, timings")
    created_at: str
    deleted_at: str | None = None
    live: bool = False


@dataclass
class Hit:
    """One retrieved memory with its fused score and the parts of it (dense cosine, term coverage)."""

    memory: Memory
    score: float
    dense: float = 0.0
    coverage: float = 0.0
    why: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LoggedFeedback:
    """One piece of feedback with the question and answer it was given on (what training examples are made of)."""

    seq: int  # the feedback's row number: training windows are ranges of it
    feedback_id: str
    user_id: str
    kind: str
    rating: int | None
    text: str | None
    question: str
    answer: str
    learned: str | None  # the memory the feedback produced (the clean statement), if any
    created_at: str


@dataclass(frozen=True)
class FactEnd:
    """Words saying a fact stopped holding ("I no longer work at X", "我不再住在苏州了"): the current facts of
    `subject` with `relation` (and `object`, when given; else any value) get invalid_at = `at`, replaced by
    nothing. `loose`: when none matches, the subject's current facts with that object end instead, whatever
    their relation ("I left Paris" ends "lives in Paris"). `otherwise`: recorded when it ends nothing, so that
    what was said stays known as history ("I don't smoke anymore" with no smoking fact yet)."""

    subject: str
    relation: str
    object: str | None
    at: str
    loose: bool = False
    otherwise: Fact | None = None


@dataclass
class LearnedWrite:
    """What one learned statement changed in the store (`Store.write_learned`).

    memory: the new memory, or the current duplicate that was reused (`created` False); facts: the facts stored
    (a re-stated current fact is not repeated); superseded: facts invalidated by this write, with their new
    invalid_at/superseded_by; superseded_memories: ids of memories replaced by this one, sorted; rev_before: the
    scope's revision before the write (lets an in-process index apply the write without a reload)."""

    memory: Memory
    created: bool
    facts: list[Fact] = field(default_factory=list)
    superseded: list[Fact] = field(default_factory=list)
    ended: list[Fact] = field(default_factory=list)
    superseded_memories: list[str] = field(default_factory=list)
    rev_before: int = 0

"""What kind of message a turn got: one function, one answer.

The order matters and is the whole rule: a yes/no to a question the assistant asked wins; then teaching
("Remember that …" / "记住：…"); then a stated preference ("answer shorter", "用中文回答"); then a correction of
an answer the assistant said it was unsure about ("No, it's Paris."); anything else is a question. A short
reply to a clarifying question completes the question it was asked about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from dilm import asking
from dilm.facts.extract import is_teaching
from dilm.profile import is_preference_instruction
from dilm.types import Message

IntentKind = Literal["answer_to_pending", "teaching", "stated_preference", "correction_reply", "question"]


@dataclass(frozen=True)
class Intent:
    """One message, classified.

    `question` is the text to answer (the clarified question joined to the reply when the message completes a
    clarification); `said` is "yes"/"no" for an answer to a pending confirmation; `pending` is the question the
    assistant asked last turn (None when there was none); `clarified` is the question a clarifying question
    was asked about, when this message answers it."""

    kind: IntentKind
    question: str
    said: Literal["yes", "no"] | None = None
    pending: dict[str, Any] | None = None
    clarified: str | None = None


def classify(text: str, pending: dict[str, Any] | None, session: list[Message]) -> Intent:
    """Classify `text`, the user's new message, given the pending question and the session so far."""
    clarified = clarified_question(session, text)
    question = f"{clarified} {text}" if clarified else text
    reply = asking.yes_or_no(text) if pending else None
    said: Literal["yes", "no"] | None = "yes" if reply == "yes" else "no" if reply == "no" else None
    if pending and said:
        kind: IntentKind = "answer_to_pending"
    elif is_teaching(text):
        kind = "teaching"
    elif is_preference_instruction(text):
        kind = "stated_preference"
    elif pending and pending["kind"] == "unsure" and asking.is_correction_reply(text):
        kind = "correction_reply"
    else:
        kind = "question"
    return Intent(kind, question, said if kind == "answer_to_pending" else None, pending, clarified)


def clarified_question(session: list[Message], text: str) -> str | None:
    """The question a clarifying question was asked about, when `text` (the next message) answers it."""
    last = session[-1] if session else None
    if last is None or last.role != "assistant" or last.meta.get("policy", {}).get("kind") != "clarify":
        return None
    asked = next((m for m in session if m.id == last.parent_id), None)
    return asked.content if asked is not None and asking.is_clarification_reply(text) else None

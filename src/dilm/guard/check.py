"""Retry-or-refuse: deployment rules applied to the candidates of one answer.

The first candidate that keeps every hard rule wins; if none does, the model gets one greedy retry with the
broken rules stated in its system prompt; if that breaks a hard rule too, the answer is an honest refusal that
names the rule (never silence). Soft rules are only reported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dilm.config import Decoding
from dilm.guard.rules import Rule, Violation, check
from dilm.models.base import ChatMessage
from dilm.text import language
from dilm.types import Candidate

Regenerate = Callable[[list[ChatMessage], Decoding], list[Candidate]]


def enforce(
    rules: list[Rule],
    question: str,
    messages: list[ChatMessage],
    decoding: Decoding,
    candidates: list[Candidate],
    regenerate: Regenerate,
) -> tuple[list[Candidate], dict[str, Any]]:
    """(candidates best-first, the report) for `rules` (those that apply to `question`).

    The report has `rules` (names), `violations` of the first candidate ({rule, reason, hard}) and `action`:
    "ok", "chose another candidate", "regenerated with the rule stated" or "refused"."""
    report: dict[str, Any] = {"rules": [r.name for r in rules], "action": "ok"}

    def hard_broken(c: Candidate) -> list[Violation]:
        return [v for v in check(rules, question, c.text) if v.hard]

    checked = [(c, hard_broken(c)) for c in candidates]
    report["violations"] = [
        {"rule": v.rule, "reason": v.reason, "hard": v.hard} for v in check(rules, question, candidates[0].text)
    ]
    ok = [c for c, broken in checked if not broken]
    if ok:
        if ok[0] is not candidates[0]:
            report["action"] = "chose another candidate"
        return ok + [c for c in candidates if c not in ok], report
    broken = {v.rule: v for _, b in checked for v in b}
    retry = regenerate(_stated(messages, broken), decoding.merged({"n": 1, "strategy": "greedy"}))
    if retry and not hard_broken(retry[0]):
        report["action"] = "regenerated with the rule stated"
        return retry, report
    report["action"] = "refused"
    return [refusal(question, list(broken.values()))], report


def _stated(messages: list[ChatMessage], broken: dict[str, Violation]) -> list[ChatMessage]:
    """The prompt again, with the broken rules added to the system prompt."""
    stated = " ".join(f"Rule: {v.reason}." for v in broken.values())
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": f"{messages[0]['content']} {stated}"}, *messages[1:]]
    return [{"role": "system", "content": stated}, *messages]


def refusal(question: str, broken: list[Violation]) -> Candidate:
    """An honest refusal naming the rules (in the question's language)."""
    why = "; ".join(f"{v.reason} ({v.rule})" for v in broken)
    zh = language(question) == "zh"
    text = f"我不能按要求回答这个问题：{why}。" if zh else f"I can't answer that as asked: {why}."
    return Candidate(text=text, completion_tokens=0, finish_reason="stop")

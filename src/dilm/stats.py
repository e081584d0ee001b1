"""`bot.stats`: how the assistant is doing, read from the log."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from dilm.store import Store
from dilm.text import normalize

# An answer that says the old value is old is not a repeat error ("You no longer live in Oslo").
_MARKED_OLD = re.compile(r"no longer|not any ?more|used to|before|previously|formerly|不再|已经不|以前|之前|原来", re.I)


class Stats:
    def __init__(self, store: Store) -> None:
        self.store = store

    def satisfaction(self) -> dict[str, list[dict[str, Any]]]:
        """Share of rated answers rated positive (the latest rating per answer counts), `by_day` and `by_adapter`
        (the adapter version that produced the answer; "base": none), each a list of key, rated, positive,
        satisfaction in order of first appearance."""
        return self.store.satisfaction()

    def repeat_errors(self, days: int = 30) -> dict[str, list[dict[str, Any]]]:
        """The mission's own measure: answers that state a value the same user had already corrected or
        changed (a superseded or ended fact's value, without the current value and without saying it is old),
        among that user's answers after the change; `by_day` and `by_scope`, each a list of key, answers
        (checked), repeats, rate. Looks `days` back."""
        since = (datetime.now(UTC) - timedelta(days=days)).isoformat()
        replaced: dict[str, list[tuple[str, str | None, str]]] = defaultdict(list)
        for fact, new in self.store.replaced_facts(since):
            if len(normalize(fact.object)) >= 2:
                replaced[fact.scope].append((fact.object, new, fact.invalid_at or ""))
        by_day: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_scope: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for scope, values in replaced.items():
            first = min(at for _, _, at in values)
            answers = [
                m
                for m in self.store.messages(user_id=scope.removeprefix("user:"), limit=5000)
                if m.role == "assistant" and m.created_at > first
            ]
            for m in answers:
                repeat = any(m.created_at > at and _states_old(m.content, old, new) for old, new, at in values)
                for counts in (by_day[m.created_at[:10]], by_scope[scope]):
                    counts[0] += 1
                    counts[1] += repeat
        return {"by_day": _rates(by_day), "by_scope": _rates(by_scope)}


def _states_old(answer: str, old: str, new: str | None) -> bool:
    text = normalize(answer)
    if normalize(old) not in text or _MARKED_OLD.search(answer):
        return False
    return new is None or normalize(new) not in text


def _rates(counts: dict[str, list[int]]) -> list[dict[str, Any]]:
    return [
        {"key": key, "answers": n, "repeats": bad, "rate": bad / n if n else None}
        for key, (n, bad) in sorted(counts.items())
    ]

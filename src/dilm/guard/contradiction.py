"""Contradiction check: a fact the answer states (same subject and relation as a current fact in the user's
scopes) with another value than every current one is a contradiction; the answer is repaired to the fact."""

from __future__ import annotations

from dataclasses import dataclass

from dilm.facts.extract import USER, canonical_relation, extract, render
from dilm.store import FactStore
from dilm.text import normalize
from dilm.types import GLOBAL_SCOPE, Fact


@dataclass(frozen=True)
class Contradiction:
    said: str  # the value the answer stated
    fact: Fact  # the current fact it contradicts (the user's own before global knowledge)

    def describe(self) -> str:
        f = self.fact
        return f"said {self.said!r} but {f.subject} · {f.relation} · {f.object} ({f.scope})"


def contradictions(store: FactStore, scopes: list[str], answer: str) -> list[Contradiction]:
    said = normalize(answer)
    out = []
    for t in extract(answer):
        if t.subject == USER:
            continue
        rel = canonical_relation(t.relation)
        current = [f for f in store.facts(scopes, subject=t.subject) if canonical_relation(f.relation) == rel]
        if current and not any(normalize(f.object) in said for f in current):
            current.sort(key=lambda f: f.scope == GLOBAL_SCOPE)  # the user's own fact first
            out.append(Contradiction(t.object, current[0]))
    return out


def repaired(c: Contradiction, lang: str) -> str:
    return render(c.fact.subject, c.fact.relation, c.fact.object, lang)

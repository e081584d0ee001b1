"""Interaction policy: answer, or ask first.

- passive: always answer; feedback comes only when the user gives it.
- active: ask whenever a signal of uncertainty fires: an ambiguous question (its relation belongs to several
  known subjects and it names none), a dangling reference ("How old is he?" with nothing before it), a
  genuine conflict (the user's own value against global knowledge, or a value the user reverted to), or a
  low mean token log-probability of an answer that no memory backs.
- hybrid: the same, but the log-probability threshold is tuned from logged outcomes (how often unasked
  answers at each confidence were corrected) within an ask budget; with too few outcomes it does not ask
  on confidence alone.

A user's own newer correction is never met with a question instead of an answer: it is answered at once, and a
confirmation (when there is a genuine conflict) comes with the answer, once per fact.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from dilm.config import Interaction
from dilm.facts.answers import KnownAnswer
from dilm.facts.extract import USER, canonical_relation, parse_question
from dilm.store import Store
from dilm.text import content_terms, is_cjk, mentions, normalize
from dilm.types import GLOBAL_SCOPE, Fact, user_scope

MODES: tuple[str, ...] = ("passive", "active", "hybrid")


@dataclass
class Ask:
    """A question the assistant asks the user this turn."""

    kind: Literal["clarify", "confirm"]
    signal: str  # which uncertainty signal asked: ambiguous | reference | conflict | reverted | confidence
    text: str  # a clarification replaces the answer; a confirmation follows it
    data: dict[str, Any] = field(default_factory=dict)
    pending: dict[str, Any] | None = None  # what the user's next message may answer (a confirmation's subject)

    def record(self) -> dict[str, Any]:
        return {"action": "ask", "kind": self.kind, "signal": self.signal, "question": self.text, **self.data}


# -- signals ----------------------------------------------------------------------------------------
_PRONOUN_EN = re.compile(r"\b(?:he|him|his|she|her|hers|they|them|their|its|it)\b", re.I)
# "it" with these is a dummy subject ("is it raining", "it's late"), not a reference.
_DUMMY_IT = re.compile(
    r"\bit(?:'s| is| was| will be| gets?)?\s+(?:rain|snow|sunny|cold|hot|warm|windy|late|early|time|possible|"
    r"true|ok|okay|worth|necessary|important|better|best|easy|hard|likely|safe|normal|going to)",
    re.I,
)
# A pronoun in subject position: "他的生日是哪天？"; "陈墨白给他的猫…" names its referent first.
_PRONOUN_ZH = re.compile(r"^(?:请问|那|那么)?[，,\s]*(?:他们|她们|它们|他|她|它|这个|那个|这家|那家|这位|那位|该)")


def dangling_reference(question: str, has_history: bool) -> str | None:
    """The pronoun a question leans on when nothing before it says what it refers to, else None."""
    if has_history:
        return None
    if is_cjk(question):
        m = _PRONOUN_ZH.search(question.strip())
        return m.group().lstrip("请问那么，, ") if m and len(question) <= 24 else None
    if _DUMMY_IT.search(question) or _named(question):
        return None
    m = _PRONOUN_EN.search(question)
    return m.group() if m else None


def _named(text: str) -> bool:
    """Whether the text names something: a capitalized word after the first, or a number."""
    words = re.findall(r"[A-Za-z][\w'-]*|\d+", text)
    return any(w[0].isdigit() or (w[0].isupper() and w != "I") for w in words[1:])


def ambiguous_subjects(store: Store, scopes: list[str], question: str) -> list[str]:
    """Subjects of known facts whose relation the question asks about while naming none of them; two or more
    mean the question is ambiguous ("What's the hotline?" when Acme and Globex both have one)."""
    parsed = parse_question(question)
    asked = content_terms(question) | (content_terms(parsed[1]) if parsed else set())
    stems = sorted({t[:4] if not is_cjk(t) and len(t) >= 4 else t for t in asked})
    found: dict[str, str] = {}
    covered: set[str] = set()
    for f in store.facts_about(scopes, stems):
        if f.subject == USER:
            continue
        if mentions(f.subject, question):
            return []  # the question names one of them
        hit = {t for t in asked if any(_same_word(t, r) for r in content_terms(f.relation))}
        if hit:
            covered |= hit
            found.setdefault(normalize(f.subject), f.subject)
    if len(found) < 2 or len(covered) / len(asked) < 0.5:
        return []
    if parsed is not None and not _generic(parsed[0], covered):
        return []  # the question names its own subject ("What is the hotline of Initech?")
    return list(found.values())


def _same_word(a: str, b: str) -> bool:
    """Equal, or sharing a 4-letter stem ("open" / "opening")."""
    return a == b or (not is_cjk(a) and len(a) >= 4 and len(b) >= 4 and a[:4] == b[:4])


def _generic(subject: str, relation_terms: set[str]) -> bool:
    """A parsed 'subject' that names nothing of its own: a common noun phrase, a pronoun, or only the words of
    the relation asked about ("the hotline number", "its address", "Wi-Fi" of "Wi-Fi password", "校长")."""
    own = {t for t in content_terms(subject) if not any(_same_word(t, r) for r in relation_terms)}
    if not own:
        return True
    if is_cjk(subject):
        return False
    s = re.sub(r"^(?:the|a|an|this|that|its|his|her|their|our|your|my)\s+", "", subject.strip(), flags=re.I)
    return not _named(f"x {s}")


def conflict(store: Store, scope: str, fact: Fact | None) -> dict[str, Any] | None:
    """A genuine conflict about the fact a turn answers with: the user's value against global knowledge, or a
    value the user went back to after changing it. `scope` is the user's scope. None when there is none."""
    if fact is None or fact.scope != scope or fact.subject == USER:
        return None
    rel = canonical_relation(fact.relation)
    same_key = [f for f in store.facts([GLOBAL_SCOPE], subject=fact.subject) if canonical_relation(f.relation) == rel]
    other = [f for f in same_key if normalize(f.object) != normalize(fact.object)]
    if other:
        return {"signal": "conflict", "fact": fact.id, "other": other[0].object, "other_scope": GLOBAL_SCOPE}
    history = [
        f
        for f in store.facts([scope], subject=fact.subject, current_only=False)
        if canonical_relation(f.relation) == rel and f.id != fact.id
    ]
    values = [normalize(f.object) for f in sorted(history, key=lambda f: f.recorded_at)]
    if normalize(fact.object) in values and any(v != normalize(fact.object) for v in values):
        between = next(f.object for f in reversed(history) if normalize(f.object) != normalize(fact.object))
        return {"signal": "reverted", "fact": fact.id, "other": between, "other_scope": scope}
    return None


def confirmation(fact: Fact, found: dict[str, Any], lang: str) -> str:
    """The confirmation question for a conflict (asked after the answer that uses the user's value)."""
    value, other = fact.object, found["other"]
    if found["signal"] == "reverted":
        if lang == "zh":
            return f"你曾把它从「{value}」改成「{other}」，现在又改回「{value}」。以「{value}」为准吗？"
        return f"You changed this from {value} to {other} and back to {value}. Should I keep {value}?"
    if lang == "zh":
        return f"你告诉我的是「{value}」，但共享知识里是「{other}」。对你来说，「{value}」是对的吗？"
    return f"You told me {value}, but my shared knowledge says {other}. Is {value} right for you?"


def clarification(signal: str, lang: str, options: list[str] | None = None, pronoun: str = "") -> str:
    if signal == "ambiguous":
        shown = (options or [])[:4]
        if lang == "zh":
            return f"你指的是哪一个：{'、'.join(shown[:-1])}还是{shown[-1]}？"
        return f"Which one do you mean: {', '.join(shown[:-1])} or {shown[-1]}?"
    if lang == "zh":
        return f"你说的“{pronoun}”指的是谁（或什么）？告诉我名字，我再回答。"
    return f'Who or what do you mean by "{pronoun}"? Tell me the name and I will answer.'


def unsure(lang: str) -> str:
    if lang == "zh":
        return "我对这个回答不太确定：对吗？如果不对，请告诉我正确答案。"
    return "I am not sure about this answer. Is it right? If not, please tell me the correct one."


# -- replies to a question the assistant asked --------------------------------------------------------
_YES = re.compile(
    r"^(?:yes|yeah|yep|yup|correct|right|exactly|sure|confirmed?|that'?s right|keep it|"
    r"是|是的|对|对的|没错|确认|嗯|好的?)(?:[\s,.!。！，]|$)",
    re.I,
)
_NO = re.compile(r"^(?:no|nope|wrong|incorrect|not right|不是|不对|错了?|不)(?:[\s,.!。！，]|$)", re.I)


def yes_or_no(text: str) -> str | None:
    """'yes' or 'no' for a short reply that is only that, else None."""
    t = text.strip()
    if len(t) > 40:
        return None
    if _NO.match(t) and len(content_terms(t) - {"wrong", "incorrect", "right"}) == 0:
        return "no"
    if _YES.match(t):
        return "yes"
    return None


_CORRECTING = re.compile(
    r"^(?:no|nope|wrong|incorrect|not|actually|it'?s|it is|the (?:right|correct) answer is|"
    r"不是|不对|错了?|应该是|其实|正确答案是)\b",
    re.I,
)


def is_correction_reply(text: str) -> bool:
    """A reply that corrects the answer just asked about ("No, it's Paris.", "应该是杭州")."""
    t = text.strip()
    return bool(_CORRECTING.match(t)) and not t.endswith(("?", "？"))


def is_clarification_reply(text: str) -> bool:
    """A short answer to a clarifying question ("Acme", "the one in Hangzhou", "杭州那家"), not a new question."""
    t = text.strip()
    return (len(t) <= 40 if is_cjk(t) else len(t.split()) <= 8) and not t.endswith(("?", "？"))


def acknowledge_confirmation(answer: str, value: str, other: str, lang: str) -> str:
    if answer == "yes":
        return f"好的，我会继续用「{value}」。" if lang == "zh" else f"Noted: I will keep {value} for you."
    return f"好的，我改回「{other}」。" if lang == "zh" else f"OK: I will go back to {other}."


# -- hybrid thresholds from logged outcomes --------------------------------------------------------
@dataclass
class Outcome:
    mean_logprob: float
    bad: bool  # corrected or rated down


def tune(outcomes: list[Outcome], budget: float, min_outcomes: int = 20, min_precision: float = 0.5) -> float | None:
    """The highest log-probability threshold below which asking would have been needed at least
    `min_precision` of the time, while asking for at most `budget` of the answers; None: do not ask."""
    if len(outcomes) < min_outcomes or not any(o.bad for o in outcomes):
        return None
    ranked = sorted(outcomes, key=lambda o: o.mean_logprob)
    best = None
    bad = 0
    for i, o in enumerate(ranked, 1):
        bad += o.bad
        if i / len(ranked) > budget:
            break
        nxt = ranked[i].mean_logprob if i < len(ranked) else o.mean_logprob + 1e-6
        if bad / i >= min_precision and nxt > o.mean_logprob:
            best = (o.mean_logprob + nxt) / 2
    return best


class Thresholds:
    """The hybrid policy's confidence threshold, re-tuned from the log when new feedback arrives."""

    def __init__(self, store: Store, budget: float) -> None:
        self.store = store
        self.budget = budget
        self._at: tuple[int, float] = (-1, 0.0)
        self.value: float | None = None

    def current(self) -> float | None:
        seen = self.store.feedback_high_water()
        if seen != self._at[0] and time.monotonic() - self._at[1] > 5:
            self.value = tune(self.outcomes(), self.budget)
            self._at = (seen, time.monotonic())
        return self.value

    def outcomes(self, limit: int = 2000) -> list[Outcome]:
        """The newest `limit` plain answers' outcomes that users reacted to (see `Store.answer_outcomes`)."""
        return [Outcome(lp, bad) for lp, bad in self.store.answer_outcomes(limit)]


# -- the decisions of one deployment ------------------------------------------------------------------
class Asker:
    """When to ask, for one deployment: before answering (clarify), after answering (confirm a conflict, or
    say the answer is unsure) and after a correction (confirm it against global knowledge).

    It reads facts through the store and records, per user, which facts were already confirmed (never asked
    twice). A confirmation's `Ask.pending` is what the next message may answer; the caller stores it once the
    reply that asks it is recorded."""

    def __init__(self, store: Store, settings: Interaction) -> None:
        self.store = store
        self.settings = settings
        self.thresholds = Thresholds(store, settings.max_ask_rate)

    def mode(self, profile: dict[str, Any]) -> str:
        """The user's own mode (profile key `policy`), else the deployment's."""
        return str(profile.get("policy") or self.settings.mode)

    def before(self, mode: str, question: str, has_history: bool, scopes: list[str], lang: str) -> Ask | None:
        """A clarifying question instead of an answer (active and hybrid): an ambiguous or dangling reference."""
        if mode == "passive":
            return None
        options = ambiguous_subjects(self.store, scopes, question)
        if options:
            return Ask("clarify", "ambiguous", clarification("ambiguous", lang, options), data={"options": options})
        pronoun = dangling_reference(question, has_history)
        if pronoun:
            return Ask("clarify", "reference", clarification("reference", lang, pronoun=pronoun))
        return None

    def after(
        self, mode: str, user: str, backed: bool, known: KnownAnswer | None, confidence: float | None, lang: str
    ) -> Ask | None:
        """A question after the answer: confirm a genuine conflict (once per fact), or say the answer is unsure.

        `backed`: memories were retrieved for the question; `confidence`: the answer's mean token log-probability
        (None for sampled answers, whose log-probabilities say little)."""
        if mode == "passive":
            return None
        if known is not None and known.fact is not None:
            fact = known.fact
            found = conflict(self.store, user_scope(user), fact)
            if found and self.store.mark_asked(user, found["fact"]):
                pending = {"kind": "confirm", "value": fact.object, "scope": fact.scope, **found}
                return Ask("confirm", found["signal"], confirmation(fact, found, lang), found, pending=pending)
            return None
        if known is not None or backed or confidence is None:
            return None
        threshold = self.settings.min_logprob if mode == "active" else self.thresholds.current()
        if threshold is not None and confidence < threshold:
            data = {"threshold": round(threshold, 3)}
            return Ask("confirm", "confidence", unsure(lang), data, pending={"kind": "unsure"})
        return None

    def after_correction(self, user: str, facts: list[Fact], message_id: str, mode: str, lang: str) -> str | None:
        """A confirmation question when a correction's facts contradict global knowledge (active and hybrid);
        the question is remembered as pending for the user's next message."""
        if mode == "passive":
            return None
        for fact in facts:
            found = conflict(self.store, user_scope(user), fact)
            if found and found["signal"] == "conflict" and self.store.mark_asked(user, fact.id):
                pending = {"kind": "confirm", "value": fact.object, "scope": fact.scope, "message": message_id, **found}
                self.store.set_pending_question(user, pending)
                return confirmation(fact, found, lang)
        return None

"""The answer guarantee: find the current fact that answers a question, and make the reply state it.

The embedded 135M model often ignores context it is given (and cannot write Chinese), so a fact learned from
a user is not left to chance: after generation the reply is checked for the current value and for any
superseded value; if the value is missing or a stale one appears, the reply is repaired to a sentence that
states the current fact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dilm.facts.extract import USER, parse_question, render, render_ended, render_past
from dilm.store import Store
from dilm.text import content_terms, is_cjk, language, mentions, normalize
from dilm.types import Fact, Hit


@dataclass
class KnownAnswer:
    value: str | None  # None: a corrected statement with no single value (checked by its terms instead)
    statement: str
    fact: Fact | None = None
    memory_id: str | None = None
    old_values: list[str] = field(default_factory=list)
    how: str = ""
    question: str | None = None  # the corrected question, for value-less statements
    ended: bool = False  # the fact no longer holds: the reply must say so


def _relation_match(question_rel: str | None, fact_rel: str, question: str) -> bool:
    a, b = normalize(question_rel or ""), normalize(fact_rel)
    if a and a == b:
        return True
    fr = content_terms(fact_rel) or {b}
    if a and (content_terms(a) & fr or (is_cjk(a) and (a in b or b in a))):
        return True
    return bool(fr & content_terms(question))


class AnswerFinder:
    def __init__(self, store: Store) -> None:
        self.store = store

    def find(self, question: str, scopes: list[str], hits: list[Hit]) -> KnownAnswer | None:
        """The current fact (or corrected answer) that answers `question` with high confidence, else None. A
        question about the past ("Where did I live before?", "谁以前是市长？") is answered from history, and one
        whose fact has ended ("Where do I work?" after "I quit") says it no longer holds."""
        asked, past = past_question(question)
        parsed = parse_question(asked)
        lang = language(question)
        # 1. The question names a subject and a relation that a current fact has (or had).
        if parsed is not None:
            subject, relation = parsed
            history = self._history(subject, relation, question, lang, scopes) if past else None
            if history is not None:
                return history
            for fact in self._facts(subject, scopes):
                if _relation_match(relation, fact.relation, question):
                    return self._known(fact, None, lang, scopes, "fact")
            ended = self._ended(subject, relation, question, scopes)
            if ended is not None:
                statement = render_ended(ended.subject, ended.relation, ended.object, lang)
                return KnownAnswer(None, statement, ended, ended.memory_id, how="ended fact", ended=True)
        # 2. A retrieved memory about a subject the question names, which it paraphrases or names the relation of.
        for hit in hits:
            meta = hit.memory.metadata
            facts = self.store.facts(scopes, memory_id=hit.memory.id) if meta.get("subjects") else []
            for fact in facts:
                about = mentions(fact.subject, question) or (fact.subject == USER and "self" in hit.why)
                # MiniLM cannot read Chinese: there, closeness is the share of the question's bigrams.
                close = hit.coverage >= 0.35 if lang == "zh" else (hit.dense >= 0.55 or hit.coverage >= 0.5)
                if about and (close or _relation_match(None, fact.relation, question)):
                    return self._known(fact, hit, lang, scopes, "memory fact")
            # 3. A corrected answer without a fact: the question must be a close paraphrase of the corrected one.
            answer = meta.get("answer")
            paraphrase = hit.coverage >= 0.5 if lang == "zh" else (hit.dense >= 0.7 or hit.coverage >= 0.6)
            if not facts and not answer and meta.get("question") and paraphrase and hit.memory.kind == "correction":
                # 4. A corrected sentence with no extractable value ("云栖湖书店早上九点半开门。").
                return KnownAnswer(
                    value=None,
                    statement=hit.memory.text,
                    memory_id=hit.memory.id,
                    how="corrected statement",
                    question=meta["question"],
                )
            if answer and not facts and (hit.dense >= 0.7 or hit.coverage >= 0.6) and hit.why:
                old = self.store.superseded_answers(scopes, meta.get("question", ""))
                return KnownAnswer(
                    value=answer,
                    statement=hit.memory.text,
                    memory_id=hit.memory.id,
                    old_values=_stale(old, answer),
                    how="corrected answer",
                )
        return None

    def _ended(self, subject: str, relation: str, question: str, scopes: list[str]) -> Fact | None:
        """The newest fact of `subject` that ended with nothing replacing it ("I no longer work at X")."""
        ended = [
            f
            for f in self.store.facts(scopes, subject=subject, current_only=False)
            if f.invalid_at
            and not f.superseded_by
            and not f.expired_at
            and _relation_match(relation, f.relation, question)
        ]
        later = [f for f in ended if not self._replaced(f, scopes)]
        return max(later, key=lambda f: f.invalid_at or "", default=None)

    def _replaced(self, fact: Fact, scopes: list[str]) -> bool:
        """Whether a current fact now holds for the same subject and relation (then `fact` is just history)."""
        return any(normalize(f.relation) == normalize(fact.relation) for f in self._facts(fact.subject, scopes))

    def _history(self, subject: str, relation: str, question: str, lang: str, scopes: list[str]) -> KnownAnswer | None:
        """The newest value that no longer holds, for "before" questions."""
        old = [
            f
            for f in self.store.facts(scopes, subject=subject, current_only=False)
            if f.invalid_at and not f.expired_at and _relation_match(relation, f.relation, question)
        ]
        if not old:
            return None
        f = max(old, key=lambda f: f.invalid_at or "")
        statement = render_past(f.subject, f.relation, f.object, f.invalid_at, lang)
        return KnownAnswer(f.object, statement, f, f.memory_id, how="history")

    def _facts(self, subject: str, scopes: list[str]) -> list[Fact]:
        """Current facts about `subject`: the user's own scope before global knowledge, newest first."""
        facts = sorted(self.store.facts(scopes, subject=subject), key=lambda f: f.recorded_at, reverse=True)
        return sorted(facts, key=lambda f: f.scope != scopes[0])

    def _known(self, fact: Fact, hit: Hit | None, lang: str, scopes: list[str], how: str) -> KnownAnswer:
        history = [
            f
            for f in self.store.facts(scopes, subject=fact.subject, current_only=False)
            if normalize(f.relation) == normalize(fact.relation) and not f.current
        ]
        earlier = [f.object for f in history]
        if hit is not None and hit.memory.metadata.get("question"):  # values of replaced corrections
            earlier += self.store.superseded_answers(scopes, hit.memory.metadata["question"])
        old = _stale(earlier, fact.object)
        statement = render(fact.subject, fact.relation, fact.object, lang)
        return KnownAnswer(
            value=fact.object,
            statement=statement,
            fact=fact,
            memory_id=fact.memory_id or (hit.memory.id if hit else None),
            old_values=old,
            how=how,
        )


# A question about the past: a past-time word with a past verb in English ("Where did I live before?"), a
# past-time word right before the verb or noun it dates in Chinese ("我以前住在哪", "以前的镇长"). "Where do I live?
# I told you earlier." asks about now.
_PAST_EN = re.compile(
    r"\s*\b(?:before(?: that| now)?|previously|formerly|in the past|back then|prior to that|used to)\b", re.I
)
_PAST_VERB_EN = re.compile(r"\b(?:did|was|were|used to|had)\b", re.I)
_PAST_ZH = re.compile(
    r"(?:以前|之前|原来|过去|曾经|早先|原先|当初|先前)(?=的|住|在|是|叫|做|当|工作|上班|用|开|养|读|学|谁|哪)"
)


_NO_LONGER = re.compile(r"no longer|not any ?more|used to|\bleft\b|\bquit|不再|已经不|以前|不在|离开|离职|辞职", re.I)


def past_question(question: str) -> tuple[str, bool]:
    """(the question without its "before"/"以前", whether it asks about the past)."""
    stripped = _PAST_ZH.sub("", question)
    if _PAST_VERB_EN.search(question):
        stripped = _PAST_EN.sub("", stripped)
    stripped = re.sub(r"\bdid (\w+) use to\b", r"did \1", stripped, flags=re.I)
    return (stripped, True) if stripped != question else (question, False)


def _stale(values: list[str], current: str) -> list[str]:
    cur = normalize(current)
    return sorted({v for v in values if v and normalize(v) != cur and normalize(v) not in cur})


def repair(reply: str, known: KnownAnswer, truncated: bool = False) -> tuple[str, str | None]:
    """(final text, what was repaired or None). The reply must state the value and no superseded one; a reply
    cut off by the token limit is replaced by the plain statement too (a crisp fact beats a rambling one)."""
    text = normalize(reply)
    stale = [v for v in known.old_values if normalize(v) in text]
    if known.ended:  # the reply must say the fact no longer holds
        ended = _NO_LONGER.search(reply)
        return (reply, None) if ended and not truncated else (known.statement, "did not say it no longer holds")
    if known.value is None:  # keep the reply only if it carries most of what the correction said
        new = content_terms(known.statement) - content_terms(known.question or "")
        said = len(new & content_terms(reply)) / len(new) if new else 1.0
        if said >= 0.6 and not truncated:
            return reply, None
        return known.statement, "did not state the corrected answer"
    if normalize(known.value) in text and not stale and not truncated:
        return reply, None
    if stale:
        reason = f"stated superseded value {stale[0]!r}"
    elif truncated and normalize(known.value) in text:
        reason = "the answer was cut off; stated the known fact instead"
    else:
        reason = f"did not state the known answer {known.value!r}"
    return known.statement, reason

"""Instant learning: turn feedback and taught statements into memories and facts, in one transaction.

A correction of an answer to question Q becomes (1) facts — from the correction's own statement, or its value
attached to the (subject, relation) that Q asks about — superseding the current ones with the same subject and
relation, and (2) a memory that states only the new value (never the negated old one), keyed by Q and the
statement so paraphrases of Q find it. Older memories whose facts were superseded are superseded too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dilm.facts.extract import USER, Triple, clean_statement, correction_value, extract, parse_question, render
from dilm.memory.embed import Embedder
from dilm.memory.retrieve import Retriever
from dilm.store import Store
from dilm.text import content_terms, language, normalize
from dilm.types import GLOBAL_SCOPE, Fact, Memory, new_id, utcnow

_INJECTION = re.compile(
    r"ignore (?:all |any )?(?:the )?(?:previous|prior|above|earlier|your) (?:instructions|prompts?|rules)|"
    r"disregard (?:all |any )?(?:the )?(?:previous|prior|above|your) |forget (?:all |everything|your) .*"
    r"(?:instructions|rules)|you are now |new instructions?:|system prompt|jailbreak|developer mode|"
    r"忽略(?:之前|以上|前面|上面|所有)(?:的)?(?:指令|指示|说明|提示|规则)|无视(?:之前|以上|所有)|你现在是|系统提示|越狱",
    re.I,
)


def looks_like_injection(text: str) -> bool:
    return bool(_INJECTION.search(text))


def looks_binary(text: str) -> bool:
    bad = sum(1 for c in text if (ord(c) < 32 and c not in "\n\r\t") or ord(c) >= 0xFFF0 or 0xD800 <= ord(c) < 0xE000)
    return bad > max(2, len(text) // 20)


@dataclass
class Learned:
    memories: list[Memory] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    superseded: list[Fact] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)


class MemoryWriter:
    def __init__(self, store: Store, embedder: Embedder, retriever: Retriever, consensus_users: int = 3) -> None:
        self.store = store
        self.embedder = embedder
        self.retriever = retriever
        self.consensus_users = consensus_users
        self.extract: Callable[[str], list[Triple]] = extract  # the Assistant may swap in model extraction

    # -- entry points -----------------------------------------------------------------------------
    def correction(self, scope: str, question: str, text: str, source_id: str) -> Learned:
        lang = language(question + text)
        if looks_like_injection(text) or looks_binary(text):
            return self._flagged(scope, text, question, source_id, "correction")
        qparse = parse_question(question)
        # Value-only corrections ("No, it's B", "not A but B", "应该是B") first: read as statements they would
        # yield nonsense triples such as (不; 是; 北京，而是杭州).
        value = correction_value(text)
        triples = [] if value else self.extract(text)
        bare = clean_statement(text).rstrip(".。!！")
        if not triples and value is None and qparse and _is_bare_value(bare):
            value = (bare, None)  # a bare value: "Port Averly."
        if triples and qparse and len(triples) == 1 and _about_question(triples[0], qparse):
            # The question defines what is being corrected: keep its subject and relation, so that
            # "The password is now X" answers "What is the Wi-Fi password at Y?" and A→B→C chains share one key.
            triples = [Triple(qparse[0], qparse[1], triples[0].object)]
        if value is not None and qparse:
            triples = [Triple(qparse[0], qparse[1], value[0])]
        if triples:
            statement = (
                " ".join(render(t.subject, t.relation, t.object, lang) for t in triples)
                if value
                else (clean_statement(text))
            )
        elif value is not None:
            statement = f"{question.strip()} {value[0]}"
        else:
            statement = clean_statement(text) or text.strip()
        answer = triples[0].object if len(triples) == 1 else (value[0] if value else None)
        meta = {"question": question.strip(), "answer": answer, "source": "correction"}
        return self._write(scope, statement, f"{question.strip()}\n{statement}", "correction", source_id, triples, meta)

    def supplement(self, scope: str, question: str, text: str, source_id: str) -> Learned:
        if looks_like_injection(text) or looks_binary(text):
            return self._flagged(scope, text, question, source_id, "supplement")
        statement = clean_statement(text) or text.strip()
        meta = {"question": question.strip(), "source": "supplement"}
        return self._write(
            scope, statement, f"{question.strip()}\n{statement}", "supplement", source_id, self.extract(text), meta
        )

    def statement(
        self,
        scope: str,
        text: str,
        source_id: str | None,
        kind: str = "statement",
        metadata: dict[str, Any] | None = None,
        self_only: bool = False,
    ) -> Learned:
        """A taught sentence ("Remember that …") or, with self_only, what users say about themselves."""
        suspicious = looks_like_injection(text) or looks_binary(text)
        if self_only:  # an ordinary chat turn: learn self-statements by rule, never store anything else
            triples = [] if suspicious else [t for t in extract(text) if t.subject == USER]
            if not triples:
                return Learned()
        elif suspicious:
            return self._flagged(scope, text, "", source_id, kind)
        else:
            triples = self.extract(text)
        statement = clean_statement(text) or text.strip()
        meta = {**(metadata or {}), "source": kind}
        return self._write(scope, statement, statement, kind, source_id, triples, meta)

    # -- the write --------------------------------------------------------------------------------
    def _write(
        self,
        scope: str,
        text: str,
        key: str,
        kind: str,
        source_id: str | None,
        triples: list[Triple],
        meta: dict[str, Any],
    ) -> Learned:
        """Store a statement with its facts; the store supersedes what they replace, in one transaction."""
        now = utcnow()
        meta = {**meta, "subjects": sorted({t.subject for t in triples})}
        if any(t.subject == USER for t in triples):
            meta["self"] = True
        # Embedding is slow: done before the write transaction, unless a duplicate makes it unnecessary.
        vector = self.embedder.embed(key) if self.store.duplicate_memory(scope, text) is None else None
        used: list[np.ndarray] = []

        def embed(k: str) -> bytes:
            used.append(self.embedder.embed(k) if vector is None else vector)  # the duplicate went away
            return used[-1].tobytes()

        memory = Memory(
            id=new_id("mem"), text=text, scope=scope, kind=kind, source_id=source_id, metadata=meta, created_at=now
        )
        facts = [
            Fact(
                id=new_id("fact"),
                scope=scope,
                subject=t.subject,
                relation=t.relation,
                object=t.object,
                valid_at=now,
                recorded_at=now,
                source_kind=kind,
                source_id=source_id,
            )
            for t in triples
        ]
        wrote = self.store.write_learned(memory, key, facts, embed)
        if used:
            self.retriever.index.added(scope, wrote.memory.id, used[-1], wrote.superseded_memories, wrote.rev_before)
        else:
            self.retriever.index.invalidate(scope)
        learned = Learned(
            memories=[wrote.memory] if wrote.created else [], facts=wrote.facts, superseded=wrote.superseded
        )
        learned.effects = _effects(learned, wrote.memory.id, wrote.superseded_memories)
        self._consensus(learned)
        return learned

    def _flagged(self, scope: str, text: str, question: str, source_id: str | None, kind: str) -> Learned:
        """Stored as data only: never extracted, never put in a prompt."""
        memory = Memory(
            id=new_id("mem"),
            text=text,
            scope=scope,
            kind=kind,
            source_id=source_id,
            created_at=utcnow(),
            metadata={"flagged": True, "question": question},
        )
        self.store.write_flagged(memory)
        return Learned(
            memories=[memory],
            effects=[f"flagged {memory.id}: it looks like instructions or binary data; kept as data only, never used"],
        )

    def _consensus(self, learned: Learned) -> None:
        """k distinct users stating the same fact make it global knowledge."""
        if self.consensus_users <= 0:
            return
        for f in learned.facts:
            if f.subject == USER or not f.scope.startswith("user:"):
                continue
            users = self.store.fact_supporters(normalize(f.subject), normalize(f.relation), f.object)
            if len(users) >= self.consensus_users:
                promoted = f.model_copy(
                    update={"id": new_id("fact"), "scope": GLOBAL_SCOPE, "source_kind": "consensus"}
                )
                stored, _ = self.store.add_fact(promoted)
                if stored.id == promoted.id:
                    learned.effects.append(f"promoted to global by consensus of {len(users)} users: {stored.id}")


def _effects(learned: Learned, memory_id: str, superseded_memories: list[str]) -> list[str]:
    """What a write did, one line each, for `FeedbackResult.effects` and the turn's trace."""
    out = [] if learned.memories else [f"already remembered as {memory_id}"]
    out += [f"remembered {m.id}: {m.text}" for m in learned.memories]
    out += [f"fact {f.id}: ({f.subject}; {f.relation}; {f.object})" for f in learned.facts]
    out += [f"superseded fact {f.id}: ({f.subject}; {f.relation}; {f.object})" for f in learned.superseded]
    return out + [f"superseded memory {mid}" for mid in superseded_memories]


def _is_bare_value(text: str) -> bool:
    """A short answer with no sentence structure: "Port Averly", "42 km", "杭州"."""
    if not text or re.search(r"[,，;；]", text):
        return False
    if re.search(r"[\u4e00-\u9fff]", text):
        return len(text) <= 12 and not re.search(r"[是在有的了]", text)
    return len(text.split()) <= 4


def _about_question(t: Triple, qparse: tuple[str, str]) -> bool:
    """Whether a stated triple restates the question's subject, or names its relation without a subject."""
    if _same_subject(t.subject, qparse[0]):
        return True
    named = any(w[:1].isupper() for w in t.subject.split()[1:])  # "Acme Robotics": some other subject
    return not named and bool(content_terms(f"{t.subject} {t.relation}") & content_terms(qparse[1]))


def _same_subject(a: str, b: str) -> bool:
    a, b = normalize(a), normalize(b)
    return a == b or (len(a) >= 2 and len(b) >= 2 and (a in b or b in a))

"""Instant learning: turn feedback, taught statements and facts said in chat into memories and facts; each
memory is written with its facts and what they replace in one transaction.

A correction of an answer to question Q becomes (1) facts — from the correction's own statement, or its value
attached to the (subject, relation) that Q asks about — superseding the current ones with the same subject and
relation, and (2) a memory that states only the new value (never the negated old one), keyed by Q and the
statement so paraphrases of Q find it. Older memories whose facts were superseded are superseded too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dilm.facts.analyze import MULTI_VALUED, OPPOSITE, Analysis, Claim, analyze, person_in
from dilm.facts.extract import USER, Triple, clean_statement, correction_value, parse_question, render, sentences
from dilm.facts.instruction import is_instruction
from dilm.facts.reconcile import changed_by_shape, ended_by_mention, narrowed, says_a_change, says_an_end, swapped
from dilm.memory.embed import Embedder
from dilm.memory.retrieve import Retriever
from dilm.store import Store
from dilm.text import content_terms, is_cjk, language, normalize
from dilm.types import GLOBAL_SCOPE, Fact, FactEnd, Memory, new_id, utcnow


def looks_binary(text: str) -> bool:
    bad = sum(1 for c in text if (ord(c) < 32 and c not in "\n\r\t") or ord(c) >= 0xFFF0 or 0xD800 <= ord(c) < 0xE000)
    return bad > max(2, len(text) // 20)


@dataclass
class Learned:
    memories: list[Memory] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    superseded: list[Fact] = field(default_factory=list)
    ended: list[Fact] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)

    def add(self, other: Learned) -> None:
        self.memories += other.memories
        self.facts += other.facts
        self.superseded += other.superseded
        self.ended += other.ended
        self.effects += other.effects


class MemoryWriter:
    def __init__(self, store: Store, embedder: Embedder, retriever: Retriever, consensus_users: int = 3) -> None:
        self.store = store
        self.embedder = embedder
        self.retriever = retriever
        self.consensus_users = consensus_users
        # (text, scope) -> Analysis: the rules; the Assistant may swap in the model or hybrid reading.
        self.analyze: Callable[[str, str], Analysis] = lambda text, scope: analyze(text)

    # -- entry points -----------------------------------------------------------------------------
    def correction(
        self, scope: str, question: str, text: str, source_id: str, images: list[str] | None = None
    ) -> Learned:
        """A correction of the answer to `question`; `images`: the sha256 of the pictures that question came
        with (a correction of what a picture shows: the memory names them, `metadata["images"]`)."""
        lang = language(question + text)
        if is_instruction(text) or looks_binary(text):
            return self._flagged(scope, text, question, source_id, "correction")
        qparse = parse_question(question)
        # Value-only corrections ("No, it's B", "not A but B", "应该是B") first: read as statements they would
        # yield nonsense triples such as (不; 是; 北京，而是杭州).
        value = correction_value(text)
        # "不对 她叫江雨晴", "No, she's called Maren": a pronoun means the person the question was about
        read = analyze(text, person_in(Triple(*qparse, "")) if qparse else None).claims
        bare = clean_statement(text).rstrip(".。!！")
        if value is None and qparse and _is_bare_value(bare) and not read:
            # A bare value ("Port Averly.", "No, 684 pages."): the question says what it is the value of, so a
            # model reading (which would guess a subject) is not needed.
            value = (bare, None)
        claims = [] if value else list(read or self.analyze(text, scope).claims)
        if len(claims) == 1 and qparse and _about_question(claims[0].triple, qparse):
            # The question defines what is being corrected: keep its subject and relation, so that
            # "The password is now X" answers "What is the Wi-Fi password at Y?" and A→B→C chains share one key.
            claims = [replace(claims[0], triple=Triple(qparse[0], qparse[1], claims[0].triple.object))]
        if value is not None and qparse:
            known = self._answering(scope, qparse)  # "团建是哪天" asks about the fact "公司团建 date 5月26号"
            subject, relation = (known.subject, known.relation) if known else qparse
            # "不是 329" of "329元": the known value stands
            obj = known.object if known is not None and _restates(value[0], known.object) else value[0]
            claims = [Claim(Triple(subject, relation, obj), change=True)]
        triples = [c.triple for c in claims]
        if claims:
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
        meta: dict[str, Any] = {"question": question.strip(), "answer": answer, "source": "correction"}
        if images:
            meta["images"] = images
        key = f"{question.strip()}\n{statement}"
        return self._write(scope, statement, key, "correction", source_id, claims, meta)

    def _answering(self, scope: str, qparse: tuple[str, str]) -> Fact | None:
        """The one current fact of `scope` that the question (subject, relation) asks about, if exactly one."""
        subject, relation = normalize(qparse[0]), normalize(qparse[1])
        found = {
            (f.subject, f.relation): f
            for f in self.store.facts([scope], limit=200, newest_first=True)
            if f.current
            and _same_subject(f.subject, subject)
            and (normalize(f.relation) == relation or (is_cjk(relation) and relation in normalize(f.relation)))
        }
        return next(iter(found.values())) if len(found) == 1 else None

    def supplement(
        self, scope: str, question: str, text: str, source_id: str, images: list[str] | None = None
    ) -> Learned:
        """More to the answer to `question` (`images`: as for `correction`)."""
        if is_instruction(text) or looks_binary(text):
            return self._flagged(scope, text, question, source_id, "supplement")
        statement = clean_statement(text) or text.strip()
        meta: dict[str, Any] = {"question": question.strip(), "source": "supplement"}
        if images:
            meta["images"] = images
        claims = list(self.analyze(text, scope).claims)
        return self._write(scope, statement, f"{question.strip()}\n{statement}", "supplement", source_id, claims, meta)

    def statement(
        self,
        scope: str,
        text: str,
        source_id: str | None,
        kind: str = "statement",
        metadata: dict[str, Any] | None = None,
        chat: bool = False,
        analysis: Analysis | None = None,
    ) -> Learned:
        """A taught message ("Remember that …"), or with `chat` an ordinary chat message: each sentence that
        states something becomes a memory with its facts (a taught message keeps its other sentences as notes
        in the memory before them; a chat message keeps only what states a fact). `analysis`: the message
        already read (`facts.analyze`), else it is read here."""
        if is_instruction(text) or looks_binary(text):
            return self._flagged(scope, text, "", source_id, kind)
        analysis = analysis or self.analyze(text, scope)
        if analysis.instruction:
            return self._flagged(scope, text, "", source_id, kind)
        claims = analysis.claims
        if says_an_end(text) or says_a_change(text):  # a known fact named by its value ends or changes
            known = self.store.facts([scope], limit=200, newest_first=True)
            read = {c.sentence for c in claims if not c.negated}
            found = [*ended_by_mention(text, known, read), *changed_by_shape(text, known, read)]
            claims = (*claims, *(found or swapped(text, known)))
        heads = {c.triple.subject for c in claims if _head_word(c.triple.relation)}
        if heads:  # "X is my favourite now": the subject's current relations it may head
            claims = tuple(narrowed(claims, [f for s in heads for f in self.store.facts([scope], subject=s)]))
        kind = "chat" if chat else kind
        meta = {**(metadata or {}), "source": kind}
        learned = Learned()
        for sentence, group in _by_sentence(text, claims, notes=not chat):
            statement = clean_statement(sentence) or sentence.strip()
            learned.add(self._write(scope, statement, statement, kind, source_id, group, meta))
        return learned

    def bulk(self, scope: str, texts: list[str], metadata: list[dict[str, Any]]) -> list[Memory]:
        """Memories for `texts` (checked), embedded in batches (`Embedder.encode`), written in one transaction;
        no facts. Instruction-like or binary text is flagged: stored as data, skipped by retrieval."""
        now = utcnow()
        memories = []
        for text, meta in zip(texts, metadata, strict=True):
            flag = {"flagged": True} if is_instruction(text) or looks_binary(text) else {}
            meta = {**meta, **flag, "source": "import"}
            memories.append(
                Memory(id=new_id("mem"), text=text, scope=scope, kind="import", metadata=meta, created_at=now)
            )
        vectors = self.embedder.encode(texts) if texts else np.zeros((0, 384), np.float32)
        self.store.add_memories([(m, m.text, v.tobytes()) for m, v in zip(memories, vectors, strict=True)])
        self.retriever.index.invalidate(scope)
        return memories

    # -- the write --------------------------------------------------------------------------------
    def _write(
        self,
        scope: str,
        text: str,
        key: str,
        kind: str,
        source_id: str | None,
        claims: list[Claim],
        meta: dict[str, Any],
    ) -> Learned:
        """Store a statement with its facts; the store supersedes and ends what they replace, in one
        transaction."""
        now = utcnow()
        meta = {**meta, "subjects": sorted({c.triple.subject for c in claims})}
        if any(c.triple.subject == USER for c in claims):
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
        facts, ends = plan(scope, claims, now, kind, source_id)
        wrote = self.store.write_learned(memory, key, facts, embed, ends)
        if used:
            self.retriever.index.added(scope, wrote.memory.id, used[-1], wrote.superseded_memories, wrote.rev_before)
        else:
            self.retriever.index.invalidate(scope)
        learned = Learned(
            memories=[wrote.memory] if wrote.created else [],
            facts=wrote.facts,
            superseded=wrote.superseded,
            ended=wrote.ended,
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
            if f.subject == USER or not f.scope.startswith("user:") or f.source_kind == "chat":
                continue  # only taught or corrected facts count; chat says too much in passing
            users = self.store.fact_supporters(normalize(f.subject), normalize(f.relation), f.object)
            if len(users) >= self.consensus_users:
                promoted = f.model_copy(
                    update={"id": new_id("fact"), "scope": GLOBAL_SCOPE, "source_kind": "consensus"}
                )
                stored, _ = self.store.add_fact(promoted)
                if stored.id == promoted.id:
                    learned.effects.append(f"promoted to global by consensus of {len(users)} users: {stored.id}")


def plan(
    scope: str, claims: list[Claim], now: str, kind: str, source_id: str | None
) -> tuple[list[Fact], list[FactEnd]]:
    """What the claims do to the fact graph (as Mem0's ADD / UPDATE / DELETE, with history kept): facts to add
    (current ones supersede the current value, unless the relation is multi-valued; history ones replace
    nothing) and ends (negations; a value that stopped holding; the opposite preference)."""
    facts: list[Fact] = []
    ends: list[FactEnd] = []

    def fact(t: Triple, c: Claim, valid_at: str | None, invalid_at: str | None) -> Fact:
        return Fact(
            id=new_id("fact"),
            scope=scope,
            subject=t.subject,
            relation=t.relation,
            object=t.object,
            valid_at=valid_at,
            invalid_at=invalid_at,
            recorded_at=now,
            source_kind=kind,
            source_id=source_id,
            multi_valued=t.relation in MULTI_VALUED,
            extractor=c.source,
        )

    for c in claims:
        t = c.triple
        if c.negated:  # "I no longer work at X": the fact ends, nothing replaces it
            loose = t.relation == "works at"  # "I left X" names neither job nor home
            was = fact(t, c, None, c.invalid_at or now) if t.object else None
            ends.append(FactEnd(t.subject, t.relation, t.object or None, c.invalid_at or now, loose, was))
            continue
        if t.relation in OPPOSITE:  # "I hate olives" ends "I love olives"
            ends.append(FactEnd(t.subject, OPPOSITE[t.relation], t.object, c.valid_at or now))
        if c.past:  # "I used to live in X": if X is current it ends (an undated "used to"); X is history
            if c.invalid_at is None:
                ends.append(FactEnd(t.subject, t.relation, t.object, now))
            facts.append(fact(t, c, c.valid_at, c.invalid_at or now))
            continue
        facts.append(fact(t, c, c.valid_at or now, None))
        if c.old:  # "moved from A to B": A is history (already so when it was the current value)
            facts.append(fact(Triple(t.subject, t.relation, c.old), c, None, c.valid_at or now))
    return facts, ends


def _by_sentence(text: str, claims: tuple[Claim, ...], notes: bool) -> list[tuple[str, list[Claim]]]:
    """The message cut into memories: each sentence with claims, followed by the sentences without (notes)
    when `notes`; a message with no claim is one note (when `notes`) or nothing."""
    groups: list[tuple[str, list[Claim]]] = []
    lead = ""  # sentences before the first claim ("Fun fact:") open the first memory
    for sentence in sentences(text) or [text]:
        if not clean_statement(sentence):  # "记住：" alone
            continue
        mine = [c for c in claims if c.sentence == sentence]
        if mine:
            groups.append((f"{lead} {sentence}".strip(), mine))
            lead = ""
        elif groups and notes:
            groups[-1] = (f"{groups[-1][0]} {sentence}", groups[-1][1])
        elif notes:
            lead = f"{lead} {sentence}".strip()
    if lead or not groups:
        groups.append((lead or text, []))
    if len(groups) == 1 and (notes or len(sentences(text)) == 1):  # the message as written, its full stop kept
        groups = [(text, groups[0][1])]
    placed = {id(c) for _, group in groups for c in group}
    stray = [c for c in claims if id(c) not in placed]  # e.g. a model's claims, not tied to a sentence
    if stray:
        groups = [(text, [c for _, group in groups for c in group] + stray)]
    if not notes:
        groups = [g for g in groups if g[1]]
    return groups


def _effects(learned: Learned, memory_id: str, superseded_memories: list[str]) -> list[str]:
    """What a write did, one line each, for `FeedbackResult.effects` and the turn's trace."""
    out = [] if learned.memories else [f"already remembered as {memory_id}"]
    out += [f"remembered {m.id}: {m.text}" for m in learned.memories]
    out += [f"fact {f.id}: ({f.subject}; {f.relation}; {f.object})" for f in learned.facts]
    out += [f"superseded fact {f.id}: ({f.subject}; {f.relation}; {f.object})" for f in learned.superseded]
    out += [f"ended fact {f.id}: ({f.subject}; {f.relation}; {f.object})" for f in learned.ended]
    return out + [f"superseded memory {mid}" for mid in superseded_memories]


def _is_bare_value(text: str) -> bool:
    """A short answer with no sentence structure: "Port Averly", "42 km", "杭州"."""
    if not text or re.search(r"[,，;；]", text):
        return False
    if re.search(r"[\u4e00-\u9fff]", text):
        return len(text) <= 12 and not re.search(r"[是在有的了]", text)
    return len(text.split()) <= 4


def _head_word(relation: str) -> bool:
    """A relation of one English word that may stand for a longer one ("favourite" for "favourite band"); the
    multi-valued ones and the copula never do."""
    r = relation.strip()
    return r.isascii() and " " not in r and r not in MULTI_VALUED and r not in ("is", "name", "age")


def _restates(value: str, current: str) -> bool:
    """A corrected value that is the current one without its unit or its leading part ("329" of "329元", "42"
    of "42 km", "26号" of "5月26号"): the user repeats what is known, in short."""
    v, c = normalize(value), normalize(current)
    unit = c.startswith(v) and bool(re.fullmatch(r"\s*[^\d\s.,]{1,8}", c[len(v) :]))
    lead = len(v) >= 2 and c.endswith(v) and len(c) > len(v) and not c[-len(v) - 1].isdigit()
    return v == c or unit or lead


def _about_question(t: Triple, qparse: tuple[str, str]) -> bool:
    """Whether a stated triple restates the question's subject, or names its relation without a subject."""
    if _same_subject(t.subject, qparse[0]):
        return True
    named = any(w[:1].isupper() for w in t.subject.split()[1:])  # "Acme Robotics": some other subject
    return not named and bool(content_terms(f"{t.subject} {t.relation}") & content_terms(qparse[1]))


def _same_subject(a: str, b: str) -> bool:
    a, b = normalize(a), normalize(b)
    return a == b or (len(a) >= 2 and len(b) >= 2 and (a in b or b in a))

"""Hybrid retrieval: dense (MiniLM) + full text (FTS5 over words and CJK bigrams), fused and gated.

Ranking uses reciprocal rank fusion of the two lists (Cormack et al. 2009), except for Chinese questions, which
are ranked by full text alone: MiniLM maps most Chinese to [UNK], and fusing its noise in ranked answers lower
than full text alone did (benchmarks/recall.py). Gating decides whether a memory is relevant enough to
enter the prompt at all: an unrelated question must get exactly the prompt it got before any memory existed
(locality). A memory passes when the question shares an *anchor* with it — a name, number or rare word
(capitalized mid-sentence, containing a digit, or outside the embedding model's vocabulary) — or a fact
subject, or two content bigrams (Chinese), or is a near-paraphrase by embedding (English; MiniLM maps most
Chinese to [UNK], so its Chinese scores are noise and are not trusted).
"""

from __future__ import annotations

import re

import numpy as np

from dilm.memory.embed import Embedder
from dilm.memory.index import VectorIndex
from dilm.store import MemoryStore
from dilm.text import CJK_RUN, content_terms, is_cjk, language, mentions, normalize, terms
from dilm.types import Hit

RRF_K = 60
_WORD = re.compile(r"[^\W_\u3400-\u9fff]+(?:[-'.][^\W_\u3400-\u9fff]+)*")
_FIRST_PERSON = re.compile(r"\b(?:i|me|my|mine|myself)\b|我", re.I)


def anchors(text: str, vocab: set[str] | None) -> set[str]:
    """Name-like terms: digits, capitalized words not at a sentence start, words the vocabulary lacks."""
    out: set[str] = set()
    for m in _WORD.finditer(text):
        word = m.group()
        low = word.casefold()
        before = text[: m.start()].rstrip()
        sentence_start = not before or before[-1] in '.!?。！？\n:："“'
        unknown = vocab is not None and low not in vocab
        has_digit = any(c.isdigit() for c in word)
        acronym = word.isupper() and not unknown  # CEO, USA: common words, not names
        proper = word[0].isupper() and (not sentence_start or unknown) and not acronym
        if has_digit or proper or (unknown and len(low) >= 3 and low.isascii()):
            out.add(low)
    return out


class Retriever:
    def __init__(self, store: MemoryStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder
        self.index = VectorIndex(store)
        self._vocab: set[str] | None = None

    @property
    def vocab(self) -> set[str]:
        if self._vocab is None:
            self.embedder._load()
            tok = self.embedder.tokenizer
            self._vocab = {w for w in tok.get_vocab() if w.isalpha() and not w.startswith("##")}
        return self._vocab

    def fts_query(self, text: str, max_terms: int = 12) -> str | None:
        """An OR query over the rarest terms of `text` (common terms would make bm25 rank half the index)."""
        uniq = list(dict.fromkeys(terms(text)))[:48]
        if not uniq:
            return None
        counts = self.store.term_counts(uniq)
        uniq = [t for t in uniq if t in counts]  # a term no memory contains cannot match
        if not uniq:
            return None
        uniq = sorted(uniq, key=lambda t: counts[t])[:max_terms]
        return " OR ".join('"' + t.replace('"', '""') + '"' for t in uniq)

    def candidates(
        self, query: str, scopes: list[str], k: int, qvec: np.ndarray | None = None
    ) -> tuple[list[str], dict[str, float], dict[str, int], dict[str, int]]:
        """Candidate ids with dense cosines and the rank of each in the dense and the full-text list."""
        qvec = self.embedder.embed(query) if qvec is None else qvec
        dense = self.index.search(scopes, qvec, k)
        match = self.fts_query(query)
        lexical = self.store.fts_search(scopes, match, k) if match else []
        dense_rank = {mid: i for i, (mid, _) in enumerate(dense)}
        lex_rank = {mid: i for i, (mid, _) in enumerate(lexical)}
        cos = dict(dense)
        ids = list(dict.fromkeys([*dense_rank, *lex_rank]))
        missing = [i for i in ids if i not in cos]
        if missing:  # full-text hits outside the dense top-k still need a cosine for gating
            cos.update(self.index.cosines(scopes, missing, qvec))
        return ids, cos, dense_rank, lex_rank

    def search(self, query: str, scopes: list[str], k: int = 5, gate: bool = True, pool: int = 30) -> list[Hit]:
        """Up to k memories for `query` from `scopes`, best first; with `gate`, only relevant ones."""
        if not any(self.store.scope_rev(s) for s in scopes):  # nothing was ever stored: skip the embedding
            return []
        ids, cos, dense_rank, lex_rank = self.candidates(query, scopes, pool)
        if not ids:
            return []
        mems = {m.id: m for m in self.store.memories(scopes, ids=ids, limit=len(ids))}
        keys = self.store.memory_keys(list(mems))
        hits = []
        q_terms, q_anchors = content_terms(query), anchors(query, self.vocab)
        q_lang = language(query)
        q_norm = normalize(query)
        first_person = bool(_FIRST_PERSON.search(query))
        for mid in ids:
            mem = mems.get(mid)
            if mem is None or mem.metadata.get("flagged"):
                continue
            fused = 0.0
            if mid in dense_rank and q_lang != "zh":
                fused += 1 / (RRF_K + dense_rank[mid])
            if mid in lex_rank:
                fused += 1 / (RRF_K + lex_rank[mid])
            hit = Hit(memory=mem, score=fused, dense=cos.get(mid, 0.0))
            key = keys.get(mid, mem.text)
            m_terms = content_terms(key)
            shared = q_terms & m_terms
            hit.coverage = len(shared) / len(q_terms) if q_terms else 0.0
            if gate and not self._relevant(hit, key, shared, q_anchors, q_lang, q_norm, first_person):
                continue
            hits.append(hit)
        hits.sort(key=lambda h: -h.score)
        for h in hits:
            h.memory.score = round(h.score, 5)
        return hits[:k]

    def _relevant(
        self, hit: Hit, key: str, shared: set[str], q_anchors: set[str], q_lang: str, q_norm: str, first_person: bool
    ) -> bool:
        meta = hit.memory.metadata
        subjects = [s for s in meta.get("subjects", []) if s and s != "user"]
        if any(mentions(s, q_norm) for s in subjects):
            hit.why.append("subject")
            hit.score += 1.0
            return True
        # A question naming something the memory never mentions is about something else
        # ("the main hub of Lufthansa" is not about "the hub of Zephyra Airlines").
        if q_anchors and not q_anchors & content_terms(key):
            return False
        # Anchors shared with the question: the question's own names, or rare words of the memory (a capitalized
        # common word inside a name, like "Airport" in "Osswick Airport", is no anchor).
        rare_key_anchors = {a for a in anchors(key, self.vocab) if a not in self.vocab}
        anchor_hit = shared & (q_anchors | rare_key_anchors)
        if anchor_hit and (hit.dense >= 0.35 or hit.coverage >= 0.5):
            hit.why.append("anchor")
            return True
        cjk_shared = {t for t in shared if is_cjk(t)}
        if len(cjk_shared) >= 2 and hit.coverage >= 0.3:
            hit.why.append("bigrams")
            return True
        if meta.get("self") and first_person and (hit.coverage >= 0.3 or (q_lang == "en" and hit.dense >= 0.5)):
            hit.why.append("self")
            return True
        if q_lang == "en" and not CJK_RUN.search(key) and hit.dense >= 0.8:  # a near-paraphrase
            hit.why.append("paraphrase")
            return True
        return False

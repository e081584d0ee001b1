"""Adapter routing: an adapter answers only questions near those it was trained on; elsewhere the base model
answers, so unrelated behaviour stays exactly as it was (the idea of WISE's and GRACE's routed side memories).

Similarity mixes the dense cosine with the share of the question's content terms found in a trained
question. For Chinese it is the terms' overlap coefficient alone (`overlap`): the embedding model maps most
Chinese characters to [UNK], so any two Chinese questions look alike to it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from dilm.errors import AdapterNotFoundError, DilmError, InvalidInputError
from dilm.learning.registry import Registry
from dilm.memory.embed import Embedder
from dilm.text import content_terms, language
from dilm.types import GLOBAL_SCOPE, AdapterVersion, user_scope

log = logging.getLogger(__name__)

ROUTING_FILE = "dilm-routing.json"


class Router:
    """The trained questions of one adapter version, ready to compare a new question against."""

    def __init__(self, questions: list[str], embedder: Embedder) -> None:
        self.questions = questions
        self.embedder = embedder
        self.terms = [content_terms(q) for q in questions]
        self.vectors = embedder.encode(questions) if questions else np.zeros((0, 1), dtype=np.float32)

    @classmethod
    def load(cls, folder: Path, embedder: Embedder) -> Router:
        path = folder / ROUTING_FILE
        questions = json.loads(path.read_text(encoding="utf-8"))["questions"] if path.is_file() else []
        return cls(questions, embedder)

    @staticmethod
    def save(folder: Path, questions: list[str]) -> None:
        data = {"questions": list(dict.fromkeys(questions))}
        (folder / ROUTING_FILE).write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")

    def similarity(self, question: str, vector: np.ndarray | None = None) -> float:
        """0..1: how close `question` is to the nearest trained question."""
        if not self.questions:
            return 0.0
        q_terms = content_terms(question)
        if language(question) == "zh":
            return max(overlap(q_terms, t) for t in self.terms)
        share = np.array([len(q_terms & t) / len(q_terms) if q_terms else 0.0 for t in self.terms])
        cos = self.vectors @ (self.embedder.embed(question) if vector is None else vector)
        return float(np.max((np.clip(cos, 0, 1) + share) / 2))


def overlap(question: set[str], trained: set[str]) -> float:
    """0..1: the overlap coefficient |q & t| / min(|q|, |t|) when two or more terms are shared, else the share
    of the question's terms. CJK bigrams of a longer paraphrase include many that span word boundaries, which
    diluted the plain share: on the edit dev set's Chinese paraphrases 15 of 26 reached the routing threshold,
    23 of 26 with the overlap coefficient, and none of 50 unrelated Chinese questions did with either."""
    shared = len(question & trained)
    if shared >= 2:
        return shared / min(len(question), len(trained))
    return shared / len(question) if question else 0.0


class AdapterChooser:
    """Which adapter version answers a turn: a pinned one, else the live version of the user's scope (then
    global) when the question is in its territory, else none (the base model).

    Looked up every turn, so a newly published or rolled-back version takes effect on the next turn; each
    version's trained questions are loaded once."""

    def __init__(self, registry: Registry, embedder: Embedder, enabled: bool, threshold: float | None) -> None:
        self.registry, self.embedder = registry, embedder
        self.enabled, self.threshold = enabled, threshold
        self._routers: dict[str, Router] = {}  # adapter version -> its trained questions

    def pin(self, user: str, adapter: str | None) -> str | None:
        """Check a requested version before the turn starts (None: the live one; "base": none).

        Raises AdapterNotFoundError (not the user's nor global) or InvalidInputError (rejected or deleted)."""
        if adapter is None or adapter == "base":
            return adapter
        a = self.registry.get(adapter)
        if a.scope not in (user_scope(user), GLOBAL_SCOPE):
            raise AdapterNotFoundError(f"no adapter version {adapter!r} for {user}: see GET /v1/models")
        if a.status != "accepted" or a.deleted_at:
            raise InvalidInputError(f"adapter {adapter} is {'deleted' if a.deleted_at else a.status}: it cannot answer")
        return a.version

    def choose(
        self, user: str, question: str, pinned: str | None
    ) -> tuple[AdapterVersion | None, dict[str, Any] | None]:
        """(the version to answer with or None, the routing report for the turn's trace or None)."""
        if pinned == "base" or (pinned is None and not self.enabled):
            return None, None
        if pinned is not None:
            a = self.registry.get(pinned)
            self.registry.verify(a)  # a damaged pinned version is an error, not a silent fallback
            return a, {"version": a.version, "used": True, "pinned": True}
        live = self.registry.live([user_scope(user), GLOBAL_SCOPE])
        if live is None:
            return None, None
        router = self._routers.get(live.version)
        if router is None:
            try:
                folder = self.registry.verify(live)
            except DilmError as e:
                log.error("%s; answering with the base model", e)
                return None, {"version": live.version, "error": str(e)}
            router = self._routers[live.version] = Router.load(folder, self.embedder)
        if self.threshold is None or not router.questions:
            return live, {"version": live.version, "used": True}
        similarity = router.similarity(question)
        used = similarity >= self.threshold
        return (live if used else None), {"version": live.version, "similarity": round(similarity, 3), "used": used}

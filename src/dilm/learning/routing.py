"""Adapter routing: an adapter answers only questions near those it was trained on; elsewhere the base model
answers, so unrelated behaviour stays exactly as it was (the idea of WISE's and GRACE's routed side memories).

Similarity mixes the dense cosine with the share of the question's content terms found in a trained
question. For Chinese it is the term share alone: the embedding model maps most Chinese characters to [UNK],
so any two Chinese questions look alike to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dilm.text import content_terms, language

ROUTING_FILE = "dilm-routing.json"


class Router:
    """The trained questions of one adapter version, ready to compare a new question against."""

    def __init__(self, questions: list[str], embedder) -> None:  # type: ignore[no-untyped-def]
        self.questions = questions
        self.embedder = embedder
        self.terms = [content_terms(q) for q in questions]
        self.vectors = embedder.encode(questions) if questions else np.zeros((0, 1), dtype=np.float32)

    @classmethod
    def load(cls, folder: Path, embedder) -> Router:  # type: ignore[no-untyped-def]
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
        share = np.array([len(q_terms & t) / len(q_terms) if q_terms else 0.0 for t in self.terms])
        if language(question) == "zh":
            return float(np.max(share))
        cos = self.vectors @ (self.embedder.encode_one(question) if vector is None else vector)
        return float(np.max((np.clip(cos, 0, 1) + share) / 2))

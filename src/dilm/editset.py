"""The knowledge-editing dev set as data: edit items (a question, paraphrases, a chain of corrections and the
answers they set) and locality items (unrelated questions), read from JSONL (bundled under dilm/eval/data),
and the scoring helpers that need no assistant (an answer contains the expected one; median and p95).

Shared by the harnesses in `dilm.eval` and the training gate's edit probe (`assistant.edit_probe`).
"""

from __future__ import annotations

import statistics
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from dilm.errors import InvalidInputError
from dilm.text import normalize


class EditItem(BaseModel):
    id: str
    lang: str
    question: str
    paraphrases: list[str] = Field(min_length=1)
    corrections: list[str] = Field(min_length=1)
    answers: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _lengths(self) -> EditItem:
        if len(self.corrections) != len(self.answers):
            raise ValueError("corrections and answers must have the same length")
        return self


class LocalityItem(BaseModel):
    id: str
    lang: str
    question: str

    @field_validator("question")
    @classmethod
    def _nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("empty question")
        return v


def read_jsonl(path: Path | None, default: str, model: type[BaseModel]) -> list[Any]:
    """Items of `model`, one per line of `path` (or of the bundled file `default` under dilm/eval/data)."""
    text = (
        path.read_text(encoding="utf-8")
        if path
        else resources.files("dilm.eval").joinpath("data", default).read_text(encoding="utf-8")
    )
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(model.model_validate_json(line))
        except ValueError as e:
            raise InvalidInputError(f"{path or default} line {n}: {str(e).splitlines()[0]}") from None
    return items


def load(data: Path | None = None, locality: Path | None = None) -> tuple[list[EditItem], list[LocalityItem]]:
    return read_jsonl(data, "edits_dev.jsonl", EditItem), read_jsonl(locality, "locality_dev.jsonl", LocalityItem)


def contains(reply: str, answer: str) -> bool:
    return normalize(answer) in normalize(reply)


def pct(xs: list[float]) -> tuple[float, float]:
    """Median and 95th percentile (0, 0 for none)."""
    if not xs:
        return 0.0, 0.0
    s = sorted(xs)
    return statistics.median(s), s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]

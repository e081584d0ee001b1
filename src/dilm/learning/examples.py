"""Training examples derived from the interaction log — read on demand, never a second copy of the truth.

Formats follow TRL's conversational datasets, so `dilm export` output trains outside dilm unchanged:
- SFT: {"prompt": [user turn], "completion": [corrected assistant turn]}         (corrections)
- KTO: {"prompt": [...], "completion": [...], "label": bool}                      (thumbs; corrected = bad)
- DPO: {"prompt": [...], "chosen": [...], "rejected": [...]}                       (correction or preferred vs original)
- reward: {"prompt": [...], "chosen": [...], "rejected": [...]}  (DPO pairs + thumbs-up vs thumbs-down answers
  to the same question): what TRL's RewardTrainer and dilm's reward model read
- pg: {"prompt": [...], "completion": [...], "reward": ±1.0}   (rated answers: policy-gradient samples)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from dilm.facts.extract import clean_statement
from dilm.store.base import LogStore
from dilm.types import LoggedFeedback  # re-exported: it was defined here

Format = Literal["sft", "kto", "dpo", "reward", "pg"]
FORMATS: tuple[str, ...] = ("sft", "kto", "dpo", "reward", "pg")


def logged_feedback(
    store: LogStore, user: str | None = None, after: int = 0, upto: int | None = None
) -> Iterator[LoggedFeedback]:
    """Feedback (of one user, or all) with the question and answer it was given on, oldest first;
    `after`/`upto` bound the feedback row numbers (a training window)."""
    yield from store.logged_feedback(user, after, upto)


def _turn(role: str, text: str) -> list[dict[str, str]]:
    return [{"role": role, "content": text}]


def corrected_answer(fb: LoggedFeedback) -> str:
    """What the answer should have been: the statement learned from the correction, else its cleaned text."""
    return fb.learned or clean_statement(fb.text or "") or (fb.text or "")


def examples(
    store: LogStore, fmt: Format, user: str | None = None, after: int = 0, upto: int | None = None
) -> list[dict[str, Any]]:
    """Examples of one format from the feedback of `user` (None: everyone) inside the window."""
    logged = list(logged_feedback(store, user, after, upto))
    if fmt == "reward":
        return examples_from(logged, "dpo") + _thumb_pairs(logged)
    return examples_from(logged, fmt)


def examples_from(logged: list[LoggedFeedback], fmt: Format) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for fb in logged:
        prompt = _turn("user", fb.question)
        if fb.kind == "correction" and fb.text:
            better = corrected_answer(fb)
            if fmt == "sft":
                out.append({"prompt": prompt, "completion": _turn("assistant", better)})
            elif fmt == "kto":
                out.append({"prompt": prompt, "completion": _turn("assistant", fb.answer), "label": False})
                out.append({"prompt": prompt, "completion": _turn("assistant", better), "label": True})
            elif better != fb.answer:
                out.append(
                    {"prompt": prompt, "chosen": _turn("assistant", better), "rejected": _turn("assistant", fb.answer)}
                )
        elif fb.kind == "rating" and fmt == "kto":
            out.append({"prompt": prompt, "completion": _turn("assistant", fb.answer), "label": fb.rating == 1})
        elif fb.kind == "rating" and fmt == "pg":
            out.append({"prompt": prompt, "completion": _turn("assistant", fb.answer), "reward": float(fb.rating or 0)})
        elif fb.kind == "preference" and fb.text and fb.text != fb.answer:
            if fmt == "dpo":
                out.append(
                    {"prompt": prompt, "chosen": _turn("assistant", fb.text), "rejected": _turn("assistant", fb.answer)}
                )
            elif fmt == "sft":
                out.append({"prompt": prompt, "completion": _turn("assistant", fb.text)})
    return out


def _thumb_pairs(logged: list[LoggedFeedback]) -> list[dict[str, Any]]:
    """A thumbs-up answer and a thumbs-down answer to the same question make a preference pair."""
    by_question: dict[str, dict[int, list[str]]] = {}
    for fb in logged:
        if fb.kind == "rating" and fb.rating in (-1, 1):
            by_question.setdefault(fb.question, {}).setdefault(fb.rating, []).append(fb.answer)
    out = []
    for question, rated in by_question.items():
        for good in dict.fromkeys(rated.get(1, [])):
            for bad in dict.fromkeys(rated.get(-1, [])):
                if good != bad:
                    out.append(
                        {
                            "prompt": _turn("user", question),
                            "chosen": _turn("assistant", good),
                            "rejected": _turn("assistant", bad),
                        }
                    )
    return out


def export(store: LogStore, fmt: Format, path: Path, user: str | None = None) -> int:
    """Write the examples as JSONL (written aside, then renamed: never a half-written file); returns the count."""
    rows = examples(store, fmt, user)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return len(rows)

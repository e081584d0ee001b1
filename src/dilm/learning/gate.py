"""The regression gate: a new adapter version goes live only if
(a) it learned its new examples (lower loss on corrections, better preference accuracy),
(b) it leaves unrelated questions alone (the locality probe: questions + the base model's answers), and
(c) the instant-learning path still works with it (a sample of `dilm eval edits`, measured by an `EditScore`
    the caller hands in: the gate itself knows nothing of assistants or benchmarks).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from dilm.config import Training
from dilm.learning.routing import Router
from dilm.learning.score import Chat, greedy_answers, mean, score
from dilm.models.base import Backend
from dilm.models.local import LocalBackend

PROBE_TOKENS = 32
MIN_RAW_LOCALITY = 0.5  # even unrouted, an adapter that changes half of every unrelated answer is broken

EditScore = Callable[[Backend], float]
"""The instant-learning probe: given a backend that answers with the model being trained, the share of edit
items answered right (their corrections given as feedback first). 1.0 when there are no items."""


def bundled_questions(name: str) -> list[str]:
    text = resources.files("dilm.learning").joinpath("data", name).read_text(encoding="utf-8")
    return [json.loads(line)["question"] for line in text.splitlines() if line.strip()]


def cached(path: Path, items: dict[str, Any], compute: Callable[[list[Any]], list[Any]]) -> dict[str, Any]:
    """A JSON map kept at `path` (shared by data dirs and processes): the values of `items`' keys, the missing
    ones computed in one call and stored (written aside, then renamed: never half-written)."""
    known: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    missing = [k for k in items if k not in known]
    if missing:
        known.update(zip(missing, compute([items[k] for k in missing]), strict=True))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(path)
    return known


def base_answers(model: Any, tokenizer: Any, questions: list[str], system: str, cache: Path) -> list[str]:
    """The base model's greedy answers (adapter off), generated once per model and kept in `cache`."""
    key = lambda q: hashlib.sha256(json.dumps([system, q, PROBE_TOKENS]).encode()).hexdigest()[:24]  # noqa: E731

    def generate(missing: list[str]) -> list[str]:
        disable = getattr(model, "disable_adapter", None)
        with disable() if disable is not None else contextlib.nullcontext():
            return greedy_answers(model, tokenizer, [prompt(system, q) for q in missing], PROBE_TOKENS)

    known = cached(cache, {key(q): q for q in questions}, generate)
    return [known[key(q)] for q in questions]


def prompt(system: str, question: str) -> Chat:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def measure(
    model: Any,
    tokenizer: Any,
    new: dict[str, list[dict[str, Any]]],
    probe: list[tuple[Chat, str]],
    router: Router | None,
    threshold: float | None,
) -> dict[str, Any]:
    """Figures of the model as it is now, on the new examples and the probe."""
    out: dict[str, Any] = {}
    if new.get("sft"):
        s = score(model, tokenizer, [(r["prompt"], r["completion"][0]["content"]) for r in new["sft"]])
        out["sft_loss"] = mean([x.nll for x in s])
        out["sft_token_accuracy"] = mean([x.agreement for x in s])
    pairs = new.get("dpo", [])
    if pairs:
        chosen = score(model, tokenizer, [(r["prompt"], r["chosen"][0]["content"]) for r in pairs])
        rejected = score(model, tokenizer, [(r["prompt"], r["rejected"][0]["content"]) for r in pairs])
        out["preference_accuracy"] = mean([float(c.nll < r.nll) for c, r in zip(chosen, rejected, strict=True)])
    rated = new.get("kto", []) or new.get("pg", [])
    if rated:
        s = score(model, tokenizer, [(r["prompt"], r["completion"][0]["content"]) for r in rated])
        sign = [1.0 if r.get("label", r.get("reward", 0) > 0) else -1.0 for r in rated]
        out["rating_margin"] = mean([-x.nll * g for x, g in zip(s, sign, strict=True)])  # up: good likelier, bad less
    if probe:
        s = score(model, tokenizer, probe, ends=False)
        raw = [x.agreement for x in s]
        out["locality_raw"] = mean(raw)
        if router is not None and threshold is not None and router.questions:
            routed = [router.similarity(p[-1]["content"]) >= threshold for p, _ in probe]
            out["probe_routed"] = sum(routed)
            out["locality"] = mean([a if r else 1.0 for a, r in zip(raw, routed, strict=True)])
        else:
            out["locality"] = out["locality_raw"]
    return out


def decide(before: dict[str, Any], after: dict[str, Any], cfg: Training) -> list[str]:
    """Reasons to reject (empty: accept)."""
    reasons = []
    if "sft_loss" in after and not after["sft_loss"] < before["sft_loss"]:
        reasons.append(f"loss on the new corrections did not fall ({before['sft_loss']:.3f} → {after['sft_loss']:.3f})")
    if "preference_accuracy" in after and after["preference_accuracy"] < before["preference_accuracy"]:
        reasons.append(
            f"preference accuracy fell ({before['preference_accuracy']:.2f} → {after['preference_accuracy']:.2f})"
        )
    if "rating_margin" in after and after["rating_margin"] < before["rating_margin"]:
        reasons.append("rated answers moved the wrong way")
    if after.get("locality") is not None and after["locality"] < cfg.min_locality:
        reasons.append(f"locality probe {after['locality']:.3f} < {cfg.min_locality}")
    if after.get("locality_raw") is not None and after["locality_raw"] < MIN_RAW_LOCALITY:
        reasons.append(f"unrouted locality {after['locality_raw']:.3f} < {MIN_RAW_LOCALITY}: the model is damaged")
    if "edits" in after and "edits" in before and after["edits"] < before["edits"] - cfg.max_edits_drop:
        reasons.append(f"instant-learning eval fell ({before['edits']:.2f} → {after['edits']:.2f})")
    return reasons


def edits_score(model: Any, tokenizer: Any, name: str, folder: Path, edit_score: EditScore) -> float:
    """`edit_score` on `model` as it is now (e.g. with the adapter being trained), in eval mode; the model's
    training mode is restored after."""
    backend = LocalBackend.from_model(model, tokenizer, name, folder)
    was_training = model.training
    model.eval()
    try:
        return edit_score(backend)
    finally:
        model.train(was_training)

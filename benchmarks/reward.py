"""Which reward model? Held-out pairwise accuracy and training time, side by side in one run:

- dilm's choice: TRL's RewardTrainer with a score head and LoRA r=16 (`dilm.learning.reward`), on each
  catalogue model named by `--bases` (default: every installed one), so the base can be chosen by accuracy
  and cost;
- the alternative: a linear head over frozen MiniLM (a joint "question [SEP] answer" encoding, the cosine of
  their own embeddings, five hand features), Bradley-Terry loss, L2 0.03;
- baselines: the five hand features alone, and "the shorter answer wins".

The pairs come from a real log built like `dilm eval guard` builds its own: the edit dev set's corrections on
the assistant's real answers, and quiz answers (greedy and sampled) rated up when right, corrected or rated
down when wrong. Held-out pairs are those whose question hashes into the held-out quarter.

    python benchmarks/reward.py [--model NAME] [--bases smollm2-135m,qwen2.5-coder-0.5b]

`--model` answers the questions that make the log (default: the configured model).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from dilm import Assistant
from dilm.config import Settings
from dilm.eval import guard as guard_eval
from dilm.learning import reward
from dilm.learning.examples import examples
from dilm.memory.embed import shared_embedder
from dilm.models.catalogue import CATALOGUE, installed_path, resolve_model_dir
from dilm.text import content_terms, language, terms

RESULTS = Path(__file__).parent / "results"


def build_pairs(data: Path, model: str | None) -> list[reward.Pair]:
    items, _, quiz = guard_eval.load()
    extra = {"model": model} if model else {}
    with Assistant.open(data, decoding={"max_new_tokens": 32}, policy={"mode": "passive"}, **extra) as bot:
        guard_eval._build_log(bot, items, quiz, lambda *_: None)
        return reward.pairs_from(examples(bot.store, "reward"))


def features(question: str, answer: str) -> list[float]:
    """Same language as the question, log length, share of the question's terms, repetition, cut-off ending."""
    toks = terms(answer)
    q = content_terms(question)
    return [
        float(language(question) == language(answer)),
        math.log1p(len(answer)) / 8,
        len(q & set(toks)) / len(q) if q else 0.0,
        1 - len(set(toks)) / len(toks) if toks else 1.0,
        float(not re.search(r"[.!?。！？)\]\"'”]\s*$", answer.strip())),
    ]


def minilm_rows(pairs: list[reward.Pair], pick: str, with_minilm: bool) -> np.ndarray:
    emb = shared_embedder()
    qs, ans = [p.question for p in pairs], [getattr(p, pick) for p in pairs]
    parts = [np.array([features(q, a) for q, a in zip(qs, ans, strict=True)], dtype=np.float32)]
    if with_minilm:
        parts.append(emb.encode([f"{q} [SEP] {a}" for q, a in zip(qs, ans, strict=True)]))
        parts.append((emb.encode(qs) * emb.encode(ans)).sum(1, keepdims=True))
    return np.concatenate(parts, axis=1)


def linear_head(train: list[reward.Pair], test: list[reward.Pair], with_minilm: bool) -> float:
    """A linear head, Bradley-Terry loss; held-out accuracy."""
    import torch

    diff = torch.from_numpy(minilm_rows(train, "chosen", with_minilm) - minilm_rows(train, "rejected", with_minilm))
    w = torch.zeros(diff.shape[1], requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-(diff @ w)).mean() + 0.03 * w.square().sum()
        loss.backward()
        opt.step()
    head = w.detach().numpy()
    c, r = minilm_rows(test, "chosen", with_minilm) @ head, minilm_rows(test, "rejected", with_minilm) @ head
    return float(np.mean(c > r))


def reward_rows(bases: list[str], train: list[reward.Pair], test: list[reward.Pair], tmp: Path) -> list[tuple]:
    """One row per reward-model base: held-out accuracy, training seconds, ms to score one answer, peak RSS."""
    rows = []
    cache = Settings.load(None).resolved_cache_dir()
    for name in bases:
        _, base = resolve_model_dir(name, cache)
        rss0 = peak_rss_mib()
        t0 = time.perf_counter()
        model, _ = reward.fit(base, train, tmp / f"rm-{name}")
        secs = time.perf_counter() - t0
        t0 = time.perf_counter()
        acc = model.accuracy(test)
        per_answer = (time.perf_counter() - t0) / len(test) / 2 * 1000
        rows.append((f"TRL RewardTrainer, {name} + LoRA", acc, secs, per_answer, max(peak_rss_mib(), rss0)))
        del model
    return rows


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="the model that answers while the log is built")
    parser.add_argument("--bases", help="comma-separated catalogue models to train reward models on")
    args = parser.parse_args()
    bases = args.bases.split(",") if args.bases else installed_models()
    with tempfile.TemporaryDirectory(prefix="dilm-bench-reward-") as tmp:
        t0 = time.perf_counter()
        pairs = build_pairs(Path(tmp) / "data", args.model)
        log_s = time.perf_counter() - t0
        train, test = reward.split(pairs)
        rows = reward_rows(bases, train, test, Path(tmp))
        t0 = time.perf_counter()
        acc = linear_head(train, test, with_minilm=True)
        rows.append(
            ("MiniLM joint encoding + cosine + features, linear head", acc, time.perf_counter() - t0, None, None)
        )
        rows.append(("hand features only, linear head", linear_head(train, test, with_minilm=False), None, None, None))
        rows.append(
            ("shorter answer wins", float(np.mean([len(p.chosen) < len(p.rejected) for p in test])), None, None, None)
        )
    table = Table(
        title=f"reward models: {len(train)} training pairs, {len(test)} held-out pairs (log built in {log_s:.0f} s)"
    )
    for col in ("model", "held-out accuracy", "training time", "score per answer", "peak RSS"):
        table.add_column(col, justify="right")
    for name, acc, secs, ms, rss in rows:
        table.add_row(
            name,
            f"{100 * acc:.1f} %",
            f"{secs:.1f} s" if secs else "—",
            f"{ms:.0f} ms" if ms else "—",
            f"{rss:.0f} MiB" if rss else "—",
        )
    Console().print(table)
    RESULTS.mkdir(exist_ok=True)
    keys = ("model", "accuracy", "seconds", "score_ms", "peak_rss_mib")
    (RESULTS / "reward.json").write_text(
        json.dumps(
            {"train_pairs": len(train), "held_out": len(test), "rows": [dict(zip(keys, r, strict=True)) for r in rows]},
            indent=2,
        )
    )


def installed_models() -> list[str]:
    cache = Settings.load(None).resolved_cache_dir()
    names = dict.fromkeys(entry.name for entry in CATALOGUE.values())  # aliases map to the same entry
    return [name for name in names if installed_path(CATALOGUE[name], cache) is not None]


if __name__ == "__main__":
    main()

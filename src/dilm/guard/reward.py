"""The reward model (the discriminator): scores (question, answer) pairs; higher is what users prefer.

A cross-encoder head on MiniLM: the question and the answer are encoded together ("q [SEP] a", one pass of
the bundled all-MiniLM-L6-v2, mean-pooled) and joined with the cosine of their separate embeddings and a few
language-independent features (answer in the question's language, length, share of the question's terms it
takes up, repetition, a cut-off ending); a linear head on top is trained with the Bradley-Terry pairwise loss
(L2 0.03: chosen by mean held-out accuracy over six question splits of the dev log) on the log's preference
pairs (corrections and preferred answers vs the original, thumbs-up vs thumbs-down answers to one question).
MiniLM stays frozen, so training takes seconds on a CPU and a version is a few kilobytes.
`benchmarks/reward.py` compares it with TRL's RewardTrainer on the embedded model over the same held-out
pairs (the reason for this choice).

Adversarial refresh: answers the reward model ranked first and the user then rejected (corrected or rated
down) are hard negatives, weighted up in the next version's training.

Versions live in the adapter registry under the scope `reward` (`dilm adapters list --scope reward`): the
same checksummed folders, gate report, activation and rollback as LoRA adapters.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dilm.memory.embed import Embedder
from dilm.text import content_terms, language, terms

REWARD_SCOPE = "reward"
HEAD_FILE = "reward_head.json"
N_FEATURES = 5


@dataclass(frozen=True)
class Pair:
    question: str
    chosen: str
    rejected: str
    weight: float = 1.0


def features(question: str, answer: str) -> list[float]:
    """Language-independent features of an answer: same language as the question, log length, share of the
    question's terms it repeats, repetition (looping text), and whether it ends mid-sentence."""
    toks = terms(answer)
    q = content_terms(question)
    return [
        float(language(question) == language(answer)),
        math.log1p(len(answer)) / 8,
        len(q & set(toks)) / len(q) if q else 0.0,
        1 - len(set(toks)) / len(toks) if toks else 1.0,
        float(not re.search(r"[.!?。！？)\]\"'”]\s*$", answer.strip())),
    ]


def encode(embedder: Embedder, question: str | list[str], answers: list[str]) -> np.ndarray:
    """Rows of [joint MiniLM encoding of question and answer, features, cosine of their own embeddings]."""
    qs = [question] * len(answers) if isinstance(question, str) else question
    joint = embedder.encode([f"{q} [SEP] {a}" for q, a in zip(qs, answers, strict=True)])
    unique = list(dict.fromkeys([*qs, *answers]))
    alone = dict(zip(unique, embedder.encode(unique), strict=True))
    cos = np.array([[float(alone[q] @ alone[a])] for q, a in zip(qs, answers, strict=True)], dtype=np.float32)
    extra = np.array([features(q, a) for q, a in zip(qs, answers, strict=True)], dtype=np.float32)
    return np.concatenate([joint, extra.reshape(len(answers), N_FEATURES), cos], axis=1)


class RewardModel:
    """A trained head over MiniLM; `score` rates answers to a question (higher: better)."""

    def __init__(self, weights: np.ndarray, bias: float, info: dict[str, Any] | None = None) -> None:
        self.weights = weights.astype(np.float32)
        self.bias = float(bias)
        self.info = info or {}

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        return rows @ self.weights + self.bias

    def score(self, embedder: Embedder, question: str, answers: list[str]) -> list[float]:
        if not answers:
            return []
        return [float(x) for x in self.score_rows(encode(embedder, question, answers))]

    def accuracy(self, embedder: Embedder, pairs: list[Pair]) -> float:
        """Share of pairs where the chosen answer scores above the rejected one."""
        if not pairs:
            return float("nan")
        c, r = _encode_pairs(embedder, pairs)
        return float(np.mean(self.score_rows(c) > self.score_rows(r)))

    def save(self, folder: Path) -> None:
        data = {"weights": self.weights.tolist(), "bias": self.bias, "info": self.info}
        (folder / HEAD_FILE).write_text(json.dumps(data))

    @classmethod
    def load(cls, folder: Path) -> RewardModel:
        data = json.loads((folder / HEAD_FILE).read_text())
        return cls(np.array(data["weights"], dtype=np.float32), data["bias"], data.get("info"))


def _encode_pairs(embedder: Embedder, pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
    qs = [p.question for p in pairs]
    return encode(embedder, qs, [p.chosen for p in pairs]), encode(embedder, qs, [p.rejected for p in pairs])


def fit(
    embedder: Embedder, pairs: list[Pair], epochs: int = 300, learning_rate: float = 0.05, l2: float = 0.03
) -> RewardModel:
    """Train the head with the pairwise (Bradley-Terry) loss: -log sigmoid(score(chosen) - score(rejected))."""
    import torch

    c, r = _encode_pairs(embedder, pairs)
    diff = torch.from_numpy(c - r)
    w = torch.tensor([p.weight for p in pairs], dtype=torch.float32)
    torch.manual_seed(0)
    head = torch.zeros(diff.shape[1], requires_grad=True)
    opt = torch.optim.Adam([head], lr=learning_rate)
    for _ in range(epochs):
        opt.zero_grad()
        loss = (torch.nn.functional.softplus(-(diff @ head)) * w).sum() / w.sum() + l2 * head.square().sum()
        loss.backward()
        opt.step()
    return RewardModel(head.detach().numpy(), 0.0, {"pairs": len(pairs), "final_loss": loss.item()})


def split(pairs: list[Pair], held_out: float = 0.25) -> tuple[list[Pair], list[Pair]]:
    """A stable split by question, so no question is on both sides."""
    train, test = [], []
    for p in pairs:
        h = int(hashlib.sha256(p.question.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (test if h < held_out else train).append(p)
    return train, test


def pairs_from(examples: list[dict[str, Any]]) -> list[Pair]:
    """Pairs from TRL-style reward examples ({prompt, chosen, rejected} conversations)."""
    out = []
    for e in examples:
        q, a, b = (e["prompt"][-1]["content"], e["chosen"][-1]["content"], e["rejected"][-1]["content"])
        if a.strip() and b.strip() and a != b:
            out.append(Pair(q, a, b))
    return out


def hard_negatives(store) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(question, answer) of answers the reward model chose that users then corrected or rated down."""
    rows = store._all(
        """SELECT q.content AS question, a.content AS answer FROM messages a JOIN messages q ON q.id = a.parent_id
           WHERE json_extract(a.meta, '$.guard.reward.version') IS NOT NULL AND EXISTS (
             SELECT 1 FROM feedback f WHERE f.message_id = a.id
             AND (f.kind = 'correction' OR (f.kind = 'rating' AND f.rating = -1)))"""
    )
    return {(r["question"], r["answer"]) for r in rows}


def train(data_dir: Path, settings, store, embedder: Embedder, force: bool = False):  # type: ignore[no-untyped-def]
    """Train a reward-model version on every preference pair in the log; the gate makes it live when its
    held-out accuracy reaches `guard.min_reward_accuracy` and does not fall below the live version's."""
    from dilm.learning import examples
    from dilm.learning.registry import Registry
    from dilm.learning.train import TrainResult
    from dilm.types import AdapterVersion, new_id, utcnow

    upto = store.feedback_high_water()
    live = store.live_adapter([REWARD_SCOPE])
    if live is not None and live.data_to >= upto and not force:
        return TrainResult("nothing", f"nothing to train for {REWARD_SCOPE}: no feedback since {live.version}")
    hard = hard_negatives(store)
    pairs = [
        Pair(p.question, p.chosen, p.rejected, 2.0 if (p.question, p.rejected) in hard else 1.0)
        for p in pairs_from(examples.examples(store, "reward"))
    ]
    train_pairs, test_pairs = split(pairs)
    minimum = settings.train.min_examples
    if len(train_pairs) < minimum or not test_pairs:
        return TrainResult(
            "nothing",
            f"nothing to train for {REWARD_SCOPE}: {len(pairs)} preference pair(s) in the log; "
            f"it needs {minimum} for training and at least one held out",
        )
    model = fit(embedder, train_pairs)
    accuracy = model.accuracy(embedder, test_pairs)
    registry = Registry(data_dir, store)
    previous = RewardModel.load(registry.verify(live)).accuracy(embedder, test_pairs) if live is not None else None
    need = settings.guard.min_reward_accuracy
    reasons = []
    if accuracy < need:
        reasons.append(f"held-out accuracy {accuracy:.3f} < {need}")
    if previous is not None and accuracy < previous:
        reasons.append(f"held-out accuracy {accuracy:.3f} < live {live.version}'s {previous:.3f}")
    report = {
        "pairs": len(train_pairs),
        "held_out": len(test_pairs),
        "hard_negatives": sum(p.weight > 1 for p in train_pairs),
        "accuracy": round(accuracy, 4),
        "train_accuracy": round(model.accuracy(embedder, train_pairs), 4),
        "live_accuracy": None if previous is None else round(previous, 4),
        "gate": {"accepted": not reasons, "reasons": reasons},
    }
    model.info.update(report)
    with registry.job(REWARD_SCOPE, new_id("job")) as staging:
        model.save(staging)
        version = AdapterVersion(
            version="",
            scope=REWARD_SCOPE,
            status="rejected" if reasons else "accepted",
            parent=live.version if live else None,
            base_model="all-MiniLM-L6-v2",
            path="",
            checksum="",
            data_from=0,
            data_to=upto,
            info=report,
            created_at=utcnow(),
        )
        published = registry.publish(staging, version, make_live=not reasons)
    verdict = "live" if not reasons else "rejected: " + "; ".join(reasons)
    return TrainResult(
        published.status,
        f"reward model {published.version}: held-out pairwise accuracy {accuracy:.1%} "
        f"on {len(test_pairs)} pairs ({len(train_pairs)} trained); {verdict}",
        published,
        report,
    )

"""The reward model at inference time: scores (question, answer) pairs (higher is what users prefer) and puts
an answer's candidates best-first.

A version is a plain PEFT folder (task SEQ_CLS, the score head saved with the LoRA) in the adapter registry
under the scope `reward`; the live one reranks. Training it is `dilm.learning.reward`'s business.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dilm.errors import DilmError
from dilm.models.catalogue import resolve_model_dir
from dilm.models.hf import quiet
from dilm.types import AdapterVersion, Candidate

log = logging.getLogger(__name__)
REWARD_SCOPE = "reward"
MAX_LENGTH = 256


@dataclass(frozen=True)
class Pair:
    """A preference: `chosen` is a better answer to `question` than `rejected` (trained `weight` times)."""

    question: str
    chosen: str
    rejected: str
    weight: float = 1.0


def conversation(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


class RewardModel:
    """A reward-model version loaded for scoring; `score` rates answers to a question (higher: better)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._lock = threading.Lock()

    @classmethod
    def load(cls, base_folder: Path, adapter_folder: Path | None = None) -> RewardModel:
        """The base model with a fresh score head, and the version's LoRA and head when given."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # heavy libraries imported on use: opening an assistant must not pay for them
        import torch
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        quiet()
        tokenizer = AutoTokenizer.from_pretrained(str(base_folder))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForSequenceClassification.from_pretrained(str(base_folder), num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = tokenizer.pad_token_id
        if adapter_folder is not None:  # merged: scoring only, and a plain model runs faster than LoRA layers
            model = PeftModel.from_pretrained(model, str(adapter_folder)).merge_and_unload()
        return cls(model, tokenizer)

    def score(self, question: str, answers: list[str]) -> list[float]:
        """One batch; the score is read at the last non-padding token, as in training."""
        import torch  # heavy: imported on use

        if not answers:
            return []
        texts = [self.tokenizer.apply_chat_template(conversation(question, a), tokenize=False) for a in answers]
        with self._lock, torch.inference_mode():
            batch = self.tokenizer(
                texts, return_tensors="pt", padding=True, truncation=True, max_length=MAX_LENGTH, padding_side="right"
            )
            return [float(x) for x in self.model(**batch).logits[:, 0]]

    def accuracy(self, pairs: list[Pair]) -> float:
        """Share of pairs where the chosen answer scores above the rejected one."""
        if not pairs:
            return float("nan")
        right = [self.score(p.question, [p.chosen, p.rejected]) for p in pairs]
        return sum(c > r for c, r in right) / len(pairs)


class Versions(Protocol):
    """What the reranker needs of the adapter registry (`dilm.learning.registry.Registry`)."""

    def live(self, scopes: list[str]) -> AdapterVersion | None: ...

    def verify(self, a: AdapterVersion) -> Path: ...


class Reranker:
    """Puts candidates best-first by the live reward model's score; each version is loaded once and kept in
    `models`. Looked up on every call, so a newly published or rolled-back version takes effect at once."""

    def __init__(self, registry: Versions, cache_dir: Path) -> None:
        self.registry = registry
        self.cache_dir = cache_dir  # where base models are found (`Settings.resolved_cache_dir()`)
        self.models: dict[str, RewardModel] = {}  # reward-model version -> its loaded model

    def order(self, question: str, candidates: list[Candidate]) -> tuple[list[Candidate], dict[str, Any] | None]:
        """(the candidates best-first, the report {version, scores, chosen}); unchanged and None when there is
        no live reward model or it cannot be loaded (logged)."""
        live = self.registry.live([REWARD_SCOPE])
        if live is None:
            return candidates, None
        model = self.models.get(live.version)
        if model is None:
            try:
                _, base = resolve_model_dir(live.base_model, self.cache_dir)
                model = self.models[live.version] = RewardModel.load(base, self.registry.verify(live))
            except (DilmError, OSError, ValueError) as e:
                log.error("reward model %s unusable (%s); candidates keep their order", live.version, e)
                return candidates, None
        scores = model.score(question, [c.text for c in candidates])
        order = sorted(range(len(candidates)), key=lambda i: -scores[i])
        report = {"version": live.version, "scores": [round(s, 3) for s in scores], "chosen": order[0]}
        return [candidates[i] for i in order], report

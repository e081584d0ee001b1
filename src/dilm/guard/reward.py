"""The reward model (the discriminator): scores (question, answer) pairs; higher is what users prefer.

TRL's RewardTrainer on the embedded model: SmolLM2-135M with a sequence-classification head and a LoRA
(r=16, every linear layer), trained with the Bradley-Terry pairwise loss on the log's preference pairs
(corrections and preferred answers vs the original, thumbs-up vs thumbs-down answers to one question). Chosen
over a linear head on frozen MiniLM encodings by `benchmarks/reward.py`: 81.1 % vs 75.5 % held-out pairwise
accuracy on the dev log, and it reads Chinese (MiniLM maps most Chinese characters to [UNK]); it costs minutes
of training instead of seconds, which the background worker can afford.

Adversarial refresh: answers the reward model ranked first and the user then rejected (corrected or rated
down) are hard negatives: their pairs are trained twice in the next version.

Versions live in the adapter registry under the scope `reward` (`dilm adapters list --scope reward`): plain
PEFT folders (task SEQ_CLS, the score head saved with the LoRA), checksummed, gated, activated and rolled
back like LoRA adapters.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REWARD_SCOPE = "reward"
EPOCHS = 3
LEARNING_RATE = 1e-4
MAX_LENGTH = 256


@dataclass(frozen=True)
class Pair:
    question: str
    chosen: str
    rejected: str
    weight: float = 1.0


def _conversation(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


class RewardModel:
    """A reward-model version loaded for scoring; `score` rates answers to a question (higher: better)."""

    def __init__(self, model, tokenizer) -> None:  # type: ignore[no-untyped-def]
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._lock = threading.Lock()

    @classmethod
    def load(cls, base_folder: Path, adapter_folder: Path | None = None) -> RewardModel:
        """The base model with a fresh score head, and the version's LoRA and head when given."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from dilm.learning.trainers import quiet

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
        import torch

        if not answers:
            return []
        texts = [self.tokenizer.apply_chat_template(_conversation(question, a), tokenize=False) for a in answers]
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


def fit(
    base_folder: Path,
    pairs: list[Pair],
    out: Path,
    epochs: int = EPOCHS,
    progress: Callable[[str, int, int], None] | None = None,
    seed: int = 0,
) -> tuple[RewardModel, list[float]]:
    """Train a LoRA reward model on `pairs` (a pair of weight 2 is trained twice); saves it to `out`."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    torch.manual_seed(seed)
    base = RewardModel.load(base_folder)
    rows = [
        {"chosen": _conversation(p.question, p.chosen), "rejected": _conversation(p.question, p.rejected)}
        for p in pairs
        for _ in range(max(1, round(p.weight)))
    ]
    batch = min(8, len(rows))
    total = epochs * -(-len(rows) // batch)
    tick = progress or (lambda *_: None)

    class _Report(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            tick("training the reward model", state.global_step, total)

    args = RewardConfig(
        output_dir=str(out / "trainer"),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch,
        learning_rate=LEARNING_RATE,
        max_length=MAX_LENGTH,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,  # TRL defaults to bf16: a CPU model trained in it scores differently once saved in fp32
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
    )
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="SEQ_CLS")
    trainer = RewardTrainer(
        model=base.model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=base.tokenizer,
        peft_config=lora,
        callbacks=[_Report()],
    )
    for cb in (PrinterCallback, ProgressCallback):  # progress goes to `progress`, not stdout
        trainer.remove_callback(cb)
    trainer.train()
    model = trainer.model
    model.save_pretrained(str(out))
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return RewardModel(model, base.tokenizer), losses


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


def base_model_for(settings) -> str:  # type: ignore[no-untyped-def]
    """The local model a reward model is built on: the served one when local, else the embedded default."""
    from dilm.models import DEFAULT_MODEL

    return settings.model if settings.backend == "local" else DEFAULT_MODEL


def hard_negatives(store) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(question, answer) of answers the reward model chose that users then corrected or rated down."""
    rows = store._all(
        """SELECT q.content AS question, a.content AS answer FROM messages a JOIN messages q ON q.id = a.parent_id
           WHERE json_extract(a.meta, '$.guard.reward.version') IS NOT NULL AND EXISTS (
             SELECT 1 FROM feedback f WHERE f.message_id = a.id
             AND (f.kind = 'correction' OR (f.kind = 'rating' AND f.rating = -1)))"""
    )
    return {(r["question"], r["answer"]) for r in rows}


def train(data_dir: Path, settings, store, force: bool = False, progress=None):  # type: ignore[no-untyped-def]
    """Train a reward-model version on every preference pair in the log; the gate makes it live when its
    held-out accuracy reaches `guard.min_reward_accuracy` and does not fall below the live version's."""
    from dilm.learning import examples
    from dilm.learning.registry import Registry
    from dilm.learning.train import TrainResult
    from dilm.models.bundled import resolve_model_dir
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
    name = base_model_for(settings)
    _, base_folder = resolve_model_dir(name, settings.resolved_cache_dir())
    registry = Registry(data_dir, store)
    started = time.perf_counter()
    with registry.job(REWARD_SCOPE, new_id("job")) as staging:
        model, losses = fit(base_folder, train_pairs, staging, progress=progress, seed=settings.train.seed)
        shutil.rmtree(staging / "trainer", ignore_errors=True)
        train_seconds = round(time.perf_counter() - started, 1)
        if progress:
            progress("held-out accuracy", 0, 1)
        accuracy = model.accuracy(test_pairs)
        previous = None
        if live is not None:
            previous = RewardModel.load(base_folder, registry.verify(live)).accuracy(test_pairs)
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
            "live_accuracy": None if previous is None else round(previous, 4),
            "losses": [round(x, 4) for x in losses],
            "train_seconds": train_seconds,
            "gate": {"accepted": not reasons, "reasons": reasons},
        }
        version = AdapterVersion(
            version="",
            scope=REWARD_SCOPE,
            status="rejected" if reasons else "accepted",
            parent=live.version if live else None,
            base_model=name,
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
        f"on {len(test_pairs)} pairs ({len(train_pairs)} trained, {train_seconds} s); {verdict}",
        published,
        report,
    )

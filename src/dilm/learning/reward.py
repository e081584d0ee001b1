"""Training the reward model (the discriminator) that `dilm.guard.rerank` uses to put candidates best-first.

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
back like LoRA adapters. One job (`learning/jobs.py`) trains, gates and publishes them, as it does adapters.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from dilm.config import Settings
from dilm.guard.rerank import MAX_LENGTH, REWARD_SCOPE, Pair, RewardModel, conversation
from dilm.learning import examples, jobs
from dilm.learning.jobs import TrainResult
from dilm.learning.registry import Registry
from dilm.learning.trainers import Progress
from dilm.models.catalogue import CATALOGUE, FALLBACK, installed_path, lookup, resolve_model_dir
from dilm.store import Store
from dilm.types import AdapterVersion

__all__ = [
    "EPOCHS",
    "LEARNING_RATE",
    "MAX_LENGTH",
    "REWARD_SCOPE",
    "Pair",
    "RewardModel",
    "base_model_for",
    "fit",
    "hard_negatives",
    "pairs_from",
    "split",
    "train",
]

EPOCHS = 3
LEARNING_RATE = 1e-4


def fit(
    base_folder: Path,
    pairs: list[Pair],
    out: Path,
    epochs: int = EPOCHS,
    progress: Progress | None = None,
    seed: int = 0,
) -> tuple[RewardModel, list[float]]:
    """Train a LoRA reward model on `pairs` (a pair of weight 2 is trained twice); saves it to `out`."""
    model, losses = _fit(base_folder, pairs, out, epochs, progress, seed)
    model.model.save_pretrained(str(out))
    return model, losses


def _fit(
    base_folder: Path, pairs: list[Pair], work: Path, epochs: int, progress: Progress | None, seed: int
) -> tuple[RewardModel, list[float]]:
    """`fit` without saving: TRL's RewardTrainer (its output under `work / "trainer"`)."""
    # heavy libraries imported on use (start-up time)
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    torch.manual_seed(seed)
    base = RewardModel.load(base_folder)
    rows = [
        {"chosen": conversation(p.question, p.chosen), "rejected": conversation(p.question, p.rejected)}
        for p in pairs
        for _ in range(max(1, round(p.weight)))
    ]
    batch = min(8, len(rows))
    total = epochs * -(-len(rows) // batch)
    tick = progress or (lambda *_: None)

    class _Report(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            tick("training the reward model", state.global_step, total)

    args = RewardConfig(
        output_dir=str(work / "trainer"),
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
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return RewardModel(trainer.model, base.tokenizer), losses


def split(pairs: list[Pair], held_out: float = 0.25) -> tuple[list[Pair], list[Pair]]:
    """A stable split by question, so no question is on both sides."""
    train: list[Pair] = []
    test: list[Pair] = []
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


def base_model_for(settings: Settings) -> str:
    """The local model a reward model is built on: the smallest installed catalogue model that reads every
    language the served model reads (a reward model scores answers, it does not write them: on the 1.5B default
    that is qwen2.5-coder-0.5b, a third of the parameters to train and run); the served model itself when it is
    not in the catalogue; the smallest catalogue model for a remote backend."""
    if settings.backend != "local":
        return FALLBACK
    served = lookup(settings.model)
    if served is None:
        return settings.model
    cache = settings.resolved_cache_dir()
    fits = [
        e
        for e in dict.fromkeys(CATALOGUE.values())
        if set(served.languages) <= set(e.languages) and (e is served or installed_path(e, cache) is not None)
    ]
    return min(fits, key=lambda e: e.size).name


def hard_negatives(store: Store) -> set[tuple[str, str]]:
    """(question, answer) of answers the reward model chose that users then corrected or rated down."""
    return store.rejected_reward_picks()


def train(
    data_dir: Path, settings: Settings, store: Store, force: bool = False, progress: Progress | None = None
) -> TrainResult:
    """Train a reward-model version on every preference pair in the log; the gate makes it live when its
    held-out accuracy reaches `guard.min_reward_accuracy` and does not fall below the live version's."""
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
    registry = Registry(data_dir, store)

    def stages(job: jobs.Job) -> jobs.Trained:
        return _train_and_gate(job, registry, settings, live, upto, (train_pairs, test_pairs), progress)

    return jobs.run(registry, REWARD_SCOPE, "reward model", stages)


def _train_and_gate(
    job: jobs.Job,
    registry: Registry,
    settings: Settings,
    live: AdapterVersion | None,
    upto: int,
    pairs: tuple[list[Pair], list[Pair]],
    progress: Progress | None,
) -> jobs.Trained:
    """Train on the training pairs; the gate compares held-out accuracy with the minimum and the live version's."""
    train_pairs, test_pairs = pairs
    name = base_model_for(settings)
    _, base_folder = resolve_model_dir(name, settings.resolved_cache_dir())
    model, losses = _fit(base_folder, train_pairs, job.staging, EPOCHS, progress, settings.train.seed)
    shutil.rmtree(job.staging / "trainer", ignore_errors=True)
    train_seconds = round(job.laps.seconds(), 1)
    if progress:
        progress("held-out accuracy", 0, 1)
    accuracy = model.accuracy(test_pairs)
    previous = None
    if live is not None:  # the live version may sit on another base (a model installed since)
        _, live_base = resolve_model_dir(live.base_model, settings.resolved_cache_dir())
        previous = RewardModel.load(live_base, registry.verify(live)).accuracy(test_pairs)
    need = settings.guard.min_reward_accuracy
    reasons = []
    if accuracy < need:
        reasons.append(f"held-out accuracy {accuracy:.3f} < {need}")
    if live is not None and previous is not None and accuracy < previous:
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

    def message(version: AdapterVersion, _: dict[str, Any]) -> str:
        verdict = "live" if not reasons else "rejected: " + "; ".join(reasons)
        return (
            f"reward model {version.version}: held-out pairwise accuracy {accuracy:.1%} "
            f"on {len(test_pairs)} pairs ({len(train_pairs)} trained, {train_seconds} s); {verdict}"
        )

    def save(staging: Path) -> None:
        model.model.save_pretrained(str(staging))

    return jobs.Trained(reasons, save, lambda _: report, message, live, name, 0, upto)

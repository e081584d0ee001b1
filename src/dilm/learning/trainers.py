"""LoRA training steps: TRL's SFT, DPO and KTO trainers, and REINFORCE with a baseline for rewards.

Each function takes a PEFT model (its adapter trainable), trains it in place and returns the logged losses.
All of them write TensorBoard scalars through one `Tracker`, one run folder per training job.
"""

from __future__ import annotations

import logging
import os
import random
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dilm.config import Training
from dilm.learning.score import encode
from dilm.models.hf import quiet

log = logging.getLogger(__name__)
# peft/TRL still call a transformers method deprecated in favour of another; nothing for a user to act on.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
Progress = Callable[[str, int, int], None]


class Tracker:
    """TensorBoard event files (tensorboardX): one folder per job, one tag prefix per stage."""

    def __init__(self, folder: Path) -> None:
        from tensorboardX import SummaryWriter

        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.writer = SummaryWriter(logdir=str(folder))
        self.step = 0

    def scalars(self, prefix: str, values: dict[str, Any], step: int | None = None) -> None:
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(f"{prefix}/{k}", float(v), self.step if step is None else step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def load_trainable(
    base_folder: Path, parent_folder: Path | None, cfg: Training, threads: int | None = None
) -> tuple[Any, Any]:
    """The base model with a trainable LoRA: the parent version's weights when given, else a fresh one."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # heavy libraries imported on use (start-up time)
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet()
    # Always set: torch's thread count is process-wide state that other code (a one-thread backend) may have
    # lowered, and training is compute-bound: every core counts (1 thread made a job 2x slower here).
    torch.set_num_threads(threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base_folder))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    base = AutoModelForCausalLM.from_pretrained(str(base_folder), dtype=torch.float32)
    if parent_folder is not None:
        model = PeftModel.from_pretrained(base, str(parent_folder), is_trainable=True)
    else:
        layers = int(getattr(base.config, "num_hidden_layers", 0) or 0)
        linear = sorted(
            {n.rsplit(".", 1)[-1] for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)} - {"lm_head"}
        )
        config = LoraConfig(
            r=cfg.rank,
            lora_alpha=2 * cfg.rank,
            lora_dropout=0.0,
            target_modules=linear,
            # The upper third only: backpropagation stops early (CPU time), and the lower layers, where general
            # language lives, stay put.
            layers_to_transform=list(range(layers - layers // 3, layers)) if layers >= 6 else None,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(base, config)
    return model, tokenizer


def _callback(tracker: Tracker, stage: str, progress: Progress | None, total: int) -> Any:
    from transformers import TrainerCallback

    class _Report(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ) -> None:
            tracker.scalars(stage, logs or {}, tracker.step + state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if progress is not None:
                progress(stage, state.global_step, total)

    return _Report()


def _args(config_cls: Any, cfg: Training, out: Path, rows: int, lr: float, **extra: Any) -> Any:
    return config_cls(
        output_dir=str(out),
        per_device_train_batch_size=max(1, min(cfg.batch_size, rows)),
        num_train_epochs=cfg.epochs,
        learning_rate=lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        max_length=cfg.max_length,
        dataloader_num_workers=0,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=cfg.bf16,
        **extra,
    )


def _steps(rows: int, cfg: Training) -> int:
    per = max(1, min(cfg.batch_size, rows))
    return cfg.epochs * -(-rows // per)


def _fit_trl(
    trainer_cls: Any,
    args: Any,
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    cfg: Training,
    tracker: Tracker,
    stage: str,
    progress: Progress | None,
    **kw: Any,
) -> list[float]:
    """Build one TRL trainer on `rows` and run it; the losses it logged."""
    from datasets import Dataset

    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[_callback(tracker, stage, progress, _steps(len(rows), cfg))],
        **kw,
    )
    return _run(trainer, tracker, stage)


def _run(trainer: Any, tracker: Tracker, stage: str) -> list[float]:
    from transformers import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):  # progress and losses go to our tracker, not stdout
        trainer.remove_callback(cb)
    trainer.train()
    tracker.step += trainer.state.global_step
    model = trainer.model
    for name in [n for n in getattr(model, "peft_config", {}) if n != "default"]:
        model.delete_adapter(name)  # DPO/KTO add a frozen "ref" copy as their reference: not part of the result
    if hasattr(model, "set_adapter"):
        model.set_adapter("default")
    return [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]


def sft(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    cfg: Training,
    out: Path,
    tracker: Tracker,
    progress: Progress | None = None,
) -> list[float]:
    """Supervised fine-tuning on prompt → completion (loss on the completion only). `cfg.learning_rate` must be
    set (`dilm.learning.train.resolved` fills in the model's own); raises ValueError if it is not."""
    from trl import SFTConfig, SFTTrainer

    if cfg.learning_rate is None:
        raise ValueError("sft needs cfg.learning_rate (see dilm.learning.train.resolved)")

    # Batches of similar length: less padding, and on a CPU padding is paid for in full.
    args = _args(
        SFTConfig,
        cfg,
        out,
        len(rows),
        cfg.learning_rate,
        completion_only_loss=True,
        train_sampling_strategy="group_by_length",
    )
    return _fit_trl(SFTTrainer, args, model, tokenizer, rows, cfg, tracker, "sft", progress)


def dpo(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    cfg: Training,
    out: Path,
    tracker: Tracker,
    progress: Progress | None = None,
) -> list[float]:
    """Direct preference optimisation on chosen vs rejected; the reference is the model without its adapter."""
    from trl import DPOConfig, DPOTrainer

    args = _args(DPOConfig, cfg, out, len(rows), cfg.preference_learning_rate, beta=0.1)
    return _fit_trl(DPOTrainer, args, model, tokenizer, rows, cfg, tracker, "dpo", progress, ref_model=None)


def kto(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    cfg: Training,
    out: Path,
    tracker: Tracker,
    progress: Progress | None = None,
) -> list[float]:
    """KTO on single answers labelled good or bad (thumbs); the reference is the model without its adapter."""
    from trl import KTOConfig, KTOTrainer

    good = sum(1 for r in rows if r["label"])
    bad = len(rows) - good
    # KTO's weights keep desirable:undesirable in the ratio its authors recommend when the classes are unbalanced.
    weights = {"desirable_weight": 1.0, "undesirable_weight": 1.0}
    if good and bad:
        weights["undesirable_weight"] = min(max(good / bad, 0.5), 2.0)
    args = _args(KTOConfig, cfg, out, len(rows), cfg.preference_learning_rate, beta=0.1, **weights)
    return _fit_trl(KTOTrainer, args, model, tokenizer, rows, cfg, tracker, "kto", progress, ref_model=None)


def policy_gradient(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    cfg: Training,
    out: Path,
    tracker: Tracker,
    progress: Progress | None = None,
) -> list[float]:
    """REINFORCE with a baseline: raise the log-probability of answers rewarded above the running mean
    reward, lower it for those below. Rewards are ratings (±1) or a reward model's scores."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.preference_learning_rate)
    rng = random.Random(cfg.seed)
    baseline = sum(r["reward"] for r in rows) / len(rows)  # the mean reward; updated as an EMA below
    per = max(1, min(cfg.batch_size, len(rows)))
    total, step, losses = _steps(len(rows), cfg), 0, []
    pad = tokenizer.pad_token_id
    model.train()
    for _ in range(cfg.epochs):
        order = rows[:]
        rng.shuffle(order)
        for i in range(0, len(order), per):
            batch = order[i : i + per]
            encoded = [encode(tokenizer, r["prompt"], r["completion"][0]["content"], cfg.max_length) for r in batch]
            width = max(len(ids) for ids, _ in encoded)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            answer = torch.zeros_like(ids, dtype=torch.float32)
            for j, (seq, start) in enumerate(encoded):
                ids[j, : len(seq)] = torch.tensor(seq)
                mask[j, : len(seq)] = 1
                answer[j, start : len(seq)] = 1.0
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            token_lp = torch.log_softmax(logits, -1).gather(2, ids[:, 1:, None]).squeeze(2)
            weights = answer[:, 1:]
            seq_lp = (token_lp * weights).sum(1) / weights.sum(1).clamp(min=1)  # length-normalised log π(y|x)
            rewards = torch.tensor([r["reward"] for r in batch], dtype=torch.float32)
            advantage = rewards - baseline
            loss = -(advantage * seq_lp).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            baseline = 0.9 * baseline + 0.1 * float(rewards.mean())
            step += 1
            losses.append(float(loss))
            tracker.scalars(
                "pg",
                {"loss": float(loss), "baseline": baseline, "mean_reward": float(rewards.mean())},
                tracker.step + step,
            )
            if progress is not None:
                progress("pg", step, total)
    tracker.step += step
    model.eval()
    return losses

"""Which reward model? Held-out pairwise accuracy and training time, side by side in one run:

- dilm's choice: a linear head over a joint MiniLM encoding, a cosine and five features (`dilm.guard.reward`);
- TRL's RewardTrainer: the embedded SmolLM2-135M with a sequence-classification head and LoRA (r=16);
- baselines: "the shorter answer wins", and the five hand features alone (no MiniLM).

The pairs come from a real log built like `dilm eval guard` builds its own: the edit dev set's corrections on
the assistant's real answers, and quiz answers (greedy and sampled) rated up when right, corrected or rated
down when wrong. Held-out pairs are those whose question hashes into the held-out quarter.

    python benchmarks/reward.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from dilm import Assistant
from dilm.config import Settings
from dilm.eval import guard as guard_eval
from dilm.guard import reward
from dilm.learning.examples import examples
from dilm.memory.embed import shared_embedder
from dilm.models.bundled import resolve_model_dir

RESULTS = Path(__file__).parent / "results"


def build_pairs(data: Path) -> list[reward.Pair]:
    items, _, quiz = guard_eval.load()
    with Assistant.open(data, decoding={"max_new_tokens": 32}, policy={"mode": "passive"}) as bot:
        guard_eval._build_log(bot, items, quiz, lambda *_: None)
        return reward.pairs_from(examples(bot.store, "reward"))


def features_only(train: list[reward.Pair], test: list[reward.Pair]) -> float:
    """The head on the five hand features alone: what MiniLM adds."""
    import torch

    def rows(ps: list[reward.Pair], pick: str) -> np.ndarray:
        return np.array([reward.features(p.question, getattr(p, pick)) for p in ps], dtype=np.float32)

    diff = torch.from_numpy(rows(train, "chosen") - rows(train, "rejected"))
    w = torch.zeros(diff.shape[1], requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-(diff @ w)).mean() + 1e-3 * w.square().sum()
        loss.backward()
        opt.step()
    c, r = rows(test, "chosen") @ w.detach().numpy(), rows(test, "rejected") @ w.detach().numpy()
    return float(np.mean(c > r))


def trl_reward(train: list[reward.Pair], test: list[reward.Pair], epochs: int, out: Path) -> float:
    """TRL's RewardTrainer on the embedded model (LoRA); accuracy from its scalar scores."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    settings = Settings.load(None)
    _, folder = resolve_model_dir(settings.model, settings.resolved_cache_dir())
    tok = AutoTokenizer.from_pretrained(folder)
    tok.pad_token = tok.pad_token or tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id

    def conv(p: reward.Pair, pick: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": p.question}, {"role": "assistant", "content": getattr(p, pick)}]

    data = Dataset.from_list([{"chosen": conv(p, "chosen"), "rejected": conv(p, "rejected")} for p in train])
    args = RewardConfig(
        output_dir=str(out),
        num_train_epochs=epochs,
        per_device_train_batch_size=8,
        learning_rate=1e-4,
        max_length=256,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
    )
    peft = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="SEQ_CLS")
    trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tok, peft_config=peft)
    trainer.train()
    scorer = trainer.model.eval()

    def score(p: reward.Pair, pick: str) -> float:
        text = tok.apply_chat_template(conv(p, pick), tokenize=False)
        batch = tok(text, return_tensors="pt", truncation=True, max_length=256)
        with torch.inference_mode():
            return float(scorer(**batch).logits[0, 0])

    return float(np.mean([score(p, "chosen") > score(p, "rejected") for p in test]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="RewardTrainer epochs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dilm-bench-reward-") as tmp:
        t0 = time.perf_counter()
        pairs = build_pairs(Path(tmp) / "data")
        log_s = time.perf_counter() - t0
        train, test = reward.split(pairs)
        emb = shared_embedder()
        rows = []
        t0 = time.perf_counter()
        head = reward.fit(emb, train)
        rows.append(("MiniLM cross-encoding + head (dilm)", head.accuracy(emb, test), time.perf_counter() - t0))
        t0 = time.perf_counter()
        rows.append(("TRL RewardTrainer, SmolLM2-135M + LoRA", trl_reward(train, test, args.epochs, Path(tmp)), 0.0))
        rows[-1] = (rows[-1][0], rows[-1][1], time.perf_counter() - t0)
        t0 = time.perf_counter()
        rows.append(("features only (no MiniLM)", features_only(train, test), time.perf_counter() - t0))
        rows.append(("shorter answer wins", float(np.mean([len(p.chosen) < len(p.rejected) for p in test])), 0.0))
    table = Table(
        title=f"reward models: {len(train)} training pairs, {len(test)} held-out pairs (log built in {log_s:.0f} s)"
    )
    for col in ("model", "held-out accuracy", "training time"):
        table.add_column(col, justify="right")
    for name, acc, secs in rows:
        table.add_row(name, f"{100 * acc:.1f} %", f"{secs:.1f} s" if secs else "—")
    Console().print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reward.json").write_text(
        json.dumps(
            {
                "train_pairs": len(train),
                "held_out": len(test),
                "rows": [dict(zip(("model", "accuracy", "seconds"), r, strict=True)) for r in rows],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""Consolidated learning on the embedded model: feedback → live adapter time, seconds per update, examples/s,
peak memory. Gives 16 corrections (the edit dev set's first English ones), then runs `dilm train` in a child
process twice: cold (the first job in a fresh data dir, from the base model) and warm (the next 16
corrections, continuing from the first version). The base model's probe answers and edit score are cached per
model in the cache dir; the first job on a machine generates them (+~20 s, shown as base_answers/gate_before).

    python benchmarks/training.py [--corrections 16] [--model NAME] [--bf16-too]

--bf16-too adds a third job, the cold one again in its own data dir with TRL's bf16 autocast on
(`train.bf16`): on a CPU without native bfloat16 it is emulated, which is why dilm trains in fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dilm import Assistant
from dilm.eval import edits

RESULTS = Path(__file__).parent / "results"


def give_corrections(data: Path, items: list[edits.EditItem]) -> float:
    """Each correction on the assistant's real answer; returns the time of the last acknowledgement."""
    with Assistant.open(data, decoding={"max_new_tokens": 16}) as bot:
        for item in items:
            reply = bot.chat(item.question, user="bench")
            bot.feedback(reply.id, correction=item.corrections[-1])
        return time.perf_counter()


def train_child(data: Path, bf16: bool = False) -> tuple[dict, float, float]:
    """`dilm train` in a child process: its JSON report, wall seconds, and the child's peak RSS in MiB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "dilm", "train", "--user", "bench", "--json", "--quiet", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "DILM_TRAIN__BF16": str(bf16).lower()},
    )
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        sys.exit(f"dilm train failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return json.loads(proc.stdout)[0], wall, peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corrections", type=int, default=16)
    ap.add_argument("--model", default=None, help="catalogue name (default: the configured default)")
    ap.add_argument("--bf16-too", action="store_true", help="also the cold job with bf16 autocast")
    args = ap.parse_args()
    if args.model:
        os.environ["DILM_MODEL"] = args.model  # this process's assistant and the `dilm train` children
    items = [i for i in edits.load()[0] if i.lang == "en"]
    n = args.corrections
    if len(items) < 2 * n:
        sys.exit(f"need {2 * n} English edit items, have {len(items)}")
    rows = []
    runs = [("cold", items[:n], False, "a"), ("warm", items[n : 2 * n], False, "a")]
    if args.bf16_too:
        runs.append(("cold, bf16", items[:n], True, "b"))
    with tempfile.TemporaryDirectory(prefix="dilm-bench-train-") as tmp:
        for label, batch, bf16, folder in runs:
            data = Path(tmp) / folder
            acked = give_corrections(data, batch)
            result, wall, peak = train_child(data, bf16)
            live_s = time.perf_counter() - acked
            report = result["report"]
            steps = sum(len(v) for v in report.get("losses", {}).values())
            train_s = report.get("train_seconds", 0.0)
            examples = report.get("examples", {}).get("sft_with_replay_and_anchors", 0)
            epochs = report.get("training", {}).get("epochs", 0)
            rows.append(
                {
                    "run": label,
                    "status": result["status"],
                    "feedback_to_live_s": round(live_s, 1),
                    "job_s": report.get("job_seconds"),
                    "train_s": train_s,
                    "steps": steps,
                    "s_per_update": round(train_s / steps, 2) if steps else None,
                    "examples_per_s": round(examples * epochs / train_s, 2) if train_s else None,
                    "peak_rss_mib": round(peak),
                    "timings": report.get("timings"),
                    "locality": report.get("gate", {}).get("after", {}).get("locality"),
                    "locality_raw": report.get("gate", {}).get("after", {}).get("locality_raw"),
                }
            )
    model = args.model or "default model"
    table = Table(title=f"consolidated learning: {n} corrections per job, {model}, {os.cpu_count()} cores")
    cols = (
        "run",
        "status",
        "feedback_to_live_s",
        "job_s",
        "train_s",
        "steps",
        "s_per_update",
        "examples_per_s",
        "peak_rss_mib",
        "locality",
        "locality_raw",
    )
    for c in cols:
        table.add_column(c.replace("_", " "), justify="right")
    for r in rows:
        table.add_row(*(f"{r[c]:.3f}" if isinstance(r[c], float) and c.startswith("loc") else str(r[c]) for c in cols))
    console = Console(width=180)
    console.print(table)
    for r in rows:
        console.print(f"{r['run']} job phases (s): {r['timings']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"training-{args.model or 'default'}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

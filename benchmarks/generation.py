"""Generation overhead: `Assistant.chat` (streamed) vs a bare `model.generate` on the same prompt and model.

    python benchmarks/generation.py [--runs 5] [--max-new-tokens 64]

Prints tokens/s and time-to-first-token for both, and their ratio (goal: >= 0.95), then writes
benchmarks/results/generation.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from transformers import TextStreamer

from dilm import Assistant

PROMPT = "Explain in a few sentences why the sky is blue."


def bare_run(backend, messages, max_new_tokens: int) -> tuple[float, float, int]:
    """(seconds, ttft seconds, new tokens) for plain model.generate with a streamer to time the first text."""
    first: list[float] = []

    class Timer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text and not first:
                first.append(time.perf_counter())

    ids = torch.tensor([backend.encode_chat(messages)])
    start = time.perf_counter()
    with torch.inference_mode():
        out = backend.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=backend.tokenizer.pad_token_id,
            streamer=Timer(backend.tokenizer, skip_prompt=True, skip_special_tokens=True),
        )
    elapsed = time.perf_counter() - start
    return elapsed, (first[0] - start) if first else elapsed, out.shape[1] - ids.shape[1]


def dilm_run(bot: Assistant, max_new_tokens: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    first = None
    stream = bot.stream(PROMPT, user="bench", max_new_tokens=max_new_tokens)
    for _ in stream:
        if first is None:
            first = time.perf_counter()
    elapsed = time.perf_counter() - start
    assert stream.reply is not None
    return elapsed, (first or time.perf_counter()) - start, stream.reply.completion_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp, Assistant.open(tmp) as bot:
        backend = bot.backend
        messages = [{"role": "system", "content": bot.settings.system_prompt}, {"role": "user", "content": PROMPT}]
        bare_run(backend, messages, 8)  # warm-up both paths
        dilm_run(bot, 8)
        rows: dict[str, list[tuple[float, float, int]]] = {"bare model.generate": [], "Assistant.chat": []}
        for _ in range(args.runs):  # interleaved, so drift in machine load hits both alike
            rows["bare model.generate"].append(bare_run(backend, messages, args.max_new_tokens))
            rows["Assistant.chat"].append(dilm_run(bot, args.max_new_tokens))
        model = backend.model_name
    stats = {}
    for name, runs in rows.items():
        stats[name] = {
            "tokens_per_s": statistics.median(n / s for s, _, n in runs),
            "ttft_ms": statistics.median(t * 1000 for _, t, _ in runs),
            "seconds": statistics.median(s for s, _, _ in runs),
            "tokens": statistics.median(n for _, _, n in runs),
        }
    bare, ours = stats["bare model.generate"], stats["Assistant.chat"]
    ratio = ours["tokens_per_s"] / bare["tokens_per_s"]
    table = Table(title=f"generation on {model}, greedy, {args.max_new_tokens} new tokens, median of {args.runs}")
    for col in ("path", "tokens/s", "TTFT ms", "seconds", "tokens"):
        table.add_column(col, justify="right")
    for name, s in stats.items():
        table.add_row(
            name, f"{s['tokens_per_s']:.1f}", f"{s['ttft_ms']:.0f}", f"{s['seconds']:.2f}", f"{s['tokens']:.0f}"
        )
    table.add_row("ratio dilm/bare", f"{ratio:.3f}", f"{ours['ttft_ms'] / bare['ttft_ms']:.3f}", "", "")
    console.print(table)
    console.print(f"throughput ratio {ratio:.3f} (goal >= 0.95): {'met' if ratio >= 0.95 else 'NOT met'}")
    out = Path(__file__).parent / "results" / "generation.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"model": model, "runs": args.runs, "stats": stats, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()

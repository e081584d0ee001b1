"""Memory retrieval on long multi-session conversations: turn-level Recall@k and bulk ingest, side by side.

The dev set (src/dilm/eval/data/recall.jsonl, written independently of the code) holds conversations of 50-80
user turns over several sessions, in English and Chinese, and questions naming the turn(s) that answer them
(single facts, paraphrases, updated values, two-turn answers, dates, buried details). Each conversation's
turns are one user's memories (`bot.memories.add_many`); each question is searched four ways:

- `search`: `bot.memories.search(q, user, k)`: what dilm puts in a prompt (hybrid, then the relevance gate);
- `hybrid`: the same fused ranking without the gate (`Retriever.search(gate=False)`);
- `bm25`: the full-text list alone (SQLite FTS5 bm25 over words and CJK bigrams);
- `dense`: the embedding list alone (MiniLM cosine).

Recall@k of a question is the share of its evidence turns among the top k; the table gives the mean per
language. Ingest: memories/s of `add_many` (batched embedding, one transaction) vs `add` (one by one, facts
extracted with the configured reader: on the default model, hybrid), on the first conversation.

    python benchmarks/recall.py [--data PATH] [--k 5,10]

Writes benchmarks/results/recall.json. Source of the measure: LoCoMo/LongMemEval-style turn-level evidence
recall (Maharana et al. 2024, "Evaluating Very Long-Term Conversational Memory of LLM Agents").
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dilm import Assistant
from dilm.types import user_scope

WAYS = ("search", "hybrid", "bm25", "dense")


def load(path: Path | None) -> list[dict[str, Any]]:
    text = path.read_text("utf-8") if path else (resources.files("dilm") / "eval/data/recall.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def ranked(bot: Assistant, way: str, question: str, user: str, k: int) -> list[str]:
    """Memory ids, best first, by one of the four ways."""
    if way == "search":
        return [m.id for m in bot.memories.search(question, user, k)]
    retriever, scopes = bot.retriever, [user_scope(user)]
    if way == "hybrid":
        return [h.memory.id for h in retriever.search(question, scopes, k, gate=False)]
    if way == "bm25":
        match = retriever.fts_query(question)
        return [mid for mid, _ in bot.store.fts_search(scopes, match, k)] if match else []
    return [mid for mid, _ in retriever.index.search(scopes, retriever.embedder.embed(question), k)]


def run(convs: list[dict[str, Any]], ks: list[int]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    rows: list[dict[str, Any]] = []
    ingest: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, Assistant.open(Path(tmp)) as bot:
        bot.memories.search("warm up", "nobody")  # the embedder loads before the clock starts
        bot.memories.add_many(["warm up"], "nobody")
        for n, conv in enumerate(convs):
            user = f"u{n}"
            texts = [t["text"] for t in conv["turns"]]
            t0 = time.perf_counter()
            mems = bot.memories.add_many(texts, user, [{"turn": t["id"]} for t in conv["turns"]])
            if n == 0:
                ingest["add_many per s"] = len(texts) / (time.perf_counter() - t0)
                t0 = time.perf_counter()
                for text in texts[:10]:  # one by one, each read for facts (the configured extraction)
                    bot.memories.add(text, "ingest-one-by-one")
                ingest["add per s"] = 10 / (time.perf_counter() - t0)
            turn_of = {m.id: m.metadata["turn"] for m in mems}
            for q in conv["questions"]:
                row = {"conv": conv["id"], "lang": conv["lang"], "kind": q.get("kind", ""), "q": q["q"]}
                for way in WAYS:
                    found = [turn_of.get(mid) for mid in ranked(bot, way, q["q"], user, max(ks))]
                    for k in ks:
                        row[f"{way}@{k}"] = len(set(found[:k]) & set(q["evidence"])) / len(q["evidence"])
                rows.append(row)
    return rows, ingest


def report(rows: list[dict[str, Any]], ingest: dict[str, float], ks: list[int]) -> None:
    table = Table(title=f"Turn-level Recall@k (%), {len(rows)} questions")
    table.add_column("lang")
    table.add_column("n", no_wrap=True)
    for way in WAYS:
        for k in ks:
            table.add_column(f"{way}@{k}", no_wrap=True)
    summary: dict[str, dict[str, float]] = {}
    for lang in ("en", "zh", "all"):
        sel = [r for r in rows if lang in ("all", r["lang"])]
        if not sel:
            continue
        s = {f"{w}@{k}": 100 * statistics.mean(r[f"{w}@{k}"] for r in sel) for w in WAYS for k in ks}
        summary[lang] = s
        table.add_row(lang, str(len(sel)), *(f"{s[f'{w}@{k}']:.1f}" for w in WAYS for k in ks))
    console = Console()
    console.print(table)
    console.print("ingest: " + ", ".join(f"{name} {value:.1f}" for name, value in ingest.items()))
    out = Path(__file__).parent / "results" / "recall.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "ingest": ingest, "rows": rows}, ensure_ascii=False, indent=1))
    console.print(f"written: {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--k", default="5,10")
    args = ap.parse_args()
    ks = [int(k) for k in args.k.split(",")]
    rows, ingest = run(load(args.data), ks)
    report(rows, ingest, ks)


if __name__ == "__main__":
    main()

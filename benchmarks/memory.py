"""Memory latency at scale: feedback-to-effect and per-turn retrieval at 1k, 10k and 100k memories in one
user's scope (the worst case for a per-scope index), dense-only vs hybrid side by side, in one run.

    python benchmarks/memory.py [--sizes 1000,10000,100000] [--queries 100]

Memories are generated sentences about fictional subjects. Embedding 100k sentences with MiniLM on 2 cores
takes minutes, so a pool of real embeddings (--pool, default 5000) is computed and the remaining vectors are
that pool plus small noise, re-normalized: the index's cost depends on the number of vectors, not on their
content. Full-text terms are always the real terms of every generated sentence.
Writes benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from dilm.memory.embed import shared_embedder
from dilm.memory.retrieve import Retriever
from dilm.memory.writer import MemoryWriter
from dilm.store import SQLiteStore
from dilm.types import Memory, Message, new_id, user_scope, utcnow

SYL = "ka lo mi re tu va ne si dor bel quin tar zel mor fen lis gra thu pel var oss ine".split()
RELS = ["support hotline", "CEO", "opening time", "head office", "founder", "gate code", "wifi password", "mascot"]
ZH_SUBJ = "星河 蓝鲸 云杉 赤松 白鹭 青竹 金桥 银湖 紫藤 绿洲".split()
ZH_REL = ["总部", "老板", "客服电话", "开门时间", "创始人", "吉祥物"]


def name(rng: random.Random) -> str:
    return "".join(rng.choice(SYL) for _ in range(rng.randint(2, 3))).capitalize()


def sentence(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.25:
        subj = rng.choice(ZH_SUBJ) + rng.choice(ZH_SUBJ) + "公司"
        return f"{subj}的{rng.choice(ZH_REL)}是{name(rng)}{rng.randint(1, 999)}。", subj
    subj = f"{name(rng)} {name(rng)}"
    return f"The {rng.choice(RELS)} of {subj} is {name(rng)} {rng.randint(100, 9999)}.", subj


def pct(xs: list[float]) -> tuple[float, float]:
    s = sorted(xs)
    return statistics.median(s), s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def fill(store: SQLiteStore, scope: str, n: int, pool_vecs: np.ndarray, rng: random.Random) -> list[str]:
    subjects = []
    noise = np.random.default_rng(0)
    items: list[tuple[Memory, str, bytes]] = []
    for i in range(n):
        text, subj = sentence(rng)
        subjects.append(subj)
        vec = pool_vecs[i % len(pool_vecs)]
        if i >= len(pool_vecs):
            vec = vec + noise.normal(0, 0.02, vec.shape).astype(np.float32)
            vec /= np.linalg.norm(vec)
        m = Memory(
            id=new_id("mem"),
            text=text,
            scope=scope,
            kind="import",
            created_at=utcnow(),
            metadata={"subjects": [subj]},
        )
        items.append((m, text, vec.astype(np.float32).tobytes()))
    store.add_memories(items)  # one transaction
    return subjects


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--feedbacks", type=int, default=30)
    ap.add_argument("--pool", type=int, default=5000)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    console = Console()
    embedder = shared_embedder()
    rng = random.Random(7)
    with console.status(f"embedding a pool of {args.pool} sentences…"):
        pool_texts = [sentence(rng)[0] for _ in range(args.pool)]
        pool_vecs = embedder.encode(pool_texts)
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(Path(tmp) / "bench.db")
            scope, scopes = user_scope("bench"), [user_scope("bench"), "global"]
            with console.status(f"writing {n} memories…"):
                subjects = fill(store, scope, n, pool_vecs, random.Random(n))
            retriever = Retriever(store, embedder)
            writer = MemoryWriter(store, embedder, retriever)
            qrng = random.Random(1)
            queries = []
            for _ in range(args.queries):
                subj = qrng.choice(subjects)
                queries.append(
                    f"{subj}的{qrng.choice(ZH_REL)}是什么？"
                    if "公司" in subj
                    else f"What is the {qrng.choice(RELS)} of {subj}?"
                )
            retriever.search(queries[0], scopes)  # load the index once (not part of a turn's latency)
            timings: dict[str, list[float]] = {k: [] for k in ("embed", "dense_only", "fts_only", "hybrid")}
            for q in queries:
                t0 = time.perf_counter()
                qvec = embedder.embed(q)
                t1 = time.perf_counter()
                retriever.index.search(scopes, qvec, 5)
                t2 = time.perf_counter()
                match = retriever.fts_query(q)
                store.fts_search(scopes, match, 30)
                t3 = time.perf_counter()
                retriever.search(q, scopes, k=3)
                t4 = time.perf_counter()
                timings["embed"].append((t1 - t0) * 1000)
                timings["dense_only"].append((t2 - t0) * 1000)
                timings["fts_only"].append((t3 - t2) * 1000)
                timings["hybrid"].append((t4 - t3) * 1000)
            # feedback-to-effect: the learning step of feedback() on a real logged turn.
            fb_ms = []
            session = store.create_session("bench")
            for i in range(args.feedbacks):
                subj = f"Benchmark Subject {i}"
                q = Message(
                    id=new_id("msg"),
                    session_id=session.id,
                    user_id="bench",
                    role="user",
                    content=f"What is the gate code of {subj}?",
                    created_at=utcnow(),
                )
                a = Message(
                    id=new_id("msg"),
                    session_id=session.id,
                    user_id="bench",
                    role="assistant",
                    content="I do not know.",
                    created_at=utcnow(),
                    parent_id=q.id,
                )
                store.add_turn(q, a)
                t0 = time.perf_counter()
                writer.correction(scope, q.content, f"No, it's {1000 + i}.", new_id("fb"))
                fb_ms.append((time.perf_counter() - t0) * 1000)
            row = {"memories": n, "feedback_to_effect": pct(fb_ms)}
            row.update({k: pct(v) for k, v in timings.items()})
            results.append(row)
            store.close()
    table = Table(title="memory latency (ms, p50 / p95), one scope")
    for col in (
        "memories",
        "feedback→effect",
        "query embed",
        "dense-only (embed+index)",
        "full-text only",
        "hybrid (embed+index+fts+gate)",
    ):
        table.add_column(col, justify="right")
    f = lambda p: f"{p[0]:.1f} / {p[1]:.1f}"  # noqa: E731
    for r in results:
        table.add_row(
            f"{r['memories']:,}",
            f(r["feedback_to_effect"]),
            f(r["embed"]),
            f(r["dense_only"]),
            f(r["fts_only"]),
            f(r["hybrid"]),
        )
    console.print(table)
    console.print(
        "hybrid/dense-only p50 ratio: "
        + ", ".join(f"{r['memories']:,}: {r['hybrid'][0] / r['dense_only'][0]:.2f}" for r in results)
    )
    out = Path(__file__).parent / "results" / "memory.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

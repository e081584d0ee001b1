"""`dilm eval edits`: sequential knowledge edits through the public Assistant API, scored the way the
knowledge-editing literature does (EasyEdit, WISE, GRACE): reliability, generalization, locality, update
accuracy on A→B→C chains, plus isolation leaks and latencies.

All edits are made first (as one user, each correction given on the assistant's real answer); only then is
everything asked again, each question in a new session — so a figure holds after all edits, not just the last.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dilm.assistant import Assistant
from dilm.editset import EditItem, LocalityItem, contains, load, pct

__all__ = ["EditItem", "LocalityItem", "contains", "dump", "load", "run", "summarize", "table_rows"]

EDITOR, OTHER = "editor", "other-user"


def run(
    items: list[EditItem],
    locality: list[LocalityItem],
    open_bot: Callable[[Path], Assistant],
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark in a fresh data dir; returns per-language and overall figures."""
    tick = progress or (lambda *_: None)
    with tempfile.TemporaryDirectory(prefix="dilm-eval-") as tmp:
        bot = open_bot(Path(tmp))
        try:
            return _run(bot, items, locality, tick)
        finally:
            bot.close()


Tick = Callable[[str, int, int], None]  # (what, done, total)


def _ask(bot: Assistant, question: str, user: str = EDITOR) -> str:
    return bot.chat(question, user=user).text  # every question in a new session


def _run(bot: Assistant, items: list[EditItem], locality: list[LocalityItem], tick: Tick) -> dict[str, Any]:
    total = len(locality) * 2 + sum(len(i.corrections) for i in items) + sum(3 + len(i.paraphrases) for i in items)
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        tick(what, done, total)

    before = {}
    for loc in locality:
        before[loc.id] = _ask(bot, loc.question)
        step("locality baseline")
    feedback_ms: list[float] = []
    for item in items:
        for correction in item.corrections:
            reply = bot.chat(item.question, user=EDITOR)
            t0 = time.perf_counter()
            bot.feedback(reply.id, correction=correction)
            feedback_ms.append((time.perf_counter() - t0) * 1000)
            step("editing")
    rows: list[dict[str, Any]] = []
    retrieval_ms: list[float] = []
    for item in items:
        t0 = time.perf_counter()
        bot.recall(item.question, user=EDITOR)
        retrieval_ms.append((time.perf_counter() - t0) * 1000)
        rows.append(_edit_row(bot, item, step))
    local_rows: list[dict[str, Any]] = []
    for loc in locality:
        after = _ask(bot, loc.question)
        local_rows.append(
            {"id": loc.id, "lang": loc.lang, "same": after == before[loc.id], "before": before[loc.id], "after": after}
        )
        step("locality")
    return summarize(rows, local_rows, feedback_ms, retrieval_ms)


def _edit_row(bot: Assistant, item: EditItem, step: Callable[[str], None]) -> dict[str, Any]:
    """One edit asked again: its question, its paraphrases, and as another user (isolation)."""
    final, stale = item.answers[-1], item.answers[:-1]
    main = _ask(bot, item.question)
    step("reliability")
    paras = [_ask(bot, p) for p in item.paraphrases]
    for _ in paras:
        step("generalization")
    leak_replies = [_ask(bot, item.question, OTHER), _ask(bot, item.paraphrases[0], OTHER)]
    step("isolation")
    step("isolation")
    chain_ok = None
    if stale:
        replies = [main, *paras]
        chain_ok = all(contains(r, final) and not any(contains(r, s) for s in stale) for r in replies)
    return {
        "id": item.id,
        "lang": item.lang,
        "reliable": contains(main, final),
        "general": [contains(p, final) for p in paras],
        "chain_ok": chain_ok,
        "leak": any(contains(r, a) for r in leak_replies for a in item.answers),
        "reply": main,
        "paraphrase_replies": paras,
    }


def summarize(
    rows: list[dict[str, Any]], local_rows: list[dict[str, Any]], feedback_ms: list[float], retrieval_ms: list[float]
) -> dict[str, Any]:
    def figures(lang: str | None) -> dict[str, Any]:
        rs = [r for r in rows if lang is None or r["lang"] == lang]
        ls = [r for r in local_rows if lang is None or r["lang"] == lang]
        gens = [g for r in rs for g in r["general"]]
        chains = [r["chain_ok"] for r in rs if r["chain_ok"] is not None]
        ratio = lambda xs: (sum(xs) / len(xs)) if xs else None  # noqa: E731
        return {
            "edits": len(rs),
            "reliability": ratio([r["reliable"] for r in rs]),
            "generalization": ratio(gens),
            "locality": ratio([r["same"] for r in ls]),
            "update_accuracy": ratio(chains),
            "chains": len(chains),
            "leaks": sum(r["leak"] for r in rs),
        }

    langs = sorted({r["lang"] for r in rows})
    fb50, fb95 = pct(feedback_ms)
    rt50, rt95 = pct(retrieval_ms)
    return {
        "by_language": {lang: figures(lang) for lang in langs},
        "overall": figures(None),
        "latency_ms": {"feedback_p50": fb50, "feedback_p95": fb95, "retrieval_p50": rt50, "retrieval_p95": rt95},
        "failures": [
            {"id": r["id"], "reply": r["reply"], "paraphrases": r["paraphrase_replies"]}
            for r in rows
            if not r["reliable"] or not all(r["general"]) or r["chain_ok"] is False or r["leak"]
        ],
        "locality_changes": [r for r in local_rows if not r["same"]],
    }


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    def fmt(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.1f} %"

    out = []
    for name, f in [*report["by_language"].items(), ("overall", report["overall"])]:
        out.append(
            [
                name,
                str(f["edits"]),
                fmt(f["reliability"]),
                fmt(f["generalization"]),
                fmt(f["locality"]),
                f"{fmt(f['update_accuracy'])} ({f['chains']})",
                str(f["leaks"]),
            ]
        )
    return out


def dump(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")

"""`dilm eval adapters`: the parametric path on its own. The edit benchmark's corrections are given as feedback,
one adapter is trained on them, and then every question is asked with memory off (adapter only), next to
the memory path (memory on, adapter off) and the base model — scored like `dilm eval edits`.

With `parity`, the adapter's answers are also generated on transformers (PEFT on the de-quantized weights, the
runtime the adapter was trained on) and compared with the served runtime's (llama.cpp with the GGUF LoRA):
how many answers are identical, and the ones that are not.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dilm.assistant import Assistant
from dilm.editset import EditItem, LocalityItem, contains
from dilm.eval.edits import summarize
from dilm.learning.jobs import TrainResult
from dilm.types import user_scope

EDITOR = "editor"
Tick = Callable[[str, int, int], None]  # (what, done, total)


def run(
    items: list[EditItem],
    locality: list[LocalityItem],
    open_bot: Callable[..., Assistant],
    progress: Tick | None = None,
    parity: bool = False,
) -> dict[str, Any]:
    tick = progress or (lambda *_: None)
    with tempfile.TemporaryDirectory(prefix="dilm-eval-adapters-") as tmp:
        data = Path(tmp)
        before, result, train_s = _edit_and_train(open_bot(data, memory=False, adapters=False), items, locality, tick)
        paths = {
            "adapter": open_bot(data, memory=False, adapters=True),
            "memory": open_bot(data, memory=True, adapters=False),
            "base": open_bot(data, memory=False, adapters=False),
        }
        if parity:
            paths["adapter on transformers"] = open_bot(data, memory=False, adapters=True, runtime="transformers")
        figures: dict[str, Any] = {}
        try:
            n_q = sum(1 + len(i.paraphrases) for i in items) + len(locality)
            for name, bot in paths.items():
                if name in ("base", "adapter on transformers"):  # edit answers only: no locality needed
                    rows = _ask(bot, items, [], {}, _prefixed(tick, name, n_q))
                else:
                    rows = _ask(bot, items, locality, before, _prefixed(tick, name, n_q))
                figures[name] = rows
        finally:
            for bot in paths.values():
                bot.close()
    return {
        "edits": len(items),
        "train": {
            "status": result.status,
            "message": result.message,
            "seconds": round(train_s, 1),
            "gate": result.report.get("gate"),
        },
        "paths": {name: _summary(rows) for name, rows in figures.items()},
        "parity": _parity(figures["adapter"], figures["adapter on transformers"]) if parity else None,
        "failures": [r for r in figures["adapter"]["items"] if not r["reliable"]],
        "locality_changes": [r for r in figures["adapter"]["locality"] if not r["same"]],
    }


def _edit_and_train(
    base: Assistant, items: list[EditItem], locality: list[LocalityItem], tick: Tick
) -> tuple[dict[str, str], TrainResult, float]:
    """With the base model: the locality baseline answers, every correction given, then one adapter trained.
    Closes `base`."""
    try:
        total = len(locality) + sum(len(i.corrections) for i in items)
        before = {}
        for n, loc in enumerate(locality, 1):
            before[loc.id] = base.chat(loc.question, user=EDITOR).text
            tick("locality baseline", n, total)
        done = len(locality)
        for item in items:
            for correction in item.corrections:
                reply = base.chat(item.question, user=EDITOR)
                base.feedback(reply.id, correction=correction)
                done += 1
                tick("editing", done, total)
        t0 = time.perf_counter()
        result = base.train(user_scope(EDITOR), force=True, progress=tick)
        train_s = time.perf_counter() - t0
        version = result.version
        if version is not None and version.status == "rejected":
            base.adapters.activate(version.version, despite_gate=True)  # measured anyway; the verdict is reported
    finally:
        base.close()
    return before, result, train_s


def _prefixed(tick: Tick, name: str, total: int) -> Callable[[str, int], None]:
    """`tick` for one path's questions: its name before what is being done, out of `total`."""

    def report(what: str, k: int) -> None:
        tick(f"{name}: {what}", k, total)

    return report


def _ask(
    bot: Assistant,
    items: list[EditItem],
    locality: list[LocalityItem],
    before: dict[str, str],
    tick: Callable[[str, int], None],
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    local_rows: list[dict[str, Any]] = []
    k = 0
    for item in items:
        final = item.answers[-1]
        reply = bot.chat(item.question, user=EDITOR)
        paras = [bot.chat(p, user=EDITOR).text for p in item.paraphrases]
        k += 1 + len(paras)
        tick("asking", k)
        rows.append(
            {
                "id": item.id,
                "lang": item.lang,
                "reliable": contains(reply.text, final),
                "general": [contains(p, final) for p in paras],
                "chain_ok": None,  # chains and leaks are `dilm eval edits`' business
                "leak": False,
                "reply": reply.text,
                "paraphrase_replies": paras,
                "adapter_used": reply.adapter_version is not None,
            }
        )
    for loc in locality:
        reply = bot.chat(loc.question, user=EDITOR)
        local_rows.append(
            {
                "id": loc.id,
                "lang": loc.lang,
                "same": reply.text == before[loc.id],
                "before": before[loc.id],
                "after": reply.text,
                "adapter_used": reply.adapter_version is not None,
            }
        )
        k += 1
        tick("locality", k)
    return {"items": rows, "locality": local_rows}


def _parity(served: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Identical answers (question and paraphrases) between the served runtime and transformers, greedy."""
    pairs = []
    for a, b in zip(served["items"], reference["items"], strict=True):
        pairs += list(zip([a["reply"], *a["paraphrase_replies"]], [b["reply"], *b["paraphrase_replies"]], strict=True))
    differ = [{"served": x, "transformers": y} for x, y in pairs if x != y]
    same = len(pairs) - len(differ)
    return {"identical": same, "answers": len(pairs), "rate": same / len(pairs) if pairs else None, "differ": differ}


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    """Reliability, generalization and locality per language and overall, scored as `dilm eval edits` does."""
    report = summarize(data["items"], data["locality"], [], [])
    keep = ("edits", "reliability", "generalization", "locality")
    return {
        lang: {k: f[k] for k in keep} for lang, f in {**report["by_language"], "overall": report["overall"]}.items()
    }

"""`dilm eval guard`: the guard and the interaction policies, measured in one run.

1. A shared log is built once: the edit dev set's corrections (one user), and a tuning half of a quiz set, each
   greedy answer rated up when right or corrected when wrong (what the hybrid policy tunes its threshold from),
   plus sampled answers thumbed up or down (preference pairs of two model answers for the reward model).
2. For each policy (passive, active, hybrid), on a copy of that log, a simulated user asks: every edited question
   and a paraphrase, the same as another user (leak traps), trap conversations (ambiguous questions, dangling
   references, corrections that contradict global knowledge, values changed and changed back) and the other
   half of the quiz. When the assistant asks, the user answers it (the clarification, "yes", or the right
   answer); a wrong final answer is an error the user would have to correct.
3. The reward model is trained on the shared log and scored on held-out pairs (questions it never saw).

Reported: contradiction rate of answers with current facts before the guard (the model's own text) and after,
reward-model pairwise accuracy, ask rate and error rate per policy, and guard latency against generation.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from dilm.asking import MODES
from dilm.assistant import Assistant
from dilm.editset import EditItem, contains, pct, read_jsonl
from dilm.learning import reward
from dilm.types import Reply

EDITOR, OTHER, TUNER, QUIZZED = "editor", "other-user", "quiz-tuner", "quiz-taker"
SAMPLES = 3  # sampled answers rated per tuning quiz question
RERANK_N = 3  # candidates per question in the rerank measurement
Step = Callable[[str], None]  # one unit of work done: what it was


class Trap(BaseModel):
    id: str
    lang: str
    kind: str  # ambiguous | reference | conflict | reverted
    question: str
    answer: str
    teach: list[str] = []
    reply: str | None = None  # the user's answer to a clarifying question
    global_: str | None = Field(None, alias="global")  # conflict: what global knowledge says
    correction: str | None = None
    corrections: list[str] = []


class QuizItem(BaseModel):
    id: str
    lang: str
    question: str
    answer: str  # alternatives separated by "|"

    def right(self, reply: str) -> bool:
        return any(contains(reply, a) for a in self.answer.split("|"))


def load(
    edits: Path | None = None, traps: Path | None = None, quiz: Path | None = None
) -> tuple[list[EditItem], list[Trap], list[QuizItem]]:
    return (
        read_jsonl(edits, "edits_dev.jsonl", EditItem),
        read_jsonl(traps, "guard_dev.jsonl", Trap),
        read_jsonl(quiz, "quiz_dev.jsonl", QuizItem),
    )


def run(
    edits: list[EditItem],
    traps: list[Trap],
    quiz: list[QuizItem],
    open_bot: Callable[..., Assistant],
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """`open_bot(data_dir, mode)` opens an Assistant with that interaction policy."""
    tick = progress or (lambda *_: None)
    tuning, held = quiz[::2], quiz[1::2]
    per_policy = 3 * len(edits) + len(traps) + len(held)
    total = sum(len(i.corrections) for i in edits) + len(tuning) + per_policy * len(MODES) + 1 + len(held)
    done = [0]

    def step(what: str) -> None:
        done[0] += 1
        tick(what, min(done[0], total), total)

    with tempfile.TemporaryDirectory(prefix="dilm-eval-guard-") as tmp:
        base = Path(tmp) / "base"
        bot = open_bot(base, "passive")
        try:
            _build_log(bot, edits, tuning, step)
        finally:
            bot.close()
        policies, turns = {}, []
        for mode in MODES:
            folder = Path(tmp) / mode
            shutil.copytree(base, folder)
            bot = open_bot(folder, mode)
            try:
                policies[mode], rows = _conversations(bot, edits, traps, held, step)
            finally:
                bot.close()
            turns += [{**r, "policy": mode} for r in rows]
        bot = open_bot(base, "passive")
        try:
            rm = _reward_model(bot)
            step("reward model")
            if rm.get("version"):
                rm["rerank"] = _rerank(bot, held, step)
        finally:
            bot.close()
    return _summarize(policies, turns, rm)


def _build_log(bot: Assistant, edits: list[EditItem], tuning: list[QuizItem], step: Step) -> None:
    for item in edits:
        for correction in item.corrections:
            r = bot.chat(item.question, user=EDITOR)
            bot.feedback(r.id, correction=correction)
            step("log: edits")
    for q in tuning:
        r = bot.chat(q.question, user=TUNER)
        if q.right(r.text):
            bot.feedback(r.id, rating=1)
        else:
            bot.feedback(r.id, correction=q.answer.split("|")[0])
        for seed in range(SAMPLES):  # sampled answers, thumbed up or down: pairs of two model answers
            r = bot.chat(q.question, user=f"{TUNER}-{seed}", strategy="sample", temperature=1.0, seed=seed)
            bot.feedback(r.id, rating=1 if q.right(r.text) else -1)
        step("log: rated answers")


def _turn(bot: Assistant, text: str, user: str, session: str | None = None) -> tuple[Reply, dict[str, Any]]:
    r = bot.chat(text, user=user, session=session)
    policy = r.checks.get("policy", {})
    raw = r.candidates[0].text if r.candidates else None
    row = {
        "asked": policy.get("action") == "ask",
        "signal": policy.get("signal"),
        "generate_ms": r.checks.get("generate_ms"),
        "guard_ms": r.checks.get("guard_ms"),
        "contradicts_before": bool(raw and bot.contradictions(raw, user)),
        "contradicts_after": bool(bot.contradictions(r.text, user)) if raw is not None else False,
    }
    return r, row


def _conversations(
    bot: Assistant, edits: list[EditItem], traps: list[Trap], held: list[QuizItem], step: Step
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every question a simulated user asks, as one row: whether the assistant asked back, whether the final
    answer was wrong (a correction the user would have to give), and whether an ask was needed."""
    rows: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def record(kind: str, measured: list[dict[str, Any]], error: bool, needed: bool) -> None:
        asked = any(t["asked"] for t in measured)
        rows.append({"kind": kind, "asked": asked, "error": error, "needed": needed and asked})
        turns.extend(measured)

    for item in edits:
        final, stale = item.answers[-1], item.answers[:-1]
        for question in (item.question, item.paraphrases[0]):
            r, t = _turn(bot, question, EDITOR)
            wrong = not contains(r.text, final) or any(contains(r.text, s) for s in stale)
            record("edited fact", [t], wrong, needed=False)  # the user's own newest value: never worth a question
            step("edited facts")
        r, t = _turn(bot, item.question, OTHER)
        # Another user's private fact must not leak (the error here); the assistant cannot know the answer,
        # so saying it is unsure is a needed question, not a wasted one.
        record("other user's fact", [t], any(contains(r.text, a) for a in item.answers), needed=True)
        step("leak traps")
    for trap in traps:
        user = f"trap-{trap.id}"
        for text in trap.teach:
            bot.chat(text, user=user)
        error, measured = _trap(bot, trap, user)
        record(trap.kind, measured, error, needed=True)
        step("traps")
    for q in held:
        r, t = _turn(bot, q.question, QUIZZED)
        right = q.right(r.text)
        if t["asked"]:  # "is that right?": the user confirms or gives the answer, so no correction is needed
            bot.chat("Yes." if right else f"No, it's {q.answer.split('|')[0]}.", user=QUIZZED, session=r.session_id)
        record("quiz", [t], not right and not t["asked"], needed=not right)
        step("quiz")
    asks = [r for r in rows if r["asked"]]
    summary = {
        "questions": len(rows),
        "asks": len(asks),
        "ask_rate": len(asks) / len(rows) if rows else 0.0,
        "needed_asks": sum(1 for r in asks if r["needed"]),
        "errors": sum(r["error"] for r in rows),
        "error_rate": sum(r["error"] for r in rows) / len(rows) if rows else 0.0,
        "by_kind": {
            k: {
                "questions": sum(1 for r in rows if r["kind"] == k),
                "asks": sum(1 for r in rows if r["kind"] == k and r["asked"]),
                "errors": sum(1 for r in rows if r["kind"] == k and r["error"]),
            }
            for k in dict.fromkeys(r["kind"] for r in rows)
        },
    }
    return summary, turns


def _trap(bot: Assistant, trap: Trap, user: str) -> tuple[bool, list[dict[str, Any]]]:
    """Play one trap conversation; (whether the final answer is wrong, the measured turns)."""
    if trap.kind in ("ambiguous", "reference"):
        r, row = _turn(bot, trap.question, user)
        rows = [row]
        if row["asked"] and trap.reply:
            r, row2 = _turn(bot, trap.reply, user, session=r.session_id)
            rows.append(row2)
        return not contains(r.text, trap.answer), rows
    if trap.kind == "conflict":
        assert trap.global_ and trap.correction
        bot.memories.add(trap.global_, global_=True)
        r = bot.chat(trap.question, user=user)
        fb = bot.feedback(r.id, correction=trap.correction)
        confirm = {"asked": fb.question is not None, "signal": "conflict", "generate_ms": None, "guard_ms": None}
        confirm.update(contradicts_before=False, contradicts_after=False)
        if fb.question:  # the user meant it
            bot.chat("Yes" if trap.lang == "en" else "是的", user=user)
        r, row = _turn(bot, trap.question, user)
        return not contains(r.text, trap.answer), [confirm, row]
    # reverted: the user's own value, changed and changed back
    for c in trap.corrections:
        r = bot.chat(trap.question, user=user)
        bot.feedback(r.id, correction=c)
    r, row = _turn(bot, trap.question, user)
    if row["asked"]:
        bot.chat("Yes" if trap.lang == "en" else "是的", user=user, session=r.session_id)
    return not contains(r.text, trap.answer), [row]


def _reward_model(bot: Assistant) -> dict[str, Any]:
    result = bot.train(scope=reward.REWARD_SCOPE, force=True)
    report = dict(result.report)
    if result.version is not None:
        pairs = reward.pairs_from(bot.training.examples("reward"))
        _, test = reward.split(pairs)
        report["shorter_wins"] = sum(len(p.chosen) < len(p.rejected) for p in test) / len(test) if test else None
        report["version"] = result.version.version
    report["message"] = result.message
    return report


def _rerank(bot: Assistant, held: list[QuizItem], step: Step) -> dict[str, Any]:
    """Held-out quiz questions with n sampled candidates: is the reward model's pick right more often than the
    first candidate, and what does scoring cost?"""
    first = chosen = anyone = 0
    gen, guard = [], []
    for i, q in enumerate(held):
        r = bot.chat(q.question, user=QUIZZED, strategy="sample", temperature=1.0, n=RERANK_N, seed=100 + i)
        scores = r.checks.get("guard", {}).get("reward", {}).get("scores")
        texts = [c.text for c in r.candidates]
        if scores:  # candidates arrive reordered: undo it to find the sampler's first one
            original = sorted(range(len(scores)), key=lambda j: -scores[j])
            texts = [texts[original.index(j)] for j in range(len(texts))]
        first += q.right(texts[0])
        chosen += q.right(r.candidates[0].text)
        anyone += any(q.right(t) for t in texts)
        gen.append(r.checks["generate_ms"])
        guard.append(r.checks["guard_ms"])
        step("reward rerank")
    g50, g95 = pct(gen)
    c50, c95 = pct(guard)
    return {
        "questions": len(held),
        "n": RERANK_N,
        "first_right": first,
        "chosen_right": chosen,
        "any_right": anyone,
        "generate_p50": g50,
        "generate_p95": g95,
        "guard_p50": c50,
        "guard_p95": c95,
    }


def _summarize(policies: dict[str, Any], turns: list[dict[str, Any]], rm: dict[str, Any]) -> dict[str, Any]:
    answered = [t for t in turns if t["generate_ms"] is not None]
    before = sum(t["contradicts_before"] for t in answered)
    after = sum(t["contradicts_after"] for t in answered)
    gen = [t["generate_ms"] for t in answered]
    guard = [t["guard_ms"] for t in answered if t["guard_ms"] is not None]
    g50, g95 = pct(gen)
    c50, c95 = pct(guard)
    return {
        "contradictions": {
            "answers": len(answered),
            "before": before,
            "after": after,
            "before_rate": before / len(answered) if answered else 0.0,
            "after_rate": after / len(answered) if answered else 0.0,
        },
        "reward_model": rm,
        "policies": policies,
        "latency_ms": {
            "generate_p50": g50,
            "generate_p95": g95,
            "guard_p50": c50,
            "guard_p95": c95,
            "guard_share_p95": c95 / g95 if g95 else None,
            "guard_mean": statistics.fmean(guard) if guard else 0.0,
        },
    }

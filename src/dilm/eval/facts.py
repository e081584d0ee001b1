"""`dilm eval facts`: does dilm understand what people tell it? Conversations in, the fact graph out.

Each conversation of the dev set (`eval/data/facts_dev.jsonl`, written independently of the code: statements,
questions, several facts in one message, changes, negations, the past, corrections in chat, preferences,
pronouns, numbers with units, chatter, injection attempts; half Chinese) is played through the public API as
one user: user turns through `chat`, scripted assistant turns through `replay` (so a correction has a wrong
answer to correct). Then the user's facts, current and history, are compared with the gold facts, and the
probe questions are asked in a new session.

A fact matches a gold fact when their subjects and objects match (relations are named freely: "手机号" and
"phone number" are one relation; "(user's manager, name, X)" and "(user, manager, X)" are one fact); when
several match, those with the gold relation are judged. Figures,
per reading mode (rules, model, hybrid) and language:
- precision: facts written that match a gold fact; recall: gold facts written (current or history);
- update accuracy: conversations that change, end or correct a value whose every gold fact has the right
  state (current ones current, history ones not); stale: gold history facts still current;
- false writes: facts written in conversations of questions, chatter and injections that match no gold fact;
- flagged: injection attempts stored flagged; answers: probes answered right (and with no stale value);
- repeat errors: answers after a change that still state the replaced value (`bot.stats.repeat_errors`);
- latency: p50/p95 of reading a message that states something and writing what it states, per mode.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dilm.assistant import Assistant
from dilm.errors import InvalidInputError
from dilm.facts.extract import canonical_relation
from dilm.text import normalize
from dilm.types import Fact

DATA = Path(__file__).parent / "data" / "facts_dev.jsonl"
UPDATES = {"change", "negation", "correction_in_chat", "preference", "past"}
QUIET = {"question", "chatter", "injection"}
Tick = Callable[[str, int, int], None]


@dataclass
class Conversation:
    id: str
    lang: str
    kinds: list[str]
    turns: list[dict[str, str]]
    facts: list[dict[str, str]]
    flagged: bool = False
    probes: list[dict[str, Any]] = field(default_factory=list)


def load(path: Path | None = None) -> list[Conversation]:
    """The conversations of a JSONL file (default: the bundled dev set). Raises InvalidInputError."""
    out = []
    for n, line in enumerate((path or DATA).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(Conversation(**{k: row[k] for k in row if k in Conversation.__dataclass_fields__}))
        except (ValueError, TypeError, KeyError) as e:
            raise InvalidInputError(f"{path or DATA}:{n}: not a conversation ({e})") from e
    return out


# --- matching ------------------------------------------------------------------------------------------


def _canonical(subject: str, relation: str) -> tuple[str, str]:
    """ "(user's manager, name)" is "(user, manager)"; every "user's …" subject is the speaker's person."""
    s, r = normalize(subject), normalize(relation)
    if s.startswith("user's ") and r == "name":
        return "user", s.removeprefix("user's ")
    return ("user's" if s.startswith("user's ") else s), r


def _value(text: str) -> str:
    v = normalize(text)
    return re.sub(r"[\s\-–—]", "", v) if re.fullmatch(r"[\d\s\-–—+().]+", v) else v


def _same_value(a: str, b: str) -> bool:
    a, b = _value(a), _value(b)
    return a == b or (min(len(a), len(b)) >= 2 and (a in b or b in a))


def _same_subject(a: str, b: str) -> bool:
    """The speaker ("user") and the speaker's people ("user's") never match each other; names match loosely."""
    if "user" in (a, b) or "user's" in (a, b):
        return a == b
    return a == b or (min(len(a), len(b)) >= 2 and (a in b or b in a))


def matches(gold: dict[str, str], fact: Fact) -> bool:
    gs, _ = _canonical(gold["subject"], gold["relation"])
    fs, _ = _canonical(fact.subject, fact.relation)
    return _same_subject(gs, fs) and _same_value(gold["object"], fact.object)


# --- running --------------------------------------------------------------------------------------------


def play(bot: Assistant, conv: Conversation, user: str) -> list[float]:
    """Play the conversation's turns as `user`; the latencies (ms) of reading and writing what turns stated."""
    session: str | None = None
    learn_ms: list[float] = []
    turns = conv.turns
    for i, turn in enumerate(turns):
        if turn["role"] != "user":
            continue
        scripted = turns[i + 1]["content"] if i + 1 < len(turns) and turns[i + 1]["role"] == "assistant" else None
        reply = (
            bot.replay(turn["content"], scripted, user, session)
            if scripted
            else bot.chat(turn["content"], user=user, session=session)
        )
        session = reply.session_id
        if reply.checks.get("learn_ms") is not None:  # the message stated something: reading + writing it
            learn_ms.append(reply.checks["learn_ms"])
    return learn_ms


def score(bot: Assistant, conv: Conversation, user: str) -> dict[str, Any]:
    """The conversation's figures from the user's fact graph and memories."""
    facts = [f for f in bot.facts.history(None, user=user) if f.scope == f"user:{user}" and not f.expired_at]
    gold = conv.facts
    matched = [f for f in facts if any(matches(g, f) for g in gold)]
    found, right_state, stale = 0, 0, 0
    for g in gold:
        mine = [f for f in facts if matches(g, f)]
        # Relations are named freely, but where they tell two facts apart ("likes 香菜" ended, "dislikes 香菜"
        # current) the one with the gold relation is the one judged.
        named = [f for f in mine if canonical_relation(f.relation) == canonical_relation(g["relation"])]
        mine = named or mine
        found += bool(mine)
        want_current = g["status"] == "current"
        held = any(f.current for f in mine)
        right_state += (held if want_current else not held) and (bool(mine) or not want_current)
        stale += (not want_current) and held
    flagged = [m for m in bot.memories.list(user=user) if m.metadata.get("flagged")]
    return {
        "written": len(facts),
        "matched": len(matched),
        "gold": len(gold),
        "found": found,
        "states_right": right_state == len(gold),
        "stale": stale,
        "history_gold": sum(g["status"] != "current" for g in gold),
        "false_writes": len(facts) - len(matched) if QUIET & set(conv.kinds) else 0,
        "flagged": bool(flagged),
        "facts": [[f.subject, f.relation, f.object, "current" if f.current else "history"] for f in facts],
    }


def probe(bot: Assistant, conv: Conversation, user: str) -> list[dict[str, Any]]:
    out = []
    for p in conv.probes:
        reply = bot.chat(p["question"], user=user).text  # a new session: memory, not the chat history
        good = any(normalize(a) in normalize(reply) for a in p["answer_any"])
        bad = [x for x in p.get("answer_none", []) if normalize(x) in normalize(reply)]
        out.append({"question": p["question"], "reply": reply, "right": good and not bad})
    return out


def run(
    convs: list[Conversation],
    open_bot: Callable[[Path, str], Assistant],
    modes: list[str],
    probes: bool,
    progress: Tick | None = None,
) -> dict[str, Any]:
    """Play every conversation once per reading mode, each as its own user in one fresh data dir per mode."""
    tick = progress or (lambda *_: None)
    report: dict[str, Any] = {"conversations": len(convs), "modes": {}}
    for mode in modes:
        rows = []
        with tempfile.TemporaryDirectory(prefix="dilm-eval-facts-") as tmp, open_bot(Path(tmp), mode) as bot:
            for n, conv in enumerate(convs, 1):
                user = f"u{n}"
                learn_ms = play(bot, conv, user)
                row = {"id": conv.id, "lang": conv.lang, "kinds": conv.kinds, "learn_ms": learn_ms}
                row |= score(bot, conv, user)
                row["probes"] = probe(bot, conv, user) if probes else []
                rows.append(row)
                tick(f"facts ({mode})", n, len(convs))
            _repeat_errors(bot, rows)
        report["modes"][mode] = {"summary": summarize(rows, convs), "rows": rows}
    return report


def _repeat_errors(bot: Assistant, rows: list[dict[str, Any]]) -> None:
    """Each conversation's answers after a change, and those that repeated the replaced value (`bot.stats`)."""
    scopes = {r["key"]: r for r in bot.stats.repeat_errors(days=2)["by_scope"]}
    for n, row in enumerate(rows, 1):
        found = scopes.get(f"user:u{n}", {})
        row["checked_answers"], row["repeats"] = found.get("answers", 0), found.get("repeats", 0)


# --- figures --------------------------------------------------------------------------------------------


def _figures(rows: list[dict[str, Any]], convs: dict[str, Conversation]) -> dict[str, Any]:
    written = sum(r["written"] for r in rows)
    updates = [r for r in rows if UPDATES & set(r["kinds"])]
    injections = [r for r in rows if convs[r["id"]].flagged]
    probes = [p for r in rows for p in r["probes"]]
    learn = sorted(ms for r in rows for ms in r["learn_ms"])
    return {
        "conversations": len(rows),
        "precision": sum(r["matched"] for r in rows) / written if written else None,
        "recall": _ratio(sum(r["found"] for r in rows), sum(r["gold"] for r in rows)),
        "update_accuracy": _ratio(sum(r["states_right"] for r in updates), len(updates)),
        "stale": _ratio(sum(r["stale"] for r in rows), sum(r["history_gold"] for r in rows)),
        "false_writes": sum(r["false_writes"] for r in rows),
        "quiet_conversations": sum(bool(QUIET & set(r["kinds"])) for r in rows),
        "flagged": _ratio(sum(r["flagged"] for r in injections), len(injections)),
        "answers": _ratio(sum(p["right"] for p in probes), len(probes)),
        "repeat_errors": _ratio(sum(r.get("repeats", 0) for r in rows), sum(r.get("checked_answers", 0) for r in rows)),
        "learn_ms_p50": _quantile(learn, 0.5),
        "learn_ms_p95": _quantile(learn, 0.95),
    }


def summarize(rows: list[dict[str, Any]], convs: list[Conversation]) -> dict[str, Any]:
    by_id = {c.id: c for c in convs}
    out = {lang: _figures([r for r in rows if r["lang"] == lang], by_id) for lang in ("en", "zh")}
    return {k: v for k, v in out.items() if v["conversations"]} | {"overall": _figures(rows, by_id)}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _quantile(values: list[float], q: float) -> float | None:
    return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else None


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for mode, result in report["modes"].items():
        for lang, f in result["summary"].items():
            rows.append(
                [
                    mode,
                    lang,
                    str(f["conversations"]),
                    pct(f["precision"]),
                    pct(f["recall"]),
                    pct(f["update_accuracy"]),
                    pct(f["stale"]),
                    f"{f['false_writes']} / {f['quiet_conversations']}",
                    pct(f["flagged"]),
                    pct(f["answers"]),
                    pct(f["repeat_errors"]),
                    "—" if f["learn_ms_p95"] is None else f"{f['learn_ms_p50']:.0f} / {f['learn_ms_p95']:.0f}",
                ]
            )
    return rows


COLUMNS = (
    "mode",
    "language",
    "conv.",
    "precision",
    "recall",
    "update acc.",
    "stale",
    "false writes",
    "flagged",
    "answers",
    "repeat errors",
    "learn ms p50/p95",
)

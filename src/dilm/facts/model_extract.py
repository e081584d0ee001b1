"""Model-based statement analysis: the model reads a message into the same `Analysis` the rules give.

The prompt asks for the message's act and its facts, each with a status (current / ended / past), and shows
the facts already known about the speaker so that an update reuses their relation names (as Mem0 and Graphiti
reconcile new facts against existing ones). Facts whose value the message does not contain are dropped as
invented; dates come from the rules' time phrases. The answer is constrained to
`SCHEMA` where the backend can (llama.cpp: grammar-constrained decoding), so it always parses; a backend
without constraints (some OpenAI-compatible servers) is parsed tolerantly.

`hybrid` runs the rules first (microseconds) and asks the model only for declarative text the rules could
not read, merging both; `analyze_with_model` asks the model for everything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from dilm.config import Decoding
from dilm.facts.analyze import Analysis, Claim, analyze, is_question, is_unasserted, referent_of
from dilm.facts.extract import KIN_WORD, SPEAKER, THIRD_PERSON, USER, Triple, canonical_relation, owner, sentences
from dilm.facts.instruction import is_instruction
from dilm.facts.timeexpr import iso, time_phrases
from dilm.models.base import Backend
from dilm.text import normalize
from dilm.types import Fact

_STATUS = ["current", "ended", "past"]
# {"act": ..., "facts": [[subject, relation, object, status], ...]} (JSON Schema; llama.cpp turns it into a
# grammar). Tuples keep the output short: a fact costs ~15 tokens instead of ~40. Dates come from the rules'
# time phrases (`timeexpr`), not the model: the 1.5B model invented years when asked for them.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "act": {"enum": ["question", "statement", "instruction", "chatter"]},
        "facts": {
            "type": "array",
            "maxItems": 6,
            "items": {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"type": "string"}, {"type": "string"}, {"enum": _STATUS}],
                "minItems": 4,
                "maxItems": 4,
            },
        },
    },
    "required": ["act", "facts"],
}

PROMPT = """Read the message and return its act and the facts it states, as JSON.
act: "question" if it only asks; "instruction" if it tells the assistant how to behave or what to answer; \
"statement" if it states facts about people, places, organisations or things; "chatter" otherwise (greetings, \
thanks, weather, opinions, jokes, hypotheticals, requests for help).
facts: [subject, relation, object, status] each, only what the message says (never guess; none is fine).
- subject: "user" for the speaker; "user's <person>" for the speaker's people ("user's mother"); else the name.
- relation: a few English words naming the attribute ("lives in", "works at", "age", "price", "meeting \
time", "habit"); reuse a relation of a known fact when the message changes it.
- object: the value exactly as written in the message, in its language; a name, place, number or thing.
- status: "current" (true now), "ended" (the message says it stopped: no longer, quit, sold, 不再, 离职), \
"past" (it was true before and something else holds now: used to, was … until, 以前).

Message: My brother Tariq moved from Lyon to Nantes.
{"act": "statement", "facts": [["user's brother", "name", "Tariq", "current"], \
["user's brother", "lives in", "Nantes", "current"], ["user's brother", "lives in", "Lyon", "past"]]}
Message: 我已经不在远星科技上班了，现在在一家花店当店长。
{"act": "statement", "facts": [["user", "works at", "远星科技", "ended"], ["user", "job title", "店长", "current"]]}
Message: 你还记得我女儿几岁吗
{"act": "question", "facts": []}
Message: If I won the lottery I'd buy a boat. What a grey morning!
{"act": "chatter", "facts": []}
"""


def prompt(text: str, known: Sequence[Fact]) -> str:
    lines = [f"[{f.subject!r}, {f.relation!r}, {f.object!r}]" for f in known[:12]]
    facts = ("Known facts: " + "; ".join(lines) + "\n") if lines else ""
    return f"{PROMPT}{facts}Message: {text.strip()}\n"


def parse(reply: str, text: str | None = None) -> Analysis:
    """The model's JSON as an Analysis; anything unusable is skipped (an unparsable reply is chatter). With the
    message `text`, facts whose object (or named subject) the message does not contain are dropped as invented,
    and the message's time phrase, if any, dates the claims."""
    match = re.search(r"\{.*\}", reply, re.S)
    try:
        data = json.loads(match.group()) if match else {}
    except ValueError:
        data = {}
    act = data.get("act") if isinstance(data, dict) else None
    rows = data.get("facts") if isinstance(data, dict) else None
    claims = [c for c in (_claim(row) for row in (rows if isinstance(rows, list) else [])) if c is not None]
    if text is not None:
        claims = _dated([c for c in claims if _grounded(c, text)], text)
    claims = list({(c.triple, c.negated, c.past): c for c in claims}.values())  # the model may repeat itself
    # A value read both as current and as past or ended ("之前那辆X我开了五年"): the message said it is over.
    over = {(c.triple.subject, normalize(c.triple.object)) for c in claims if c.negated or c.past}
    claims = [c for c in claims if c.negated or c.past or (c.triple.subject, normalize(c.triple.object)) not in over]
    if act in ("question", "instruction", "chatter") or not claims:
        return Analysis("question" if act == "question" else "chatter", (), instruction=act == "instruction")
    return Analysis("statement", tuple(claims))


def _grounded(c: Claim, text: str) -> bool:
    """The value and the subject must be in the message: "London" for a message about Whitby is invented, and
    so is the speaker as subject of "苏念安开的是一辆云豹E7" (the speaker's people may be a pronoun: "she")."""
    t = normalize(text)
    if normalize(c.triple.object) not in t:
        return False
    if c.triple.subject == USER:
        return bool(SPEAKER.search(text))
    if c.triple.subject.startswith(f"{USER}'s "):
        return bool(SPEAKER.search(text) or THIRD_PERSON.search(text))
    return normalize(c.triple.subject) in t


def _dated(claims: list[Claim], text: str) -> list[Claim]:
    """The message's one time phrase, if it has one, dates its claims (an end for past or ended ones)."""
    _, times = time_phrases(text, bool(re.search(r"[\u4e00-\u9fff]", text)))
    if not times:
        return claims
    out = []
    for c in claims:
        ends = c.past or c.negated
        start = times.get("valid_at") if not c.negated else None
        end = times.get("invalid_at") or (times.get("valid_at") if ends and "invalid_at" not in times else None)
        out.append(replace(c, valid_at=None if ends and not c.past else start, invalid_at=end if ends else None))
    return out


# What a small model puts where a value belongs: a verb ("quit", "shifted", "shut down") or a negated phrase.
_VERB_LIKE = re.compile(
    r"(?:quit|left|ran|went|got|shut|sold|did|made|took|gave|began|begun|stopped|started|moved|shifted|changed|"
    r"switched|closed|joined)(?: (?:down|up|off|out|over|away))?|[不没别未].*"
)


def _claim(row: Any) -> Claim | None:
    if isinstance(row, dict):
        row = [row.get(k, "") for k in ("subject", "relation", "object", "status", "since", "until")]
    if not isinstance(row, list) or len(row) < 3 or not all(isinstance(x, str) for x in row):
        return None
    subject, relation, obj = (x.strip() for x in row[:3])
    status, since, until = ([*row[3:6], "", "", ""])[:3]
    if not (subject and relation and obj) or len(obj) > 120:
        return None
    if canonical_relation(relation) == "name" and KIN_WORD.fullmatch(obj):  # "(user's mother, name, mum)"
        return None
    if _VERB_LIKE.fullmatch(obj):  # "(user, job title, quit)", "(user, habit, 不喝咖啡)": an act, not a value
        return None
    subject = USER if subject.casefold() in {"user", "i", "me", "我", "用户", "speaker"} else owner(subject)
    return Claim(
        Triple(subject, canonical_relation(relation), obj),
        negated=status == "ended",
        past=status == "past",
        valid_at=iso(since),
        invalid_at=iso(until),
        source="model",
    )


def analyze_with_model(backend: Backend, text: str, known: Sequence[Fact] = ()) -> Analysis:
    """The model's reading of `text`; the rules' when the backend fails (reading must never break a turn)."""
    try:
        reply = backend.generate(
            [{"role": "user", "content": prompt(text, known)}],
            Decoding(max_new_tokens=160, json_schema=SCHEMA),
        )[0].text
    except Exception:  # noqa: BLE001 — a failed model call must not lose the message; the rules still apply
        return analyze(text)
    return parse(reply, text)


def needs_model(text: str, rules: Analysis) -> bool:
    """Whether the rules may have missed something: a declarative sentence (not a question, not an
    instruction) that mentions something a fact could be about, yet gave no claim."""
    if is_instruction(text):
        return False
    for sentence in _unread(text, rules):
        hanzi = len(re.findall(r"[\u4e00-\u9fff]", sentence))
        words = hanzi / 2 + len(re.findall(r"[A-Za-z0-9]+", sentence))
        if (words >= 3 or hanzi >= 4) and _anchored(sentence):  # "她住成都" says something
            return True
    return False


def _unread(text: str, rules: Analysis) -> list[str]:
    """The sentences the rules read nothing from, less questions, hypotheticals and opinions (which assert nothing)."""
    covered = {c.sentence for c in rules.claims}
    return [s for s in sentences(text) if s not in covered and not is_question(s) and not is_unasserted(s)]


def _anchored(sentence: str) -> bool:
    """What a fact is about: a number, a name written with a capital inside the sentence, an acronym, an
    address, or the speaker and their people (a pronoun may mean one). "lovely weather today" has none."""
    if re.search(r"\d|[一二三四五六七八九十两百千万]|\S@\S|[我她他]|[A-Z]{2}", sentence):
        return True
    if re.search(r"(?<=\s)[A-Z][a-z]", sentence):
        return True
    return bool(re.search(r"\b(?:i|i'm|i've|my|we|our|me|she|he|her|his)\b", sentence, re.I))


def hybrid(backend: Backend, text: str, known: Sequence[Fact] = ()) -> Analysis:
    """Rules first; the model for what they could not read; claims merged (the rules' win on the same fact)."""
    rules = analyze(text, referent_of(known))
    if not needs_model(text, rules):
        return rules
    model = analyze_with_model(backend, text, known)
    # The rules own the sentences they read; the model's claims count only where its value is in a sentence
    # they did not ("quit Fennick Labs" read by rules is not also the job title "quit").
    unread = [normalize(s) for s in _unread(text, rules)]
    seen = {(normalize(c.triple.subject), normalize(c.triple.object)) for c in rules.claims}
    extra = [
        c
        for c in model.claims
        if (normalize(c.triple.subject), normalize(c.triple.object)) not in seen
        and any(normalize(c.triple.object) in s for s in unread)
    ]
    claims = (*rules.claims, *extra)
    act = rules.act if rules.act == "question" else ("statement" if claims else model.act)
    return Analysis(act, claims, instruction=model.instruction)

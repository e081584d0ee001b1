"""Reconciling a message with the facts already known: an end or a change said without its relation.

Ends: "Handed in my notice and quit Brightmoor.", "Theo and I broke up.", "the Mill Street branch has shut
down", "我现在不当班长了": the words say that something stopped and name the value of a current fact, but not the
relation, so the statement patterns (which need it: "I no longer work at X") read nothing. The known fact whose
value is named, and whose subject is named or is the speaker, is the one that ended.

Changes: "号码换了 新的是139-0000-5678", "上周刚换到9楼了": the words say a value changed and give a new value of
the same kind (a phone number, a floor) as exactly one current fact; that fact is superseded.

Mem0 (UPDATE / DELETE) and Graphiti (edge invalidation) decide this by asking a model about the existing facts;
this is the rule path, in microseconds, and the model path (`model_extract`) still reads what it cannot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from dilm.facts.analyze import Claim, is_question
from dilm.facts.extract import SPEAKER, THIRD_PERSON, USER, Triple, clean_statement, sentences
from dilm.text import normalize
from dilm.types import Fact

__all__ = ["changed_by_shape", "ended_by_mention", "narrowed", "says_a_change", "says_an_end", "swapped"]

# Verbs whose object is what stopped: the named value must be that object ("quit Brightmoor", "cancelled my
# membership at Kestrel"), so "I left my keys at Brightmoor" ends nothing.
_ENDS_OBJECT = re.compile(
    r"\b(?:quit|left|resigned from|cancel(?:l)?ed|sold|gave away|got rid of|dropped out of|moved out of|"
    r"stopped going to|walked away from)\s+"
    r"(?:(?:my|our|the|his|her|their)\s+)?(?:(?:job|membership|position|role|subscription|place|seat|spot|"
    r"contract|account|lease|course|class|team|band|club)\s+(?:at|with|in|of|for)\s+)?"
    r"((?:\S+\s*){1,5})",
    re.I,
)
# Words that say the sentence's subject stopped: the value may be named anywhere in the sentence.
_ENDS_SENTENCE = re.compile(
    r"\b(?:broke up|split up|divorced|shut down|has shut|have shut|closed down|has closed|went bust|passed away|"
    r"died|no longer|moved out|separated|not\b.{1,40}\bany ?more)\b"
    r"|不再|离职|辞职|辞掉|分手|分开了|离婚|关了|关门了|倒闭|停业|去世|戒了|退出了|毕业了|卖了|卖掉了|送给|送人了|搬走了|"
    r"不(?:当|做|干|住|在|上|用|养|去|学|抽|喝|玩|开|是)[^，,。！？]{0,10}了",
    re.I,
)
# Plans, wishes and conditions end nothing yet.
_NOT_YET = re.compile(
    r"\b(?:if|would|might|maybe|thinking (?:of|about)|going to|gonna|plan(?:ning)? to|want(?:s)? to|"
    r"should i|considering)\b|如果|要是|打算|考虑|想要?|准备|可能",
    re.I,
)
_BREAKUP = re.compile(r"\b(?:broke up|split up|separated|divorced|got divorced)\b|分手|离婚|分开了", re.I)
_PARTNER = re.compile(
    r"\b(?:boyfriend|girlfriend|partner|husband|wife|fianc[ée]e?|spouse)\b|男朋友|女朋友|男友|女友|老公|老婆|丈夫|妻子|对象|未婚[夫妻]",
    re.I,
)
_HANZI = re.compile(r"[\u4e00-\u9fff]")
_DROPPED_I = re.compile(
    r"(?i:not|no longer|never|quit|left|sold|cancell?ed|stopped|gave up|moved out|don't|haven't|didn't|"
    r"finally|just)\b|不再|不|没|已经不|戒了"
)
_FUNCTION_HANZI = set("我你他她它们的了是在有个一这那就也都")


def ended_by_mention(text: str, known: Sequence[Fact], read: Iterable[str] = ()) -> list[Claim]:
    """Negated claims, one per current fact in `known` that a sentence of `text` says has ended by naming its
    value; `read`: sentences the statement rules already read (skipped). Shapes: text up to a message, known
    facts as stored; returns [] when nothing is named."""
    done = set(read)
    out: list[Claim] = []
    for sentence in sentences(text):
        if sentence in done or is_question(sentence) or _NOT_YET.search(sentence):
            continue
        spans = [m.group(1) for m in _ENDS_OBJECT.finditer(sentence)]
        whole = bool(_ENDS_SENTENCE.search(sentence))
        if not spans and not whole:
            continue
        for f in known:
            if f.invalid_at is not None or f.expired_at is not None:
                continue
            named = any(_heads(f.object, s) for s in spans) or (whole and _names(f.object, sentence))
            # "Pepper passed away", "Theo and I broke up": a named person or pet is the one the sentence is about
            if named and (_about(f.subject, sentence) or f.relation.endswith("name")) or _breakup(f, sentence):
                out.append(Claim(Triple(f.subject, f.relation, f.object), negated=True, sentence=sentence))
    return list({c.triple: c for c in out}.values())


def _about(subject: str, sentence: str) -> bool:
    """The sentence is about the fact's subject: the speaker (first person), the speaker's person named
    ("my sister", "she"), or the subject named."""
    if subject == USER:  # "not vegan anymore tbh", "不上了": chat drops the "I"
        return bool(
            SPEAKER.search(sentence)
            or (_DROPPED_I.match(clean_statement(sentence)) and not THIRD_PERSON.search(sentence))
        )
    if subject.startswith(f"{USER}'s "):
        return bool(THIRD_PERSON.search(sentence)) or _names(subject.removeprefix(f"{USER}'s "), sentence)
    return _names(subject, sentence)


def _breakup(f: Fact, sentence: str) -> bool:
    """ "We broke up", "我们分手了": the speaker's partner, whoever it was, is no longer."""
    partner = _PARTNER.search(f"{f.subject} {f.relation}")
    return bool(partner and f.subject.startswith(USER) and _BREAKUP.search(sentence) and SPEAKER.search(sentence))


def says_a_change(text: str) -> bool:
    """Whether `text` has words that say a value changed (cheap: decides whether known facts are read)."""
    return bool(_CHANGE.search(text))


def says_an_end(text: str) -> bool:
    """Whether `text` has words that say something stopped (cheap: decides whether known facts are read)."""
    return bool(_ENDS_OBJECT.search(text) or _ENDS_SENTENCE.search(text))


def _names(value: str, sentence: str) -> bool:
    """Whether `sentence` names `value`: the whole value, one of its proper names ("Kestrel Climbing Gym", or
    its first word, as people shorten it), or for Chinese a shared run of two or more content characters."""
    v, s = normalize(value), normalize(sentence)
    if len(v) >= 2 and re.search(rf"(?<!\w){re.escape(v)}(?!\w)", s):
        return True
    for run in re.findall(r"[A-Z][\w'&-]*(?:\s+[A-Z][\w'&-]*)*", value):
        first = run.split()[0]
        if re.search(rf"\b{re.escape(run)}\b", sentence) or (len(first) >= 4 and re.search(rf"\b{first}\b", sentence)):
            return True
    content = sum(ch not in _FUNCTION_HANZI for ch in v if _HANZI.fullmatch(ch))
    shared = _shared_hanzi(v, s) if _HANZI.search(v) else 0
    return shared >= 2 and shared >= 0.6 * content  # "班长" names 我们班班长; "公司" does not name 星河科技公司


def _heads(value: str, span: str) -> bool:
    """Whether `span` (the words after an ending verb) starts by naming `value`."""
    v, s = normalize(value), normalize(span)
    names = [v, *(run.split()[0].casefold() for run in re.findall(r"[A-Z][\w'&-]*(?:\s+[A-Z][\w'&-]*)*", value))]
    return any(len(n) >= 3 and re.match(rf"(?:the |a |an )?{re.escape(n)}(?!\w)", s) for n in names)


def _shared_hanzi(a: str, b: str) -> int:
    """Length of the longest run of content characters (not 我, 的, 了 …) that `a` and `b` share."""
    best = 0
    for i in range(len(a)):
        for j in range(i + best + 1, len(a) + 1):
            part = a[i:j]
            if part not in b:
                break
            if _HANZI.fullmatch(part[0]) and not set(part) <= _FUNCTION_HANZI:
                best = max(best, sum(ch not in _FUNCTION_HANZI for ch in part))
    return best


# --- a change said without its relation ---------------------------------------------------------------

_CHANGE = re.compile(
    r"\b(?:changed?|switched|moved|new (?:one|number|address|email)|now|updated|upgraded|went up|gone up|"
    r"increased|raised|dropped|instead|replaced|rescheduled|shifted|pushed|bumped|traded|swapped|exchanged)\b"
    r"|换|改|调到|调整|更新|升级|涨|降|变成|变了|现在|新的|搬到|挪到",
    re.I,
)
_ZH_DIGIT = r"[\d一二三四五六七八九十两]"
# (kind, shape): a value's kind is what a change of it keeps (a phone number stays a phone number).
_KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("phone", re.compile(r"\+?\d[\d ()-]{6,}\d")),
    (
        "time",
        re.compile(
            rf"(?:每?周[一二三四五六日天]|星期[一二三四五六日天])?(?:[上下中]午|早上|晚上)?{_ZH_DIGIT}+点(?:半|{_ZH_DIGIT}+分)?"
            r"|(?:(?:mon|tues|wednes|thurs|fri|satur|sun)days? (?:at )?)?\d{1,2}(?::\d{2})?\s*(?:am|pm)\b"
            r"|\b\d{1,2}:\d{2}\b",
            re.I,
        ),
    ),
    (
        "unit",
        re.compile(rf"{_ZH_DIGIT}+(?:\.\d+)?\s*(?:楼|层|号楼|室|kg|公斤|斤|km|公里|元|块|%|岁|cm|m)(?![a-z])", re.I),
    ),
    (
        "version",
        re.compile(r"(?<![\w.])[vV]?\d+\.\d+(?:\.\d+)*(?![\d.])|(?<=[\u4e00-\u9fff])\d+\.\d+(?:\.\d+)*(?![\d.])"),
    ),
]


def _kind(value: str) -> tuple[str, str] | None:
    """(kind, unit) of a value that is wholly one shaped value ("7楼" -> ("unit", "楼")), else None."""
    for kind, shape in _KINDS:
        m = shape.fullmatch(value.strip())
        if m:
            unit = re.sub(rf"^{_ZH_DIGIT}+(?:\.\d+)?\s*", "", m.group()) if kind == "unit" else ""
            return kind, unit.casefold()
    return None


def changed_by_shape(text: str, known: Sequence[Fact], read: Iterable[str] = ()) -> list[Claim]:
    """Change claims for sentences that say a value changed and give a new value of the same kind as exactly one
    current known fact ("号码换了 新的是139-0000-5678", "灵犀笔记更新到4.0了", "上周刚换到9楼了"), about the subject
    they name, else about the speaker. `read`: sentences the statement rules already read (skipped)."""
    done = set(read)
    out: list[Claim] = []
    for sentence in sentences(text):
        if sentence in done or is_question(sentence) or _NOT_YET.search(sentence) or not _CHANGE.search(sentence):
            continue
        current = [f for f in known if f.invalid_at is None and f.expired_at is None]
        named = [f for f in current if _names(f.subject, sentence)]
        about = named or [f for f in current if f.subject == USER or f.subject.startswith(f"{USER}'s ")]
        for _, shape in _KINDS:
            for m in shape.finditer(sentence):
                new = m.group().strip()
                want = _kind(new)
                same = {(f.subject, f.relation) for f in about if _kind(f.object) == want and f.object != new}
                if len(same) == 1:
                    subject, relation = same.pop()
                    out.append(Claim(Triple(subject, relation, new), change=True, sentence=sentence))
            if out:
                break
    return list({c.triple: c for c in out}.values())


def narrowed(claims: Sequence[Claim], known: Sequence[Fact]) -> list[Claim]:
    """A relation said by its head alone ("Slow Orbit is my favourite now") is the one current relation of
    that subject it heads ("favourite band"), when exactly one does and none is the head itself."""
    out = []
    for c in claims:
        t = c.triple
        mine = [f for f in known if f.current and normalize(f.subject) == normalize(t.subject)]
        rel = normalize(t.relation)
        heads = {f.relation for f in mine if normalize(f.relation).startswith(f"{rel} ")}
        if not c.negated and len(heads) == 1 and not any(normalize(f.relation) == rel for f in mine):
            c = replace(c, triple=Triple(t.subject, heads.pop(), t.object))
        out.append(c)
    return out


# "I traded the Sprint in for a Halden Cruiser", "swapped my Kindle for a Kobo", "把自行车换成了电动车": the old value
# is named, the new one takes its place under the same relation.
_SWAP = [
    re.compile(
        r"\b(?:traded|swapped|exchanged|replaced)\s+(?:in\s+)?(?:my |our |the |his |her )?(?P<old>.+?)\s+(?:in\s+)?"
        r"(?:for|with)\s+(?:a |an |the |my )?(?P<new>[^,.;!?]+)",
        re.I,
    ),
    re.compile(
        r"把(?:我的?|我们的?)?(?P<old>[^，,。]+?)换成了?(?:一[辆台部只个条])?(?P<new>[^，,。！!]+?)了?(?:[，,。！!]|$)"
    ),
]


def swapped(text: str, known: Sequence[Fact]) -> list[Claim]:
    """Change claims for "traded X in for Y": the one current fact whose value contains X now has value Y."""
    out: list[Claim] = []
    for sentence in sentences(text):
        if is_question(sentence) or _NOT_YET.search(sentence):
            continue
        for pattern in _SWAP:
            m = pattern.search(sentence)
            if m is None:
                continue
            old, new = normalize(m["old"]), m["new"].strip()
            hits = {(f.subject, f.relation) for f in known if f.current and old and old in normalize(f.object)}
            if len(hits) == 1 and new:
                subject, relation = hits.pop()
                out.append(Claim(Triple(subject, relation, new), change=True, sentence=sentence))
    return out

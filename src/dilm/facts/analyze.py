"""Statement analysis: what a message does (asks, states, corrects, instructs) and the claims it makes.

A claim is a triple plus how it holds: negated ("I no longer work at X", "我不再住在苏州了": the fact ends),
past ("was X until 2016", "I used to live in X", "以前是": history, never the current value), a change ("I moved
from A to B", "改成", "搬到": replaces the current value), and the event time the words give (valid_at /
invalid_at, ISO 8601 of reduced precision: "2016", "2021-03"). Rules only: fast (microseconds) and
deterministic; `facts.model_extract` returns the same shape from the model for what rules miss.

How it works: each sentence is first tested for being a question (a question never states a fact); then its
time phrases are cut out, and a chain of rewrites turns negated, past and changed forms into the plain present
statement the extraction patterns read ("I don't live in Oslo anymore" -> "I live in Oslo", negated).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from dilm.facts.extract import USER, ZH_KIN, Triple, canonical_relation, clean_statement, match, sentences
from dilm.facts.instruction import is_instruction
from dilm.facts.labelled import labelled, topic
from dilm.facts.timeexpr import time_phrases
from dilm.types import Fact

Act = Literal["question", "statement", "chatter"]

MAX_SENTENCE = 300  # characters: longer sentences are left to the model reader

# Relations that hold many values at once: a new value is added beside the others, never replaces them.
MULTI_VALUED = frozenset({"likes", "dislikes", "allergic to", "speaks", "owns", "has", "plays", "knows", "visited"})
# A value stated under one of these ends the same value under the other ("I love olives" -> "I hate olives").
OPPOSITE = {"likes": "dislikes", "dislikes": "likes"}


@dataclass(frozen=True)
class Claim:
    """One fact a message states, and how it holds.

    negated: the fact stopped holding (object may be "" when the words give no value: "I quit my job");
    past: it held before and says nothing about now, unless `negated`; change: it replaces the current value;
    old: the value a change replaced ("moved from A to B"); valid_at / invalid_at: event time from the words;
    source: "rule" or "model"; sentence: the sentence that states it (one memory is kept per sentence)."""

    triple: Triple
    negated: bool = False
    past: bool = False
    change: bool = False
    old: str | None = None
    valid_at: str | None = None
    invalid_at: str | None = None
    source: str = "rule"
    sentence: str = ""


@dataclass(frozen=True)
class Analysis:
    """A message read once: its act and its claims (a question may carry claims in its other sentences);
    `instruction`: it instructs the assistant (see `facts.instruction`), so it must not be learned as facts."""

    act: Act
    claims: tuple[Claim, ...] = ()
    instruction: bool = False


# --- questions -------------------------------------------------------------------------------------------

_Q_EN = re.compile(
    r"^(?:(?:so|and|but|ok|okay|hey|hi|well|then|now|also|btw|quick question)[\s,]+)*"
    r"(?:(?:what|who|whom|whose|where|when|why|how|which)(?:'s|'re| (?:(?!(?:i|you|we|he|she|they|it)\b)\w+ ){0,2}?"
    r"(?:do|does|did|is|are|was|were|am|can|could|will|would|should|have|has|had|may|might|must)\b)|"
    r"how (?:much|many|old|long|far|tall|big|come)\b|"
    r"why not\b|"
    r"(?:do|does|did|is|are|was|were|am|can|could|will|would|should|shall|have|has|had|may|might|must|"
    r"isn't|aren't|wasn't|don't|doesn't|didn't|won't|can't)\s+(?:i|you|we|he|she|they|it|my|your|our|his|her|"
    r"their|the|this|that|there|these|those|[A-Z]\w*)\b|"
    r"(?:i wonder|i'm wondering|i was wondering|wondering|tell me|remind me|do you know|do you remember|"
    r"any idea)\b)",
    re.I,
)
_Q_ZH = re.compile(
    r"什么|啥|谁|哪|几(?:[点个岁号月年天时楼层口位级路栋]|年级|单元|号线)|多少|多大|多久|多高|多重|多远|怎么|怎样|如何|"
    r"为什么|为啥|是否|有没有|是不是|对不对|能不能|会不会|要不要|在不在|(.)不\1|[吗嘛][\s。.!！~]*$|什么呢|哪呢|"
    r"来着[\s。.!！~]*$"  # "我工位在几楼来着": trying to recall
)


def is_question(sentence: str) -> bool:
    """Whether a sentence asks rather than states: "?", a question word or an inverted auxiliary in English,
    a question word, an A-not-A form or a final particle in Chinese ("我叫什么。", "Is my manager Lena")."""
    s = sentence.strip()
    if not s:
        return False
    if s.endswith(("?", "？")):
        return True
    if re.search(r"[\u4e00-\u9fff]", s):
        return bool(_Q_ZH.search(clean_statement(s)))
    return bool(_Q_EN.match(clean_statement(s) or s))


# --- rewrites: negated, past and changed forms into the plain present --------------------------------------

Flags = dict[str, object]
_R = re.I


def _sub(pattern: str, repl: str, flags: int = _R) -> tuple[re.Pattern[str], str]:
    return re.compile(pattern, flags), repl


# (pattern, replacement, what it marks). Applied in order, each at most once.
_REWRITES_EN: list[tuple[re.Pattern[str], str, Flags]] = [
    (
        *_sub(
            r"^(i|we|\w[\w .'&-]*?) (?:no longer|don't|do not|doesn't|does not) (\w+)(.*?)(?: any ?more| now)?$",
            r"\1 \2\3",
        ),
        {"negated": True},
    ),
    (*_sub(r"^(.+?) (am|is|are|'m|'s|'re) (?:no longer|not .*?any ?more)$", r"\1 \2"), {"negated": True}),
    (*_sub(r"\bno longer\b ?", ""), {"negated": True}),
    (*_sub(r"^(.+?) (am|is|are|was|were|'m|'s|'re) not (.+?) any ?more$", r"\1 \2 \3"), {"negated": True}),
    (
        *_sub(
            r"^i (?:quit|resigned(?: from)?|got fired(?: from)?|was laid off(?: from)?|left my job|handed in my notice)"
            r"(?: (?:my job|at|from))*\s*(.*)$",
            r"i work at \1",
        ),
        {"negated": True},
    ),
    (*_sub(r"^(?i:i) left ([A-Z].*)$", r"i work at \1", 0), {"negated": True}),
    (
        *_sub(r"^i (?:have |'ve )?(?:just |recently )?(?:moved|relocated) from (.+?) to (.+)$", r"i live in \2"),
        {"change": True, "old": 1},
    ),
    (
        *_sub(
            r"^i (?:have |'ve )?(?:just |recently |finally )?(?:moved|relocated)(?: house)? to (.+)$", r"i live in \1"
        ),
        {"change": True},
    ),
    (
        *_sub(
            r"^(?:i )?(?:have |'ve )?(?:just |recently )?(?:got|started|took|landed) (?:a |my )?(?:new )?"
            r"(?:job|position|role) "
            r"(?:at|with) (.+)$",
            r"i work at \1",
        ),
        {"change": True},
    ),
    (*_sub(r"^i (?:have |'ve )?(?:just |recently )?joined (.+)$", r"i work at \1"), {"change": True}),
    # "Joel Aster took over from Ines Marlow as Tessaro's CFO": a successor, and whom they succeeded
    (
        *_sub(
            r"^(.+?) (?:has |have )?(?:took over|taken over|replaced|succeeded|stepped in for)(?: from)? (.+?) as "
            r"(?:the )?(.+)$",
            r"\3 is \1",
        ),
        {"change": True, "old": 2},
    ),
    (
        *_sub(r"^(.+?) (?:has |have )?(?:took over|taken over|stepped in|stepped up) as (?:the )?(.+)$", r"\2 is \1"),
        {"change": True},
    ),
    (
        *_sub(
            r"^(my|\w[\w .'&-]*?'s) (.+?) (?:has |have |was |got )?(?:changed|switched|moved|updated|gone up|gone down|"
            r"increased|decreased|dropped|risen|rose|fell) (?:from (.+?) )?to (.+)$",
            r"\1 \2 is \4",
        ),
        {"change": True, "old": 3},
    ),
    (
        *_sub(
            r"^(?:i|we) (?:have |'ve )?(?:changed|switched|updated|moved) (my|our) (.+?) (?:from (.+?) )?to (.+)$",
            r"\1 \2 is \4",
        ),
        {"change": True, "old": 3},
    ),
    (
        *_sub(
            r"^(.+?) (?:became|has become|is now|was made|was appointed|got promoted to) (?:the )?(.+?) of (.+)$",
            r"the \2 of \3 is \1",
        ),
        {"change": True},
    ),
    (
        *_sub(r"^(.+?) (?:has |have )?(?:moved|relocated) (?:from (.+?) )?to (.+)$", r"\1 is located in \3"),
        {"change": True, "old": 2},
    ),
    (*_sub(r"^(i|we) (?:have|'ve) (?:been )?(?:lived|living) (in|at) (.+)$", r"\1 live \2 \3"), {}),
    (*_sub(r"^(i|we) (?:have|'ve) (?:been )?(?:worked|working) (at|for|in) (.+)$", r"\1 work \2 \3"), {}),
    (
        *_sub(r"^((?i:i|we))(?: have|'ve) been (?:at|with) ([A-Z].+)$", r"\1 work at \2", 0),
        {},
    ),  # "I've been at X since …"
    (*_sub(r"^(?:i )?used to (\w+)(.*)$", r"i \1\2"), {"past": True}),  # "Used to have a motorbike"
    (
        *_sub(r"^(?i:years ago,? |back then,? |once,? )?(?i:i) was (?:at|with) ([A-Z].+)$", r"i work at \1", 0),
        {"past": True},
    ),
    (*_sub(r"^(.+?) used to be (.+)$", r"\1 is \2"), {"past": True}),
    (*_sub(r"^(?:formerly|previously|back then|in the past|once|before that),? (.+)$", r"\1"), {"past": True}),
    (*_sub(r"^(i|we) (lived|worked) (in|at|for) (.+)$", r"\1 \2 \3 \4"), {"past": True}),
    (*_sub(r"^(?:i|we) (?:now|currently) (.+)$", r"i \1"), {"change": True}),
    (*_sub(r"^(?:now|currently|these days),? (.+)$", r"\1"), {"change": True}),
    (*_sub(r"^(.+?) (?:is|are) now (.+)$", r"\1 is \2"), {"change": True}),
]
_PAST_VERB = {"lived": "live", "worked": "work"}

_REWRITES_ZH: list[tuple[re.Pattern[str], str, Flags]] = [
    (*_sub(r"^(.*?)(?:已经|早就|现在)?不再(.+?)了?$", r"\1\2", 0), {"negated": True}),
    (
        *_sub(r"^(.*?)(?:已经|早就|现在)(?:不|没)(住|在|是|做|当|用|开|养|负责|担任|属于|爱)(.+?)了$", r"\1\2\3", 0),
        {"negated": True},
    ),
    (
        *_sub(
            r"^我(?:已经|上个月|去年|刚刚?)?(?:从(.+?))?(?:离职|辞职|辞掉了?工作|离开)了?(.*?)了?$", r"我在\1\2工作", 0
        ),
        {"negated": True},
    ),
    (
        *_sub(r"^我(?:已经|刚刚?|最近|上个月|去年)?从(.+?)搬(?:到|去|家到)了?(.+?)了?$", r"我住在\2", 0),
        {"change": True, "old": 1},
    ),
    (
        *_sub(r"^我(?:已经|刚刚?|最近|上个月|去年)?搬(?:到|去|家到)了?(.+?)(?:住)?了?$", r"我住在\1", 0),
        {"change": True},
    ),
    (
        *_sub(
            r"^我(?:已经|刚刚?|最近|上个月|去年)?(?:跳槽|换工作|调|换|去)到了?(.+?)(?:工作|上班)?了?$", r"我在\1工作", 0
        ),
        {"change": True},
    ),
    (
        *_sub(
            r"^(.+?)的(.+?)(?:已经|刚刚?)?(?:从(.+?))?(?:改成了?|换成了?|变成了?|改为|更改为|更新为|调整为|调到了?|涨到了?|"
            r"降到了?|升到了?)(.+?)了?$",
            r"\1的\2是\4",
            0,
        ),
        {"change": True, "old": 3},
    ),
    (*_sub(r"^(.+?)(?:已经)?(?:成为了?|当上了?|升任|接任|出任)了?(.+?)的(.+)$", r"\2的\3是\1", 0), {"change": True}),
    (*_sub(r"^(.+?)(?:以前|之前|曾经|原来|过去|早先|当年)(?:一直)?(.+)$", r"\1\2", 0), {"past": True}),
    (*_sub(r"^(?:以前|之前|曾经|原来|过去|早先|当年)[，,]?(.+)$", r"\1", 0), {"past": True}),
    # experiential 过: "邵嘉禾当过青石镇的镇长" held once, not now
    (*_sub(r"^(.+?)(?:当过|做过|担任过|干过)([^\d一二三四五六七八九十几两半].*)$", r"\1担任\2", 0), {"past": True}),
    # "青柠笔记现在最新版本是2.1": 现在 stands between the subject and its attribute, where 的 would
    (
        *_sub(r"^((?![我你他她它])[^，,的\s]{2,12}?)(?:现在|目前|如今)((?![是在])[^，,是\s]{1,8}是.+)$", r"\1的\2", 0),
        {"change": True},
    ),
    (*_sub(r"^(.*?)(?:现在|目前|如今)(.+)$", r"\1\2", 0), {"change": True}),
]

# "I actually really like jazz now", "oddly I hate anchovies": how much or how oddly, not what
_ADVERBS = (
    r"(?:(?:really|absolutely|just|totally|actually|genuinely|honestly|truly|kind of|kinda|sort of|now|still)\s+)*"
)
_PREFERENCE_EN = [
    (
        re.compile(
            rf"^i {_ADVERBS}(?:love|like|enjoy|adore|am fond of|'m fond of|"
            r"am into|'m into|am a fan of|'m a fan of|started liking|started to like) (.+)$",
            re.I,
        ),
        "likes",
    ),
    (
        re.compile(
            rf"^i {_ADVERBS}(?:hate|dislike|detest|loathe|can't stand|cannot stand|"
            r"don't like|do not like|am not a fan of|'m not a fan of) (.+)$",
            re.I,
        ),
        "dislikes",
    ),
    (
        re.compile(
            r"^i(?: have|'ve)? (?:fallen in love with|got into|gotten into|grown to like|come to like) (.+)$", re.I
        ),
        "likes",
    ),
    (re.compile(r"^i(?:'m| am) allergic to (.+)$", re.I), "allergic to"),
    (re.compile(r"^i speak (.+)$", re.I), "speaks"),
]
_PREFERENCE_ZH = [
    (
        re.compile(r"^我(?:很|非常|特别|超|挺|最|真的)?(?:不喜欢|讨厌|不爱|受不了|烦|反感)(?:吃|喝|看|玩)?(.+)$"),
        "dislikes",
    ),
    # "我最爱吃麻辣烫", "现在最爱煎饼", "最近更喜欢藏青色了": the one favourite, which a newer one replaces
    (re.compile(r"^我?(?:最近|现在)?(?:最爱|更爱|更喜欢|最喜欢)(?:吃|喝|看|玩|听)?(?!的)(.+)$"), "favourite"),
    (re.compile(r"^我(?:很|非常|特别|超|挺|真的)?(?:喜欢|爱|喜爱|热爱)(?:吃|喝|看|玩)?(?!的)(.+)$"), "likes"),
    (re.compile(r"^我?(?:已经|最近|渐渐)?(?:爱上|迷上|喜欢上)了?(?:吃|喝|看|玩)?(.+)$"), "likes"),  # a change of taste
    (re.compile(r"^我对(.+?)过敏$"), "allergic to"),
    (re.compile(r"^我(?:会说|会讲|说)(.+)$"), "speaks"),
]
_NOT_A_THING = re.compile(
    r"^(?:it|this|that|these|those|you|them|him|her|to (?:be|know|think))\b|^(?:这|那|你|它)", re.I
)


def _rewrite(sentence: str, zh: bool) -> tuple[str, Flags]:
    """The plain present statement behind a negated, past or changed sentence, and what was marked."""
    flags: Flags = {}
    for pattern, repl, marks in _REWRITES_ZH if zh else _REWRITES_EN:
        m = pattern.search(sentence)
        if m is None:
            continue
        for key, value in marks.items():
            if key == "old":
                old = m.group(value) if isinstance(value, int) else None
                if old:
                    flags["old"] = old.strip()
            else:
                flags[key] = value
        sentence = pattern.sub(repl, sentence, count=1).strip()
    for word, present in _PAST_VERB.items():
        sentence = re.sub(rf"\b{word}\b", present, sentence)
    return sentence, flags


def _preference(sentence: str, zh: bool) -> Triple | None:
    for pattern, relation in _PREFERENCE_ZH if zh else _PREFERENCE_EN:
        m = pattern.match(sentence)
        if m:
            obj = re.sub(r"(?:了|啦|的)$", "", m.group(1).strip(" .。!！"))
            obj = re.sub(r"\s+(?:any ?more|now|these days|so much|a lot|very much)$", "", obj, flags=re.I)
            return None if not obj or _NOT_A_THING.match(obj) else Triple(USER, relation, obj)
    return None


_HYPOTHETICAL = re.compile(
    r"^(?:(?:yeah|yes|haha|lol|ok|okay|well|honestly|tbh|probably|maybe|i think)[\s,!.]+)*"
    r"(?:if|suppose|supposing|imagine|what if|i wish|i'd|i would|would|assuming)\b|"
    r"^(?:哈+|嗯+|唉)?[\s，,]*(?:假如|如果|要是|假设|万一|但愿|要不是|想象一下)",
    re.I,
)


# "I think e-scooters are ruining pavements", "我觉得这家店一般": a view, not a fact. ("I think my flight is at
# nine" hedges a fact, but is the one dilm should not record as one either.)
_OPINION = re.compile(
    r"^(?:i (?:think|believe|feel|reckon|guess|suppose|bet)|bet you|in my (?:opinion|view)|imo|personally,)\b|"
    r"^我(?:觉得|认为|感觉|猜|估计|个人觉得)",
    re.I,
)


def is_unasserted(sentence: str) -> bool:
    """A sentence that asserts no fact, whoever reads it: a hypothetical ("If I lived in Paris …", "yeah I'd
    probably …", "要是我有钱…") or an opinion ("I think …", "我觉得…")."""
    cleaned = clean_statement(sentence)
    return bool(_HYPOTHETICAL.search(cleaned) or _OPINION.search(cleaned))


# A taste the speaker lost: "I'm over K-pop", "I've gone off anchovies", "奶茶喝腻了", "悬疑片现在不敢看了".
_FALLEN_OUT = [
    re.compile(
        r"^(?i:i)(?:'m| am|'ve| have)? (?:so |totally |kind of |kinda )?(?:over|gone off|gone off of|"
        r"fallen out of love with) (?P<x>[\w'&-]+(?: [\w'&-]+){0,3})$"
    ),
    re.compile(r"^(?i:i) can(?:'t|not) do (?P<x>[\w'&-]+(?: [\w'&-]+){0,2}) any ?more$"),
    re.compile(r"^(?P<x>[^我你他她它，,\s]{1,8}?)(?:现在|已经|早就)?(?:吃腻|看腻|玩腻|听腻|喝腻|腻)了$"),
    re.compile(r"^(?P<x>[^我你他她它，,\s]{1,8}?)(?:现在|已经)?(?:不敢|不想|不爱)(?:看|吃|喝|玩|听)了$"),
]
# A habit the speaker stopped: "I quit smoking", "I don't eat meat anymore", "我已经不抽烟了", "我把酒戒了".
# (Quitting a capitalised name is leaving an employer: the rewrites read that.)
_STOPPED = [
    re.compile(
        r"^(?i:i) (?:have |'ve )?(?:just |finally )?(?:quit|stopped|gave up|given up|kicked) "
        r"(?P<x>[a-z]+ing(?: [a-z][\w'-]*){0,2}|(?!my |the |an? |at |from |to |it\b|this|that|work|school|college|"
        r"uni\b|university|job)[a-z][\w'-]*(?: [a-z][\w'-]*)?)$"
    ),
    re.compile(
        r"^(?i:i) (?:no longer|don't|do not) (?P<x>(?!know|think|care|remember|mind|understand|get|see|want|need|"
        r"feel|have|like|love|live|work|mean)[a-z]+(?: [a-z][\w'-]*){0,2}) any ?more$"
    ),
    re.compile(r"^(?i:i) no longer (?P<x>(?!live|work|like|love|have)[a-z]+(?: [a-z][\w'-]*){0,2})$"),
    re.compile(r"^我(?:已经|早就|都)(?:不再?|没再)(?P<x>[吃喝抽打玩看做练跑养开骑用学追熬][\u4e00-\u9fff]{1,4}?)了$"),
    re.compile(r"^我(?:已经)?(?:戒了|戒掉了)(?P<x>[\u4e00-\u9fff]{1,4})了?$"),
    re.compile(r"^我(?:已经)?把(?P<x>[\u4e00-\u9fff]{1,4})戒(?:掉)?了$"),
]


def _stopped(sentence: str) -> Triple | None:
    """What the speaker says they stopped doing or liking, as the triple it ends."""
    for patterns, relation in ((_FALLEN_OUT, "likes"), (_STOPPED, "habit")):
        for pattern in patterns:
            m = pattern.match(sentence)
            # "戒了快半年" says how long, not what; "I'm over it" does not say what
            if m and not re.search(r"[年月天周久]|^快", m["x"]) and not _NOT_A_THING.match(m["x"]):
                return Triple(USER, relation, m["x"])
    return None


def _claim(sentence: str) -> Claim | None:
    """The claim one declarative sentence makes, if rules can read it (a hypothetical makes none)."""
    zh = bool(re.search(r"[\u4e00-\u9fff]", sentence))
    if is_unasserted(sentence):
        return None
    sentence, times = time_phrases(sentence.strip().rstrip(".。!！;；"), zh)
    stopped = _stopped(clean_statement(sentence))
    if stopped is not None:
        return Claim(stopped, negated=True, invalid_at=times.get("invalid_at") or times.get("valid_at"))
    plain, flags = _rewrite(clean_statement(sentence), zh)
    negated, past = bool(flags.get("negated")), bool(flags.get("past") or times.get("past"))
    triple = _ended_job(plain) if negated else None
    if triple is None and (not negated or "like" in plain or "喜欢" in plain):
        triple = _preference(plain, zh)
    triple = _tidy_object(triple or match(plain))
    if triple is None:
        return None
    if _past_copula(sentence) and not negated:
        past = True
    old = flags.get("old")
    if negated and "valid_at" in times and "invalid_at" not in times:  # "I left X last month": when it ended
        times["invalid_at"] = times.pop("valid_at")
    return Claim(
        triple=triple,
        negated=negated,
        past=past and not bool(flags.get("change")),
        change=bool(flags.get("change")),
        old=str(old) if old else None,
        valid_at=times.get("valid_at"),
        invalid_at=times.get("invalid_at"),
    )


_ROLE = re.compile(r"^(?P<org>.*?[\u4e00-\u9fff])(?P<role>[A-Z]{2,5})$")


def _role_subject(t: Triple) -> Triple:
    """ "远岫传媒CEO是顾清和" reads as (远岫传媒CEO, 是, 顾清和): the acronym is the relation."""
    m = _ROLE.match(t.subject) if t.relation == "是" else None
    return Triple(m["org"], m["role"], t.object) if m else t


def _tidy_object(t: Triple | None) -> Triple | None:
    """ "The Halvex office is in Turku" reads as (Halvex, office, in Turku): the value is the place."""
    if t is None or re.search(r"\b(?:in|at|on|to|for|from|of)$", t.relation):
        return t
    t = _role_subject(t)
    return Triple(t.subject, t.relation, re.sub(r"^(?:in|at|on)\s+(?=\S)", "", t.object))


def _ended_job(plain: str) -> Triple | None:
    """ "I quit." -> the current employer, whichever it is (an empty object)."""
    if re.fullmatch(r"i work at\s*|我在\s*工作", plain.strip(), re.I):
        return Triple(USER, canonical_relation("works at"), "")
    return None


_EVENT = re.compile(
    r"\b(?:was|were) (?:born|founded|built|established|created|launched|opened|completed|married|"
    r"constructed|started|designed|written|invented|released)\b",
    re.I,
)


def _past_copula(sentence: str) -> bool:
    """ "The mayor of X was Y": a past state (not an event such as "was founded in", which stays true)."""
    return bool(re.search(r"\b(?:was|were)\b", sentence, re.I)) and not _EVENT.search(sentence)


def analyze(text: str, referent: str | None = None) -> Analysis:
    """The act of a message and the claims of its declarative sentences (questions state nothing).
    `referent`: who a leading "she"/"he"/"她" means before the message names anyone (`referent_of`)."""
    claims: list[Claim] = []
    asked = False
    subject = referent  # the last third party named: what "she", "its", "它" refer to
    about: str | None = None  # what labelled pieces are about ("Tarsel Foods: CEO Bram Oduya, founded 1998")
    moved = False  # the last sentence was a career move alone ("跳槽了", "升职啦")
    for sentence in sentences(re.sub(r"\s+", " ", text)):
        if is_question(sentence):
            asked = True
            about = None
            continue
        if len(sentence) > MAX_SENTENCE:  # rules read sentences, not documents (and stay linear on long text)
            continue
        career = _CAREER_MOVE.match(sentence)  # "我换工作了，现在在字节上班"
        after = (
            _after_career_move(career["rest"] if career and career["rest"] else sentence) if career or moved else None
        )
        found = (
            [after] if after else [c for p in _expand(_resolve(sentence, subject)) for c in _sentence_claims(p, about)]
        )
        moved = bool(career and not career["rest"])
        for claim in found:
            claims.append(replace(claim, sentence=sentence))
            subject = person_in(claim.triple) or subject
        about = found[-1].triple.subject if found else topic(sentence)
    act: Act = "question" if asked else "statement" if claims else "chatter"
    return Analysis(act, tuple(_dedupe(claims)), instruction=is_instruction(text))


_CAREER_MOVE = re.compile(
    r"^我?(?:已经|刚刚?|终于)?(?:跳槽|换工作|换了?(?:份|个)?(?:新)?工作|入职|升职|升职加薪|调岗|转岗|被提拔)了?[啦呀哈~!！。]*"
    r"(?:[，,]\s*(?P<rest>.+))?$"
)


def _after_career_move(sentence: str) -> Claim | None:
    """Chinese names the new place or title without a subject after the move: "跳槽了 现在在青柠科技",
    "升职啦 现在是部门经理了"."""
    m = re.match(
        r"^(?:现在|目前|如今)?(?:(在|去了?|到了?)|(是|当|做))(?P<x>[^，,]{2,20}?)(?:上班|工作)?了?[啦呀~!！。]*$",
        sentence,
    )
    if m is None:
        return None
    claim = _claim(f"我跳槽到{m['x']}" if m.group(1) else f"我当{m['x']}")
    return replace(claim, change=True) if claim else None


def _sentence_claims(sentence: str, about: str | None = None) -> list[Claim]:
    """One claim for a simple sentence; one per clause for "My name is Ana, I'm 29 and I work at X" or
    "我叫林悦，今年29岁" (a Chinese clause without a subject continues the previous clause's); labelled values
    ("CEO Bram Oduya, founded 1998") about the previous sentence's topic `about`."""
    whole = _claim(sentence) or _labelled_claim(sentence, about)
    if whole is None and about and re.match(r"[\u4e00-\u9fff]", sentence) and not re.match(r"[我你他她它]", sentence):
        whole = _continued(sentence, about)  # Chinese drops the subject it just named: "…开门 晚上十点关门"
    if whole is None and topic(sentence) == USER:  # "我身高一米七二", "my email r.okafor@mailbox.test"
        whole = _labelled_claim(sentence, USER)
    parts = [
        q
        for p in re.split(
            r"(?:(?<!\d)[,，、]|[,，、](?!\s?\d))\s*(?:and\s+)?|\s+and\s+(?=(?:i|my|she|he|they|it|its|their|her|his|the)\b)"
            r"|\s+and\s+(?=(?:lives|works|weighs?|speaks|teaches|drives|owns|has|is|was|live|work|teach|speak|drive|own)\b)"
            r"|并且|而且|(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff\d])",
            sentence,
            flags=re.I,
        )
        if p.strip()
        for q in _expand(p.strip())  # "… and my brother Oskar lives in Leeds"
    ]
    if len(parts) < 2:
        return [whole] if whole else []
    split: list[Claim] = []
    for part in parts:
        claim = _claim(_resolve(part, split[-1].triple.subject) if split else part)
        if claim is None and not split:
            claim = _labelled_claim(part, about)
            if claim is None and (named := topic(part)):  # "鹿鸣教育 2015年成立的", "我身高一米七二 …"
                about = named
                claim = _labelled_claim(part, named)
        bare_role = claim is not None and re.fullmatch(r"[A-Z]{2,5}", claim.triple.subject)
        if split and (claim is None or bare_role):  # "…，CFO是骆星辰": the previous clause's subject
            # ... or the person it named: "我姐姐叫江雨晴，在银行当柜员" is about her
            prev = person_in(split[-1].triple) or split[-1].triple.subject
            claim = _labelled_claim(part, prev) or _continued(part, prev) or claim
        if claim is None:
            claim = _labelled_claim(part, split[-1].triple.subject if split else about)
        if claim is not None:
            split.append(claim)
    swallowed = whole is not None and bool(re.search(r"[,，、]", whole.triple.object)) and bool(split)
    return split if whole is None or len(split) >= 2 or swallowed else [whole]


def _labelled_claim(piece: str, about: str | None) -> Claim | None:
    t = labelled(piece, about) if about else None
    return Claim(Triple(t.subject, canonical_relation(t.relation), t.object)) if t else None


def _continued(part: str, subject: str) -> Claim | None:
    """A clause without a subject, read with the previous clause's ("…，今年29岁", "… and weigh 78 kg")."""
    if re.search(r"[\u4e00-\u9fff]", part):
        surface = "我" if subject == USER else subject
        return _claim(f"{surface}的{part}") or _claim(f"{surface}{part}")
    if re.fullmatch(r"\d{1,3}", part.strip()):  # "I'm Jonah Wilde, 34, and …": an age
        return _claim(f"{'I am' if subject == USER else subject + ' is'} {part.strip()}")
    if subject == USER:
        return _claim(f"I {part}")
    return _claim(f"{subject} {part}")


_APPOSITIVE = re.compile(
    r"^(?i:my|our) (?P<who>(?!name\b)[a-z]+(?: (?!(?:to|of|in|at|for|is|are|was|from)\b)[a-z]+)?) "
    r"(?P<name>[A-Z][\w'-]+(?: [A-Z][\w'-]+)?) (?P<rest>.+)$"
)
_ROLE_AT = re.compile(
    r"^(?P<who>(?i:i|my [a-z]+(?: [a-z]+)?))(?: |(?='m))(?P<be>am|'m|is|'s) "
    r"(?P<title>(?i:an?) (?!(?:member|fan|regular|customer|client|patient|guest|visitor)\b)[\w -]+?) "
    r"(?i:at|for|with) (?P<org>[A-Z][\w&'.-]*(?: [A-Z][\w&'.-]*)*)$"
)
_HAVE_CALLED = re.compile(
    r"^(?:i|we) (?:have|'ve got|have got|'ve|got) (?:a|an|one) (?P<what>[\w -]+?) (?:called|named) (?P<name>.+)$", re.I
)


def _expand(sentence: str) -> list[str]:
    """A sentence naming someone in passing, as two plain ones: "My brother Kai lives in Leeds" -> "My brother
    is called Kai" + "My brother lives in Leeds"; "I have a cat named Biscuit" -> "I have a cat" + "My cat is
    called Biscuit"."""
    s = clean_statement(sentence).rstrip(".!")
    m = _APPOSITIVE.match(s)
    if m and not m["rest"].startswith(("and ", "or ")):
        return [f"my {m['who']} is called {m['name']}", f"my {m['who']} {m['rest']}"]
    m = _ROLE_AT.match(s)  # "I'm a staff nurse at Larkfield Hospital": a title and a workplace
    if m:
        work = "work" if m["be"] in ("am", "'m") else "works"
        be = m["be"] if m["be"].startswith("'") else f" {m['be']}"
        return [f"{m['who']}{be} {m['title']}", f"{m['who']} {work} at {m['org']}"]
    m = _HAVE_CALLED.match(s)
    if m:
        return [f"I have a {m['what']}", f"my {m['what']} is called {m['name']}"]
    return [sentence]


def person_in(t: Triple) -> str | None:
    """Who a later pronoun may mean: a third party, or the speaker's person ("my sister is called Ana",
    "我姐叫温可欣")."""
    if t.subject != USER:
        return t.subject
    m = re.fullmatch(r"(.+) name", t.relation) or re.fullmatch(rf"({ZH_KIN})", t.relation)
    return f"{USER}'s {m.group(1)}" if m else None


def referent_of(recent: Sequence[Fact]) -> str | None:
    """The speaker's person a pronoun opening the next message means ("I have a sister called Ines." then
    "She lives in Lyon."): the person of the newest of the user's `recent` facts (newest first), if it is one."""
    for f in recent[:3]:
        who = person_in(Triple(f.subject, f.relation, f.object))
        if _people(who):
            return who
    return None


def _people(subject: str | None) -> bool:
    """ "she"/"he" refer to the speaker's people; for other subjects (a company, a town) there is no telling."""
    return subject is not None and subject.startswith(f"{USER}'s ")


_PRONOUN_EN = re.compile(r"^(?:(she|he|they|it)|(her|his|their|its))\b", re.I)


def _resolve(sentence: str, subject: str | None) -> str:
    """Put the last named subject in place of a leading pronoun ("She lives in Lyon", "Its office is in Turku")."""
    if subject is None or subject == USER:
        return sentence
    s = clean_statement(sentence)
    m = _PRONOUN_EN.match(s)
    if m and (m.group().casefold() in ("it", "its", "they", "their")) != _people(subject):
        rest = s[m.end() :]
        it = m.group().casefold() in ("it", "they")
        if it and re.match(r"^(?:'s|’s| is| was| are) (?:an?|the|so|very|really|quite)\b", rest):
            return sentence  # "It is a nice city": about whatever "it" is, not the subject
        return (subject if m.group(1) else f"{subject}'s") + rest
    if re.match(r"^[她他](?!们)", s) and _people(subject):
        return subject + s[1:]
    return sentence


def _dedupe(claims: list[Claim]) -> list[Claim]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for c in claims:
        key = (c.triple.subject, c.triple.relation, c.triple.object)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out

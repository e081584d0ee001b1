"""What kind of message a turn got: one function, one answer.

The order matters and is the whole rule: a yes/no to a question the assistant asked wins; then teaching
("Remember that …" / "记住：…"); then a stated preference ("answer shorter", "用中文回答"); then a correction of
an answer the assistant said it was unsure about ("No, it's Paris."); then a correction of the assistant's
last answer said in chat ("No, it's in Oulu.", "不对，是合肥", "Actually the office is in Pori"); anything else is
answered as a question, and what it states ("I moved to Bodø.") is learned on the way. A short reply to a
clarifying question completes the question it was asked about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from dilm import asking
from dilm.facts.analyze import Analysis, analyze
from dilm.facts.extract import correction_value, is_teaching, parse_question
from dilm.profile import is_preference_instruction
from dilm.text import mentions
from dilm.types import Message

IntentKind = Literal["answer_to_pending", "teaching", "stated_preference", "correction_reply", "correction", "question"]


@dataclass(frozen=True)
class Intent:
    """One message, classified.

    `question` is the text to answer (the clarified question joined to the reply when the message completes a
    clarification); `said` is "yes"/"no" for an answer to a pending confirmation; `pending` is the question the
    assistant asked last turn (None when there was none); `clarified` is the question a clarifying question
    was asked about, when this message answers it."""

    kind: IntentKind
    question: str
    said: Literal["yes", "no"] | None = None
    pending: dict[str, Any] | None = None
    clarified: str | None = None
    analysis: Analysis | None = None  # the message read by rules (facts.analyze)
    corrects: str | None = None  # for "correction": the id of the assistant answer it corrects


def classify(text: str, pending: dict[str, Any] | None, session: list[Message]) -> Intent:
    """Classify `text`, the user's new message, given the pending question and the session so far."""
    clarified = clarified_question(session, text)
    question = f"{clarified} {text}" if clarified else text
    reply = asking.yes_or_no(text) if pending else None
    said: Literal["yes", "no"] | None = "yes" if reply == "yes" else "no" if reply == "no" else None
    if pending and said:
        kind: IntentKind = "answer_to_pending"
    elif is_teaching(text):
        kind = "teaching"
    elif is_preference_instruction(text):
        kind = "stated_preference"
    elif pending and pending["kind"] == "unsure" and asking.is_correction_reply(text):
        kind = "correction_reply"
    else:
        analysis = analyze(text)
        corrects = corrected_answer(text, analysis, session)
        if analysis.instruction and analysis.act != "question":  # planted in chat: kept flagged, as if taught
            kind = "teaching"
        else:  # a statement is answered like a question; what it states is learned on the way (Turn.answer)
            kind = "correction" if corrects else "question"
        return Intent(kind, question, None, pending, clarified, analysis, corrects)
    return Intent(kind, question, said if kind == "answer_to_pending" else None, pending, clarified)


_CORRECTION_LEAD = re.compile(
    r"^(?:(?:lol|haha|hmm+|uh|um|er+|oh|well|sorry|ah)[\s,.!]+)*"
    r"(?:no+\b|nope|nah|wrong|incorrect|not quite|not really|not exactly|not true|actually|correction|to correct|"
    r"that'?s (?:wrong|incorrect|not (?:right|true|it|correct|what i said))|that is (?:wrong|incorrect|not right)|"
    r"that isn'?t (?:right|true)|you(?:'re| are) (?:wrong|mistaken)|you got (?:it|that) wrong|you misremembered|"
    r"不对|不是|错了|错|更正|纠正|其实|实际上|应该是|你说错了|搞错了|说错了|记错了|你记错了|有误|不不|并不是|改一下|修正)",
    re.I,
)

# Saying the assistant erred marks a correction wherever it stands: "是26号啊 你少了个2", "Ayr, you got it wrong".
_YOU_ERRED = re.compile(
    r"\byou(?:'re| are| were) (?:wrong|mistaken)\b|\byou got (?:it|that|this) wrong\b|\byou misremembered\b|"
    r"\byou mixed (?:it|them|that) up\b|"
    r"你(?:又)?(?:说错|记错|搞错|弄错|写错|算错|看错|记混|搞混)了?|你(?:少|多)(?:了|写了|说了)",
    re.I,
)


def corrected_answer(text: str, analysis: Analysis, session: list[Message]) -> str | None:
    """The id of the assistant's last answer when `text` corrects it: a value given as a correction ("No, it's
    Oulu", "Leeds!! not Leicester", "不对，是合肥"), or a correction marker with a statement about what was asked
    or answered ("Actually the office is in Pori", "错了，顾清和是CEO，CFO是骆星辰"). None otherwise."""
    last = session[-1] if session else None
    if last is None or last.role != "assistant" or analysis.act == "question":
        return None
    asked = next((m.content for m in session if m.id == last.parent_id), "")
    if _NOT_A_CORRECTION.search(_CORRECTION_LEAD.sub("", text.strip())):  # "No thanks.", "不是，随便问问"
        return None
    marked = bool(_CORRECTION_LEAD.match(text.strip()) or _YOU_ERRED.search(text))
    value = correction_value(text)
    said = last.content.casefold()
    if value is not None and value[0].casefold() in said:
        return None  # "No, that's right: Berlin." repeats the answer, it does not correct it
    if value is not None and (marked or (value[1] is not None and value[1].casefold() in said)):
        return last.id
    if not analysis.claims:
        return last.id if marked and _bare_value(text) else None
    qparse = parse_question(asked)
    about = any(
        mentions(c.triple.subject, f"{asked} {last.content}") or (qparse is not None and c.triple.relation == qparse[1])
        for c in analysis.claims
    )
    return last.id if marked and about else None


_NOT_A_CORRECTION = re.compile(
    r"^[\s,.!]*(?:thanks?|thank you|worries|problem|prob|never ?mind|nvm|that'?s (?:right|correct|fine|ok|okay|it|all)|"
    r"i'?m (?:good|fine|ok|okay)|good|great|fine|ok|okay|sure|way|idea|clue|need|rush|big deal|matter|"
    r"谢谢|没关系|算了|随便问问|不用|没事|不清楚|好的|对的|没错|挺好|很好)\b|^[\s,.!]*(?:谢谢|没关系|算了|随便|不用|没事|不清楚|好的|很)",
    re.I,
)


def _bare_value(text: str) -> bool:
    """What is left after the marker is a short value: "nope, 3pm", "lol no, 29", "不是 699"."""
    rest = _CORRECTION_LEAD.sub("", text.strip()).strip(" ,，.。!！:：")
    return bool(rest) and (len(rest) <= 16 if re.search(r"[\u4e00-\u9fff]", rest) else len(rest.split()) <= 4)


def clarified_question(session: list[Message], text: str) -> str | None:
    """The question a clarifying question was asked about, when `text` (the next message) answers it."""
    last = session[-1] if session else None
    if last is None or last.role != "assistant" or last.meta.get("policy", {}).get("kind") != "clarify":
        return None
    asked = next((m for m in session if m.id == last.parent_id), None)
    return asked.content if asked is not None and asking.is_clarification_reply(text) else None

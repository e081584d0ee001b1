"""Labelled values: facts written as notes, not sentences.

"Tarsel Foods: CEO Bram Oduya, founded 1998, HQ in Rotterdam.", "email r.okafor@mailbox.test, mobile 07700
900123", "鹿鸣教育 2015年成立的 创始人程予安 客服电话400-820-6613", "我身高一米七二 体重52公斤": a topic, then
"label value" pieces with no verb. A piece is read only when its value has a shape that cannot be mistaken (an
e-mail, a phone number, a year, a time range, an amount with its unit, or a name after a role title), so
ordinary clauses ("I have 3 kids" is read by the statement patterns, or not at all) are left alone.
"""

from __future__ import annotations

import re

from dilm.facts.extract import USER, Triple, clean_statement

__all__ = ["labelled", "topic"]

_UNITS_EN = (
    r"kg|g|km|m|cm|mm|ft|lb|lbs|mph|km/h|mAh|GB|TB|MB|GHz|kW|W|V|%|mins?|minutes|hours|hrs|years|yrs|pages|"
    r"people|employees|members|seats|rooms"
)
_ZH_NUM = r"[一二三四五六七八九十两百千万]"
_TYPED = (
    r"(?P<value>[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail
    r"|\+?\d[\d ()-]{5,}\d"  # phone number
    r"|\d{1,2}:\d{2}\s*[-–~至到]\s*\d{1,2}:\d{2}"  # time range
    rf"|[$€£¥]?\d+(?:[.,]\d+)?\s*(?:{_UNITS_EN})(?![\w])"  # amount with a unit
    r"|\d+(?:\.\d+)?\s*(?:元|块|公斤|千克|斤|米|厘米|公里|岁|平米|平方米|人|页|升|毫升|度)"
    r"|\d+(?:\.\d+)?\s*(?:个)?小时(?:\d+分钟?)?|\d+\s*分钟"  # a duration: "1小时15分钟"
    r"|[¥￥$€£]\s?\d[\d,]*(?:\.\d+)?(?:\s*/\s*(?:月|年|天|周|晚|month|year|day|week|night))?"  # "¥3,500/月"
    rf"|{_ZH_NUM}+(?:米|公斤|斤|岁|元|块){_ZH_NUM}*"
    rf"|{_ZH_NUM}*[万千]{_ZH_NUM}*(?:元|块)?"  # "一万二"
    r"|(?:19|20)\d{2}年?)"  # a year
)
_NOT_A_LABEL = re.compile(
    r"\b(?:i|we|you|he|she|they|it|have|has|had|am|is|are|was|were|do|does|did|will|can|got|get|need|want|"
    r"until|till|since|from|before|after|by|during|around|about)\b"  # "…, until 2016" dates the clause before
    r"|^(?:直到|一直到|到|从|自从?|截至|截止|以前|之前|之后|以后|去年|今年|明年|大约|大概)",
    re.I,
)
_LABEL_VALUE = re.compile(
    rf"^(?:(?:my|our|its|their|his|her)\s+|我们?的?)?(?P<label>[A-Za-z][A-Za-z -]{{0,24}}?|[\u4e00-\u9fff]{{2,6}}?)"
    rf"\s*(?:is|are|was|:|：|是|为|=|in|at|on)?\s*(?:大概|大约|约|差不多|将近|要|有)?\s*{_TYPED}(?P<rest>.*)$",
    re.I,
)
# A role title then a name: "CEO Bram Oduya", "创始人程予安", "HQ in Rotterdam"
_ROLE_NAME = re.compile(
    r"^(?P<label>[A-Z]{2,5}|founder|owner|director|head|创始人|老板|负责人|董事长|总经理|校长|店长|主理人)\s*"
    r"(?:is|:|：|是|为|in|at)?\s*(?P<value>[A-Z][\w'-]+(?: [A-Z][\w'-]+){0,3}|[\u4e00-\u9fff]{2,4})$"
)
_YEAR_EVENT = re.compile(
    r"^(?:(?:founded|established|started|opened|built)(?: in)? (?P<en>(?:19|20)\d{2})|"
    r"(?P<zh>(?:19|20)\d{2}年)(?:成立|创立|创办|开业|建成)的?)$",
    re.I,
)


def labelled(piece: str, subject: str) -> Triple | None:
    """(subject, label, value) of one "label value" piece, or None. `subject`: the topic it is about."""
    p = piece.strip().strip(" .。;；")
    if m := _YEAR_EVENT.match(p):
        return Triple(subject, "founding year", m["en"] or m["zh"])
    if m := _ROLE_NAME.match(p):
        return Triple(subject, m["label"], m["value"])
    m = _LABEL_VALUE.match(p)
    if m is None or _NOT_A_LABEL.search(m["label"]):
        return None
    rest, value = m["rest"].strip(), m["value"].strip()
    strong = "@" in value or len(re.sub(r"\D", "", value)) >= 7  # an e-mail or a phone number
    if rest and not (strong and re.match(r"[\s,，(（]|[\u4e00-\u9fff]", m["rest"])):
        return None  # "52 kg lighter than last year": more than a labelled value
    label = m["label"].strip()
    return Triple(subject, label, value) if label else None


def topic(sentence: str) -> str | None:
    """What the labelled pieces after `sentence` are about: the speaker ("Save my contact details:", "我"),
    or a bare name ("Tarsel Foods:", "鹿鸣教育"); None for a sentence that says more than a name."""
    s = clean_statement(sentence).strip(" .。:：")
    if not s:
        return None
    if re.search(r"\b(?:my|mine|me)\b|^我(?!们)", s, re.I):
        return USER
    if re.fullmatch(r"[A-Z][\w&'.-]*(?: (?:[A-Z][\w&'.-]*|of|the|and|&))*", s) and len(s.split()) <= 5:
        return s
    if re.fullmatch(r"[\u4e00-\u9fffA-Za-z0-9]{2,10}", s) and not re.search(r"[是在有了的吗呢吧啊]", s):
        return s
    return None

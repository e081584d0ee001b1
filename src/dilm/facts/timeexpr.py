"""Event time in a sentence: "until 2016", "since March 2021", "from 2015 to 2019", "2015年到2019年", "从2019年起",
"last month", "去年".

`time_phrases` cuts the phrase out of the sentence (so "Piet Dahl until 2016" leaves the value "Piet Dahl") and
returns valid_at / invalid_at as ISO 8601 dates of reduced precision ("2016", "2021-03", "2021-03-04"), which
sort correctly against the full timestamps facts are recorded with.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_MONTHS = "january february march april may june july august september october november december".split()
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
# A year: not four digits of a phone number, not an amount ("2000元", "2100 dollars").
_YEAR = r"(?<![\d-])(?:19|20)\d{2}(?!\d)(?!\s*(?:元|块|万|千|dollars?|euros?|pounds?|yuan|usd|eur|kg|km|%))"
_T_EN = rf"(?:{_MONTH} (?:\d{{1,2}}(?:st|nd|rd|th)?,? )?{_YEAR}|{_YEAR}-\d{{2}}(?:-\d{{2}})?(?![\d-])|{_YEAR})"
_T_ZH = rf"(?:{_YEAR}年(?:\d{{1,2}}月(?:\d{{1,2}}[日号])?)?|{_YEAR}(?=年|到|至|-|—|~|～|起|开始))"
_RELATIVE_EN = r"(?:yesterday|today|last (?:week|month|year)|this (?:week|month|year)|a (?:week|month|year) ago)"
# Not 今年: "今年29岁" gives an age, not a time.
_RELATIVE_ZH = r"(?:昨天|今天|上周[一二三四五六日天末]?|上个?星期[一二三四五六日天]?|上个月|去年|前年)"

_EN = [
    (
        re.compile(rf"\b(?:from|between) (?P<a>{_T_EN}) (?:to|until|till|and|through|-|–) (?P<b>{_T_EN})\b", re.I),
        "range",
    ),
    (re.compile(rf"\b(?:until|till|up until|up to|through|before) (?P<b>{_T_EN})\b", re.I), "until"),
    (re.compile(rf"\b(?:until|till|up until) (?P<r>{_RELATIVE_EN})\b", re.I), "until relative"),
    (
        re.compile(rf"\b(?:since|as of|starting(?: from| in)?|from|beginning|effective) (?P<a>{_T_EN})\b", re.I),
        "since",
    ),
    (re.compile(rf"\b(?:as of |since |starting )?(?P<r>{_RELATIVE_EN})\b", re.I), "relative"),
    # "I moved to Munich in 2021": the date of a change (not "founded in 1998", where the year is the value)
    (re.compile(rf"(?<=\s)(?:in|on) (?P<a>{_T_EN})\b", re.I), "event"),
    (
        re.compile(
            r",? ?\b(?:when (?:i|he|she) was (?:young|little|a kid|a child|younger)|as a (?:kid|child)|growing up)\b,?",
            re.I,
        ),
        "life stage",
    ),
]
_ZH = [
    (re.compile(rf"(?:从|自|在)?(?P<a>{_T_ZH})年?(?:到|至|-|—|~|～)(?P<b>{_T_ZH}|{_YEAR})年?(?:之间|期间)?"), "range"),
    (re.compile(rf"(?:直到|一直到|到)(?P<b>{_T_ZH}|{_YEAR})年?(?:为止|底)?"), "until"),
    (re.compile(rf"(?:从|自从?)?(?P<a>{_T_ZH}|{_YEAR})年?(?:起|开始|以来)"), "since"),
    (re.compile(rf"(?:从)?(?P<r>{_RELATIVE_ZH})(?:起|开始)?"), "relative"),
    # "他年轻的时候在码头当搬运工", "我小时候住在大连": an earlier stage of life, undated
    (re.compile(r"(?:年轻|小|小的|上学|读书|念书)(?:的)?时(?:候)?[，,]?"), "life stage"),
]


_CHANGE = re.compile(
    r"\b(?:moved|relocated|left|joined|started|quit|became|switched|changed|retired|graduated|married|took over|"
    r"replaced|succeeded|stepped (?:in|up|down))\b",
    re.I,
)


def iso(text: str) -> str | None:
    """ "March 2021" -> "2021-03", "2016年5月" -> "2016-05", "2016" -> "2016"; None when no year is given."""
    year = re.search(r"\d{4}", text)
    if year is None:
        return None
    out = year.group()
    month = re.search(r"(\d{1,2})月", text) or re.search(r"\d{4}-(\d{2})", text)
    named = re.search(_MONTH, text, re.I)
    number = int(month.group(1)) if month else (_month_number(named.group()) if named else None)
    if number:
        out += f"-{number:02d}"
        day = re.search(r"(\d{1,2})[日号]", text) or re.search(r"\d{4}-\d{2}-(\d{2})", text)
        day = day or re.search(rf"{_MONTH} (\d{{1,2}})(?:st|nd|rd|th)?,? \d{{4}}", text, re.I)
        if day:
            out += f"-{int(day.group(1)):02d}"
    return out


def _month_number(name: str) -> int | None:
    key = name.casefold().rstrip(".")[:3]
    return next((i + 1 for i, m in enumerate(_MONTHS) if m.startswith(key)), None)


def relative(phrase: str, today: date | None = None) -> str:
    """The date a relative phrase points to, at the precision it has ("last month" -> "2026-10")."""
    d = today or datetime.now(UTC).date()
    p = phrase.casefold()
    if p in {"yesterday", "昨天"}:
        return (d - timedelta(days=1)).isoformat()
    if p in {"today", "今天"}:
        return d.isoformat()
    if "week" in p or p.startswith(("上周", "上星期", "上个星期")):
        return (d - timedelta(days=7 if ("last" in p or "ago" in p or "上" in p) else 0)).isoformat()
    if "month" in p or p == "上个月" or p == "上月":
        first = d.replace(day=1)
        back = first - timedelta(days=1) if ("last" in p or "ago" in p or "上" in p) else first
        return f"{back.year}-{back.month:02d}"
    years_back = 2 if p == "前年" else 1 if ("last" in p or "ago" in p or p == "去年") else 0
    return str(d.year - years_back)


def time_phrases(sentence: str, zh: bool) -> tuple[str, dict[str, str]]:
    """(the sentence without its time phrase, {"valid_at"?, "invalid_at"?, "past"?: "yes"})."""
    for pattern, kind in _ZH if zh else _EN:
        m = pattern.search(sentence)
        if m is None:
            continue
        found = m.groupdict()
        out: dict[str, str] = {}
        if kind == "event" and not _CHANGE.search(sentence):
            continue
        if kind == "life stage":
            out["past"] = "yes"
        elif kind == "relative":
            out["valid_at"] = relative(found["r"])
        elif kind == "until relative":
            out["invalid_at"], out["past"] = relative(found["r"]), "yes"
        else:
            a, b = iso(found.get("a") or ""), iso(found.get("b") or "")
            if a:
                out["valid_at"] = a
            if b:
                out["invalid_at"] = b
                if b < datetime.now(UTC).date().isoformat()[: len(b)]:  # "until 2027" is not the past
                    out["past"] = "yes"
        head, tail = sentence[: m.start()].rstrip(" ,，"), sentence[m.end() :].lstrip(" ,，")
        joined = not tail or tail[0] in ".!?。！？" or bool(re.match(r"[\u4e00-\u9fff]", tail[0] + (head[-1:] or "a")))
        rest = head + ("" if joined or re.search(r"[\u4e00-\u9fff]$", head) else " ") + tail
        return rest.strip(" ,，"), out
    return sentence, {}

"""Language-aware text helpers shared by retrieval and extraction (English and Chinese alike)."""

from __future__ import annotations

import re
import unicodedata

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RUN = re.compile(f"[{_CJK}]+")
_WORD = rf"[^\W_{_CJK}]+"
_TOKEN = re.compile(rf"[{_CJK}]+|{_WORD}(?:[-'.]{_WORD})*")

STOPWORDS_EN = frozenset(
    """a about above after again all also am an and any are as at be because been before being below between both
    but by can could did do does doing down during each few for from further had has have having he her here hers
    herself him himself his how i if in into is it its itself just let me more most my myself no nor not now of off
    on once only or other our ours ourselves out over own please same she should so some such tell than that the
    their theirs them themselves then there these they this those through to too under until up very was we were
    what when where which while who whom whose why will with would you your yours yourself yourselves s t d ll re ve
    m o y know want like get got say said thing things one ok okay yes hi hello thanks thank""".split()
)
# Function words and question words; content bigrams that contain only these carry no topic.
STOP_CJK_CHARS = frozenset("的了是在有和与及或吗呢吧啊呀么什谁哪几多少怎样这那个我你他她它们请问一也就都还被把给对")


def is_cjk(text: str) -> bool:
    return bool(CJK_RUN.search(text))


def language(text: str) -> str:
    """'zh' when CJK characters make up a fair share of the letters, else 'en'."""
    cjk = sum(len(m) for m in CJK_RUN.findall(text))
    letters = sum(1 for c in text if c.isalpha())
    return "zh" if letters and cjk / letters >= 0.3 else "en"


def normalize(text: str) -> str:
    """Case-, width- and space-insensitive form for comparing names and values."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[\s\u3000]+", " ", text)
    return text.strip(" .,;:!?。，；：！？、\"'“”‘’()（）[]【】")


def terms(text: str) -> list[str]:
    """Search terms: lower-cased words without stopwords; CJK runs as overlapping bigrams plus single characters
    (most Chinese words are two characters, which trigram indexes never match)."""
    out: list[str] = []
    for tok in _TOKEN.findall(unicodedata.normalize("NFKC", text)):
        if CJK_RUN.fullmatch(tok):
            pairs = zip(tok, tok[1:], strict=False)
            out.extend(a + b for a, b in pairs if not (a in STOP_CJK_CHARS and b in STOP_CJK_CHARS))
            out.extend(c for c in tok if c not in STOP_CJK_CHARS)
        else:
            low = tok.casefold()
            if low not in STOPWORDS_EN:
                out.append(low)
    return out


def content_terms(text: str) -> set[str]:
    """Terms that carry the topic: words and CJK bigrams (single CJK characters are too ambiguous)."""
    return {t for t in terms(text) if not (is_cjk(t) and (len(t) == 1 or any(c in STOP_CJK_CHARS for c in t)))}


def mentions(subject: str, text: str, share: float = 0.6) -> bool:
    """Whether `text` names `subject`: verbatim, or most of its content terms ("the Secretary of the Silverfen
    Hiking Society" names "Silverfen Hiking Society secretary"; "陈墨白养的猫" names "陈墨白家")."""
    s, t = normalize(subject), normalize(text)
    if len(s) >= 2 and s in t:
        return True
    wanted = content_terms(subject)
    return len(wanted) >= 2 and len(wanted & content_terms(text)) / len(wanted) >= share

"""Per-user preferences stated in words ("answer shorter", "用中文回答"), applied to every later turn."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from dilm import validate
from dilm.asking import MODES
from dilm.errors import InvalidInputError
from dilm.guard.rules import Rule
from dilm.store import Store
from dilm.text import content_terms

# What a profile may hold, and the values each key takes (`dilm profile set`); None: free text.
KEYS: dict[str, tuple[str, ...] | None] = {
    "language": ("en", "zh"),
    "verbosity": ("short", "long"),
    "tone": ("formal", "casual"),
    "format": ("plain", "list"),
    "policy": MODES,
    "avoid": None,  # terms the user does not want in answers, comma-separated: a hard guard rule
}
MAX_FREE_CHARS = 200

_RULES: list[tuple[re.Pattern[str], str, str]] = [
    (
        re.compile(r"\b(?:answer|reply|respond|speak|talk|write)\b.{0,20}\b(?:in )?(?:chinese|mandarin)\b", re.I),
        "language",
        "zh",
    ),
    (re.compile(r"用中文|说中文|讲中文|中文回答|中文回复"), "language", "zh"),
    (re.compile(r"\b(?:answer|reply|respond|speak|talk|write)\b.{0,20}\bin english\b", re.I), "language", "en"),
    (re.compile(r"用英文|说英文|用英语|英文回答|英语回答"), "language", "en"),
    (
        re.compile(
            r"\b(?:shorter|more brief|briefer|more concise|be (?:brief|concise)|too long|"
            r"keep (?:it|them|things|(?:your |the )?(?:answers?|replies|responses)) (?:short|brief)|"
            r"less verbose|short answers?)\b",
            re.I,
        ),
        "verbosity",
        "short",
    ),
    (re.compile(r"简短|简洁|短一点|短一些|太长|简单点|少说"), "verbosity", "short"),
    (
        re.compile(r"\b(?:longer|more detail(?:ed)?|in detail|too short|elaborate|more thorough)\b", re.I),
        "verbosity",
        "long",
    ),
    (re.compile(r"详细|具体一点|多说|太短|展开"), "verbosity", "long"),
    (re.compile(r"\b(?:more formal|be formal|formally|professional tone|less casual)\b", re.I), "tone", "formal"),
    (re.compile(r"正式一点|正式一些|正式的语气|礼貌一点"), "tone", "formal"),
    (re.compile(r"\b(?:more casual|be casual|casually|less formal|relaxed tone)\b", re.I), "tone", "casual"),
    (re.compile(r"随意一点|轻松一点|口语化|别那么正式"), "tone", "casual"),
    # negated formats first: "no bullet points" and "不要分点" are plain, not lists
    (
        re.compile(
            r"\b(?:no (?:bullet points|lists)|(?:don't|do not|never) use (?:bullet points|lists)|plain text|"
            r"in prose|full sentences)\b",
            re.I,
        ),
        "format",
        "plain",
    ),
    (re.compile(r"不要列表|不要分点|用段落"), "format", "plain"),
    (
        re.compile(r"\b(?:bullet points?|bulleted|as a list|in a list|numbered list|step by step)\b", re.I),
        "format",
        "list",
    ),
    (re.compile(r"列表|分点|要点形式|一条一条|分步骤"), "format", "list"),
]
_AVOID = [
    re.compile(
        r"\b(?:never|don't|do not|stop) (?:mention(?:ing)?|say(?:ing)?|use|using) (?:the word )?"
        r"[\"“']?([^\"”'.,!?]{2,40})",
        re.I,
    ),
    re.compile(r"(?:不要|别|不许|不准)(?:再)?(?:提到?|说|用)[“\"「]?([^”\"」。，！？,.!?]{1,20})"),
]
_INSTRUCTION = re.compile(
    r"^(?:please |pls |from now on,? |can you |could you |i(?:'d| would) (?:like|prefer) (?:you to )?|"
    r"(?:以后|今后|之后)?(?:请|麻烦)?(?:你)?(?:以后|今后)?)?"
    r"(?:answer|reply|respond|speak|talk|write|be|keep|give|use|make|never|don't|do not|stop|"
    r"用|说|讲|回答|简短|简洁|详细|正式|随意|不要|别)",
    re.I,
)


def stated_preferences(text: str) -> dict[str, str]:
    """Preferences a message states, e.g. {"verbosity": "short", "language": "zh"}."""
    found: dict[str, str] = {}
    for pattern, key, value in _RULES:
        if key not in found and pattern.search(text):
            found[key] = value
    for pattern in _AVOID:
        m = pattern.search(text)
        if m and m.group(1).strip() and "format" not in found:  # "don't use bullet points" is a format
            found["avoid"] = m.group(1).strip()
            break
    return found


def is_preference_instruction(text: str) -> bool:
    """A short message whose point is the preference itself ("Please answer in Chinese from now on.")."""
    return bool(stated_preferences(text)) and len(text) <= 120 and bool(_INSTRUCTION.match(text.strip()))


def system_prompt(base: str, profile: dict[str, Any]) -> str:
    extra = []
    if profile.get("verbosity") == "short":
        extra.append("Keep answers to one or two sentences.")
    elif profile.get("verbosity") == "long":
        extra.append("Give detailed, thorough answers.")
    if profile.get("tone") == "formal":
        extra.append("Use a formal, polite tone.")
    elif profile.get("tone") == "casual":
        extra.append("Use a casual, friendly tone.")
    if profile.get("format") == "list":
        extra.append("Format answers as a short bulleted list.")
    elif profile.get("format") == "plain":
        extra.append("Answer in plain sentences, without lists.")
    if profile.get("avoid"):
        extra.append(f"Never mention: {profile['avoid']}.")
    if profile.get("language") == "zh":
        extra.append("Answer in Chinese (用中文回答).")
    elif profile.get("language") == "en":
        extra.append("Answer in English.")
    return " ".join([base, *extra])


def decoding_overrides(profile: dict[str, Any], max_new_tokens: int) -> dict[str, Any]:
    return {"max_new_tokens": min(max_new_tokens, 96)} if profile.get("verbosity") == "short" else {}


def describe(prefs: dict[str, str]) -> str:
    words = {
        ("language", "zh"): "answer in Chinese",
        ("language", "en"): "answer in English",
        ("verbosity", "short"): "keep answers short",
        ("verbosity", "long"): "give detailed answers",
        ("tone", "formal"): "use a formal tone",
        ("tone", "casual"): "use a casual tone",
        ("format", "list"): "format answers as lists",
        ("format", "plain"): "answer in plain sentences",
        ("policy", "passive"): "never ask before answering",
        ("policy", "active"): "ask whenever I am unsure",
        ("policy", "hybrid"): "ask when it is likely needed",
    }
    if "avoid" in prefs:
        words[("avoid", prefs["avoid"])] = f"never mention {prefs['avoid']}"
    return ", ".join(words.get((k, v), f"{k}={v}") for k, v in prefs.items())


def validated(values: dict[str, str | None]) -> dict[str, str | None]:
    """Profile values checked against KEYS; None removes a key."""
    for key, value in values.items():
        if key not in KEYS:
            raise InvalidInputError(f"unknown profile key {key!r}: use one of {', '.join(KEYS)}")
        allowed = KEYS[key]
        if value is None:
            continue
        if allowed is None:
            if not isinstance(value, str) or not value.strip() or len(value) > MAX_FREE_CHARS:
                raise InvalidInputError(f"{key} must be non-empty text of at most {MAX_FREE_CHARS} characters")
        elif value not in allowed:
            raise InvalidInputError(f"{key} must be one of {', '.join(allowed)}, not {value!r}")
    return values


def guard_rules(profile: dict[str, Any]) -> list[Rule]:
    """The user's constraints as guard rules: banned terms are hard; length and language are soft (reported)."""
    out = []
    if profile.get("avoid"):
        terms = [t.strip() for t in re.split(r"[,，、;；]", profile["avoid"]) if t.strip()]
        if terms:
            out.append(
                Rule(
                    name="profile-avoid",
                    reason="you asked me never to mention certain terms (see your profile)",
                    kind="keyword",
                    keywords=terms,
                )
            )
    if profile.get("verbosity") == "short":
        out.append(
            Rule(
                name="profile-short",
                reason="the user wants short answers (three sentences at most)",
                kind="regex",
                pattern=r"(?:[^.!?。！？]+[.!?。！？]\s*){4,}",
                hard=False,
            )
        )
    if profile.get("language") == "zh":
        out.append(
            Rule(
                name="profile-language",
                reason="the user wants answers in Chinese",
                kind="regex",
                pattern=r"^[^\u4e00-\u9fff]*$",
                hard=False,
            )
        )
    return out


class Profiles:
    """`bot.profiles`: each user's stated preferences, as learned from chat and feedback, viewable and editable.

    Every change is one store transaction on the current profile, so concurrent turns of one user cannot lose
    each other's preferences. User names are checked (`dilm.validate.user`: InvalidInputError)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, user: str) -> dict[str, str]:
        return self.store.profile(validate.user(user))

    def learned(self, user: str, top: int = 5) -> dict[str, Any]:
        """What the log says about the user: {"topics": the `top` most frequent terms of their questions (seen at
        least twice), "reasons": {reason tag: count} of their feedback}."""
        user = validate.user(user)
        counts: Counter[str] = Counter()
        for text in self.store.user_questions(user, 200):
            counts.update(content_terms(text))
        reasons: Counter[str] = Counter()
        for tags in self.store.feedback_reasons(user, 500):
            reasons.update(tags)
        return {
            "topics": [t for t, n in counts.most_common(top) if n >= 2],
            "reasons": dict(reasons.most_common(top)),
        }

    def set(self, user: str, **values: str | None) -> dict[str, str]:
        """Set (or, with None, remove) profile keys; returns the profile. Raises InvalidInputError (KEYS)."""
        user = validate.user(user)
        changes = validated(values)

        def change(profile: dict[str, str]) -> dict[str, str]:
            merged = {**profile, **changes}
            return {k: v for k, v in merged.items() if v is not None}

        return self.store.update_profile(user, change)

    def learn(self, user: str, prefs: dict[str, str]) -> dict[str, str]:
        """Apply preferences stated in chat or feedback: like `set`, except that banned terms ("avoid") add up
        (comma-separated, deduplicated, at most MAX_FREE_CHARS characters). Returns the profile."""
        user = validate.user(user)
        validated(dict(prefs))

        def change(profile: dict[str, str]) -> dict[str, str]:
            new = dict(prefs)
            if "avoid" in new:
                terms = [t.strip() for t in f"{profile.get('avoid', '')},{new['avoid']}".split(",") if t.strip()]
                new["avoid"] = ", ".join(dict.fromkeys(terms))[:MAX_FREE_CHARS]
            return {**profile, **new}

        return self.store.update_profile(user, change)

    def reset(self, user: str) -> None:
        self.store.reset_profile(validate.user(user))

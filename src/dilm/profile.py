"""Per-user preferences stated in words ("answer shorter", "用中文回答"), applied to every later turn."""

from __future__ import annotations

import re
from typing import Any

from dilm.errors import InvalidInputError

# What a profile may hold, and the values each key takes (`dilm profile set`).
KEYS: dict[str, tuple[str, ...]] = {"language": ("en", "zh"), "verbosity": ("short", "long")}

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
]
_INSTRUCTION = re.compile(
    r"^(?:please |pls |from now on,? |can you |could you |i(?:'d| would) (?:like|prefer) (?:you to )?|"
    r"(?:以后|今后|之后)?(?:请|麻烦)?(?:你)?(?:以后|今后)?)?"
    r"(?:answer|reply|respond|speak|talk|write|be|keep|give|use|make|用|说|讲|回答|简短|简洁|详细)",
    re.I,
)


def stated_preferences(text: str) -> dict[str, str]:
    """Preferences a message states, e.g. {"verbosity": "short", "language": "zh"}."""
    found: dict[str, str] = {}
    for pattern, key, value in _RULES:
        if key not in found and pattern.search(text):
            found[key] = value
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
    }
    return ", ".join(words.get((k, v), f"{k}={v}") for k, v in prefs.items())


def validated(values: dict[str, str | None]) -> dict[str, str | None]:
    """Profile values checked against KEYS; None removes a key."""
    for key, value in values.items():
        if key not in KEYS:
            raise InvalidInputError(f"unknown profile key {key!r}: use one of {', '.join(KEYS)}")
        if value is not None and value not in KEYS[key]:
            raise InvalidInputError(f"{key} must be one of {', '.join(KEYS[key])}, not {value!r}")
    return values


class Profiles:
    """`bot.profiles`: each user's stated preferences, as learned from chat and feedback, viewable and editable."""

    def __init__(self, bot) -> None:  # type: ignore[no-untyped-def]
        self.bot = bot

    def get(self, user: str) -> dict[str, str]:
        return dict(self.bot.store.user_settings(self.bot._user(user)).get("profile", {}))

    def set(self, user: str, **values: str | None) -> dict[str, str]:
        """Set (or, with None, remove) profile keys; returns the profile."""
        user = self.bot._user(user)
        settings = self.bot.store.user_settings(user)
        merged = {**settings.get("profile", {}), **validated(values)}
        profile = {k: v for k, v in merged.items() if v is not None}
        self.bot.store.set_user_settings(user, {**settings, "profile": profile})
        return profile

    def reset(self, user: str) -> None:
        user = self.bot._user(user)
        settings = self.bot.store.user_settings(user)
        settings.pop("profile", None)
        self.bot.store.set_user_settings(user, settings)

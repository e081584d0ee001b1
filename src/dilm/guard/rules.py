"""Deployment rules: `rules.toml` in the data dir, each rule a name, a reason and one check on the answer.

    [[rule]]
    name = "no-competitors"
    reason = "we do not recommend competitors"
    kind = "keyword"                 # regex | keyword | must_mention | must_not_mention
    keywords = ["Globex", "Initech"] # keyword: any of these (case-insensitive) in the answer breaks the rule
    when = "(?i)recommend|推荐"       # optional: the rule applies only to questions this regex matches
    hard = true                      # hard rules must hold; soft ones are reported (default: true)

`regex` breaks when `pattern` matches the answer; `must_mention` breaks when `text` is missing from it;
`must_not_mention` breaks when `text` is in it. A malformed file is a ConfigError naming the line and column
(or the rule); `RulesFile` then keeps the rules it had.
"""

from __future__ import annotations

import logging
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dilm.errors import ConfigError
from dilm.text import normalize

log = logging.getLogger(__name__)
RULES_FILE = "rules.toml"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=500)
    kind: Literal["regex", "keyword", "must_mention", "must_not_mention"]
    pattern: str | None = None
    keywords: list[str] = Field(default_factory=list)
    text: str | None = None
    when: str | None = None
    hard: bool = True

    @field_validator("pattern", "when")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a valid regular expression: {e}") from None
        return v

    @model_validator(mode="after")
    def _needs(self) -> Rule:
        need = {"regex": "pattern", "keyword": "keywords", "must_mention": "text", "must_not_mention": "text"}[
            self.kind
        ]
        if not getattr(self, need):
            raise ValueError(f"a {self.kind} rule needs `{need}`")
        return self

    def applies(self, question: str) -> bool:
        return self.when is None or re.search(self.when, question) is not None

    def broken_by(self, answer: str) -> bool:
        """Whether `answer` breaks the rule (case- and width-insensitive for text and keywords)."""
        if self.kind == "regex":
            return re.search(self.pattern or "", answer) is not None
        said = normalize(answer)
        if self.kind == "keyword":
            return any(normalize(k) in said for k in self.keywords if k.strip())
        present = normalize(self.text or "") in said
        return not present if self.kind == "must_mention" else present


@dataclass(frozen=True)
class Violation:
    rule: str
    reason: str
    hard: bool


def parse(text: str, where: str = RULES_FILE) -> list[Rule]:
    """Rules from TOML text; errors name the line and column, or the rule and field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: {e}") from None
    unknown = set(data) - {"rule"}
    if unknown:
        raise ConfigError(f"{where}: unknown table {sorted(unknown)[0]!r}: rules are [[rule]] entries")
    rules, names = [], set()
    for n, raw in enumerate(data.get("rule", []), 1):
        try:
            rule = Rule.model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err.get("loc", ()))
            label = raw.get("name", f"#{n}") if isinstance(raw, dict) else f"#{n}"
            raise ConfigError(f"{where}: rule {label}: {field + ': ' if field else ''}{err['msg']}") from None
        if rule.name in names:
            raise ConfigError(f"{where}: two rules are named {rule.name!r}")
        names.add(rule.name)
        rules.append(rule)
    return rules


def check(rules: list[Rule], question: str, answer: str) -> list[Violation]:
    return [Violation(r.name, r.reason, r.hard) for r in rules if r.applies(question) and r.broken_by(answer)]


class RulesFile:
    """The rules of a data dir, re-read when the file changes; a bad edit keeps the rules in force."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / RULES_FILE
        self.rules: list[Rule] = []
        self.error: str | None = None
        self._stamp: tuple[float, int] | None = None
        self.refresh(strict=True)

    def refresh(self, strict: bool = False) -> list[Rule]:
        """Re-read the file if it changed. `strict`: a bad file raises (at open); else it is logged and kept out."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self.rules, self.error, self._stamp = [], None, None
            return self.rules
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return self.rules
        self._stamp = stamp
        try:
            self.rules, self.error = parse(self.path.read_text(encoding="utf-8"), str(self.path)), None
        except (ConfigError, UnicodeDecodeError) as e:
            self.error = str(e)
            if strict:
                raise ConfigError(str(e)) from None
            log.error("%s; the previous rules stay in force", e)
        return self.rules

"""`bot.training`: what the interfaces need around training — the examples export, the background worker, and
which scopes have feedback. Training one scope is `Assistant.train`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from dilm.config import Settings
from dilm.errors import InvalidInputError
from dilm.learning import examples
from dilm.learning.worker import Worker
from dilm.store import Store
from dilm.types import user_scope


class Training:
    def __init__(self, data_dir: Path, settings: Settings, store: Store) -> None:
        self.data_dir, self.settings, self.store = data_dir, settings, store

    def examples(self, fmt: str, user: str | None = None) -> list[dict[str, Any]]:
        """The training examples of format `fmt` ("sft", "kto", "dpo", "reward", "pg") derived from the feedback log
        (of one user, or all), as TRL-style rows. Raises InvalidInputError for an unknown format."""
        return examples.examples(self.store, _format(fmt), user)

    def export(self, fmt: str, output: Path, user: str | None = None) -> int:
        """Write the training examples of format `fmt` derived from the feedback log (of one user, or all) to
        `output` as JSONL; returns how many."""
        return examples.export(self.store, _format(fmt), output, user=user)

    def user_scopes(self) -> list[str]:
        """The scope of every user who has given feedback (what `dilm train --all` trains), sorted by user."""
        return [user_scope(u) for u in self.store.feedback_users()]

    def worker(self, poll_s: float = 10.0) -> Worker:
        """The background trainer over this data dir: `run()` in the foreground, `run_once()`, or `start()`."""
        return Worker(self.data_dir, self.settings, self.store, poll_s)


def _format(fmt: str) -> examples.Format:
    if fmt not in examples.FORMATS:
        raise InvalidInputError(f"unknown format {fmt!r}: use one of {', '.join(examples.FORMATS)}")
    return cast(examples.Format, fmt)

"""`bot.stats`: how the assistant is doing, read from the log."""

from __future__ import annotations

from typing import Any

from dilm.store import Store


class Stats:
    def __init__(self, store: Store) -> None:
        self.store = store

    def satisfaction(self) -> dict[str, list[dict[str, Any]]]:
        """Share of rated answers rated positive (the latest rating per answer counts), `by_day` and `by_adapter`
        (the adapter version that produced the answer; "base": none), each a list of key, rated, positive,
        satisfaction in order of first appearance."""
        return self.store.satisfaction()

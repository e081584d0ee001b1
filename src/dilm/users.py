"""`bot.users`: all of one user's data at once — export it, or forget it (the right to be forgotten)."""

from __future__ import annotations

import shutil
from typing import Any

from dilm.types import user_scope


class Users:
    def __init__(self, bot) -> None:  # type: ignore[no-untyped-def]
        self.bot = bot

    def export(self, user: str) -> dict[str, Any]:
        """Sessions, messages, feedback, memories (superseded too), facts (history too), settings and profile,
        and the records of the user's personal adapters, as one JSON-ready dict."""
        return self.bot.store.export_user(self.bot._user(user))

    def forget(self, user: str) -> dict[str, int]:
        """Delete everything stored for `user`, personal adapters' files included; returns what was deleted.

        Global knowledge the user helped build (facts promoted by consensus, global adapters trained on a log
        that held their feedback) stays: it is no longer theirs alone."""
        user = self.bot._user(user)
        counts, folders = self.bot.store.forget_user(user)  # one transaction: all rows or none
        for rel in folders:  # the records are gone, so a failure here leaves unreferenced files only
            shutil.rmtree(self.bot.data_dir / rel, ignore_errors=True)
        self.bot.retriever.index.invalidate(user_scope(user))
        return counts

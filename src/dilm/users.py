"""`bot.users`: all of one user's data at once — export it, or forget it (the right to be forgotten)."""

from __future__ import annotations

import shutil
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dilm import validate
from dilm.images import PictureStore
from dilm.memory.index import VectorIndex
from dilm.store import Store
from dilm.types import user_scope


class Users:
    """The user lifecycle: the activity gate every turn and feedback holds, export, and forget."""

    def __init__(self, store: Store, data_dir: Path, index: VectorIndex, pictures: PictureStore) -> None:
        self.store, self.data_dir, self.index, self.pictures = store, data_dir, index, pictures
        self._cond = threading.Condition()
        self._busy: Counter[str] = Counter()  # user -> turns and feedback in flight
        self._forgetting: set[str] = set()
        self._mine = threading.local()  # users this thread is active for

    @contextmanager
    def active(self, user: str) -> Iterator[None]:
        """Held by each turn and piece of feedback: forgetting the user waits for them, and they wait for it, so
        nothing a request writes outlives a forget that answered after it began."""
        held: Counter[str] = self._mine.__dict__.setdefault("held", Counter())
        with self._cond:
            if not held[user]:  # reentrant: a turn may record feedback (a clarification) for its own user
                self._cond.wait_for(lambda: user not in self._forgetting)
            self._busy[user] += 1
            held[user] += 1
        try:
            yield
        finally:
            with self._cond:
                held[user] -= 1
                self._busy[user] -= 1
                if not self._busy[user]:
                    del self._busy[user]
                self._wake_everyone()

    def _wake_everyone(self) -> None:
        """Every waiter re-checks its condition (turns waiting on a forget, a forget waiting on turns)."""
        self._cond.notify(sys.maxsize)

    def export(self, user: str) -> dict[str, Any]:
        """Sessions, messages, feedback, memories (superseded too), facts (history too), settings and profile,
        and the records of the user's personal adapters, and the pictures they sent (base64), as one JSON-ready
        dict."""
        user = validate.user(user)
        exported = self.store.export_user(user)
        exported["images"] = self.pictures.export(user)
        return exported

    def forget(self, user: str) -> dict[str, int]:
        """Delete everything stored for `user`, personal adapters' files included; returns what was deleted.

        Global knowledge the user helped build (facts promoted by consensus, global adapters trained on a log
        that held their feedback) stays: it is no longer theirs alone."""
        user = validate.user(user)
        with self._cond:  # no new turns for the user; the ones in flight finish first
            self._cond.wait_for(lambda: user not in self._forgetting)
            self._forgetting.add(user)
            self._cond.wait_for(lambda: not self._busy[user])
        try:
            counts, folders = self.store.forget_user(user)  # one transaction: all rows or none
            # Inside the gate: a turn that starts after the forget answered cannot save a picture it removes.
            counts["images"] = self.pictures.forget(user)
        finally:
            with self._cond:
                self._forgetting.discard(user)
                self._wake_everyone()
        for rel in folders:  # the records are gone, so a failure here leaves unreferenced files only
            shutil.rmtree(self.data_dir / rel, ignore_errors=True)
        self.index.invalidate(user_scope(user))
        return counts

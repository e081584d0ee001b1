"""The background trainer: every few seconds, find scopes whose feedback is due for training and train each
in a child process (`dilm train --scope …`), one at a time.

A child process keeps training off the chat process (no shared interpreter lock, no shared model), and a
crash or kill of it changes nothing that is live (see registry). A scope is due when `train.auto_every` new
examples wait, or when any wait and `train.interval_s` has passed since its last version (or first waiting
feedback). Global adapters train only on request (`dilm train --scope global`): an admin action. The reward
model is refreshed once `train.auto_every` new pieces of feedback arrived since its last version.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from dilm.config import Settings
from dilm.learning.reward import REWARD_SCOPE
from dilm.learning.train import pending
from dilm.store import Store
from dilm.types import user_scope

log = logging.getLogger(__name__)


def due_scopes(store: Store, settings: Settings, now: datetime) -> list[tuple[str, int]]:
    """(scope, waiting examples) for every user scope that should train now."""
    cfg = settings.train
    out = []
    for user in store.feedback_users():
        scope = user_scope(user)
        n = pending(store, scope, cfg.ratings)
        if n < cfg.min_examples:
            continue
        if n >= cfg.auto_every:
            out.append((scope, n))
            continue
        versions = store.adapters(scope, deleted=True)
        since = versions[-1].created_at if versions else _first_waiting(store, user, scope)
        if since and (now - datetime.fromisoformat(since)).total_seconds() >= cfg.interval_s:
            out.append((scope, n))
    # The reward model learns from everyone's preferences: refreshed once auto_every new pieces of feedback
    # arrived since its last version (rejected answers it had picked become its hard negatives).
    versions = store.adapters(REWARD_SCOPE, deleted=True)
    waiting = store.feedback_high_water() - (versions[-1].data_to if versions else 0)
    if waiting >= cfg.auto_every:
        out.append((REWARD_SCOPE, waiting))
    return out


def _first_waiting(store: Store, user: str, scope: str) -> str | None:
    """When the user's oldest feedback not yet trained on for `scope` was given (None: none waits)."""
    return store.first_feedback_after(user, store.trained_upto(scope))


def train_in_child(data_dir: Path, scope: str, timeout: float | None = None) -> int:
    """Run `dilm train --scope SCOPE` in a child process; its exit status."""
    cmd = [sys.executable, "-m", "dilm", "train", "--scope", scope, "--data-dir", str(data_dir), "--quiet"]
    return subprocess.run(cmd, timeout=timeout, check=False).returncode


class Worker:
    """Polls a data dir and trains due scopes; `run()` in the foreground, or `start()` as a daemon thread."""

    def __init__(self, data_dir: Path, settings: Settings, store: Store, poll_s: float = 10.0) -> None:
        self.data_dir, self.settings, self.store, self.poll_s = data_dir, settings, store, poll_s
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[tuple[str, int]]:
        """Train every due scope now; returns (scope, exit status) per job."""
        results = []
        for scope, n in due_scopes(self.store, self.settings, datetime.now(UTC)):
            if self.stop_event.is_set():
                break
            log.info("training %s (%d new examples)", scope, n)
            results.append((scope, train_in_child(self.data_dir, scope)))
        return results

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.run_once()
            except Exception:  # one bad poll must not end the worker
                log.exception("training worker poll failed")
            self.stop_event.wait(self.poll_s)

    def start(self) -> Worker:
        self._thread = threading.Thread(target=self.run, name="dilm-train-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

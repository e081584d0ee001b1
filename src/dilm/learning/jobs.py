"""One train -> gate -> publish job, shared by the LoRA adapters (`learning/train.py`) and the reward model
(`learning/reward.py`).

The job holds the scope's lock and a staging folder (`Registry.job`), times its stages, runs the trainer's
stages (train, then gate), saves the result into staging (a full disk is a `StorageError` that leaves the live
version unchanged), records the version with its report and publishes it: live at once when the gate accepted
it, kept for inspection when it rejected it. The live version changes only in the publishing transaction, so
a crash changes nothing.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dilm.errors import StorageError
from dilm.learning.registry import ADAPTERS_DIR, Registry
from dilm.types import AdapterVersion, new_id, utcnow


@dataclass
class TrainResult:
    status: Literal["nothing", "accepted", "rejected"]
    message: str
    version: AdapterVersion | None = None
    report: dict[str, Any] = field(default_factory=dict)


class Laps:
    """A job's stopwatch: `laps("train")` records the seconds since the previous lap under "train"."""

    def __init__(self) -> None:
        self.started = self._last = time.perf_counter()
        self.timings: dict[str, float] = {}

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._last, 2)
        self._last = now

    def seconds(self) -> float:
        """Since the job started."""
        return time.perf_counter() - self.started


@dataclass
class Job:
    """A running job as its stages see it: its id, scope, staging folder (the version's files go there) and
    stopwatch."""

    id: str
    scope: str
    staging: Path
    laps: Laps


@dataclass
class Trained:
    """What a trainer's stages hand back to the job: the gate's verdict and how to save, record and announce
    the new version."""

    reasons: list[str]  # the gate's reasons to reject; empty: accepted
    save: Callable[[Path], None]  # writes the version's files into the staging folder
    report: Callable[[float], dict[str, Any]]  # the version's report, given the job's seconds once saved
    message: Callable[[AdapterVersion, dict[str, Any]], str]  # the result's message for the published version
    parent: AdapterVersion | None
    base_model: str
    data_from: int
    data_to: int


def run(registry: Registry, scope: str, what: str, stages: Callable[[Job], Trained]) -> TrainResult:
    """Run `stages` under `scope`'s lock, then save, record and publish what they trained (`what` names it in
    errors: "adapter", "reward model")."""
    laps = Laps()
    job_id = new_id("job")
    with registry.job(scope, job_id) as staging:
        trained = stages(Job(job_id, scope, staging, laps))
        accepted = not trained.reasons
        save(trained.save, staging, what)
        report = trained.report(laps.seconds())
        record = AdapterVersion(
            version="pending",
            scope=scope,
            status="accepted" if accepted else "rejected",
            parent=trained.parent.version if trained.parent else None,
            base_model=trained.base_model,
            path=ADAPTERS_DIR,
            checksum="",
            data_from=trained.data_from,
            data_to=trained.data_to,
            info=report,
            created_at=utcnow(),
        )
        version = registry.publish(staging, record, make_live=accepted)
        laps("publish")
    return TrainResult("accepted" if accepted else "rejected", trained.message(version, report), version, report)


def save(write: Callable[[Path], None], staging: Path, what: str) -> None:
    """`write(staging)`; a full disk or an unwritable folder is a StorageError (nothing live changes)."""
    try:
        write(staging)
    except OSError as e:
        full = e.errno == errno.ENOSPC
        raise StorageError(
            ("disk full" if full else f"cannot write ({e})") + f" while saving the {what}; live version unchanged"
        ) from None

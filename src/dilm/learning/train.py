"""One training job for one scope: new feedback (+ replay + anchors) → LoRA → gate → a published version.

Scopes: `user:<id>` trains on that user's feedback and continues from that user's live adapter; `global`
trains on everyone's feedback (an admin action) and continues from the global adapter. The job holds the
scope's lock; the live version changes only in the publishing transaction, so a crash changes nothing.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import random
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dilm.config import Settings
from dilm.errors import InvalidInputError, StorageError
from dilm.learning import examples, gate, trainers
from dilm.learning.registry import ADAPTERS_DIR, Registry
from dilm.learning.routing import Router
from dilm.memory.embed import shared_embedder
from dilm.models.bundled import resolve_model_dir
from dilm.text import normalize
from dilm.types import GLOBAL_SCOPE, AdapterVersion, new_id, utcnow

log = logging.getLogger(__name__)
Progress = trainers.Progress


@dataclass
class TrainResult:
    status: Literal["nothing", "accepted", "rejected"]
    message: str
    version: AdapterVersion | None = None
    report: dict[str, Any] = field(default_factory=dict)


def scope_user(scope: str) -> str | None:
    if scope == GLOBAL_SCOPE:
        return None
    if scope.startswith("user:") and len(scope) > 5:
        return scope[5:]
    raise InvalidInputError(f"unknown scope {scope!r}: use 'global' or 'user:<name>'")


def new_examples(store, scope: str, after: int, upto: int, ratings: str) -> dict[str, list[dict[str, Any]]]:  # type: ignore[no-untyped-def]
    """The scope's examples inside a feedback window, by objective: corrections (and preferred answers) train
    SFT, preferred-vs-original pairs train DPO, thumbs train KTO or policy gradient. (`dilm export` also
    derives DPO and KTO rows from corrections, for use outside dilm.)"""
    logged = list(examples.logged_feedback(store, scope_user(scope), after, upto))
    if scope == GLOBAL_SCOPE:
        logged = _global_only(store, logged)
    return {
        "sft": _latest_per_question(examples.examples_from(logged, "sft")),
        "dpo": examples.examples_from([f for f in logged if f.kind == "preference"], "dpo"),
        ratings: examples.examples_from([f for f in logged if f.kind == "rating"], ratings),  # type: ignore[arg-type]
    }


def _latest_per_question(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One target per question: the newest. Earlier corrections of it are superseded (A → B → C trains C)."""
    latest = {normalize(r["prompt"][-1]["content"]): r for r in rows}
    return list(latest.values())


def _global_only(store, logged: list[examples.LoggedFeedback]) -> list[examples.LoggedFeedback]:  # type: ignore[no-untyped-def]
    """The global adapter learns only corrections that became global knowledge (an admin's promotion or the
    consensus of `consensus_users` users): a user's private feedback never reaches everyone through weights."""
    shared = {
        normalize(r["text"])
        for r in store._all("SELECT text FROM memories WHERE scope = ? AND superseded_by IS NULL", (GLOBAL_SCOPE,))
    }
    return [f for f in logged if f.kind == "correction" and f.learned and normalize(f.learned) in shared]


def count(ex: dict[str, list[dict[str, Any]]]) -> int:
    return sum(len(v) for v in ex.values())


def pending(store, scope: str, ratings: str = "kto") -> int:  # type: ignore[no-untyped-def]
    """How many new examples wait for `scope`."""
    return count(new_examples(store, scope, store.trained_upto(scope), store.feedback_high_water(), ratings))


def train(  # type: ignore[no-untyped-def]
    data_dir: Path,
    settings: Settings,
    store,
    scope: str,
    progress: Progress | None = None,
    force: bool = False,
) -> TrainResult:
    """Train one new version of `scope`'s adapter from the feedback that arrived since its last job."""
    cfg = settings.train
    scope_user(scope)
    after, upto = store.trained_upto(scope), store.feedback_high_water()
    new = new_examples(store, scope, after, upto, cfg.ratings)
    n_new = count(new)
    if n_new == 0 or (n_new < cfg.min_examples and not force):
        return TrainResult(
            "nothing",
            f"nothing to train for {scope}: {n_new} new example(s) since the last version; "
            f"training starts at {cfg.min_examples} (or use --force)",
        )
    registry = Registry(data_dir, store)
    job_id = new_id("job")
    tick = progress or (lambda *_: None)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    clock = [started]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - clock[0], 2)
        clock[0] = now

    with registry.job(scope, job_id) as staging:
        parent = store.live_adapter([scope])
        parent_folder = registry.verify(parent) if parent is not None else None
        _, base_folder = resolve_model_dir(settings.model, settings.resolved_cache_dir())
        tick("loading", 0, 1)
        model, tokenizer = trainers.load_trainable(base_folder, parent_folder, cfg, settings.threads)
        lap("load")
        system = settings.system_prompt
        new = {k: [_with_system(r, system) for r in rows] for k, rows in new.items()}
        cache = base_cache(settings, base_folder) / "base-answers.json"
        # The base model's answers to the probe and to every anchor question: generated together on the first
        # job of a data dir (one batched pass), cached after.
        probe_q, all_anchors = gate.bundled_questions("probe.jsonl"), gate.bundled_questions("anchors.jsonl")
        answers = gate.base_answers(model, tokenizer, probe_q + all_anchors, system, cache)
        probe = [(gate.prompt(system, q), a) for q, a in zip(probe_q, answers, strict=False)]
        anchor_answers = dict(zip(all_anchors, answers[len(probe_q) :], strict=True))
        rng = random.Random(cfg.seed + upto)
        sft_rows = new["sft"] + _replay(store, scope, after, cfg.replay, len(new["sft"]), rng, "sft", system)
        if sft_rows:
            for q in rng.sample(all_anchors, k=min(cfg.anchors, len(all_anchors), max(1, len(new["sft"]) // 4))):
                if anchor_answers[q]:
                    sft_rows.append(
                        {
                            "prompt": gate.prompt(system, q),
                            "completion": [{"role": "assistant", "content": anchor_answers[q]}],
                        }
                    )
        lap("base_answers")
        questions = [r["prompt"][-1]["content"] for k in ("sft", "dpo") for r in new[k]]
        parent_questions = Router.load(parent_folder, shared_embedder()).questions if parent_folder else []
        router = Router(parent_questions + questions, shared_embedder()) if cfg.routing is not None else None
        tick("measuring", 0, 1)
        before = gate.measure(model, tokenizer, new, probe, router, cfg.routing)
        if cfg.edits_sample:
            before["edits"] = _edits_before(parent, model, tokenizer, settings, base_folder)
        lap("gate_before")
        tracker = trainers.Tracker(registry.root / "runs" / job_id)
        rng.shuffle(sft_rows)
        t_train = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TRL/transformers advice aimed at GPU setups (bf16, padding-free…)
                dpo_rows = new["dpo"] + _replay(store, scope, after, cfg.replay, len(new["dpo"]), rng, "dpo", system)
                losses = _fit(model, tokenizer, sft_rows, dpo_rows, new, cfg, staging / "work", tracker, progress)
            train_s = time.perf_counter() - t_train
            lap("train")
            tick("gate", 0, 1)
            after_m = gate.measure(model, tokenizer, new, probe, router, cfg.routing)
            lap("gate_measure")
            if cfg.edits_sample:
                after_m["edits"] = gate.edits_score(
                    model, tokenizer, settings.model, base_folder, system, cfg.edits_sample
                )
            lap("gate_edits")
            reasons = gate.decide(before, after_m, cfg)
            tracker.scalars("gate_before", before)
            tracker.scalars("gate_after", after_m)
        finally:
            tracker.close()
        accepted = not reasons
        shutil.rmtree(staging / "work", ignore_errors=True)
        try:
            model.save_pretrained(str(staging))
            if questions or parent_questions:
                Router.save(staging, parent_questions + questions)
        except OSError as e:
            full = e.errno == errno.ENOSPC
            raise StorageError(
                ("disk full" if full else f"cannot write ({e})") + " while saving the adapter; live version unchanged"
            ) from None
        report = {
            "gate": {"accepted": accepted, "reasons": reasons, "before": before, "after": after_m},
            "examples": {k: len(v) for k, v in new.items()} | {"sft_with_replay_and_anchors": len(sft_rows)},
            "losses": {k: [round(x, 4) for x in v] for k, v in losses.items()},
            "train_seconds": round(train_s, 2),
            "job_seconds": round(time.perf_counter() - started, 2),
            "timings": timings,
            "run_dir": str(tracker.folder.relative_to(data_dir)),
            "training": cfg.model_dump(),
        }
        record = AdapterVersion(
            version="pending",
            scope=scope,
            status="accepted" if accepted else "rejected",
            parent=parent.version if parent else None,
            base_model=settings.model,
            path=ADAPTERS_DIR,
            checksum="",
            data_from=after,
            data_to=upto,
            info=report,
            created_at=utcnow(),
        )
        version = registry.publish(staging, record, make_live=accepted)
        lap("publish")
    if accepted:
        msg = f"{version.version} is live for {scope} ({n_new} new example(s), {report['job_seconds']:.0f} s)"
    else:
        msg = f"{version.version} was rejected by the gate and kept for inspection: {'; '.join(reasons)}"
    return TrainResult("accepted" if accepted else "rejected", msg, version, report)


def _fit(model, tokenizer, sft_rows, dpo_rows, new, cfg, work: Path, tracker, progress) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    """The training stages, each only when it has examples: SFT, DPO, then KTO or policy gradient."""
    losses: dict[str, list[float]] = {}
    if sft_rows:
        losses["sft"] = trainers.sft(model, tokenizer, sft_rows, cfg, work, tracker, progress)
    if dpo_rows:
        losses["dpo"] = trainers.dpo(model, tokenizer, dpo_rows, cfg, work, tracker, progress)
    if new.get("kto"):
        losses["kto"] = trainers.kto(model, tokenizer, new["kto"], cfg, work, tracker, progress)
    if new.get("pg"):
        losses["pg"] = trainers.policy_gradient(model, tokenizer, new["pg"], cfg, work, tracker, progress)
    return losses


def base_cache(settings: Settings, base_folder: Path) -> Path:
    """Where facts about the base model itself (its answers to the probe, its edit score) are kept: the
    model cache, shared by every data dir that uses the same model."""
    key = hashlib.sha256(str(base_folder.resolve()).encode()).hexdigest()[:12]
    path = settings.resolved_cache_dir() / "base-answers" / f"{base_folder.name}-{key}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _with_system(row: dict[str, Any], system: str) -> dict[str, Any]:
    return {**row, "prompt": gate.prompt(system, row["prompt"][-1]["content"])}


def _replay(store, scope: str, upto: int, ratio: float, n: int, rng: random.Random, fmt: str, system: str):  # type: ignore[no-untyped-def]
    """A sample of the scope's older examples (already trained on), mixed in against forgetting."""
    if upto <= 0 or ratio <= 0 or n == 0:
        return []
    logged = list(examples.logged_feedback(store, scope_user(scope), 0, None))
    if scope == GLOBAL_SCOPE:
        logged = _global_only(store, logged)
    # Older examples whose question has a newer answer (in this job or since) are superseded: never replayed.
    newest = {normalize(f.question): f.seq for f in logged if f.kind in ("correction", "preference")}
    old = [f for f in logged if f.seq <= upto and newest.get(normalize(f.question), f.seq) == f.seq]
    rows = examples.examples_from(old, fmt)  # type: ignore[arg-type]
    return [_with_system(r, system) for r in rng.sample(rows, k=min(len(rows), round(ratio * n)))]


def _edits_before(parent, model, tokenizer, settings: Settings, base_folder: Path) -> float:  # type: ignore[no-untyped-def]
    """The parent's edit-eval score: taken from its gate report when it has one, else measured now."""
    cfg = settings.train

    def measure() -> float:
        return gate.edits_score(model, tokenizer, settings.model, base_folder, settings.system_prompt, cfg.edits_sample)

    if parent is not None:
        known = parent.info.get("gate", {}).get("after", {}).get("edits")
        if known is not None and parent.info.get("training", {}).get("edits_sample") == cfg.edits_sample:
            return float(known)
    else:  # the base model's score depends only on the model, the prompt and the sample: cached per model
        key = f"{settings.model}|{settings.system_prompt}|{cfg.edits_sample}"
        path = base_cache(settings, base_folder) / "base-edits.json"
        return float(gate.cached(path, {key: None}, lambda _: [measure()])[key])
    return measure()

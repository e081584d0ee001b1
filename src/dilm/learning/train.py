"""One training job for one scope: new feedback (+ replay + anchors) → LoRA → gate → a published version.

Scopes: `user:<id>` trains on that user's feedback and continues from that user's live adapter; `global`
trains on everyone's feedback (an admin action) and continues from the global adapter. The job holds the
scope's lock; the live version changes only in the publishing transaction, so a crash changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from dilm.config import Settings, Training
from dilm.errors import InvalidInputError
from dilm.learning import examples, gate, jobs, trainers
from dilm.learning.jobs import TrainResult
from dilm.learning.registry import Registry
from dilm.learning.routing import Router
from dilm.memory.embed import shared_embedder
from dilm.models import catalogue, lora_gguf
from dilm.models.catalogue import resolve_model_dir
from dilm.store import Store
from dilm.text import normalize
from dilm.types import GLOBAL_SCOPE, AdapterVersion

log = logging.getLogger(__name__)
Progress = trainers.Progress
__all__ = ["TrainResult", "base_cache", "count", "new_examples", "pending", "scope_user", "train"]


def scope_user(scope: str) -> str | None:
    if scope == GLOBAL_SCOPE:
        return None
    if scope.startswith("user:") and len(scope) > 5:
        return scope[5:]
    raise InvalidInputError(f"unknown scope {scope!r}: use 'global' or 'user:<name>'")


def new_examples(
    store: Store, scope: str, after: int, upto: int, ratings: examples.Format
) -> dict[str, list[dict[str, Any]]]:
    """The scope's examples inside a feedback window, by objective: corrections (and preferred answers) train
    SFT, preferred-vs-original pairs train DPO, thumbs train KTO or policy gradient. (`dilm export` also
    derives DPO and KTO rows from corrections, for use outside dilm.)"""
    logged = list(examples.logged_feedback(store, scope_user(scope), after, upto))
    if scope == GLOBAL_SCOPE:
        logged = _global_only(store, logged)
    return {
        "sft": _latest_per_question(examples.examples_from(logged, "sft")),
        "dpo": examples.examples_from([f for f in logged if f.kind == "preference"], "dpo"),
        ratings: examples.examples_from([f for f in logged if f.kind == "rating"], ratings),
    }


def _latest_per_question(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One target per question: the newest. Earlier corrections of it are superseded (A → B → C trains C)."""
    latest = {normalize(r["prompt"][-1]["content"]): r for r in rows}
    return list(latest.values())


def _global_only(store: Store, logged: list[examples.LoggedFeedback]) -> list[examples.LoggedFeedback]:
    """The global adapter learns only corrections that became global knowledge (an admin's promotion or the
    consensus of `consensus_users` users): a user's private feedback never reaches everyone through weights."""
    shared = {normalize(text) for text in store.current_memory_texts(GLOBAL_SCOPE)}
    return [f for f in logged if f.kind == "correction" and f.learned and normalize(f.learned) in shared]


def count(ex: dict[str, list[dict[str, Any]]]) -> int:
    return sum(len(v) for v in ex.values())


def pending(store: Store, scope: str, ratings: examples.Format = "kto") -> int:
    """How many new examples wait for `scope`."""
    return count(new_examples(store, scope, store.trained_upto(scope), store.feedback_high_water(), ratings))


def train(
    data_dir: Path,
    settings: Settings,
    store: Store,
    scope: str,
    progress: Progress | None = None,
    force: bool = False,
    edit_score: gate.EditScore | None = None,
) -> TrainResult:
    """Train one new version of `scope`'s adapter from the feedback that arrived since its last job.

    `edit_score` is the gate's instant-learning probe (see `gate.EditScore`); without it (or with
    `train.edits_sample` 0) the gate skips that part."""
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
    stages = _AdapterJob(registry, settings, (after, upto), new, progress, edit_score)
    return jobs.run(registry, scope, "adapter", stages)


def resolved(settings: Settings) -> Training:
    """`settings.train` with every default that depends on the model filled in (the learning rate)."""
    cfg = settings.train
    if cfg.learning_rate is None:
        cfg = cfg.model_copy(update={"learning_rate": catalogue.learning_rate(settings.model)})
    return cfg


class _AdapterJob:
    """The stages of one adapter job, in order: load the model, build the training rows, measure the gate's
    figures before, train and measure after. `jobs.run` saves, records and publishes the result."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        window: tuple[int, int],
        new: dict[str, list[dict[str, Any]]],
        progress: Progress | None,
        edit_score: gate.EditScore | None,
    ) -> None:
        self.registry, self.store, self.settings = registry, registry.store, settings
        self.cfg = resolved(settings)
        self.after, self.upto = window
        self.n_new = count(new)
        self.new = {k: [_with_system(r, settings.system_prompt) for r in rows] for k, rows in new.items()}
        self.progress, self.tick = progress, progress or (lambda *_: None)
        self.edit_score = edit_score if settings.train.edits_sample else None
        self.rng = random.Random(self.cfg.seed + self.upto)

    def __call__(self, job: jobs.Job) -> jobs.Trained:
        self.load(job)
        self.rows(job)
        self.measure_before(job)
        return self.train_and_gate(job)

    def load(self, job: jobs.Job) -> None:
        """The base model with the scope's live adapter (trainable), or a fresh adapter when it has none."""
        self.parent = self.store.live_adapter([job.scope])
        self.parent_folder = self.registry.verify(self.parent) if self.parent else None
        _, self.base_folder = resolve_model_dir(self.settings.model, self.settings.resolved_cache_dir())
        self.tick("loading", 0, 1)
        self.model, self.tokenizer = trainers.load_trainable(
            self.base_folder, self.parent_folder, self.cfg, self.settings.threads
        )
        job.laps("load")

    def rows(self, job: jobs.Job) -> None:
        """The locality probe (the base model's answers) and the SFT rows: new + replayed + anchors."""
        system, cfg, new = self.settings.system_prompt, self.cfg, self.new
        cache = base_cache(self.settings, self.base_folder) / "base-answers.json"
        # The base model's answers to the probe and to every anchor question: generated together on the first
        # job of a data dir (one batched pass), cached after.
        probe_q, all_anchors = gate.bundled_questions("probe.jsonl"), gate.bundled_questions("anchors.jsonl")
        answers = gate.base_answers(self.model, self.tokenizer, probe_q + all_anchors, system, cache)
        self.probe = [(gate.prompt(system, q), a) for q, a in zip(probe_q, answers, strict=False)]
        anchor_answers = dict(zip(all_anchors, answers[len(probe_q) :], strict=True))
        replay = _replay(self.store, job.scope, self.after, cfg.replay, len(new["sft"]), self.rng, "sft", system)
        self.sft_rows = new["sft"] + replay
        if self.sft_rows:
            for q in self.rng.sample(all_anchors, k=min(cfg.anchors, len(all_anchors), max(1, len(new["sft"]) // 4))):
                if anchor_answers[q]:
                    self.sft_rows.append(
                        {
                            "prompt": gate.prompt(system, q),
                            "completion": [{"role": "assistant", "content": anchor_answers[q]}],
                        }
                    )
        job.laps("base_answers")

    def measure_before(self, job: jobs.Job) -> None:
        """The router of the new version (its questions and its parent's) and the gate's figures before."""
        self.questions = [r["prompt"][-1]["content"] for k in ("sft", "dpo") for r in self.new[k]]
        folder = self.parent_folder
        self.parent_questions = Router.load(folder, shared_embedder()).questions if folder else []
        routing = self.cfg.routing
        self.router = Router(self.parent_questions + self.questions, shared_embedder()) if routing is not None else None
        self.tick("measuring", 0, 1)
        self.before = gate.measure(self.model, self.tokenizer, self.new, self.probe, self.router, routing)
        if self.edit_score is not None:
            self.before["edits"] = _edits_before(
                self.parent, self.model, self.tokenizer, self.settings, self.base_folder, self.edit_score
            )
        job.laps("gate_before")

    def train_and_gate(self, job: jobs.Job) -> jobs.Trained:
        """SFT, DPO, then KTO or policy gradient; the gate's figures after and its verdict."""
        cfg, system, new = self.cfg, self.settings.system_prompt, self.new
        tracker = trainers.Tracker(self.registry.root / "runs" / job.id)
        self.rng.shuffle(self.sft_rows)
        t_train = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TRL/transformers advice aimed at GPU setups (bf16, padding-free…)
                replay = _replay(
                    self.store, job.scope, self.after, cfg.replay, len(new["dpo"]), self.rng, "dpo", system
                )
                dpo_rows = new["dpo"] + replay
                work = job.staging / "work"
                losses = _fit(
                    self.model, self.tokenizer, self.sft_rows, dpo_rows, new, cfg, work, tracker, self.progress
                )
            train_s = time.perf_counter() - t_train
            job.laps("train")
            self.tick("gate", 0, 1)
            after = gate.measure(self.model, self.tokenizer, new, self.probe, self.router, cfg.routing)
            job.laps("gate_measure")
            if self.edit_score is not None:
                name, folder = self.settings.model, self.base_folder
                after["edits"] = gate.edits_score(self.model, self.tokenizer, name, folder, self.edit_score)
            job.laps("gate_edits")
            reasons = gate.decide(self.before, after, cfg)
            tracker.scalars("gate_before", self.before)
            tracker.scalars("gate_after", after)
        finally:
            tracker.close()
        shutil.rmtree(job.staging / "work", ignore_errors=True)
        return self.trained(job, reasons, after, losses, train_s, tracker.folder)

    def trained(
        self,
        job: jobs.Job,
        reasons: list[str],
        after: dict[str, Any],
        losses: dict[str, list[float]],
        train_s: float,
        run_dir: Path,
    ) -> jobs.Trained:
        """What the job saves (the adapter and its router's questions), records and announces."""

        def save(staging: Path) -> None:
            self.model.save_pretrained(str(staging))
            # the llama.cpp backend's copy, checked against the PEFT files; a LoraConversionError fails the job
            # before anything is published
            gguf = lora_gguf.convert(staging, self.base_folder, staging / lora_gguf.LORA_FILE)
            lora_gguf.check(gguf, staging)
            if self.questions or self.parent_questions:
                Router.save(staging, self.parent_questions + self.questions)

        def report(job_seconds: float) -> dict[str, Any]:
            return {
                "gate": {"accepted": not reasons, "reasons": reasons, "before": self.before, "after": after},
                "examples": {k: len(v) for k, v in self.new.items()}
                | {"sft_with_replay_and_anchors": len(self.sft_rows)},
                "losses": {k: [round(x, 4) for x in v] for k, v in losses.items()},
                "train_seconds": round(train_s, 2),
                "job_seconds": round(job_seconds, 2),
                "timings": job.laps.timings,
                "run_dir": str(run_dir.relative_to(self.registry.data_dir)),
                "training": self.cfg.model_dump(),
            }

        def message(version: AdapterVersion, report: dict[str, Any]) -> str:
            if not reasons:
                n, seconds = self.n_new, report["job_seconds"]
                return f"{version.version} is live for {job.scope} ({n} new example(s), {seconds:.0f} s)"
            return f"{version.version} was rejected by the gate and kept for inspection: {'; '.join(reasons)}"

        return jobs.Trained(reasons, save, report, message, self.parent, self.settings.model, self.after, self.upto)


def _fit(
    model: Any,
    tokenizer: Any,
    sft_rows: list[dict[str, Any]],
    dpo_rows: list[dict[str, Any]],
    new: dict[str, list[dict[str, Any]]],
    cfg: Training,
    work: Path,
    tracker: trainers.Tracker,
    progress: Progress | None,
) -> dict[str, list[float]]:
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


def _replay(
    store: Store, scope: str, upto: int, ratio: float, n: int, rng: random.Random, fmt: examples.Format, system: str
) -> list[dict[str, Any]]:
    """A sample of the scope's older examples (already trained on), mixed in against forgetting."""
    if upto <= 0 or ratio <= 0 or n == 0:
        return []
    logged = list(examples.logged_feedback(store, scope_user(scope), 0, None))
    if scope == GLOBAL_SCOPE:
        logged = _global_only(store, logged)
    # Older examples whose question has a newer answer (in this job or since) are superseded: never replayed.
    newest = {normalize(f.question): f.seq for f in logged if f.kind in ("correction", "preference")}
    old = [f for f in logged if f.seq <= upto and newest.get(normalize(f.question), f.seq) == f.seq]
    rows = examples.examples_from(old, fmt)
    return [_with_system(r, system) for r in rng.sample(rows, k=min(len(rows), round(ratio * n)))]


def _edits_before(
    parent: AdapterVersion | None,
    model: Any,
    tokenizer: Any,
    settings: Settings,
    base_folder: Path,
    edit_score: gate.EditScore,
) -> float:
    """The parent's edit-eval score: taken from its gate report when it has one, else measured now."""
    cfg = settings.train

    def measure() -> float:
        return gate.edits_score(model, tokenizer, settings.model, base_folder, edit_score)

    if parent is not None:
        known = parent.info.get("gate", {}).get("after", {}).get("edits")
        if known is not None and parent.info.get("training", {}).get("edits_sample") == cfg.edits_sample:
            return float(known)
    else:  # the base model's score depends only on the model, the prompt and the sample: cached per model
        key = f"{settings.model}|{settings.system_prompt}|{cfg.edits_sample}"
        path = base_cache(settings, base_folder) / "base-edits.json"
        return float(gate.cached(path, {key: None}, lambda _: [measure()])[key])
    return measure()

"""`Assistant`: the public façade. One turn (`chat`/`stream`) and one piece of feedback (`feedback`)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dilm import asking
from dilm import profile as profile_rules
from dilm.config import Decoding, Settings, default_data_dir
from dilm.context import ContextBuilder, with_notes
from dilm.errors import AdapterNotFoundError, DilmError, InvalidInputError, PermissionDeniedError
from dilm.facts.answers import AnswerFinder, KnownAnswer, repair
from dilm.facts.api import Facts
from dilm.facts.extract import is_teaching
from dilm.facts.model_extract import extract_with_model
from dilm.guard import reward
from dilm.guard import rules as guard_rules
from dilm.guard.contradiction import contradictions, repaired
from dilm.learning.registry import Registry
from dilm.learning.routing import Router
from dilm.memory.api import Memories
from dilm.memory.embed import shared_embedder
from dilm.memory.retrieve import Hit, Retriever
from dilm.memory.writer import Learned, MemoryWriter
from dilm.models import BUNDLED, Backend, load_backend, resolve_model_dir
from dilm.store import Store, open_store
from dilm.text import language
from dilm.types import (
    GLOBAL_SCOPE,
    AdapterVersion,
    Candidate,
    Feedback,
    FeedbackResult,
    Message,
    Reply,
    new_id,
    scopes_for,
    user_scope,
    utcnow,
)
from dilm.users import Users

log = logging.getLogger(__name__)
DEFAULT_USER = "default"
MAX_REASONS = 10
MAX_REASON_CHARS = 64


class Assistant:
    """A chat assistant over one data dir. Thread-safe; the model loads on first use."""

    def __init__(self, data_dir: Path, settings: Settings, store: Store, backend: Backend | None = None) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.store = store
        self._backend = backend
        self._backend_lock = threading.Lock()
        self._context: ContextBuilder | None = None
        self.retriever = Retriever(store, shared_embedder())
        self.writer = MemoryWriter(store, self.retriever.embedder, self.retriever, settings.consensus_users)
        self.answers = AnswerFinder(store)
        if settings.extraction == "model" or (
            settings.extraction == "auto" and (settings.backend == "openai" or settings.model not in BUNDLED)
        ):
            self.writer.extract = lambda text: extract_with_model(self.backend, text)
        self.memories = Memories(
            store, self.writer, self.retriever, settings.max_feedback_chars, settings.max_message_chars
        )
        self.facts = Facts(store)
        self.adapters = Registry(data_dir, store)
        self.profiles = profile_rules.Profiles(self.store)
        self.users = Users(self)
        self.rules = guard_rules.RulesFile(data_dir)  # a bad rules.toml fails the open, naming line and column
        self._thresholds = asking.Thresholds(store, settings.policy.max_ask_rate)
        self._routers: dict[str, Router] = {}  # adapter version -> its trained questions (checked once)
        self._reward_models: dict[str, reward.RewardModel] = {}  # reward-model version -> its head

    @classmethod
    def open(
        cls, data_dir: str | Path | None = None, *, backend: str | Backend | None = None, **settings: Any
    ) -> Assistant:
        """Open (creating if needed) a data dir. Keyword arguments override settings (see `dilm config show`).

        `backend` is a setting ("local" or "openai") or a ready `Backend` object (e.g. one shared by tests).
        """
        path = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        if isinstance(backend, str):
            settings["backend"] = backend
        resolved = Settings.load(path, **settings)
        instance = None if backend is None or isinstance(backend, str) else backend
        return cls(path, resolved, open_store(path), instance)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backend(self) -> Backend:
        with self._backend_lock:
            if self._backend is None:
                self._backend = load_backend(self.settings)
            return self._backend

    @property
    def model_name(self) -> str:
        return self._backend.model_name if self._backend is not None else self.settings.model

    # -- one turn ---------------------------------------------------------------------------------
    def chat(
        self,
        text: str,
        user: str = DEFAULT_USER,
        session: str | None = None,
        *,
        decoding: Decoding | dict[str, Any] | None = None,
        adapter: str | None = None,
        **decoding_overrides: Any,
    ) -> Reply:
        """Answer `text` as `user` in `session` (a new session when None); the turn is logged before returning.

        `adapter`: answer with this adapter version (one of the user's or a global one; "base": none) instead of
        the live one, which is otherwise routed per question."""
        d = self.decoding_for(user, decoding, decoding_overrides)
        pin = self._pin(user, adapter)
        with self.users.active(_check_user(user)):
            return self._turn(text, user, session, d, None, None, pin)

    def stream(
        self,
        text: str,
        user: str = DEFAULT_USER,
        session: str | None = None,
        *,
        decoding: Decoding | dict[str, Any] | None = None,
        adapter: str | None = None,
        **decoding_overrides: Any,
    ) -> ReplyStream:
        """Like `chat`, but iterate the returned object for text deltas; `.reply` holds the Reply at the end."""
        d = self.decoding_for(user, decoding, decoding_overrides)
        user, text = _check_user(user), self._check_text(text, "message", self.settings.max_message_chars)
        pin, reply_id = self._pin(user, adapter), new_id("msg")

        def run(on_text, cancel):  # type: ignore[no-untyped-def]
            with self.users.active(user):
                return self._turn(text, user, session, d, on_text, cancel, pin, reply_id)

        stream = ReplyStream(run)
        stream.id = reply_id
        return stream

    def _pin(self, user: str, adapter: str | None) -> str | None:
        """Check a requested adapter version (None: the live one; "base": none) before the turn starts."""
        if adapter is None or adapter == "base":
            return adapter
        a = self.adapters.get(adapter)
        if a.scope not in (user_scope(_check_user(user)), GLOBAL_SCOPE):
            raise AdapterNotFoundError(f"no adapter version {adapter!r} for {user}: see GET /v1/models")
        if a.status != "accepted" or a.deleted_at:
            raise InvalidInputError(f"adapter {adapter} is {'deleted' if a.deleted_at else a.status}: it cannot answer")
        return a.version

    def decoding_for(
        self, user: str, decoding: Decoding | dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
    ) -> Decoding:
        """Config defaults < the user's saved defaults < this call's settings."""
        d = self.settings.decoding.merged(self.store.user_settings(user).get("decoding"))
        if isinstance(decoding, Decoding):
            decoding = decoding.model_dump()
        return d.merged({**(decoding or {}), **(overrides or {})})

    def set_user_decoding(self, user: str, **values: Any) -> Decoding:
        """Save decoding defaults for one user (validated); None values remove a saved setting."""
        user = _check_user(user)
        settings = self.store.user_settings(user)
        saved = {**settings.get("decoding", {}), **values}
        saved = {k: v for k, v in saved.items() if v is not None}
        result = self.settings.decoding.merged(saved)
        self.store.set_user_settings(user, {**settings, "decoding": saved})
        return result

    def _turn(self, text, user, session, decoding, on_text, cancel, pin=None, reply_id=None) -> Reply:  # type: ignore[no-untyped-def]
        user = _check_user(user)
        text = self._check_text(text, "message", self.settings.max_message_chars)
        backend = self.backend  # loaded (once) before the clock starts
        started = time.perf_counter()
        sess = None if session is None else self.store.session(session, user)
        logged = self.store.session_messages(sess.id) if sess else []
        history = self._history(logged)
        scope, scopes = user_scope(user), scopes_for(user)
        user_msg_id = new_id("msg")
        profile = self.store.user_settings(user).get("profile", {})
        decoding = decoding.merged(profile_rules.decoding_overrides(profile, decoding.max_new_tokens))
        meta: dict[str, Any] = {"citations": []}
        if pin is not None:
            meta["pinned_adapter"] = pin
        adapter: AdapterVersion | None = None
        candidates: list[Candidate] = []
        prompt_tokens = 0
        first: list[float] = []

        def emit(delta: str) -> None:
            if not first:
                first.append(time.perf_counter())
            if on_text is not None:
                on_text(delta)

        mode = self._mode(profile)
        pending = self._take_pending(user)
        clarified = self._clarified(logged, text)
        question = f"{clarified} {text}" if clarified else text  # a reply to a clarifying question completes it
        if clarified:
            meta["policy"] = {"action": "answer", "clarified": clarified}
        if pending and (said := asking.yes_or_no(text)):
            final = self._resolve(pending, said, text, language(text), meta)
            emit(final)
        elif is_teaching(text):  # "Remember that …" / "记住：…": learn it now, acknowledge without the model
            learned = self.writer.statement(scope, text, user_msg_id, kind="statement")
            final = _acknowledge(learned, language(text))
            meta["effects"] = learned.effects
            emit(final)
        elif profile_rules.is_preference_instruction(text):
            prefs = profile_rules.stated_preferences(text)
            self._update_profile(user, prefs)
            final = _ack_preference(prefs, language(text))
            meta["effects"] = [f"profile: {profile_rules.describe(prefs)}"]
            emit(final)
        elif pending and pending["kind"] == "unsure" and asking.is_correction_reply(text):
            # "No, it's X" after "is that right?": a correction of the answer asked about
            result = self.feedback(pending["message"], correction=text)
            final = _ack_correction(language(text))
            meta["effects"] = result.effects
            meta["policy"] = {"action": "resolved", "kind": "unsure", "message": pending["message"]}
            emit(final)
        else:
            lang = language(text)
            hits = self.retriever.search(question, scopes, k=self.settings.memory_k) if self.settings.memory else []
            known = self.answers.find(question, scopes, hits) if self.settings.memory else None
            t0 = time.perf_counter()
            ask = self._clarify(mode, question, bool(history), hits, scopes, lang) if known is None else None
            checked = time.perf_counter() - t0
            if ask is not None:  # ask before answering: no generation
                final = ask.text
                meta["policy"] = ask.record()
                emit(final)
            else:
                t0 = time.perf_counter()
                final, candidates, prompt_tokens, adapter = self._generate(
                    question, text, user, history, hits, known, profile, decoding, meta, emit, on_text, cancel
                )
                refused = meta.get("guard", {}).get("action") == "refused"
                follow = None if refused else self._follow_up(mode, user, hits, known, meta, lang, decoding)
                if follow is not None:  # a confirmation or "is that right?" follows the answer
                    final = f"{final}\n\n{follow.text}"
                    meta["policy"] = follow.record()
                    emit(f"\n\n{follow.text}")
                # Guard time: everything after retrieval that is not generation (checks, rerank, repair, policy).
                checked += time.perf_counter() - t0 - meta["generate_ms"] / 1000 - meta.pop("prepare_s")
            meta["guard_ms"] = round(checked * 1000, 1)
            learned = self.writer.statement(scope, text, user_msg_id, self_only=True) if self.settings.memory else None
            if learned and learned.effects:
                meta["effects"] = learned.effects
        latency_ms = (time.perf_counter() - started) * 1000
        meta["ttft_ms"] = ttft_ms = (first[0] - started) * 1000 if first else None
        meta["candidates"] = [c.model_dump() for c in candidates] if len(candidates) > 1 else []
        if sess is None:  # created only now, so a failed first turn leaves no empty session behind
            sess = self.store.create_session(user)
        user_msg = Message(
            id=user_msg_id, session_id=sess.id, user_id=user, role="user", content=text, created_at=utcnow()
        )
        best_tokens = next((c.completion_tokens for c in candidates if c.text), 0)
        reply_msg = Message(
            id=reply_id or new_id("msg"),
            session_id=sess.id,
            user_id=user,
            role="assistant",
            content=final,
            created_at=utcnow(),
            parent_id=user_msg.id,
            model=backend.model_name,
            adapter_version=adapter.version if adapter else None,
            decoding=decoding.model_dump(),
            prompt_tokens=prompt_tokens,
            completion_tokens=best_tokens,
            latency_ms=latency_ms,
            meta=meta,
        )
        pending = meta.pop("pending", None)
        reply_msg.meta = meta
        self.store.add_turn(user_msg, reply_msg, title=text[:60] if not history else None)
        if pending is not None:  # the user's next message may answer the question this reply asked
            self._set_pending(user, {**pending, "message": reply_msg.id})
        return Reply(
            id=reply_msg.id,
            text=final,
            session_id=sess.id,
            user_id=user,
            model=backend.model_name,
            citations=meta["citations"],
            candidates=candidates,
            prompt_tokens=prompt_tokens,
            completion_tokens=best_tokens,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            decoding=decoding.model_dump(),
            adapter_version=adapter.version if adapter else None,
            checks={
                k: meta[k]
                for k in (
                    "known_answer",
                    "effects",
                    "model_text",
                    "adapter",
                    "guard",
                    "policy",
                    "generate_ms",
                    "guard_ms",
                )
                if k in meta
            },
        )

    def _generate(self, question, text, user, history, hits, known, profile, decoding, meta, emit, on_text, cancel):  # type: ignore[no-untyped-def]
        """Generate, guard and repair one answer: (final text, candidates, prompt tokens, adapter)."""
        backend = self.backend
        scopes = scopes_for(user)
        if self._context is None or self._context.backend is not backend:
            self._context = ContextBuilder(backend)
        system = profile_rules.system_prompt(self.settings.system_prompt, profile)
        t0 = time.perf_counter()
        messages, prompt_tokens, dropped = self._context.build(
            system, history, with_notes(question, [h.memory.text for h in hits]), decoding.max_new_tokens
        )
        rules = [r for r in [*self.rules.refresh(), *profile_rules.guard_rules(profile)] if r.applies(text)]
        # With a known answer or hard rules to check, the raw model text may still change: it is sent once, final.
        stream_to = emit if on_text is not None and known is None and not any(r.hard for r in rules) else None
        adapter = self._adapter_for(user, question, meta)
        meta["prepare_s"] = time.perf_counter() - t0  # prompt and adapter choice: not guard time
        extra = {"adapter": self.adapters.ref(adapter)} if adapter is not None else {}
        t0 = time.perf_counter()
        candidates = backend.generate(messages, decoding, on_text=stream_to, cancel=cancel, **extra)
        meta["generate_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        if len(candidates) > 1 and self.settings.guard.reward:
            candidates = self._rerank(question, candidates, meta)
        if rules:
            candidates = self._guard(rules, text, messages, decoding, candidates, meta, cancel, extra)
        best = _choose(candidates)
        final = best.text
        meta.update(finish_reason=best.finish_reason, mean_logprob=best.mean_logprob, history_dropped=dropped)
        refused = meta.get("guard", {}).get("action") == "refused"
        found = contradictions(self.store, scopes, final) if self.settings.memory and not refused else []
        lang = language(text)
        if found:  # the answer states a value that no current fact has: the fact wins
            meta.setdefault("guard", {})["contradictions"] = [c.describe() for c in found]
            fix = repaired(found[0], lang)
            if stream_to is not None:  # the text is out already: the correction follows it
                fix = f"\n\n{'更正：' if lang == 'zh' else 'Correction: '}{fix}"
                emit(fix)
                fix = final + fix
            meta["model_text"], final = final, fix
        if known is not None and not refused:
            final, how = repair(final, known, truncated=best.finish_reason == "length")
            meta["known_answer"] = {"value": known.value, "how": known.how, "repaired": how}
            if how:
                meta.setdefault("model_text", best.text)
            emit(final)
        elif stream_to is None and on_text is not None:
            emit(final)  # held back for the checks: sent once, final
        meta["citations"] = _citations(hits, known)
        return final, candidates, prompt_tokens, adapter

    def _rerank(self, question: str, candidates: list[Candidate], meta: dict[str, Any]) -> list[Candidate]:
        """Candidates best-first by the live reward model's score (unchanged when there is none)."""
        live = self.adapters.live([reward.REWARD_SCOPE])
        if live is None:
            return candidates
        model = self._reward_models.get(live.version)
        if model is None:
            try:
                _, base = resolve_model_dir(live.base_model, self.settings.resolved_cache_dir())
                model = self._reward_models[live.version] = reward.RewardModel.load(base, self.adapters.verify(live))
            except (DilmError, OSError, ValueError) as e:
                log.error("reward model %s unusable (%s); candidates keep their order", live.version, e)
                return candidates
        scores = model.score(question, [c.text for c in candidates])
        order = sorted(range(len(candidates)), key=lambda i: -scores[i])
        meta.setdefault("guard", {})["reward"] = {
            "version": live.version,
            "scores": [round(s, 3) for s in scores],
            "chosen": order[0],
        }
        return [candidates[i] for i in order]

    # -- asking -----------------------------------------------------------------------------------
    def _mode(self, profile: dict[str, Any]) -> str:
        return profile.get("policy") or self.settings.policy.mode

    def _clarify(self, mode, question, has_history, hits, scopes, lang) -> asking.Ask | None:  # type: ignore[no-untyped-def]
        """A clarifying question instead of an answer (active and hybrid): an ambiguous or dangling reference."""
        if mode == "passive":
            return None
        options = asking.ambiguous_subjects(self.store, scopes, question)
        if options:
            return asking.Ask(
                "clarify", "ambiguous", asking.clarification("ambiguous", lang, options), data={"options": options}
            )
        pronoun = asking.dangling_reference(question, has_history)
        if pronoun:
            return asking.Ask("clarify", "reference", asking.clarification("reference", lang, pronoun=pronoun))
        return None

    def _follow_up(self, mode, user, hits, known, meta, lang, decoding) -> asking.Ask | None:  # type: ignore[no-untyped-def]
        """A question after the answer: confirm a genuine conflict (once per fact), or say the answer is unsure."""
        if mode == "passive":
            return None
        if known is not None and known.fact is not None:
            found = asking.conflict(self.store, user_scope(user), known.fact)
            if found and self._first_time_asked(user, found["fact"]):
                ask = asking.Ask("confirm", found["signal"], asking.confirmation(known.fact, found, lang), found)
                meta["pending"] = {"kind": "confirm", "value": known.fact.object, "scope": known.fact.scope, **found}
                return ask
            return None
        lp = meta.get("mean_logprob")
        if known is not None or hits or lp is None or decoding.strategy == "sample":
            return None  # backed by memory, or a sampled answer (its log-probability says little)
        threshold = self.settings.policy.min_logprob if mode == "active" else self._thresholds.current()
        if threshold is not None and lp < threshold:
            meta["pending"] = {"kind": "unsure"}
            return asking.Ask("confirm", "confidence", asking.unsure(lang), {"threshold": round(threshold, 3)})
        return None

    def _first_time_asked(self, user: str, fact_id: str) -> bool:
        settings = self.store.user_settings(user)
        asked = settings.get("asked", [])
        if fact_id in asked:
            return False
        self.store.set_user_settings(user, {**settings, "asked": [*asked, fact_id][-200:]})
        return True

    def _set_pending(self, user: str, pending: dict[str, Any] | None) -> None:
        settings = self.store.user_settings(user)
        if pending is None:
            settings.pop("pending", None)
        else:
            settings["pending"] = pending
        self.store.set_user_settings(user, settings)

    def _take_pending(self, user: str) -> dict[str, Any] | None:
        """The question the user was last asked to confirm; it is answered by this turn or dropped."""
        pending = self.store.user_settings(user).get("pending")
        if pending:
            self._set_pending(user, None)
        return pending

    @staticmethod
    def _clarified(msgs: list[Message], text: str) -> str | None:
        """The question a clarifying question was asked about, when `text` (the next message) answers it."""
        last = msgs[-1] if msgs else None
        if last is None or last.role != "assistant" or last.meta.get("policy", {}).get("kind") != "clarify":
            return None
        asked = next((m for m in msgs if m.id == last.parent_id), None)
        return asked.content if asked is not None and asking.is_clarification_reply(text) else None

    def _resolve(self, pending: dict[str, Any], said: str, text: str, lang: str, meta: dict[str, Any]) -> str:
        """A yes or no to a confirmation question: keep the user's value, or retract it."""
        meta["policy"] = {"action": "resolved", "kind": pending["kind"], "answer": said}
        if pending["kind"] == "unsure":
            result = self.feedback(pending["message"], rating=1 if said == "yes" else -1)
            meta["effects"] = result.effects
            if said == "yes":
                return "谢谢确认。" if lang == "zh" else "Thanks for confirming."
            self._set_pending(self.store.message(pending["message"]).user_id, pending)  # the next reply corrects it
            return "抱歉。正确答案是什么？" if lang == "zh" else "Sorry about that. What is the correct answer?"
        if said == "no":
            fact = self.store.retract_fact(pending["fact"], [pending["scope"]])
            meta["effects"] = [f"retracted fact {fact.id}: ({fact.subject}; {fact.relation}; {fact.object})"]
            if fact.memory_id:
                with contextlib.suppress(DilmError):
                    self.store.delete_memory(fact.memory_id, [pending["scope"]])
                    self.retriever.index.invalidate(pending["scope"])
                    meta["effects"].append(f"deleted memory {fact.memory_id}")
        return asking.acknowledge_confirmation(said, pending["value"], pending["other"], lang)

    def _guard(self, rules, question, messages, decoding, candidates, meta, cancel, extra) -> list[Candidate]:  # type: ignore[no-untyped-def]
        """Deployment rules on the candidates: the first that keeps every hard rule wins; if none does, one
        regeneration with the broken rules stated; if that fails too, an honest refusal that says why."""
        report: dict[str, Any] = meta.setdefault("guard", {})
        report.update(rules=[r.name for r in rules], action="ok")

        def hard_broken(c: Candidate) -> list[guard_rules.Violation]:
            return [v for v in guard_rules.check(rules, question, c.text) if v.hard]

        checked = [(c, hard_broken(c)) for c in candidates]
        report["violations"] = [
            {"rule": v.rule, "reason": v.reason, "hard": v.hard}
            for v in guard_rules.check(rules, question, candidates[0].text)
        ]
        ok = [c for c, broken in checked if not broken]
        if ok:
            if ok[0] is not candidates[0]:
                report["action"] = "chose another candidate"
            return ok + [c for c in candidates if c not in ok]
        broken = {v.rule: v for _, b in checked for v in b}
        stated = " ".join(f"Rule: {v.reason}." for v in broken.values())
        if messages and messages[0]["role"] == "system":
            retry_msgs = [{**messages[0], "content": f"{messages[0]['content']} {stated}"}, *messages[1:]]
        else:
            retry_msgs = [{"role": "system", "content": stated}, *messages]
        retry = self.backend.generate(
            retry_msgs, decoding.merged({"n": 1, "strategy": "greedy"}), cancel=cancel, **extra
        )
        if retry and not hard_broken(retry[0]):
            report["action"] = "regenerated with the rule stated"
            return retry
        report["action"] = "refused"
        why = "; ".join(f"{v.reason} ({v.rule})" for v in broken.values())
        refusal = (
            f"我不能按要求回答这个问题：{why}。"
            if language(question) == "zh"
            else f"I can't answer that as asked: {why}."
        )
        return [Candidate(text=refusal, completion_tokens=0, finish_reason="stop")]

    def _adapter_for(self, user: str, text: str, meta: dict[str, Any]) -> AdapterVersion | None:
        """The live adapter serving `user` (theirs, else global) when `text` is in its territory.

        Looked up every turn, so a newly published or rolled-back version takes effect on the next turn."""
        pinned = meta.get("pinned_adapter")
        if pinned == "base" or (pinned is None and not self.settings.adapters):
            return None
        if pinned is not None:
            a = self.adapters.get(pinned)
            self.adapters.verify(a)  # a damaged pinned version is an error, not a silent fallback
            meta["adapter"] = {"version": a.version, "used": True, "pinned": True}
            return a
        live = self.adapters.live([user_scope(user), GLOBAL_SCOPE])
        if live is None:
            return None
        router = self._routers.get(live.version)
        if router is None:
            try:
                folder = self.adapters.verify(live)
            except DilmError as e:
                log.error("%s; answering with the base model", e)
                meta["adapter"] = {"version": live.version, "error": str(e)}
                return None
            router = self._routers[live.version] = Router.load(folder, self.retriever.embedder)
        threshold = self.settings.train.routing
        if threshold is not None and router.questions:
            similarity = router.similarity(text)
            meta["adapter"] = {
                "version": live.version,
                "similarity": round(similarity, 3),
                "used": similarity >= threshold,
            }
            if similarity < threshold:
                return None
        else:
            meta["adapter"] = {"version": live.version, "used": True}
        return live

    def train(self, scope: str | None = None, *, user: str | None = None, progress: Any = None, force: bool = False):  # type: ignore[no-untyped-def]
        """Train a new adapter version for `user`'s scope (or `scope`, e.g. "global") from feedback not yet
        trained on; the regression gate decides whether it goes live. Returns a TrainResult."""
        # to hoist into the module imports (no cycle: dilm.learning imports no dilm.assistant)
        from dilm.learning import reward as reward_training
        from dilm.learning.train import train

        if (scope is None) == (user is None):
            raise InvalidInputError("give exactly one of scope ('global', 'user:<name>' or 'reward') or user")
        if scope == reward_training.REWARD_SCOPE:
            return reward_training.train(self.data_dir, self.settings, self.store, force, progress)
        system, sample = self.settings.system_prompt, self.settings.train.edits_sample

        def edit_score(backend: Backend) -> float:  # the gate's instant-learning probe
            return edit_probe(backend, system, sample)

        scope = scope or user_scope(_check_user(user))
        return train(self.data_dir, self.settings, self.store, scope, progress, force, edit_score if sample else None)

    def _history(self, msgs: list[Message]) -> list[dict[str, str]]:
        """The session so far, minus answers the user rated bad or corrected (never reused) and their questions."""
        fbs = self.store.feedback_for([m.id for m in msgs if m.role == "assistant"])
        bad = {
            m.id
            for m in msgs
            if any(f.kind == "correction" or (f.kind == "rating" and f.rating == -1) for f in fbs.get(m.id, []))
        }
        skip = bad | {m.parent_id for m in msgs if m.id in bad and m.parent_id}
        return [{"role": m.role, "content": m.content} for m in msgs if m.id not in skip]

    def _update_profile(self, user: str, prefs: dict[str, str]) -> None:
        if "avoid" in prefs:  # banned terms add up
            before = self.profiles.get(user).get("avoid", "")
            terms = [t.strip() for t in f"{before},{prefs['avoid']}".split(",") if t.strip()]
            prefs = {**prefs, "avoid": ", ".join(dict.fromkeys(terms))[: profile_rules.MAX_FREE_CHARS]}
        self.profiles.set(user, **prefs)

    # -- one piece of feedback --------------------------------------------------------------------
    def feedback(
        self,
        message_id: str,
        *,
        rating: int | None = None,
        correction: str | None = None,
        supplement: str | None = None,
        preferred: str | None = None,
        comment: str | None = None,
        reason: str | list[str] | None = None,
        user: str | None = None,
    ) -> FeedbackResult:
        """Record one piece of feedback on an assistant message; it is committed before this returns.

        Exactly one of rating (+1/-1), correction, supplement, preferred (a better answer) or comment.
        `reason` adds tags (e.g. "not factually correct"). `user`, when given, must own the message.
        """
        given = {
            k: v
            for k, v in {
                "rating": rating,
                "correction": correction,
                "supplement": supplement,
                "preference": preferred,
                "comment": comment,
            }.items()
            if v is not None
        }
        if len(given) != 1:
            raise InvalidInputError(
                "give exactly one of rating, correction, supplement, preferred or comment"
                + (f" (got {', '.join(given)})" if given else "")
            )
        ((kind, value),) = given.items()
        owner = self.store.message(message_id).user_id
        with self.users.active(owner):  # read again inside: the owner may have been forgotten meanwhile
            return self._feedback(self.store.message(message_id), kind, value, reason, user)

    def _feedback(
        self, msg: Message, kind: str, value: Any, reason: str | list[str] | None, user: str | None
    ) -> FeedbackResult:
        message_id = msg.id
        if msg.role != "assistant":
            raise InvalidInputError(f"{message_id} is a {msg.role} message: feedback goes on the assistant's answers")
        if user is not None and _check_user(user) != msg.user_id:
            raise PermissionDeniedError(f"message {message_id} belongs to another user")
        fb = Feedback(
            id=new_id("fb"),
            message_id=msg.id,
            user_id=msg.user_id,
            kind=kind,  # type: ignore[arg-type]
            reasons=_check_reasons(reason),
            created_at=utcnow(),
        )
        if kind == "rating":
            if isinstance(value, bool) or value not in (-1, 1):
                raise InvalidInputError(f"rating must be +1 or -1, not {value!r}")
            fb.rating = int(value)
        else:
            fb.text = self._check_text(value, kind, self.settings.max_feedback_chars)
        self.store.add_feedback(fb)  # durable first: whatever happens next, the feedback is kept
        effects, learned = self._learn(msg, fb)
        question = self._confirm_learned(msg, learned) if learned is not None else None
        return FeedbackResult(
            id=fb.id, message_id=msg.id, kind=fb.kind, effects=[f"recorded {kind} {fb.id}", *effects], question=question
        )

    def _confirm_learned(self, msg: Message, learned: Learned) -> str | None:
        """A confirmation question when a correction contradicts global knowledge (active and hybrid)."""
        user = msg.user_id
        if self._mode(self.store.user_settings(user).get("profile", {})) == "passive":
            return None
        parent = self.store.message(msg.parent_id) if msg.parent_id else None
        lang = language(parent.content if parent else msg.content)
        for fact in learned.facts:
            found = asking.conflict(self.store, user_scope(user), fact)
            if found and found["signal"] == "conflict" and self._first_time_asked(user, fact.id):
                pending = {"kind": "confirm", "value": fact.object, "scope": fact.scope, "message": msg.id, **found}
                self._set_pending(user, pending)
                return asking.confirmation(fact, found, lang)
        return None

    def _learn(self, msg: Message, fb: Feedback) -> tuple[list[str], Learned | None]:
        """The instant effects of one piece of feedback (memories, facts, profile), applied at once."""
        scope = user_scope(msg.user_id)
        question = self.store.message(msg.parent_id).content if msg.parent_id else ""
        effects: list[str] = []
        learned = None
        if fb.kind == "correction" and fb.text:
            learned = self.writer.correction(scope, question, fb.text, fb.id)
            effects += learned.effects
        elif fb.kind == "supplement" and fb.text:
            effects += self.writer.supplement(scope, question, fb.text, fb.id).effects
        elif fb.kind == "rating" and fb.rating == -1:
            effects.append("marked the answer as bad: it will not be reused")
        elif fb.kind == "preference":
            effects.append("kept the preferred answer as a preference pair for training")
        prefs = profile_rules.stated_preferences(fb.text or "") if fb.kind in ("comment", "correction") else {}
        prefs.update(profile_rules.stated_preferences(" ".join(fb.reasons)))
        if prefs:
            self._update_profile(msg.user_id, prefs)
            effects.append(f"profile: {profile_rules.describe(prefs)}")
        return effects, learned

    # -- reading the log --------------------------------------------------------------------------
    def history(self, user: str | None = None, session: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Recent messages (oldest first), each with the feedback given on it."""
        if session is not None:
            self.store.session(session, user)
        msgs = self.store.messages(user_id=user, session_id=session, limit=limit)
        fbs = self.store.feedback_for([m.id for m in msgs])
        return [{**m.model_dump(), "feedback": [f.model_dump() for f in fbs.get(m.id, [])]} for m in msgs]

    # -- validation -------------------------------------------------------------------------------
    @staticmethod
    def _user(user: object) -> str:
        return _check_user(user)

    @staticmethod
    def _check_text(text: object, what: str, max_chars: int) -> str:
        if not isinstance(text, str):
            raise InvalidInputError(f"the {what} must be text, not {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError(f"the {what} is not valid UTF-8: check the terminal's or file's encoding") from None
        stripped = text.strip()
        if not stripped:
            raise InvalidInputError(f"the {what} is empty")
        if len(stripped) > max_chars:
            raise InvalidInputError(f"the {what} has {len(stripped)} characters; the limit is {max_chars}")
        return stripped


class ReplyStream:
    """Iterate for text deltas while the answer is generated; `.reply` is set when it is done.

    Leaving the loop early (break, Ctrl-C, a closed connection) cancels the generation; nothing is logged.
    """

    def __init__(self, run: Any) -> None:
        self._run = run
        self.id: str | None = None  # the message id the reply will have, known before it is generated
        self.reply: Reply | None = None
        self.cancel_event = threading.Event()

    def cancel(self) -> None:
        self.cancel_event.set()

    def __iter__(self) -> Iterator[str]:
        q: queue.Queue[tuple[str, Any]] = queue.Queue()

        def work() -> None:
            try:
                q.put(("done", self._run(lambda d: q.put(("text", d)), self.cancel_event)))
            except BaseException as e:  # handed to the consumer, raised there
                q.put(("error", e))

        worker = threading.Thread(target=work, name="dilm-generate", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    kind, value = q.get(timeout=0.1)  # a timeout keeps Ctrl-C responsive
                except queue.Empty:
                    continue
                if kind == "text":
                    yield value
                elif kind == "done":
                    self.reply = value
                    return
                else:
                    raise value
        finally:
            if self.reply is None:
                self.cancel_event.set()
                worker.join()


def _choose(candidates: list[Candidate]) -> Candidate:
    """Candidates arrive best-first from the backend (beam order); prefer a non-empty one."""
    if not candidates:
        raise DilmError("the model returned no answer")
    return next((c for c in candidates if c.text), candidates[0])


def _citations(hits: list[Hit], known: KnownAnswer | None) -> list[dict[str, Any]]:
    out = [{"id": h.memory.id, "kind": "memory", "text": h.memory.text, "score": h.memory.score} for h in hits]
    if known is not None and known.fact is not None:
        f = known.fact
        out.append({"id": f.id, "kind": "fact", "text": f"{f.subject} · {f.relation} · {f.object}", "score": None})
    elif known is not None and known.memory_id and all(c["id"] != known.memory_id for c in out):
        out.append({"id": known.memory_id, "kind": "memory", "text": known.statement, "score": None})
    return out


def _acknowledge(learned: Learned, lang: str) -> str:
    if any(e.startswith("flagged") for e in learned.effects):
        return (
            "我把它存为一条笔记，但它看起来像是指令，所以我不会执行它。"
            if lang == "zh"
            else "I stored that as a note, but it looks like instructions, so I will not act on it."
        )
    if not learned.memories:
        return "我已经记得这一点了。" if lang == "zh" else "I already know that."
    text = learned.memories[0].text
    return f"好的，我记住了：{text}" if lang == "zh" else f"Got it. I will remember: {text}"


def _ack_correction(lang: str) -> str:
    return "谢谢，我已更正。" if lang == "zh" else "Thanks, I have corrected it."


def _ack_preference(prefs: dict[str, str], lang: str) -> str:
    described = profile_rules.describe(prefs)
    return f"好的，从现在起我会：{described}。" if lang == "zh" else f"Understood: from now on I will {described}."


def _check_user(user: object) -> str:
    if not isinstance(user, str) or not user.strip():
        raise InvalidInputError("the user name is empty")
    user = user.strip()
    if len(user) > 128 or any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in user):
        raise InvalidInputError("the user name must be at most 128 printable characters")
    return user


def _check_reasons(reason: str | list[str] | None) -> list[str]:
    if reason is None:
        return []
    tags = [reason] if isinstance(reason, str) else list(reason)
    if len(tags) > MAX_REASONS:
        raise InvalidInputError(f"at most {MAX_REASONS} reason tags")
    out = []
    for t in tags:
        if not isinstance(t, str) or not t.strip() or len(t.strip()) > MAX_REASON_CHARS:
            raise InvalidInputError(f"a reason tag must be non-empty text of at most {MAX_REASON_CHARS} characters")
        out.append(t.strip())
    return out


# -- the training gate's edit probe


def edit_probe(backend: Backend, system: str, sample: int) -> float:
    """The memory path on `sample` items of the edit benchmark, answered through `backend` (e.g. the model
    being trained): each correction is given as feedback on the model's own answer, then the question and a
    paraphrase are asked again. The score is the share answered right (reliability and generalization of
    `dilm eval edits`, without its locality and isolation parts): the training gate's `EditScore`."""
    # to hoist into the module imports (dilm.eval.items imports no dilm.assistant)
    import tempfile

    from dilm.eval.items import contains, load

    items, _ = load()
    step = max(1, len(items) // sample)
    chosen = items[::step][:sample]  # spread over languages and kinds, the same items every time
    right: list[bool] = []
    with (
        tempfile.TemporaryDirectory(prefix="dilm-gate-") as tmp,
        Assistant.open(
            tmp,
            backend=backend,
            system_prompt=system,
            adapters=False,
            decoding={"max_new_tokens": 16},
            policy={"mode": "passive"},
        ) as bot,
    ):
        for item in chosen:
            for correction in item.corrections:
                bot.feedback(bot.chat(item.question, user="gate").id, correction=correction)
            for q in (item.question, item.paraphrases[0]):
                right.append(contains(bot.chat(q, user="gate").text, item.answers[-1]))
    return sum(right) / len(right) if right else 1.0

"""`Assistant`: the public façade over one data dir. It builds the components once and delegates: one turn
(`chat`/`stream`) to `turn.Turn`, one piece of feedback (`feedback`) to `feedback.FeedbackRecorder`, training
to `learning`, and the views (`memories`, `facts`, `profiles`, `users`, `sessions`, `adapters`, `keys`, `stats`,
`training`) to small classes that receive the store, never the Assistant."""

from __future__ import annotations

import logging
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from dilm import validate
from dilm.asking import Asker
from dilm.config import Decoding, Settings, default_data_dir
from dilm.editset import contains, load
from dilm.errors import InvalidInputError
from dilm.facts.analyze import Analysis, analyze, referent_of
from dilm.facts.answers import AnswerFinder
from dilm.facts.api import Facts
from dilm.facts.model_extract import analyze_with_model, hybrid
from dilm.feedback import FeedbackRecorder, one_kind
from dilm.guard.contradiction import Contradiction, contradictions
from dilm.guard.rerank import Reranker
from dilm.guard.rules import RulesFile
from dilm.images import MAX_IMAGES, Picture, PictureStore, TextReader
from dilm.images import load as load_picture
from dilm.keys import Keys
from dilm.learning import reward as reward_training
from dilm.learning.jobs import TrainResult
from dilm.learning.registry import Registry
from dilm.learning.reward import REWARD_SCOPE
from dilm.learning.routing import AdapterChooser
from dilm.learning.train import Progress, train
from dilm.memory.api import Memories
from dilm.memory.embed import shared_embedder
from dilm.memory.retrieve import Retriever
from dilm.memory.writer import MemoryWriter
from dilm.models import CATALOGUE, Backend, load_backend
from dilm.profile import Profiles
from dilm.sessions import Sessions
from dilm.stats import Stats
from dilm.store import Store, open_store
from dilm.training import Training
from dilm.turn import ChatContext, Components, Retrieved, Turn, TurnRequest, sees_images
from dilm.types import FeedbackResult, Reply, new_id, scopes_for, user_scope
from dilm.users import Users

log = logging.getLogger(__name__)
DEFAULT_USER = "default"


class Assistant:
    """A chat assistant over one data dir. Thread-safe; the model loads on first use."""

    def __init__(self, data_dir: Path, settings: Settings, store: Store, backend: Backend | None = None) -> None:
        self.data_dir, self.settings, self.store = data_dir, settings, store
        self._backend = backend
        self._backend_lock = threading.Lock()
        self.retriever = Retriever(store, shared_embedder())
        self.writer = MemoryWriter(store, self.retriever.embedder, self.retriever, settings.consensus_users)
        self.writer.analyze = self._reader(settings)
        self.answers = AnswerFinder(store)
        self.memories = Memories(
            store, self.writer, self.retriever, settings.max_feedback_chars, settings.max_message_chars
        )
        self.facts = Facts(store)
        self.adapters = Registry(data_dir, store)
        self.profiles = Profiles(store)
        self.pictures = PictureStore(data_dir / "images")
        self.users = Users(store, data_dir, self.retriever.index, self.pictures)
        self.sessions = Sessions(store)
        self.keys = Keys(store)
        self.stats = Stats(store)
        self.training = Training(data_dir, settings, store)
        self.rules = RulesFile(data_dir)  # a bad rules.toml fails the open, naming line and column
        self.asker = Asker(store, settings.policy)
        self.reranker = Reranker(self.adapters, settings.resolved_cache_dir())
        self.chooser = AdapterChooser(self.adapters, self.retriever.embedder, settings.adapters, settings.train.routing)
        self._feedback = FeedbackRecorder(store, self.writer, self.profiles, self.asker, settings.max_feedback_chars)
        self._turn = Turn(
            Components(
                settings, store, lambda: self.backend, self.retriever, self.writer, self.answers, self.asker,
                self.chooser, self.adapters, self.reranker, self.rules, self.profiles, self._feedback,
                self.pictures, TextReader(),
            )
        )  # fmt: skip

    @classmethod
    def open(
        cls, data_dir: str | Path | None = None, *, backend: str | Backend | None = None, **settings: Any
    ) -> Assistant:
        """Open (creating if needed) a data dir. Keyword arguments override settings (see `dilm config show`).

        `backend` is a setting ("local" or "openai") or a ready `Backend` object (e.g. one shared by tests).
        Raises ConfigError (bad settings or rules.toml) or StorageError (the folder cannot be written)."""
        path = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        if isinstance(backend, str):
            settings["backend"] = backend
        resolved = Settings.load(path, **settings)
        instance = None if backend is None or isinstance(backend, str) else backend
        return cls(path, resolved, open_store(path), instance)

    @staticmethod
    def open_keys(data_dir: str | Path | None = None) -> Keys:
        """A data dir's API keys alone (no settings, model or embedder loaded); close it when done."""
        return Keys(open_store(Path(data_dir) if data_dir is not None else default_data_dir()))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backend(self) -> Backend:
        """The model backend, loaded on first use (ModelNotFoundError / BackendError when it cannot be)."""
        with self._backend_lock:
            if self._backend is None:
                self._backend = load_backend(self.settings)
            return self._backend

    def warm(self) -> None:
        """Load the model and the embedder now, so that the first chat and the first feedback do not pay for it
        (the embedder's first use imports torch: seconds). Raises what `backend` raises."""
        _ = self.backend
        self.retriever.embedder.embed("warm")

    @property
    def model_name(self) -> str:
        return self._backend.model_name if self._backend is not None else self.settings.model

    @property
    def model_loaded(self) -> bool:
        """Whether the model is loaded already (the first turn, or `backend`, loads it)."""
        return self._backend is not None

    @property
    def database(self) -> str:
        """Where the data lives (for SQLite: the database file)."""
        return str(self.store.path)

    # -- one turn ---------------------------------------------------------------------------------
    def _reader(self, settings: Settings) -> Callable[[str, str], Analysis]:
        """How messages are read into facts (`Settings.extraction`): (text, scope) -> Analysis."""
        mode = settings.extraction
        if mode == "auto":
            entry = CATALOGUE.get(settings.model)
            mode = "hybrid" if settings.backend == "openai" or entry is None or "zh" in entry.languages else "rules"
        if mode == "rules":
            return lambda text, scope: analyze(text, referent_of(self.store.facts([scope], limit=3, newest_first=True)))
        read = analyze_with_model if mode == "model" else hybrid
        return lambda text, scope: read(self.backend, text, self.store.facts([scope], limit=12, newest_first=True))

    def chat(
        self,
        text: str,
        user: str = DEFAULT_USER,
        session: str | None = None,
        *,
        decoding: Decoding | dict[str, Any] | None = None,
        adapter: str | None = None,
        given: ChatContext | None = None,
        images: list[str | bytes | Path] | None = None,
        **decoding_overrides: Any,
    ) -> Reply:
        """Answer `text` as `user` in `session` (a new session when None); the turn is logged before returning.

        `adapter`: answer with this adapter version (one of the user's or a global one; "base": none) instead of
        the live one, which is otherwise routed per question. `given`: what a client keeping its own conversation
        sends (its instructions, history, tools, tool results; see `ChatContext`): with tools, the Reply may be
        `tool_calls` (finish_reason "tool_calls") instead of text. `images`: pictures sent with the message (data:
        URIs, bytes or `pathlib.Path`s; see `dilm.images`): stored with the turn; a model that cannot see gets
        their text (OCR). Raises InvalidInputError (bad text, user, decoding, pictures or adapter),
        SessionNotFoundError, AdapterNotFoundError, ContextOverflowError or BackendError."""
        req = self._request(text, user, session, decoding, adapter, decoding_overrides, pin_first=True, images=images)
        req.given = given or req.given
        with self.users.active(req.user):
            return self._turn.run(req)

    def replay(self, text: str, answer: str, user: str = DEFAULT_USER, session: str | None = None) -> Reply:
        """Log a turn whose answer is given instead of generated (a past conversation, an evaluation's scripted
        answer): the message is read and learned from as `chat` would (facts said, corrections of the previous
        answer), and `answer` is recorded as the assistant's reply. Raises InvalidInputError or
        SessionNotFoundError."""
        req = self._request(text, user, session, None, None, {})
        req.scripted = validate.text(answer, "answer", self.settings.max_message_chars)
        with self.users.active(req.user):
            return self._turn.run(req)

    def stream(
        self,
        text: str,
        user: str = DEFAULT_USER,
        session: str | None = None,
        *,
        decoding: Decoding | dict[str, Any] | None = None,
        adapter: str | None = None,
        given: ChatContext | None = None,
        images: list[str | bytes | Path] | None = None,
        **decoding_overrides: Any,
    ) -> ReplyStream:
        """Like `chat`, but iterate the returned object for text deltas; `.reply` holds the Reply at the end
        (with tools, its `tool_calls`: a call is never streamed as text)."""
        req = self._request(text, user, session, decoding, adapter, decoding_overrides, images=images)
        req.given = given or req.given
        req.reply_id = new_id("msg")

        def run(on_text: Callable[[str], None], cancel: threading.Event) -> Reply:
            req.on_text, req.cancel = on_text, cancel
            with self.users.active(req.user):
                return self._turn.run(req)

        stream = ReplyStream(run)
        stream.id = req.reply_id
        return stream

    def _request(
        self,
        text: str,
        user: str,
        session: str | None,
        decoding: Decoding | dict[str, Any] | None,
        adapter: str | None,
        overrides: dict[str, Any],
        pin_first: bool = False,
        images: list[str | bytes | Path] | None = None,
    ) -> TurnRequest:
        """A turn's inputs, checked before it starts (chat checks the adapter before the text, stream after)."""
        d = self.decoding_for(user, decoding, overrides)
        user = validate.user(user)
        limit = self.settings.max_message_chars
        pictures = self._pictures(images or [])
        if pictures and not text.strip():
            text = "[image]"  # a picture alone: what the log shows for the message
        if pin_first:
            pinned = self.chooser.pin(user, adapter)
            req = TurnRequest(validate.text(text, "message", limit), user, session, d, pinned)
        else:
            text = validate.text(text, "message", limit)
            req = TurnRequest(text, user, session, d, self.chooser.pin(user, adapter))
        req.images = pictures
        return req

    def _pictures(self, images: list[str | bytes | Path]) -> list[Picture | str]:
        """Checked pictures; an http(s) URL stays a URL only for a server that is given pictures (never fetched
        here). Raises InvalidInputError."""
        if len(images) > MAX_IMAGES:
            raise InvalidInputError(f"at most {MAX_IMAGES} images in a message")
        sees = sees_images(self.backend)
        return [
            x if sees and isinstance(x, str) and x.startswith(("http://", "https://")) else load_picture(x)
            for x in images
        ]

    def decoding_for(
        self, user: str, decoding: Decoding | dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
    ) -> Decoding:
        """Config defaults < the user's saved defaults < this call's settings (InvalidInputError if invalid)."""
        d = self.settings.decoding.merged(self.store.user_decoding(user))
        if isinstance(decoding, Decoding):
            decoding = decoding.model_dump()
        return d.merged({**(decoding or {}), **(overrides or {})})

    def set_user_decoding(self, user: str, **values: Any) -> Decoding:
        """Save decoding defaults for one user (validated first); None values remove a saved setting."""
        user = validate.user(user)
        # Validated as a whole inside the write: two concurrent changes can never save an invalid combination.
        saved = self.store.update_user_decoding(user, values, check=self.settings.decoding.merged)
        return self.settings.decoding.merged(saved)

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
        Raises InvalidInputError, MessageNotFoundError or PermissionDeniedError."""
        kind, value = one_kind(rating, correction, supplement, preferred, comment)
        owner = self.store.message(message_id).user_id
        with self.users.active(owner):  # read again inside: the owner may have been forgotten meanwhile
            return self._feedback.record(self.store.message(message_id), kind, value, reason, user)

    # -- training and the log ---------------------------------------------------------------------
    def train(
        self,
        scope: str | None = None,
        *,
        user: str | None = None,
        progress: Progress | None = None,
        force: bool = False,
    ) -> TrainResult:
        """Train a new adapter version for `user`'s scope (or `scope`: "global", "user:<name>" or "reward") from
        feedback not yet trained on; the regression gate decides whether it goes live.

        Raises InvalidInputError (neither or both of scope and user), TrainingBusyError, StorageError."""
        if (scope is None) == (user is None):
            raise InvalidInputError("give exactly one of scope ('global', 'user:<name>' or 'reward') or user")
        if scope == REWARD_SCOPE:
            return reward_training.train(self.data_dir, self.settings, self.store, force, progress)
        sample = self.settings.train.edits_sample
        edit_score = partial(edit_probe, system=self.settings.system_prompt, sample=sample) if sample else None
        scope = scope or user_scope(validate.user(user))
        return train(self.data_dir, self.settings, self.store, scope, progress, force, edit_score)

    def recall(self, question: str, user: str | None = None) -> Retrieved:
        """The retrieve stage of a turn alone, nothing generated or logged: the memories a turn by `user` would
        use (best first, with scores) and the current fact that answers `question` (None if none)."""
        question = validate.text(question, "question", self.settings.max_message_chars)
        return self._turn.recall(question, scopes_for(user and validate.user(user)))

    def contradictions(self, text: str, user: str | None = None) -> list[Contradiction]:
        """Statements in `text` (an answer) that contradict the current facts `user` can read (theirs, then
        global): what the guard repairs. Empty when there are none."""
        return contradictions(self.store, scopes_for(user and validate.user(user)), text)

    def history(self, user: str | None = None, session: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Recent messages (oldest first), each with the feedback given on it."""
        return self.sessions.history(user, session, limit)


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


# -- the training gate's edit probe ------------------------------------------------------------------
def edit_probe(backend: Backend, system: str, sample: int) -> float:
    """The memory path on `sample` items of the edit benchmark, answered through `backend` (e.g. the model
    being trained): each correction is given as feedback on the model's own answer, then the question and a
    paraphrase are asked again. The score is the share answered right (reliability and generalization of
    `dilm eval edits`, without its locality and isolation parts): the training gate's `EditScore`."""
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

"""llama.cpp backend: a GGUF model run in-process by llama.cpp's server engine (the `xllamacpp` bindings).

Concurrent turns share the model through `parallel` slots per engine (continuous batching: every slot's next
token is computed in one batch), not a lock; several engines on the same file (`engines`) let turns run on
separate cores, each turn on the least busy engine. LoRA adapters are GGUF LoRA files (`adapter.gguf` in a
published version's folder); an engine loads a set of them with the model and each request chooses its own
with a per-request scale, so users with different live versions are answered side by side. A request for an
adapter no engine has loaded restarts one engine with it (least recently used adapter out) once that engine's
running requests end; the other engines keep answering meanwhile.

The engine also serves llama.cpp's HTTP API. It cannot be switched off, so it listens on a unix socket in a
private (0700) temporary folder, with a random API key: nothing is reachable over TCP. dilm uses that socket
itself for the chat template and the tokenizer (`/apply-template`, `/tokenize`).

Source: llama.cpp tools/server (ggml-org/llama.cpp); xllamacpp (xorbitsai/xllamacpp), `Server.handle_chat_completions`.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from dilm.config import Decoding
from dilm.errors import BackendError, GenerationCancelled, InvalidInputError, ModelNotFoundError
from dilm.models.base import AdapterRef, ChatMessage, OnText, StopTrimmer
from dilm.models.lora_gguf import LORA_FILE
from dilm.tools import call_schema, parse_calls, plain
from dilm.types import Candidate, ToolCall, new_id

if TYPE_CHECKING:
    from dilm.tools import Tools

log = logging.getLogger(__name__)

BEAM_TEMPERATURE = 1.0  # "beam" with n > 1 on llama.cpp: sampling restricted to the num_beams likeliest tokens
DEFAULT_CONTEXT = 4096  # tokens per slot unless configured: the models train on more, a laptop's RAM decides


@dataclass
class _Engine:
    """One loaded llama.cpp server engine, the adapters it was started with (their index is the LoRA id), and
    its traffic: requests inside it, and the adapter it is being restarted for (None while it serves)."""

    server: Any
    http: httpx.Client  # the engine's own HTTP API, over its unix socket
    adapters: list[Path] = field(default_factory=list)
    socket: Path | None = None
    lru: list[Path] = field(default_factory=list)  # adapters by last use, most recent last
    active: int = 0
    loading: Path | None = None


class LlamaCppBackend:
    """A GGUF chat model on llama.cpp. Thread-safe: each engine runs up to `parallel` generations at once (the
    server admits `parallel` turns in all), more wait in llama.cpp's queue.

    `threads`: CPU threads per engine (None: 1 on a machine with <= 2 cores, where 2 threads collapse under
    load (OpenMP spinning), else cores - 1). `engines`: independent llama.cpp engines on the same file (its
    pages are shared; each engine has its own KV cache), each with `threads` threads and `parallel` slots; a
    request goes to the least busy one (None: one per core on <= 2 cores, so two streams use both cores
    without a shared thread barrier, else 1).
    `context_window`: tokens per slot. `prompt_cache`: reuse a slot's cached prompt prefix; off, every prompt is
    computed whole, and one request at a time gets the same greedy answer every time (with it, a near-tie may
    tip: llama.cpp's numerics depend on the batch shape, which a cached prefix, like other slots' work, changes).
    Raises ModelNotFoundError when the file is missing or not a model llama.cpp can load."""

    MAX_LOADED_ADAPTERS = 8

    def __init__(
        self,
        gguf: Path,
        name: str,
        context_window: int | None = None,
        threads: int | None = None,
        parallel: int = 4,
        engines: int | None = None,
        prompt_cache: bool = True,
    ) -> None:
        if not gguf.is_file():
            raise ModelNotFoundError(f"model file {gguf} does not exist")
        self.model_name = name
        self.gguf = gguf
        # Every engine gets all `parallel` slots: n candidates of one request need n slots in one engine. The
        # server admits at most `parallel` turns at once, so the extra slots cost KV-cache memory, not CPU.
        self.parallel = parallel
        self.prompt_cache = prompt_cache
        self.threads = threads or default_threads()
        self.engines = engines or default_engines(self.threads)
        self.context_window = context_window or DEFAULT_CONTEXT
        self.restarts = 0  # engines restarted with another adapter set
        self._socket_dir = Path(tempfile.mkdtemp(prefix="dilm-llama-"))  # mkdtemp: mode 0700
        self._api_key = secrets.token_urlsafe(24)
        self._cond = threading.Condition()
        self._numbers = itertools.count(1)  # a fresh socket per start: a stopped engine may leave its file
        self._closed = False
        self._engines: list[_Engine] = []
        try:
            self._engines.append(self._start([]))
            trained = self._trained_context(self._engines[0])
            if trained < self.context_window:  # never promise more context than the model was trained with
                self.context_window = trained
                self._stop(self._engines.pop())
                self._engines.append(self._start([]))
            self.tool_template = self._takes_tool_calls(self._engines[0])
            self._engines += [self._start([]) for _ in range(self.engines - 1)]
        except BaseException:
            self.close()
            raise

    # -- engine lifecycle -------------------------------------------------------------------------
    def _start(self, adapters: list[Path]) -> _Engine:
        """A running engine with `adapters` loaded, unapplied. Raises ModelNotFoundError."""
        import xllamacpp as xlc

        p = xlc.CommonParams()
        p.model.path = str(self.gguf)
        p.n_parallel = self.parallel
        p.n_ctx = self.context_window * self.parallel  # split evenly: each slot holds one whole context
        p.cpuparams.n_threads = self.threads
        p.cpuparams_batch.n_threads = self.threads
        socket = self._socket_dir / f"engine-{next(self._numbers)}.sock"
        p.hostnames = [str(socket)]
        p.api_keys = [self._api_key]
        p.verbosity = 0
        p.warmup = False
        if adapters:
            p.lora_adapters = [xlc.CommonAdapterLoraInfo(str(a), 1.0) for a in adapters]
            p.lora_init_without_apply = True  # scale 0 unless a request asks for the adapter
        try:
            server = xlc.Server(p)
        except RuntimeError as e:
            raise ModelNotFoundError(
                f"llama.cpp cannot load {self.gguf} with {len(adapters)} adapter(s): {e}"
            ) from None
        http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket)),
            base_url="http://llama.cpp",
            headers={"Authorization": f"Bearer {self._api_key}"},
            timeout=60.0,
        )
        return _Engine(server, http, list(adapters), socket=socket)

    @staticmethod
    def _stop(engine: _Engine) -> None:
        engine.server = None  # frees the engine's memory (the binding stops it when collected)
        engine.http.close()
        if engine.socket is not None:
            engine.socket.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop the engines and remove their socket folder (also done at interpreter exit). Requests after
        this raise BackendError."""
        with self._cond:
            self._closed = True
            for engine in self._engines:
                self._stop(engine)
            self._cond.notify_all()
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_socket_dir", ""), ignore_errors=True)

    @contextmanager
    def _acquire(self, path: Path | None) -> Iterator[_Engine]:
        """An engine with the adapter `path` loaded (None: any engine), counted busy until the block ends: on
        the least busy engine that has it; when none has, the least busy engine is restarted with it first.
        Raises BackendError (closed, no engine left, the adapter cannot be loaded)."""
        with self._cond:
            engine = self._pick(path)
            while engine is None:
                self._cond.wait()
                engine = self._pick(path)
            if path is not None and path not in engine.adapters:
                self._reload_with(engine, path)
            if path is not None:
                engine.lru = [p for p in engine.lru if p != path and p in engine.adapters] + [path]
            engine.active += 1
        try:
            yield engine
        finally:
            with self._cond:
                engine.active -= 1
                self._cond.notify_all()

    def _pick(self, path: Path | None) -> _Engine | None:
        """The engine for a request (called holding the condition), None to wait: the least busy serving engine
        with `path` loaded (any serving engine when `path` is None); else, when no engine is being restarted,
        the least busy serving engine, to restart with `path` (one restart at a time, so the others serve)."""
        if self._closed:
            raise BackendError("the llama.cpp backend is closed")
        if not self._engines:
            raise BackendError("no llama.cpp engine is running (restarts failed: see the log)")
        serving = [e for e in self._engines if e.loading is None]
        ready = [e for e in serving if path is None or path in e.adapters]
        if ready:
            return min(ready, key=lambda e: e.active)
        if not serving or len(serving) < len(self._engines):  # a restart is under way: it may bring `path`
            return None
        return min(serving, key=lambda e: e.active)

    def _reload_with(self, engine: _Engine, path: Path) -> None:
        """Restart `engine` with `path` among its adapters (called holding the condition, released while the
        engine loads). When that fails the engine is restarted with its other adapters (or, failing that,
        removed) and BackendError says why."""
        engine.loading = path
        try:
            while engine.active:
                self._cond.wait()
            keep = [a for a in engine.lru if a in engine.adapters and a.is_file()]
            keep = keep[max(0, len(keep) - (self.MAX_LOADED_ADAPTERS - 1)) :]  # the most recent, `path` joins
            self._cond.release()
            try:
                error = self._restart(engine, keep, path)
            finally:
                self._cond.acquire()
            if engine.server is None or self._closed:
                self._engines.remove(engine)
                if engine.server is not None:
                    self._stop(engine)
                error = error or "the llama.cpp backend is closed"
            self.restarts += 1
            if error:
                raise BackendError(error)
            log.info("llama.cpp engine restarted with %d adapter(s)", len(engine.adapters))
        finally:
            engine.loading = None
            self._cond.notify_all()

    def _restart(self, engine: _Engine, keep: list[Path], path: Path) -> str | None:
        """Stop `engine`, start it again with `keep` + `path` (outside the lock); on failure with `keep` alone.
        Returns why `path` could not be loaded, or None. `engine.server` is None if no start succeeded."""
        self._stop(engine)  # free the old engine's memory before loading the new one
        error = None
        for adapters in ([*keep, path], keep):
            try:
                if path in adapters and not path.is_file():
                    raise ModelNotFoundError(f"{path} no longer exists")
                fresh = self._start(adapters)
            except ModelNotFoundError as e:
                error = error or f"llama.cpp could not load the adapter {path.parent.name}: {e}"
                continue
            engine.server, engine.http, engine.adapters, engine.socket = (
                fresh.server,
                fresh.http,
                fresh.adapters,
                fresh.socket,
            )
            return error
        return error

    def _trained_context(self, engine: _Engine) -> int:
        """The context length the model was trained with (llama.cpp's `n_ctx_train`, from `/v1/models`)."""
        try:
            r = engine.http.get("/v1/models")
            r.raise_for_status()
            return int(r.json()["data"][0]["meta"]["n_ctx_train"])
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as e:
            raise ModelNotFoundError(f"{self.gguf}: llama.cpp did not report the model's context length: {e}") from None

    @staticmethod
    def _takes_tool_calls(engine: _Engine) -> bool:
        """Whether the model's chat template renders tool calls and tool results (llama.cpp's template caps);
        when it does not, they are given to it as plain turns (`tools.plain`)."""
        try:
            r = engine.http.get("/props")
            r.raise_for_status()
            caps = r.json().get("chat_template_caps") or {}
        except (httpx.HTTPError, ValueError) as e:
            raise ModelNotFoundError(f"llama.cpp did not describe the model's chat template: {e}") from None
        return bool(caps.get("supports_tool_calls"))

    # -- tokens -----------------------------------------------------------------------------------
    def count_tokens(self, messages: list[ChatMessage]) -> int:
        """Tokens of the chat-templated prompt, generation prompt included (the engine's own template)."""
        messages = messages if self.tool_template else plain(messages)
        prompt = self._post("/apply-template", {"messages": messages})["prompt"]
        return len(self._post("/tokenize", {"content": prompt, "add_special": True, "parse_special": True})["tokens"])

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A JSON POST to a serving engine's own HTTP API, over its unix socket."""
        with self._acquire(None) as engine:
            try:
                r = engine.http.post(path, json=body)
                r.raise_for_status()
                result: dict[str, Any] = r.json()
                return result
            except (httpx.HTTPError, ValueError, RuntimeError) as e:
                raise BackendError(f"llama.cpp engine {path} failed: {e}") from None

    # -- generation -------------------------------------------------------------------------------
    def generate(
        self,
        messages: list[ChatMessage],
        decoding: Decoding,
        on_text: OnText | None = None,
        cancel: threading.Event | None = None,
        adapter: AdapterRef | None = None,
        tools: Tools | None = None,
    ) -> list[Candidate]:
        """n candidates (see Backend.generate). llama.cpp's server has no beam search: strategy "beam" is
        answered greedily when n == 1 and, for n > 1, by sampling among the `num_beams`
        likeliest tokens per step (an approximation; runtime "transformers" has the real beam search).
        `tools` go to the chat template; a required call is constrained by `tools.call_schema`.
        Raises BackendError when the engine fails, GenerationCancelled on cancel."""
        cancel = cancel or threading.Event()
        request = self.request(messages, decoding, tools)
        streams = on_text is not None and decoding.n == 1 and tools is None  # a call is never streamed as text
        if tools is not None and decoding.logprobs is not None:
            raise InvalidInputError("logprobs: llama.cpp does not return them with tools")
        trimmer = StopTrimmer(decoding.stop, on_text) if streams and on_text else None
        stream = _Collector(decoding.n, trimmer, top=decoding.logprobs)
        path = _lora_file(adapter) if adapter is not None else None
        with self._acquire(path) as engine:
            if engine.adapters:
                request["lora"] = [{"id": i, "scale": 1.0 if a == path else 0.0} for i, a in enumerate(engine.adapters)]
            try:
                engine.server.handle_chat_completions(request, lambda chunk: stream.feed(chunk, cancel))
            except (RuntimeError, ValueError) as e:
                raise BackendError(f"generation failed: {e}") from None
        if cancel.is_set():
            raise GenerationCancelled("generation cancelled")
        if stream.error:
            raise BackendError(f"generation failed: {stream.error}")
        candidates = stream.candidates(tools)
        if decoding.strategy == "beam":  # ranked like beams: the likeliest first
            candidates.sort(key=lambda c: c.mean_logprob if c.mean_logprob is not None else float("-inf"), reverse=True)
        if on_text is not None and stream.trimmer is None and not candidates[0].tool_calls:
            on_text(candidates[0].text)
        return candidates

    def request(self, messages: list[ChatMessage], d: Decoding, tools: Tools | None = None) -> dict[str, Any]:
        """The engine's chat-completion request for `d` (OpenAI fields plus llama.cpp's sampler settings)."""
        req: dict[str, Any] = {
            "messages": messages if self.tool_template else plain(messages),
            "max_tokens": d.max_new_tokens,
            "n": d.n,
            "stream": True,
            "logprobs": True,
            "top_logprobs": max(d.logprobs or 0, 1),
            "repeat_penalty": d.repetition_penalty,
            "repeat_last_n": 64,
            "cache_prompt": self.prompt_cache,
            "min_p": 0.0,
        }
        if d.strategy == "greedy" or (d.strategy == "beam" and d.n == 1):
            req.update(temperature=0.0, top_k=1)
        elif d.strategy == "beam":  # n candidates, each step among the num_beams likeliest tokens
            req.update(temperature=BEAM_TEMPERATURE, top_k=d.num_beams, top_p=1.0)
        else:
            req.update(temperature=d.temperature, top_k=d.top_k, top_p=d.top_p)
        if d.stop:
            req["stop"] = list(d.stop)
        if d.seed is not None:
            req["seed"] = d.seed
        if d.json_schema is not None:
            req["json_schema"] = d.json_schema
        if tools is not None:
            req["tools"] = tools.allowed  # a named choice: the only function the template shows
            del req["logprobs"], req["top_logprobs"]  # llama.cpp refuses logprobs with tools when streaming
            if tools.forced:  # llama.cpp's own "required" is not enforced for every template: a grammar is
                req["json_schema"] = call_schema(tools)
        return req


class _Collector:
    """Assembles streamed chunks into n candidates; streams candidate 0 through `trimmer` when given."""

    def __init__(self, n: int, trimmer: StopTrimmer | None, top: int | None = None) -> None:
        """`top`: keep each token's log probabilities with this many alternatives (None: the mean only)."""
        self.texts = [""] * n
        self.logprobs: list[list[float]] = [[] for _ in range(n)]
        self.top = top
        self.tokens: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        self.finish = ["stop"] * n
        self.calls: list[list[dict[str, Any]]] = [[] for _ in range(n)]  # llama.cpp's parsed tool-call deltas
        self.trimmer = trimmer
        self.error: str | None = None

    def feed(self, chunk: dict[str, Any], cancel: threading.Event) -> bool:
        """Take one streamed chunk; True asks the engine to stop (the request was cancelled)."""
        if "error" in chunk:
            self.error = str(chunk["error"].get("message", chunk["error"]))
            return True
        for choice in chunk.get("choices", []):
            i = int(choice.get("index", 0))
            if i >= len(self.texts):
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            self.texts[i] += text
            _merge_call_deltas(self.calls[i], delta.get("tool_calls") or [])
            if text and i == 0 and self.trimmer is not None:
                self.trimmer.feed(text)
            for token in ((choice.get("logprobs") or {}).get("content")) or []:
                self.logprobs[i].append(float(token["logprob"]))
                if self.top is not None:
                    self.tokens[i].append(_openai_token(token, self.top))
            if choice.get("finish_reason"):
                self.finish[i] = "length" if choice["finish_reason"] == "length" else "stop"
        return cancel.is_set()

    def candidates(self, tools: Tools | None = None) -> list[Candidate]:
        """The n answers; with `tools`, an answer that calls them (llama.cpp's parse, else `parse_calls`)
        carries the calls and finish_reason "tool_calls"."""
        if self.trimmer is not None:
            self.trimmer.flush()
        out: list[Candidate] = []
        for text, lps, finish, parsed, kept in zip(
            self.texts, self.logprobs, self.finish, self.calls, self.tokens, strict=True
        ):
            finite = [x for x in lps if x > float("-inf")]
            mean = sum(finite) / len(finite) if finite else None
            tokens = len(lps) or len(text) // 3  # with tools llama.cpp sends no logprobs: an estimate
            candidate = Candidate(text=text.strip(), completion_tokens=tokens, finish_reason=finish, mean_logprob=mean)
            if self.top is not None:
                candidate.logprobs = kept
            calls = parse_calls(text, tools) if tools and not parsed else [_tool_call(c) for c in parsed]
            calls = tools.keep(calls) if tools else []
            if calls:
                candidate.text, candidate.tool_calls, candidate.finish_reason = "", calls, "tool_calls"
            out.append(candidate)
        return out


def _openai_token(t: dict[str, Any], top: int) -> dict[str, Any]:
    """One token's log probabilities as OpenAI returns them, with `top` alternatives (llama.cpp adds ids)."""
    keep = ("token", "logprob", "bytes")
    alternatives = [{k: a.get(k) for k in keep} for a in (t.get("top_logprobs") or [])[:top]]
    return {**{k: t.get(k) for k in keep}, "top_logprobs": alternatives}


def _merge_call_deltas(calls: list[dict[str, Any]], deltas: list[dict[str, Any]]) -> None:
    """OpenAI's streamed tool calls: each delta extends the call at its index (name once, arguments in pieces)."""
    for d in deltas:
        i = int(d.get("index", len(calls)))
        while len(calls) <= i:
            calls.append({"id": "", "name": "", "arguments": ""})
        fn = d.get("function") or {}
        calls[i]["id"] = d.get("id") or calls[i]["id"]
        calls[i]["name"] += fn.get("name") or ""
        calls[i]["arguments"] += fn.get("arguments") or ""


def _tool_call(c: dict[str, Any]) -> ToolCall:
    return ToolCall(id=c["id"] or new_id("call"), name=c["name"], arguments=c["arguments"] or "{}")


def _lora_file(adapter: AdapterRef) -> Path:
    path = (adapter.folder / LORA_FILE).resolve()
    if not path.is_file():
        raise BackendError(
            f"adapter {adapter.name} has no GGUF LoRA ({LORA_FILE}) for llama.cpp; it was published before "
            'llama.cpp serving: train a new version, or answer with runtime = "transformers"'
        )
    return path


def default_threads() -> int:
    """1 on a machine with <= 2 cores (2 threads collapsed under load there: measured in
    benchmarks/generation.py), else all cores but one (one is left for the server and the embedder)."""
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else cores - 1


def default_engines(threads: int) -> int:
    """One engine per `threads` cores on a machine with <= 2 cores (two 1-thread engines served 2 streams at
    1.5x one engine's tokens/s: benchmarks/generation.py), else 1 (its threads already use the cores)."""
    cores = os.cpu_count() or 1
    return max(1, cores // threads) if cores <= 2 else 1

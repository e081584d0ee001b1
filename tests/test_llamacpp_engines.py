"""How the llama.cpp backend shares work between its engines and restarts them for adapters, with stand-in
engines (no model): least busy engine, one restart per adapter, failed restarts, use after close."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dilm.config import Decoding
from dilm.errors import BackendError, ModelNotFoundError
from dilm.models.base import AdapterRef
from dilm.models.llamacpp import LlamaCppBackend, _Engine
from dilm.models.lora_gguf import LORA_FILE

QUESTION = [{"role": "user", "content": "Hi?"}]


class StandInServer:
    """Answers "ok" with the adapters it was started with; waits for `gate` first when one is set."""

    def __init__(self, adapters: list[Path], gate: threading.Event | None) -> None:
        self.adapters, self.gate = adapters, gate

    def handle_chat_completions(self, request: dict[str, Any], callback: Any) -> None:
        if self.gate is not None:
            assert self.gate.wait(10)
        callback({"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]})


class StandInHttp:
    closed = False

    def close(self) -> None:
        self.closed = True


class StandIns(LlamaCppBackend):
    """LlamaCppBackend with stand-in engines: `failing` adapters cannot be loaded; `gate` holds answers."""

    def __init__(self, tmp: Path, engines: int) -> None:
        (tmp / "model.gguf").write_bytes(b"GGUF")
        self.failing: set[Path] = set()
        self.gate: threading.Event | None = None
        self.loads: list[list[Path]] = []
        super().__init__(tmp / "model.gguf", "stand-in", context_window=512, parallel=2, engines=engines)

    def _start(self, adapters: list[Path]) -> _Engine:
        if self.failing & set(adapters):
            raise ModelNotFoundError("cannot load")
        self.loads.append(list(adapters))
        if adapters:
            time.sleep(0.1)  # loading takes time: other requests arrive meanwhile
        return _Engine(StandInServer(adapters, self.gate), StandInHttp(), list(adapters))  # type: ignore[arg-type]

    def _trained_context(self, engine: _Engine) -> int:
        return 4096

    def _takes_tool_calls(self, engine: _Engine) -> bool:
        return False


def adapter(tmp: Path, name: str) -> AdapterRef:
    folder = tmp / name
    folder.mkdir()
    (folder / LORA_FILE).write_bytes(b"lora")
    return AdapterRef(name, folder)


def ask(backend: LlamaCppBackend, ref: AdapterRef | None = None) -> str:
    return backend.generate(QUESTION, Decoding(max_new_tokens=4), adapter=ref)[0].text


def test_two_requests_for_a_new_adapter_restart_one_engine_once(tmp_path: Path):
    backend = StandIns(tmp_path, engines=2)
    ref = adapter(tmp_path, "v1")
    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(ask(backend, ref))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == ["ok", "ok"] and backend.restarts == 1
    assert sorted(len(e.adapters) for e in backend._engines) == [0, 1]


def test_a_busy_engine_is_not_chosen_while_another_is_idle(tmp_path: Path):
    backend = StandIns(tmp_path, engines=2)
    backend.gate = threading.Event()
    for engine in backend._engines:
        engine.server.gate = backend.gate
    first = threading.Thread(target=ask, args=(backend,))
    first.start()
    while not any(e.active for e in backend._engines):
        time.sleep(0.001)  # until the first request is inside an engine
    busy = next(e for e in backend._engines if e.active)
    assert backend._pick(None) is not busy
    backend.gate.set()
    first.join()


def test_an_adapter_that_cannot_load_is_a_clear_error_and_the_engine_keeps_serving(tmp_path: Path):
    backend = StandIns(tmp_path, engines=1)
    good, bad = adapter(tmp_path, "v1"), adapter(tmp_path, "v2")
    assert ask(backend, good) == "ok"
    backend.failing.add((bad.folder / LORA_FILE).resolve())
    with pytest.raises(BackendError, match="could not load the adapter v2"):
        ask(backend, bad)
    assert ask(backend, good) == "ok" and ask(backend) == "ok"  # restarted with the adapters it had
    assert backend.loads[-1] == [(good.folder / LORA_FILE).resolve()]


def test_an_engine_that_cannot_restart_is_removed_and_the_others_serve(tmp_path: Path):
    backend = StandIns(tmp_path, engines=2)
    bad = adapter(tmp_path, "v1")
    backend.failing.add((bad.folder / LORA_FILE).resolve())
    original = backend._start

    def broken(adapters: list[Path]) -> _Engine:
        raise ModelNotFoundError("out of memory")

    backend._start = broken  # type: ignore[method-assign]
    with pytest.raises(BackendError, match="could not load the adapter v1"):
        ask(backend, bad)
    assert len(backend._engines) == 1 and ask(backend) == "ok"
    with pytest.raises(BackendError, match="could not load"):
        ask(backend, bad)
    with pytest.raises(BackendError, match="no llama.cpp engine is running"):
        ask(backend)
    backend._start = original  # type: ignore[method-assign]


def test_an_adapter_deleted_before_its_restart_is_a_clear_error(tmp_path: Path):
    backend = StandIns(tmp_path, engines=1)
    ref = adapter(tmp_path, "v1")
    ask(backend)
    real = backend._restart

    def delete_first(engine: _Engine, keep: list[Path], path: Path) -> str | None:
        path.unlink()
        return real(engine, keep, path)

    backend._restart = delete_first  # type: ignore[method-assign]
    with pytest.raises(BackendError, match="no longer exists"):
        ask(backend, ref)
    assert ask(backend) == "ok"


def test_requests_after_close_are_refused(tmp_path: Path):
    backend = StandIns(tmp_path, engines=2)
    backend.close()
    assert all(e.server is None and e.http.closed for e in backend._engines)
    with pytest.raises(BackendError, match="closed"):
        ask(backend)


def test_a_restart_that_ends_after_close_is_refused(tmp_path: Path):
    backend = StandIns(tmp_path, engines=1)
    ref = adapter(tmp_path, "v1")
    real = backend._restart

    def close_meanwhile(engine: _Engine, keep: list[Path], path: Path) -> str | None:
        result = real(engine, keep, path)
        threading.Thread(target=backend.close).start()  # waits for the lock this restart gets back
        time.sleep(0.05)
        return result

    backend._restart = close_meanwhile  # type: ignore[method-assign]
    with pytest.raises(BackendError, match="closed"):
        ask(backend, ref)

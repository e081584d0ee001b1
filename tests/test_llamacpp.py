"""The llama.cpp backend on the real SmolLM2 GGUF: decoding, streaming, candidates, JSON Schema, concurrency,
its private socket, and Chinese answers on Qwen2.5-Coder-0.5B."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest

from dilm.config import Decoding, Settings
from dilm.errors import BackendError, GenerationCancelled
from dilm.models.base import AdapterRef
from dilm.models.catalogue import gguf_path
from dilm.models.llamacpp import LlamaCppBackend

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(scope="module")
def llama(backend) -> LlamaCppBackend:
    assert isinstance(backend, LlamaCppBackend), "tests run on llama.cpp by default"
    return backend


def test_stream_equals_answer_and_greedy_is_repeatable(llama: LlamaCppBackend):
    deltas: list[str] = []
    first = llama.generate(MESSAGES, Decoding(max_new_tokens=24), on_text=deltas.append)[0]
    again = llama.generate(MESSAGES, Decoding(max_new_tokens=24))[0]
    assert "Paris" in first.text and "".join(deltas).strip() == first.text == again.text
    assert len(deltas) > 1  # token by token, not one block at the end
    assert first.completion_tokens > 0 and first.mean_logprob is not None and first.mean_logprob <= 0


def test_length_stop_and_candidates(llama: LlamaCppBackend):
    short = llama.generate(MESSAGES, Decoding(max_new_tokens=2))[0]
    assert short.finish_reason == "length" and short.completion_tokens == 2
    cut = llama.generate(MESSAGES, Decoding(max_new_tokens=24, stop=["Paris"]))[0]
    assert "Paris" not in cut.text and cut.finish_reason == "stop"
    d = Decoding(strategy="sample", n=3, temperature=1.2, max_new_tokens=12, seed=7)
    many = llama.generate([{"role": "user", "content": "Tell me something about cats."}], d)
    assert len(many) == 3 and len({c.text for c in many}) > 1
    same = llama.generate([{"role": "user", "content": "Tell me something about cats."}], d)
    assert [c.text for c in same] == [c.text for c in many]  # a seed makes sampling repeatable


def test_beam_is_answered(llama: LlamaCppBackend):
    one = llama.generate(MESSAGES, Decoding(strategy="beam", num_beams=2, max_new_tokens=12))
    greedy = llama.generate(MESSAGES, Decoding(max_new_tokens=12))
    assert one[0].text == greedy[0].text
    assert len(llama.generate(MESSAGES, Decoding(strategy="beam", num_beams=3, n=3, max_new_tokens=8))) == 3


def test_json_schema_constrains_the_answer(llama: LlamaCppBackend):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    d = Decoding(max_new_tokens=32, json_schema=schema)
    text = llama.generate([{"role": "user", "content": "Which city is the capital of France?"}], d)[0].text
    assert isinstance(json.loads(text)["city"], str)


def test_cancel_and_token_count(llama: LlamaCppBackend):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(GenerationCancelled):
        llama.generate(MESSAGES, Decoding(max_new_tokens=64), cancel=cancel)
    n = llama.count_tokens(MESSAGES)
    longer = llama.count_tokens([*MESSAGES[:1], {"role": "user", "content": MESSAGES[1]["content"] + " Answer now."}])
    assert 10 < n < longer


def test_concurrent_requests_share_the_model(llama: LlamaCppBackend):
    """Four chats at once through the parallel slots: every one gets its own, correct answer."""
    questions = ["What is the capital of France?", "What is 2 + 2?", "Name a color.", "What is the capital of Italy?"]
    answers: dict[int, str] = {}

    def ask(i: int) -> None:
        messages = [MESSAGES[0], {"role": "user", "content": questions[i]}]
        answers[i] = llama.generate(messages, Decoding(max_new_tokens=16))[0].text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alone = llama.generate(MESSAGES, Decoding(max_new_tokens=16))[0].text
    assert len(answers) == 4 and answers[0] == alone and "Paris" in alone


def test_concurrent_turns_go_to_the_least_busy_engine(llama: LlamaCppBackend):
    """Two engines, two streams at once: while both stream, each engine runs one of them."""
    two = LlamaCppBackend(llama.gguf, llama.model_name, context_window=512, threads=1, parallel=2, engines=2)
    streaming = threading.Barrier(2, timeout=60)
    seen: list[list[int]] = []

    def ask(question: str) -> None:
        first = [True]

        def on_text(_: str) -> None:
            if first:  # this stream's first text
                first.clear()
                streaming.wait()  # both requests are inside their engines now
                seen.append([e.active for e in two._engines])

        two.generate([{"role": "user", "content": question}], Decoding(max_new_tokens=8), on_text=on_text)

    try:
        threads = [threading.Thread(target=ask, args=(q,)) for q in ("Name a fruit.", "Name a color.")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        two.close()
    assert seen and seen[0] == [1, 1]


def test_the_prompt_cache_setting_reaches_the_engine(llama: LlamaCppBackend):
    """`prompt_cache` (the suite runs with it off: conftest) becomes llama.cpp's `cache_prompt`; on, answers
    still come, and the same question is answered again after another one."""
    from dilm.models import load_backend

    assert llama.request(MESSAGES, Decoding())["cache_prompt"] is False
    settings = Settings.load(None, model=llama.gguf.as_posix(), prompt_cache=True, context_window=512, engines=1)
    cached = load_backend(settings)
    assert isinstance(cached, LlamaCppBackend)
    try:
        assert cached.request(MESSAGES, Decoding())["cache_prompt"] is True
        first = cached.generate(MESSAGES, Decoding(max_new_tokens=16))[0].text
        cached.generate([MESSAGES[0], {"role": "user", "content": "Name a color."}], Decoding(max_new_tokens=8))
        assert "Paris" in first and "Paris" in cached.generate(MESSAGES, Decoding(max_new_tokens=16))[0].text
    finally:
        cached.close()


def test_the_engine_listens_on_a_private_socket_only(llama: LlamaCppBackend):
    folder = llama._socket_dir
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for engine in llama._engines:
        assert engine.server.listening_address.startswith("unix://")
        assert str(folder) in engine.server.listening_address


def test_an_adapter_without_its_gguf_lora_is_a_clear_error(llama: LlamaCppBackend, tmp_path: Path):
    with pytest.raises(BackendError, match="no GGUF LoRA"):
        llama.generate(MESSAGES, Decoding(max_new_tokens=4), adapter=AdapterRef("v9", tmp_path))


def test_chinese_question_gets_a_chinese_answer():
    """The Chinese-capable catalogue model (scripts/setup.sh --dev installs it) answers in fluent Chinese."""
    settings = Settings.load(None)
    try:
        name, gguf = gguf_path("qwen2.5-coder-0.5b", settings.resolved_cache_dir())
    except Exception as e:  # noqa: BLE001 — the test states what is missing
        pytest.fail(f"qwen2.5-coder-0.5b is not installed (run `dilm models install qwen2.5-coder-0.5b`): {e}")
    qwen = LlamaCppBackend(gguf, name, context_window=1024, parallel=1)
    try:
        text = qwen.generate([{"role": "user", "content": "中国的首都是哪里？"}], Decoding(max_new_tokens=24))[0].text
    finally:
        qwen.close()
    assert "北京" in text
    assert sum("\u4e00" <= ch <= "\u9fff" for ch in text) >= len(text.replace(" ", "")) // 2


def test_a_stated_language_preference_gives_chinese_answers(tmp_path: Path):
    """On a Chinese-capable model, "answer in Chinese" (a stated preference) turns later English questions'
    answers Chinese."""
    from dilm import Assistant

    with Assistant.open(tmp_path, model="qwen2.5-coder-0.5b", decoding={"max_new_tokens": 32}) as bot:
        bot.chat("Please answer in Chinese from now on.", user="mei")
        text = bot.chat("What is the capital of France?", user="mei").text
        english = bot.chat("What is the capital of France?", user="tom").text
    assert "巴黎" in text and sum("\u4e00" <= ch <= "\u9fff" for ch in text) >= 2
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in english)  # another user's answers stay English

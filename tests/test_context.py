"""The token budget: oldest turns go first; the system prompt and the current turn never do."""

from __future__ import annotations

import pytest

from dilm.context import ContextBuilder
from dilm.errors import ContextOverflowError


class Window:
    """The real model's tokenizer with a small context window."""

    def __init__(self, backend, window: int) -> None:
        self.inner, self.context_window, self.model_name = backend, window, backend.model_name

    def count_tokens(self, messages):
        return self.inner.count_tokens(messages)


def history(turns: int) -> list[dict[str, str]]:
    out = []
    for i in range(turns):
        out.append({"role": "user", "content": f"Question number {i}: tell me about topic {i}."})
        out.append({"role": "assistant", "content": f"Answer number {i} is about topic {i}, in some detail."})
    return out


def test_everything_fits_in_a_large_window(backend):
    msgs, used, dropped = ContextBuilder(backend).build("sys", history(3), "now?", 64)
    assert dropped == 0 and len(msgs) == 8 and used == backend.count_tokens(msgs)


def test_oldest_turns_are_dropped_first(backend):
    builder = ContextBuilder(Window(backend, 200))
    hist = history(10)
    msgs, used, dropped = builder.build("You are terse.", hist, "And now?", 40)
    assert msgs[0] == {"role": "system", "content": "You are terse."}
    assert msgs[-1] == {"role": "user", "content": "And now?"}
    kept = msgs[1:-1]
    assert 0 < len(kept) < len(hist) and dropped == len(hist) - len(kept)
    assert kept == hist[-len(kept) :]  # a suffix: the newest turns
    assert kept[0]["role"] == "user"  # never starts on an orphaned answer
    assert used <= 200 - 40 and used == backend.count_tokens(msgs)


def test_chinese_history_is_budgeted_too(backend):
    hist = [
        {"role": "user", "content": "我叫小明，我住在北京。"},
        {"role": "assistant", "content": "你好，小明！"},
    ] * 20
    msgs, used, _ = ContextBuilder(Window(backend, 150)).build("系统", hist, "我叫什么名字？", 30)
    assert used <= 120 and msgs[-1]["content"] == "我叫什么名字？" and len(msgs) < 42


def test_current_turn_that_cannot_fit_is_an_error(backend):
    with pytest.raises(ContextOverflowError, match="max_new_tokens"):
        ContextBuilder(Window(backend, 100)).build("sys", [], "word " * 200, 20)

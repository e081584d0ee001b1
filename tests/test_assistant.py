"""The Python API: turns, sessions, feedback, and every bad input (nothing half-written)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dilm import Assistant
from dilm.config import Settings
from dilm.errors import (
    ContextOverflowError,
    InvalidInputError,
    MessageNotFoundError,
    ModelNotFoundError,
    PermissionDeniedError,
    SessionNotFoundError,
    StorageError,
)
from dilm.models.catalogue import resolve_model_dir


def counts(bot: Assistant) -> tuple[int, int, int]:
    db = sqlite3.connect(bot.store.path)
    try:
        return tuple(
            db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("messages", "feedback", "sessions")
        )
    finally:
        db.close()


def test_chat_answers_and_logs_the_turn(bot):
    r = bot.chat("What is the capital of France?", user="alice")
    assert "Paris" in r.text
    assert r.id.startswith("msg_") and r.session_id.startswith("ses_") and r.user_id == "alice"
    assert r.model == "smollm2-135m-instruct" and r.latency_ms > 0 and r.completion_tokens > 0
    msgs = bot.store.session_messages(r.session_id)
    assert [m.role for m in msgs] == ["user", "assistant"]
    answer = msgs[1]
    assert answer.content == r.text and answer.parent_id == msgs[0].id
    assert answer.decoding["strategy"] == "greedy" and answer.prompt_tokens == r.prompt_tokens
    assert answer.latency_ms == pytest.approx(r.latency_ms)


def test_session_history_is_part_of_the_next_prompt_and_survives_reopen(bot, data_dir, backend):
    r1 = bot.chat("Let us talk about the sea.", user="alice")
    r2 = bot.chat("What lives in it?", user="alice", session=r1.session_id)
    alone = bot.chat("What lives in it?", user="alice")
    assert r2.prompt_tokens > alone.prompt_tokens  # the first turn is in the prompt
    bot.close()
    with Assistant.open(data_dir, backend=backend, decoding={"max_new_tokens": 8}) as again:
        r3 = again.chat("Thanks!", user="alice", session=r1.session_id)
        assert r3.session_id == r1.session_id
        assert r3.prompt_tokens > r2.prompt_tokens
        assert len(again.store.session_messages(r1.session_id)) == 6


def test_stream_yields_the_answer_and_then_the_reply(bot):
    stream = bot.stream("Say hello to the world.", user="bob")
    parts = list(stream)
    assert stream.reply is not None and len(parts) >= 2
    assert "".join(parts).strip() == stream.reply.text
    assert stream.reply.ttft_ms is not None and stream.reply.ttft_ms < stream.reply.latency_ms


def test_leaving_a_stream_early_cancels_and_logs_nothing(bot):
    stream = bot.stream("Write a long story about a dragon.", user="bob", max_new_tokens=200)
    for _ in stream:
        break
    assert stream.reply is None and stream.cancel_event.is_set()
    assert counts(bot) == (0, 0, 0)


def test_per_user_decoding_defaults(bot):
    bot.set_user_decoding("carol", strategy="beam", num_beams=2)
    assert bot.decoding_for("carol").strategy == "beam"
    assert bot.decoding_for("dave").strategy == "greedy"
    r = bot.chat("Hi", user="carol", max_new_tokens=4)
    assert r.decoding["strategy"] == "beam" and r.decoding["num_beams"] == 2
    assert bot.chat("Hi", user="carol", strategy="greedy", max_new_tokens=4).decoding["strategy"] == "greedy"


def test_n_candidates_are_returned_and_logged(bot):
    r = bot.chat("Name a fruit.", user="erin", strategy="sample", n=3, seed=1, max_new_tokens=8)
    assert len(r.candidates) == 3 and r.text == r.candidates[0].text
    assert len(bot.store.message(r.id).meta["candidates"]) == 3


# -- feedback ---------------------------------------------------------------------------------------
@pytest.fixture
def answered(bot):
    return bot.chat("What is the capital of France?", user="alice", max_new_tokens=10)


@pytest.mark.parametrize(
    "kwargs,kind",
    [
        ({"rating": -1, "reason": "not factually correct"}, "rating"),
        ({"rating": 1}, "rating"),
        ({"correction": "The capital of France is Paris."}, "correction"),
        ({"supplement": "Paris is also France's largest city."}, "supplement"),
        ({"preferred": "Paris."}, "preference"),
        ({"comment": "nice"}, "comment"),
        ({"correction": "法国的首都是巴黎。"}, "correction"),
    ],
)
def test_each_feedback_kind_is_committed(bot, answered, kwargs, kind):
    result = bot.feedback(answered.id, user="alice", **kwargs)
    assert result.kind == kind and result.effects
    # Read back through a separate connection: it is committed, not just in this process's transaction.
    db = sqlite3.connect(bot.store.path)
    row = db.execute("SELECT kind, rating, text, reasons FROM feedback WHERE id = ?", (result.id,)).fetchone()
    db.close()
    assert row[0] == kind
    if kind == "rating":
        assert row[1] == kwargs["rating"]
    else:
        assert row[2] == next(iter(kwargs.values()))
    if "reason" in kwargs:
        assert "not factually correct" in row[3]


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({}, InvalidInputError, "exactly one"),
        ({"rating": -1, "correction": "x"}, InvalidInputError, "exactly one"),
        ({"rating": 5}, InvalidInputError, "rating"),
        ({"rating": True}, InvalidInputError, "rating"),
        ({"correction": ""}, InvalidInputError, "empty"),
        ({"correction": "   \n"}, InvalidInputError, "empty"),
        ({"correction": "x" * 20_000}, InvalidInputError, "limit"),
        ({"correction": "bad \udcff bytes"}, InvalidInputError, "UTF-8"),
        ({"rating": -1, "reason": ""}, InvalidInputError, "reason"),
        ({"rating": -1, "user": "mallory"}, PermissionDeniedError, "another user"),
    ],
)
def test_bad_feedback_is_refused_and_nothing_is_written(bot, answered, kwargs, error, message):
    before = counts(bot)
    with pytest.raises(error, match=message):
        bot.feedback(answered.id, **kwargs)
    assert counts(bot) == before


def test_feedback_on_unknown_or_user_message_is_refused(bot, answered):
    with pytest.raises(MessageNotFoundError):
        bot.feedback("msg_does_not_exist", rating=1)
    user_msg = bot.store.session_messages(answered.session_id)[0]
    with pytest.raises(InvalidInputError, match="assistant"):
        bot.feedback(user_msg.id, rating=1)
    assert counts(bot)[1] == 0


# -- bad input on chat --------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_message(bot, text):
    with pytest.raises(InvalidInputError, match="empty"):
        bot.chat(text)
    assert counts(bot) == (0, 0, 0)


def test_invalid_utf8_message(bot):
    with pytest.raises(InvalidInputError, match="UTF-8"):
        bot.chat("caf\udce9")
    assert counts(bot) == (0, 0, 0)


def test_message_larger_than_the_context_window(bot):
    huge = "深度学习模型" * 5000  # 30k characters (under max_message_chars), far over 8192 tokens
    with pytest.raises(ContextOverflowError, match="context window"):
        bot.chat(huge)
    assert counts(bot) == (0, 0, 0)


def test_unknown_session_and_other_users_session(bot):
    with pytest.raises(SessionNotFoundError):
        bot.chat("hello", session="ses_nope")
    r = bot.chat("hello", user="alice", max_new_tokens=4)
    with pytest.raises(PermissionDeniedError):
        bot.chat("hello", user="bob", session=r.session_id)
    assert counts(bot) == (2, 0, 1)


def test_data_dir_not_writable(tmp_path: Path, backend):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="--data-dir"):
        Assistant.open(blocker / "data", backend=backend)


def test_a_model_folder_given_by_path(tmp_path: Path):
    """Any Hugging Face model folder runs on transformers; the de-quantized cache of a GGUF is one."""
    _, folder = resolve_model_dir("smollm2-135m", Settings.load(None).resolved_cache_dir())
    with Assistant.open(tmp_path, model=str(folder), decoding={"max_new_tokens": 8}) as bot:
        r = bot.chat("What is the capital of France?")
        assert r.model == folder.name and r.text and type(bot.backend).__name__ == "LocalBackend"
    with pytest.raises(ModelNotFoundError, match="config.json"):
        Assistant.open(tmp_path, model=str(tmp_path)).chat("hi")

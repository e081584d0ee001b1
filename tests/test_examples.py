"""Training examples built from the log, in TRL's conversational formats."""

from __future__ import annotations

import json
import sqlite3

from dilm.learning.examples import examples, export
from tests.test_cli import assert_one_line_error, run


def _log(bot):
    a = bot.chat("What is the support hotline of Quillmere Robotics?", user="alice", max_new_tokens=4)
    bot.feedback(a.id, correction="No, it's 555-0199.")
    b = bot.chat("Name a colour.", user="alice", max_new_tokens=4)
    bot.feedback(b.id, rating=1)
    c = bot.chat("星河科技的总部在哪里？", user="xiaoming", max_new_tokens=4)
    bot.feedback(c.id, preferred="星河科技的总部在杭州。")
    return a, b, c


def test_each_format(bot):
    a, b, c = _log(bot)
    sft = examples(bot.store, "sft")
    assert sft[0] == {
        "prompt": [{"role": "user", "content": "What is the support hotline of Quillmere Robotics?"}],
        "completion": [{"role": "assistant", "content": "The support hotline of Quillmere Robotics is 555-0199."}],
    }
    assert sft[1]["completion"][0]["content"] == "星河科技的总部在杭州。"
    kto = examples(bot.store, "kto")
    assert [(k["completion"][0]["content"], k["label"]) for k in kto] == [
        (a.text, False),
        ("The support hotline of Quillmere Robotics is 555-0199.", True),
        (b.text, True),
    ]
    dpo = examples(bot.store, "dpo", user="xiaoming")
    assert dpo == [
        {
            "prompt": [{"role": "user", "content": "星河科技的总部在哪里？"}],
            "chosen": [{"role": "assistant", "content": "星河科技的总部在杭州。"}],
            "rejected": [{"role": "assistant", "content": c.text}],
        }
    ]
    assert examples(bot.store, "dpo", user="nobody") == []


def test_export_writes_jsonl(bot, tmp_path):
    _log(bot)
    path = tmp_path / "out" / "dpo.jsonl"
    assert export(bot.store, "dpo", path) == 2
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all({"prompt", "chosen", "rejected"} == set(r) for r in rows)


def test_cli_export(cli_env, tmp_path):
    empty = run(cli_env, "export", "--format", "sft", "-o", str(tmp_path / "x.jsonl"))
    assert "no sft examples yet" in empty.stdout
    assert_one_line_error(run(cli_env, "export", "--format", "ppo", "-o", "x", ok=False), "unknown format")


def test_reward_pairs_and_policy_gradient_samples(bot):
    q = "Name a colour."
    good = bot.chat(q, user="alice", max_new_tokens=4)
    bot.feedback(good.id, rating=1)
    bad = bot.chat(q, user="alice", max_new_tokens=2)
    bot.feedback(bad.id, rating=-1)
    pg = examples(bot.store, "pg")
    assert [(r["completion"][0]["content"], r["reward"]) for r in pg] == [(good.text, 1.0), (bad.text, -1.0)]
    reward = examples(bot.store, "reward")
    if good.text != bad.text:  # a thumbs-up and a thumbs-down answer to one question make a pair
        assert reward == [
            {
                "prompt": [{"role": "user", "content": q}],
                "chosen": [{"role": "assistant", "content": good.text}],
                "rejected": [{"role": "assistant", "content": bad.text}],
            }
        ]


def test_windows_select_feedback_by_log_position(bot):
    a, b, c = _log(bot)
    rows = sqlite3.connect(bot.store.path).execute("SELECT rowid FROM feedback ORDER BY rowid").fetchall()
    first, last = rows[0][0], rows[-1][0]
    assert len(examples(bot.store, "sft", after=first)) == 1  # only the preferred answer is after the correction
    assert len(examples(bot.store, "sft", upto=first)) == 1
    assert examples(bot.store, "sft", after=last) == []

"""Instant learning end to end on the real embedded model: the very next turn uses what was taught."""

from __future__ import annotations

from dilm.eval import edits


def test_correction_is_used_next_turn_for_paraphrases_and_not_leaked(bot):
    before = bot.chat("What is the capital of France?", user="alice").text
    r = bot.chat("What is the support hotline of Quillmere Robotics?", user="alice")
    assert "555-0199" not in r.text
    bot.feedback(r.id, correction="No, it's 555-0199.")
    for q in [
        "What is the support hotline of Quillmere Robotics?",
        "Which number should I call for Quillmere Robotics support?",
    ]:
        again = bot.chat(q, user="alice")  # a new session each time
        assert "555-0199" in again.text, again.text
        assert any(c["kind"] == "memory" for c in again.citations)
    other = bot.chat("What is the support hotline of Quillmere Robotics?", user="bob")
    assert "555-0199" not in other.text and other.citations == []
    assert bot.chat("What is the capital of France?", user="alice").text == before  # locality


def test_chain_answers_the_newest_value_never_an_older_one(bot):
    q = "Who is the head chef of Marigold Kitchen?"
    for correction in [
        "The head chef of Marigold Kitchen is Tomas Berg.",
        "No, it's Ines Kovac.",
        "Not Ines Kovac but Arlo Finch.",
    ]:
        bot.feedback(bot.chat(q, user="alice", max_new_tokens=4).id, correction=correction)
    reply = bot.chat("Who is Marigold Kitchen's head chef?", user="alice").text
    assert "Arlo Finch" in reply and "Ines Kovac" not in reply and "Tomas Berg" not in reply


def test_chinese_correction_repairs_the_answer(bot):
    r = bot.chat("蓝鲸书店的老板是谁？", user="xiaoming")
    bot.feedback(r.id, correction="不是李雷，而是陈静。")
    again = bot.chat("蓝鲸书店的老板叫什么名字？", user="xiaoming")
    assert "陈静" in again.text and "李雷" not in again.text
    assert again.citations


def test_three_turns_with_the_users_name(bot):
    first = bot.chat("Hi! My name is Alice.", user="alice")
    bot.chat("What is the capital of France?", user="alice", session=first.session_id)
    third = bot.chat("What is my name?", user="alice", session=first.session_id)
    assert "Alice" in third.text
    zh = bot.chat("你好，我叫小明。", user="xiaoming")
    assert "小明" in bot.chat("我叫什么名字？", user="xiaoming", session=zh.session_id).text


def test_teaching_in_chat_and_stated_preferences(bot):
    ack = bot.chat("Remember that the gate code of Birchwood Depot is 4417.", user="alice")
    assert "4417" in ack.text and ack.completion_tokens == 0  # acknowledged without the model
    assert "4417" in bot.chat("What is the gate code of Birchwood Depot?", user="alice").text
    pref = bot.chat("Please answer in Chinese from now on.", user="alice")
    assert "Chinese" in pref.text
    assert bot.profiles.get("alice") == {"language": "zh"}
    short = bot.feedback(ack.id, comment="回答简短一点").effects
    assert any("short" in e for e in short)


def test_bad_answers_are_not_reused_in_the_session(bot):
    r1 = bot.chat("Tell me a joke about cats.", user="alice")
    bot.feedback(r1.id, rating=-1)
    r2 = bot.chat("Another one, please.", user="alice", session=r1.session_id)
    alone = bot.chat("Another one, please.", user="alice")
    assert r2.prompt_tokens == alone.prompt_tokens  # the rated-bad turn is left out of the prompt


def test_eval_edits_runs_on_a_small_slice(bot, backend):
    items, local = edits.load()
    items = [i for i in items if i.lang == "en"][:1] + [i for i in items if i.lang == "zh"][:1]
    report = edits.run(items, local[:2], lambda d: type(bot).open(d, backend=backend, decoding={"max_new_tokens": 24}))
    assert set(report["by_language"]) == {"en", "zh"}
    overall = report["overall"]
    assert overall["edits"] == 2 and overall["leaks"] == 0 and overall["reliability"] is not None
    assert report["latency_ms"]["feedback_p95"] > 0

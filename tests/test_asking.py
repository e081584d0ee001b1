"""Interaction policy: passive / active / hybrid, on the real model, in English and Chinese."""

from __future__ import annotations

import pytest

from dilm import Assistant, asking


@pytest.fixture
def open_bot(data_dir, backend):
    bots = []

    def make(mode: str, **settings) -> Assistant:  # type: ignore[no-untyped-def]
        b = Assistant.open(
            data_dir, backend=backend, decoding={"max_new_tokens": 16}, policy={"mode": mode, **settings}
        )
        bots.append(b)
        return b

    yield make
    for b in bots:
        b.close()


def asked(r) -> str | None:  # type: ignore[no-untyped-def]
    p = r.checks.get("policy", {})
    return p.get("signal") if p.get("action") == "ask" else None


@pytest.mark.parametrize(
    ("teach", "question", "reply", "answer"),
    [
        (
            [
                "Remember that the support hotline of Brindle Apps is 555-0142.",
                "Remember that the support hotline of Carrow Tools is 555-0177.",
            ],
            "What is the support hotline?",
            "Carrow Tools",
            "555-0177",
        ),
        (["记住：松岭中学的校长是林若溪。", "记住：白鹭小学的校长是周承安。"], "校长是谁？", "松岭中学", "林若溪"),
    ],
)
def test_an_ambiguous_question_gets_a_clarifying_question_under_active_and_hybrid_not_passive(
    open_bot, teach, question, reply, answer
):
    bot = open_bot("passive")
    for t in teach:
        bot.chat(t, user="ann")
    passive = bot.chat(question, user="ann")
    assert asked(passive) is None and passive.checks.get("policy") is None
    for mode in ("active", "hybrid"):
        bot = open_bot(mode)
        r = bot.chat(question, user="ann")
        assert asked(r) == "ambiguous" and r.candidates == []  # asked instead of generating
        options = r.checks["policy"]["options"]
        assert len(options) == 2 and all(o in r.text for o in options) and r.text.endswith(("?", "？"))
        follow = bot.chat(reply, user="ann", session=r.session_id)
        assert answer in follow.text and follow.checks["policy"]["clarified"] == question


def test_a_dangling_reference_is_asked_about_only_without_context(open_bot):
    bot = open_bot("hybrid")
    bot.chat("Remember that Olwen Pike is 42 years old.", user="ann")
    r = bot.chat("How old is she?", user="ann")
    assert asked(r) == "reference" and '"she"' in r.text
    assert "42" in bot.chat("Olwen Pike", user="ann", session=r.session_id).text
    zh = bot.chat("他的生日是哪天？", user="ann")
    assert asked(zh) == "reference" and "“他”" in zh.text
    s = bot.chat("Tell me about Olwen Pike.", user="ann").session_id
    assert asked(bot.chat("How old is she?", user="ann", session=s)) is None  # the session says who
    assert asked(open_bot("passive").chat("How old is she?", user="ann")) is None


def test_a_correction_against_global_knowledge_gets_a_confirmation_question(open_bot):
    bot = open_bot("hybrid")
    bot.memories.add("The head office of Dunmore Bank is in Leeds.", global_=True)
    r = bot.chat("Where is the head office of Dunmore Bank?", user="ann")
    assert "Leeds" in r.text
    fb = bot.feedback(r.id, correction="No, it's in York.")
    assert fb.question is not None and "York" in fb.question and "Leeds" in fb.question
    ack = bot.chat("yes", user="ann")
    assert ack.checks["policy"] == {"action": "resolved", "kind": "confirm", "answer": "yes"} and "York" in ack.text
    again = bot.chat("Where is the head office of Dunmore Bank?", user="ann")
    assert "York" in again.text and asked(again) is None and again.checks.get("policy") is None  # asked once only
    assert "Leeds" in bot.chat("Where is the head office of Dunmore Bank?", user="bob").text  # others keep global


def test_no_to_the_confirmation_retracts_the_users_value_chinese(open_bot):
    bot = open_bot("active")
    bot.memories.add("翠谷公园的门票是二十元。", global_=True)
    r = bot.chat("翠谷公园的门票是多少？", user="li")
    fb = bot.feedback(r.id, correction="不对，应该是三十元。")
    assert fb.question and "三十元" in fb.question and "二十元" in fb.question
    ack = bot.chat("不对", user="li")
    assert "二十元" in ack.text and any(e.startswith("retracted fact") for e in ack.checks["effects"])
    assert "二十元" in bot.chat("翠谷公园的门票是多少？", user="li").text


def test_passive_never_asks_even_on_a_conflict(open_bot):
    bot = open_bot("passive")
    bot.memories.add("The founder of Pellow Games is Ada Crane.", global_=True)
    r = bot.chat("Who is the founder of Pellow Games?", user="ann")
    fb = bot.feedback(r.id, correction="The founder of Pellow Games is Rhys Tallow.")
    assert fb.question is None
    later = bot.chat("Who is the founder of Pellow Games?", user="ann")
    assert "Rhys Tallow" in later.text and later.checks.get("policy") is None


def test_the_users_own_newer_correction_is_answered_at_once_and_a_reverted_value_is_confirmed(open_bot):
    bot = open_bot("hybrid")
    q = "What is the gate code of Ashby Yard?"
    for code in ("4417", "9902"):
        r = bot.chat(q, user="ann")
        assert bot.feedback(r.id, correction=f"The gate code of Ashby Yard is {code}.").question is None
    newest = bot.chat(q, user="ann")
    assert "9902" in newest.text and asked(newest) is None  # an update chain: the newest value, no question
    bot.feedback(newest.id, correction="The gate code of Ashby Yard is 4417.")
    back = bot.chat(q, user="ann")
    assert "4417" in back.text and back.checks["policy"]["signal"] == "reverted" and "9902" in back.text
    assert back.text.index("4417") < back.text.index("9902")  # the answer first, then the question
    assert bot.chat("yes", user="ann").checks["policy"]["answer"] == "yes"
    assert asked(bot.chat(q, user="ann")) is None


def test_an_unsure_answer_asks_and_the_reply_becomes_feedback(open_bot):
    bot = open_bot("active", min_logprob=0.0)  # every unbacked answer counts as unsure
    r = bot.chat("What is the capital of Australia?", user="ann")
    assert r.checks["policy"]["signal"] == "confidence" and r.text.endswith("tell me the correct one.")
    fixed = bot.chat("No, it's Canberra.", user="ann", session=r.session_id)
    assert fixed.checks["policy"]["kind"] == "unsure"
    assert [f["kind"] for f in bot.history(user="ann", limit=10)[1]["feedback"]] == ["correction"]
    assert "Canberra" in open_bot("passive").chat("What is the capital of Australia?", user="ann").text


def test_policy_per_user_from_the_profile(open_bot):
    bot = open_bot("passive")
    bot.chat("Remember that Olwen Pike is 42 years old.", user="ann")
    bot.profiles.set("ann", policy="active")
    assert asked(bot.chat("How old is she?", user="ann")) == "reference"
    assert asked(bot.chat("How old is she?", user="bob")) is None


def test_signals_without_the_model():
    assert asking.dangling_reference("What is its address?", False) == "its"
    assert asking.dangling_reference("Is it going to rain today?", False) is None
    assert asking.dangling_reference("When did Marie Curie say she was born?", False) is None
    assert asking.dangling_reference("陈墨白给他的猫起了什么名字？", False) is None
    assert asking.dangling_reference("那他多大了？", False) == "他"
    assert asking.dangling_reference("How old is he?", True) is None
    assert asking.yes_or_no("Yes.") == "yes" and asking.yes_or_no("是的") == "yes"
    assert asking.yes_or_no("no") == "no" and asking.yes_or_no("不对") == "no"
    assert asking.yes_or_no("No, it's York.") is None and asking.yes_or_no("Yesterday it rained") is None
    outcomes = [asking.Outcome(-3.0 + i / 10, bad=i < 3) for i in range(30)]
    t = asking.tune(outcomes, budget=0.15)
    assert t is not None and -2.8 < t < -2.6  # below it, every logged answer was corrected
    assert asking.tune(outcomes[:10], budget=0.15) is None  # too few outcomes: do not ask on confidence
    assert asking.tune([asking.Outcome(-1.0, False)] * 40, budget=0.15) is None


def test_the_scripted_conversations_hold_through_the_cli(tmp_path):
    """scripts/guard_demo.sh: a confirmation question for a correction against global knowledge, and a
    clarifying question for an ambiguous one under active and hybrid but not passive."""
    from pathlib import Path

    from tests import waiting

    script = Path(__file__).parent.parent / "scripts" / "guard_demo.sh"
    what = "scripts/guard_demo.sh to finish"
    done = waiting.run(["bash", str(script), str(tmp_path / "demo")], what, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Is York right for you?" in done.stdout and "== all steps held" in done.stdout
    assert done.stdout.count("Which one do you mean") == 2


def test_eval_guard_runs_on_a_small_slice(backend):
    from dilm.eval import guard

    edits, traps, quiz = guard.load()
    traps = [t for t in traps if t.id in ("amb-en-1", "con-zh-1")]
    report = guard.run(
        edits[:1],
        traps,
        quiz[:4],
        lambda d, mode: Assistant.open(d, backend=backend, decoding={"max_new_tokens": 12}, policy={"mode": mode}),
    )
    p = report["policies"]
    assert p["passive"]["asks"] == 0 and p["passive"]["questions"] == p["hybrid"]["questions"] == 3 + 2 + 2
    assert p["hybrid"]["by_kind"]["ambiguous"] == {"questions": 1, "asks": 1, "errors": 0}
    assert p["active"]["by_kind"]["conflict"]["asks"] == 1
    assert report["contradictions"]["after"] == 0 and report["contradictions"]["answers"] > 0
    rm = report["reward_model"]  # trained on whatever pairs so small a log holds, gated on held-out accuracy
    assert rm["message"].startswith(("reward model v", "nothing to train"))
    assert "version" not in rm or (0 <= rm["accuracy"] <= 1 and rm["held_out"] >= 1)
    assert report["latency_ms"]["guard_p95"] >= 0

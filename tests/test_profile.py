"""Profiles: preferences learned from what users say (English and Chinese), viewable and editable."""

from __future__ import annotations

import json

import pytest

from dilm.errors import InvalidInputError
from tests.test_cli import assert_one_line_error, run


def test_stated_preferences_build_the_profile_in_english_and_chinese(bot):
    bot.chat("Please keep your answers short from now on.", user="alice")
    bot.chat("以后请用中文回答。", user="xiaoming")
    assert bot.profiles.get("alice") == {"verbosity": "short"}
    assert bot.profiles.get("xiaoming") == {"language": "zh"}
    assert bot.profiles.get("nobody") == {}


def test_set_and_reset_change_later_turns(bot):
    assert bot.profiles.set("alice", language="zh", verbosity="long") == {"language": "zh", "verbosity": "long"}
    assert bot.profiles.set("alice", verbosity=None) == {"language": "zh"}
    bot.set_user_decoding("alice", max_new_tokens=20)
    bot.profiles.reset("alice")
    assert bot.profiles.get("alice") == {}
    assert bot.decoding_for("alice").max_new_tokens == 20  # other per-user settings stay
    with pytest.raises(InvalidInputError, match="unknown profile key"):
        bot.profiles.set("alice", mood="grumpy")
    with pytest.raises(InvalidInputError, match="language must be one of"):
        bot.profiles.set("alice", language="fr")


def test_profile_cli(cli_env):
    shown = run(cli_env, "profile", "set", "language=zh", "verbosity=short", "--user", "小明")
    assert json.loads(shown.stdout) == {"language": "zh", "verbosity": "short"}
    assert json.loads(run(cli_env, "profile", "show", "--user", "小明").stdout)["language"] == "zh"
    assert "reset" in run(cli_env, "profile", "reset", "--user", "小明").stdout
    assert json.loads(run(cli_env, "profile", "show", "--user", "小明").stdout) == {
        "learned": {"topics": [], "reasons": {}}
    }
    assert_one_line_error(run(cli_env, "profile", "set", "tone", ok=False), "expected KEY=VALUE")
    assert_one_line_error(run(cli_env, "profile", "set", "verbosity=huge", ok=False), "verbosity must be one of")


def test_tone_format_and_banned_terms_in_english_and_chinese(bot):
    for text in ("Please be more formal from now on.", "Use bullet points.", "Never mention Globex."):
        assert bot.chat(text, user="ann").text.startswith("Understood: from now on I will")
    assert bot.profiles.get("ann") == {"tone": "formal", "format": "list", "avoid": "Globex"}
    for text in ("以后随意一点。", "不要分点，用段落。", "不要提到环球公司"):
        assert bot.chat(text, user="李雷").text.startswith("好的，从现在起我会")
    assert bot.profiles.get("李雷") == {"tone": "casual", "format": "plain", "avoid": "环球公司"}
    bot.chat("Don't use the word synergy.", user="ann")
    assert bot.profiles.get("ann")["avoid"] == "Globex, synergy"  # banned terms add up
    with pytest.raises(InvalidInputError, match="at most 200 characters"):
        bot.profiles.set("ann", avoid="x" * 201)


def test_a_banned_term_is_a_hard_guard_rule_on_real_answers(bot):
    q = "What is the capital of France?"
    assert "Paris" in bot.chat(q, user="ann").text
    bot.profiles.set("ann", avoid="Paris")
    r = bot.chat(q, user="ann")
    assert "paris" not in r.text.lower()
    assert r.checks["guard"]["rules"] == ["profile-avoid"] and r.checks["guard"]["action"] != "ok"
    assert "Paris" in bot.chat(q, user="bob").text  # another user's profile is theirs alone


def test_soft_profile_constraints_are_reported_not_enforced(bot):
    bot.profiles.set("xiaoming", language="zh")
    r = bot.chat("What is the capital of France?", user="xiaoming")  # the 135M model cannot write Chinese
    assert r.checks["guard"]["action"] == "ok" and [v["rule"] for v in r.checks["guard"]["violations"]] == [
        "profile-language"
    ]


def test_learned_topics_and_reason_tags(bot):
    for q in ("How do tides work?", "Why are tides higher in spring?", "What causes ocean tides?"):
        r = bot.chat(q, user="ann")
    bot.feedback(r.id, rating=-1, reason=["too long", "not factually correct"])
    learned = bot.profiles.learned("ann")
    assert "tides" in learned["topics"] and learned["reasons"] == {"too long": 1, "not factually correct": 1}
    assert bot.profiles.get("ann") == {"verbosity": "short"}  # "too long" is a stated preference too

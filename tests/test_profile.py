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
    assert json.loads(run(cli_env, "profile", "show", "--user", "小明").stdout) == {}
    assert_one_line_error(run(cli_env, "profile", "set", "tone", ok=False), "expected KEY=VALUE")
    assert_one_line_error(run(cli_env, "profile", "set", "verbosity=huge", ok=False), "verbosity must be one of")

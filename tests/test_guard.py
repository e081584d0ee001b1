"""Deployment rules (rules.toml): each rule type, bad files, and the guard on real answers."""

from __future__ import annotations

import os
import time

import pytest

from dilm import Assistant
from dilm.errors import ConfigError
from dilm.guard.rules import RulesFile, check, parse

RULES = """
[[rule]]
name = "no-competitors"
reason = "we do not recommend competitors"
kind = "keyword"
keywords = ["Globex", "环球公司"]
when = "(?i)recommend|推荐"

[[rule]]
name = "no-card-numbers"
reason = "never repeat card numbers"
kind = "regex"
pattern = "\\\\b\\\\d{4}[- ]?\\\\d{4}[- ]?\\\\d{4}[- ]?\\\\d{4}\\\\b"

[[rule]]
name = "hotline"
reason = "support answers give the hotline"
kind = "must_mention"
text = "555-0199"
when = "(?i)support|客服"
hard = false

[[rule]]
name = "no-guarantees"
reason = "we promise nothing"
kind = "must_not_mention"
text = "guaranteed"
"""


def names(violations) -> list[str]:  # type: ignore[no-untyped-def]
    return [v.rule for v in violations]


def test_each_rule_type_in_english_and_chinese():
    rules = parse(RULES)
    assert names(check(rules, "Can you recommend a vendor?", "Try GLOBEX, they are great.")) == ["no-competitors"]
    assert names(check(rules, "请推荐一家供应商", "可以试试环球公司。")) == ["no-competitors"]
    assert check(rules, "Who makes anvils?", "Globex does.") == []  # `when` does not match: the rule is off
    assert names(check(rules, "What was my card?", "It was 4111 1111 1111 1111.")) == ["no-card-numbers"]
    support = check(rules, "How do I reach support?", "Write an email.")
    assert names(support) == ["hotline"] and not support[0].hard
    assert check(rules, "客服电话是多少？", "请拨打555-0199。") == []
    assert names(check(rules, "Will it work?", "Success is GUARANTEED.")) == ["no-guarantees"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rule]\nname = 'x'", "line 1, column"),
        ("[[rule]]\nname = 'x'\nreason = 'y'\nkind = 'regex'\npattern = '('", "rule x: pattern"),
        ("[[rule]]\nname = 'x'\nreason = 'y'\nkind = 'keyword'", "needs `keywords`"),
        ("[[rule]]\nname = 'x'\nreason = 'y'\nkind = 'shout'\ntext = 'a'", "rule x: kind"),
        ("[[rules]]\nname = 'x'", "unknown table 'rules'"),
        (
            "[[rule]]\nname='a'\nreason='r'\nkind='regex'\npattern='a'\n[[rule]]\nname='a'\nreason='r'\nkind='regex'\npattern='b'",
            "two rules",
        ),
    ],
)
def test_a_malformed_rules_file_is_a_clear_error(text, message):
    with pytest.raises(ConfigError, match=message):
        parse(text)


def test_a_bad_edit_keeps_the_rules_in_force(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(RULES, encoding="utf-8")
    rules = RulesFile(tmp_path)
    assert len(rules.rules) == 4
    path.write_text("[[rule]\nbroken", encoding="utf-8")
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert len(rules.refresh()) == 4 and "line 1" in (rules.error or "")
    with pytest.raises(ConfigError, match="line 1, column"):
        Assistant.open(tmp_path)  # at open, a bad file is an error, not silence


def test_a_rule_that_matches_everything_gets_an_honest_refusal_not_silence(data_dir, backend):
    data_dir.mkdir(parents=True)
    (data_dir / "rules.toml").write_text(
        '[[rule]]\nname = "closed"\nreason = "this assistant is closed for maintenance"\n'
        'kind = "regex"\npattern = "."\n',
        encoding="utf-8",
    )
    with Assistant.open(data_dir, backend=backend, decoding={"max_new_tokens": 12}) as bot:
        r = bot.chat("What is the capital of France?")
        assert r.text == "I can't answer that as asked: this assistant is closed for maintenance (closed)."
        assert r.checks["guard"]["action"] == "refused" and r.checks["guard"]["violations"][0]["rule"] == "closed"
        zh = bot.chat("法国的首都是哪里？")
        assert zh.text.startswith("我不能按要求回答这个问题") and "closed" in zh.text
        streamed = bot.stream("Name a colour.")
        assert "".join(streamed).startswith("I can't answer that")  # held back, then sent once
        assert bot.history(limit=1)[-1]["meta"]["guard"]["action"] == "refused"  # the log says why


def test_answers_that_keep_the_rules_pass_unchanged(data_dir, backend):
    data_dir.mkdir(parents=True)
    (data_dir / "rules.toml").write_text(RULES, encoding="utf-8")
    with Assistant.open(data_dir, backend=backend, decoding={"max_new_tokens": 12}) as bot:
        plain = Assistant.open(data_dir / "plain", backend=backend, decoding={"max_new_tokens": 12})
        q = "What is the capital of France?"
        r = bot.chat(q)
        assert r.text == plain.chat(q).text and r.checks["guard"]["action"] == "ok"
        plain.close()


def test_an_answer_contradicting_a_current_fact_is_caught(bot):
    from dilm.guard.contradiction import contradictions, repaired

    bot.facts.add("Quillmere Robotics", "support hotline", "555-0199", user="alice")
    bot.facts.add("Quillmere Robotics", "support hotline", "555-0100", global_=True)
    scopes = ["user:alice", "global"]
    wrong = "The support hotline of Quillmere Robotics is 555-1234."
    (c,) = contradictions(bot.store, scopes, wrong)
    assert c.said == "555-1234" and c.fact.object == "555-0199"  # the user's own fact before global knowledge
    assert repaired(c, "en") == "The support hotline of Quillmere Robotics is 555-0199."
    assert contradictions(bot.store, scopes, "The support hotline of Quillmere Robotics is 555-0199.") == []
    assert contradictions(bot.store, ["user:bob", "global"], "Quillmere Robotics's support hotline is 555-0100.") == []
    assert contradictions(bot.store, scopes, "Quillmere Robotics makes robots.") == []  # another relation
    bot.facts.add("蓝鲸书店", "老板", "陈静", user="alice")
    (zh,) = contradictions(bot.store, scopes, "蓝鲸书店的老板是李雷。")
    assert zh.fact.object == "陈静" and "陈静" in repaired(zh, "zh")

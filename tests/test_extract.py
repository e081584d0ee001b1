"""Rule-based extraction, English and Chinese: statements, value-only corrections, questions."""

from __future__ import annotations

import json

import pytest

from dilm.facts.extract import (
    USER,
    Triple,
    correction_value,
    extract,
    is_teaching,
    parse_question,
    render,
    render_ended,
)


@pytest.mark.parametrize(
    "text,triple",
    [
        ("The support hotline of Acme Robotics is 555-0199.", ("Acme Robotics", "support hotline", "555-0199")),
        ("Acme Robotics's CEO is Mira Quell.", ("Acme Robotics", "ceo", "Mira Quell")),
        ("No, the Acme support hotline is 555-0199.", ("Acme", "support hotline", "555-0199")),
        ("Dr. Lena Ortiz lives in Port Averly.", ("Dr. Lena Ortiz", "lives in", "Port Averly")),
        ("Brightwater Café opens at 7:30 am.", ("Brightwater Café", "opening time", "7:30 am")),
        ("My name is Alice.", (USER, "name", "Alice")),
        ("I live in Lisbon.", (USER, "lives in", "Lisbon")),
        ("Remember that my dog is called Rex.", (USER, "dog name", "Rex")),
        ("Sorry, it moved: Project Nimbus launches on June 9.", ("Project Nimbus", "launches on", "June 9")),
        ("星河科技的总部在杭州。", ("星河科技", "headquarters", "杭州")),
        ("小明的老师是王芳", ("小明", "老师", "王芳")),
        ("我叫小明。", (USER, "name", "小明")),
        ("记住：Acme的客服热线是555-0199", ("Acme", "客服热线", "555-0199")),
        ("星河科技总部位于杭州", ("星河科技", "headquarters", "杭州")),
        ("其实，蓝鲸书店的老板是陈静。", ("蓝鲸书店", "老板", "陈静")),
    ],
)
def test_statements(text, triple):
    assert extract(text) == [Triple(*triple)]


@pytest.mark.parametrize(
    "text,triples",
    [
        ("Hi, my name is Alice.", [(USER, "name", "Alice")]),
        ("Hello there, I am Bob and I live in Rome.", [(USER, "name", "Bob"), (USER, "lives in", "Rome")]),
        ("My name is Alice and I live in Lisbon.", [(USER, "name", "Alice"), (USER, "lives in", "Lisbon")]),
        ("你好，我叫小明。", [(USER, "name", "小明")]),
    ],
)
def test_first_person_clauses(text, triples):
    assert extract(text) == [Triple(*t) for t in triples]


@pytest.mark.parametrize(
    "text", ["It's not 555-0100 but 555-0199.", "不是北京，而是杭州。", "What is the capital?", "好的"]
)
def test_no_triple_from_negations_or_questions(text):
    assert extract(text) == []


@pytest.mark.parametrize(
    "text,value",
    [
        ("No, it's 555-0199.", ("555-0199", None)),
        ("It should be Tarnis.", ("Tarnis", None)),
        ("Wrong, the answer is 42 km.", ("42 km", None)),
        ("It's not 555-0100 but 555-0199.", ("555-0199", "555-0100")),
        ("No, it is not June 9 but July 21.", ("July 21", "June 9")),
        ("They changed it, it's now birch-falcon-31.", ("birch-falcon-31", None)),
        ("Actually, it's Mira Quell.", ("Mira Quell", None)),
        ("不是北京，而是杭州。", ("杭州", "北京")),
        ("应该是杭州。", ("杭州", None)),
        ("改为李华。", ("李华", None)),
        ("错了，是王芳", ("王芳", None)),
        ("答案是三十二。", ("三十二", None)),
        ("The Acme support hotline is 555-0199.", None),
        ("It's 42, not 40.", ("42", "40")),
        ("Hmm no, that's wrong. It's Bristol.", ("Bristol", None)),
        ("It opens at 9.", ("9", None)),
        ("Its name is Bramble.", ("Bramble", None)),
        ("是周五，不是周四。", ("周五", "周四")),
        ("是周五才对。", ("周五", None)),
        ("应该改成周五", ("周五", None)),
        ("错，答案应该是42公斤。", ("42公斤", None)),
    ],
)
def test_correction_values(text, value):
    assert correction_value(text) == value


@pytest.mark.parametrize(
    "question,parsed",
    [
        ("What is the support hotline of Acme Robotics?", ("Acme Robotics", "support hotline")),
        ("What is Acme's hotline?", ("Acme", "hotline")),
        ("What is the Acme support hotline?", ("Acme", "support hotline")),
        ("Who is the CEO of Zorblat?", ("Zorblat", "ceo")),
        ("What is my name?", (USER, "name")),
        ("Where do I live?", (USER, "lives in")),
        ("Where does Dr. Lena Ortiz live?", ("Dr. Lena Ortiz", "lives in")),
        ("When does Brightwater Café open?", ("Brightwater Café", "opening time")),
        ("星河科技的总部在哪里？", ("星河科技", "headquarters")),
        ("星河科技总部设在哪个城市？", ("星河科技", "headquarters")),
        ("小明的老师是谁？", ("小明", "老师")),
        ("我叫什么名字？", (USER, "name")),
        ("Who founded Brightline Labs?", ("Brightline Labs", "founder")),
        ("How heavy is the Gorvane anvil?", ("Gorvane anvil", "weight")),
        ("Which city is Tarnwick Ferries based in?", ("Tarnwick Ferries", "location")),
        ("灰雀咖啡早上几点开门？", ("灰雀咖啡", "opening time")),
        (
            "What time does the Maplehurst Farmers' Market close on Saturdays?",
            ("Maplehurst Farmers' Market", "closing time"),
        ),
        # asking phrases around the question, embedded word order, spoken particles
        ("remind me who my boss is", (USER, "boss")),
        ("Do you remember where I live?", (USER, "lives in")),
        ("Could you tell me where Dr. Lena Ortiz lives?", ("Dr. Lena Ortiz", "lives in")),
        ("灰雀咖啡几点开门来着？", ("灰雀咖啡", "opening time")),
        ("我哥哥叫什么你还记得吗", ("user's 哥哥", "name")),
        # what a Chinese question word counts names the relation
        ("体检是哪天？", ("体检", "date")),
        ("周会几点？", ("周会", "time")),
        ("那台投影仪多少钱", ("那台投影仪", "price")),
        ("现在几点", None),
    ],
)
def test_questions(question, parsed):
    assert parse_question(question) == parsed


def test_render_in_both_languages():
    assert render("Acme", "support hotline", "555-0199", "en") == "The support hotline of Acme is 555-0199."
    assert render("星河科技", "headquarters", "杭州", "zh") == "星河科技的总部在杭州。"
    assert render(USER, "name", "Alice", "en") == "Your name is Alice."
    assert render(USER, "name", "小明", "zh") == "你叫小明。"


def test_relations_named_in_english_read_as_chinese_in_a_chinese_sentence():
    assert render(USER, "favourite 颜色", "墨绿色", "zh") == "你最喜欢的颜色是墨绿色。"
    assert render("团建", "date", "5月26号", "zh") == "团建的日期是5月26号。"
    assert render_ended(USER, "habit", "抽烟", "zh") == "你已经不抽烟了。"
    assert render_ended(USER, "habit", "smoking", "en") == "You stopped smoking."


def test_teaching_phrases():
    assert is_teaching("Remember that the gate code is 4417.")
    assert is_teaching("记住：小明的老师是王芳")
    assert not is_teaching("Do you remember my name?")


def test_model_output_is_parsed_tolerantly():
    from dilm.facts.model_extract import parse

    reply = (
        'Sure! ```json\n{"act": "statement", "facts": [["Acme", "CEO", "Mira Quell", "current", "", ""], '
        '["I", "lives in", "Lisbon", "past", "", "2016"]]}\n```'
    )
    claims = parse(reply).claims
    assert [c.triple for c in claims] == [Triple("Acme", "ceo", "Mira Quell"), Triple(USER, "lives in", "Lisbon")]
    assert claims[1].past and claims[1].invalid_at == "2016" and claims[0].source == "model"
    objects = parse('{"act": "statement", "facts": [{"subject": "星河科技", "relation": "总部", "object": "杭州"}]}')
    assert [c.triple for c in objects.claims] == [Triple("星河科技", "headquarters", "杭州")]
    assert parse("no json here").claims == () and parse('{"facts": [["only two", "items"], 5, [1, 2, 3]]}').claims == ()
    assert parse('{"act": "instruction", "facts": [["user", "likes", "x", "current", "", ""]]}').instruction


def test_model_facts_not_in_the_message_are_dropped():
    from dilm.facts.model_extract import parse

    def read(text, *rows):
        return [
            c.triple
            for c in parse(json.dumps({"act": "statement", "facts": [[*r, "current"] for r in rows]}), text).claims
        ]

    assert read("Whitby has a lighthouse.", ["Whitby", "location", "London"]) == []  # an invented value
    # the speaker is the subject only of what the speaker says about themselves
    assert read("苏念安开的是一辆云豹E7。", ["user", "drives", "云豹E7"]) == []
    assert read("我开的是一辆云豹E7。", ["user", "drives", "云豹E7"]) == [Triple(USER, "drives", "云豹E7")]
    assert read("She moved to Oslo.", ["user's sister", "lives in", "Oslo"]) == [
        Triple("user's sister", "lives in", "Oslo")
    ]
    assert read("Tomas moved to Oslo.", ["user's sister", "lives in", "Oslo"]) == []
    # a value read both as current and as over: the message said it is over
    both = [["user", "drives", "青橙S2", "past"], ["user", "vehicle", "青橙S2", "current"]]
    read_both = parse(json.dumps({"act": "statement", "facts": both}), "之前那辆青橙S2我开了三年")
    assert [(c.triple, c.past) for c in read_both.claims] == [(Triple(USER, "drives", "青橙S2"), True)]
    # an act is not a value
    assert read("I quit Brightmoor.", ["user", "job title", "quit"]) == []
    assert read("我不喝咖啡。", ["user", "habit", "不喝咖啡"]) == []
    assert read("My favourite colour is red.", ["user", "favourite colour", "red"]) == [
        Triple(USER, "favourite colour", "red")
    ]


def test_hybrid_asks_the_model_only_for_what_the_rules_left_and_keeps_only_that():
    from types import SimpleNamespace

    from dilm.facts.model_extract import hybrid, parse

    class Scripted:  # the model's reply is fixed: what matters is what hybrid keeps of it
        def __init__(self, facts):
            self.facts, self.calls = facts, 0

        def generate(self, *a, **k):
            self.calls += 1
            return [SimpleNamespace(text=json.dumps({"act": "statement", "facts": self.facts}))]

    # a value the rules read ("quit Brightmoor") is not the model's to read again as something else
    model = Scripted([["user", "job title", "quit", "current"], ["user", "friend", "Dana", "current"]])
    read = hybrid(model, "I quit Brightmoor. Spent my last day there hugging Dana.")
    assert model.calls == 1
    assert [c.triple for c in read.claims] == [Triple(USER, "works at", "Brightmoor"), Triple(USER, "friend", "Dana")]
    # hypotheticals and questions state nothing: the model is not asked
    for text in [
        "If I lived in Paris I'd eat croissants every day.",
        "yeah I'd probably last a week",
        "要是我住在大理就好了",
    ]:
        idle = Scripted([["user", "lives in", "Paris", "current"]])
        assert hybrid(idle, text).claims == () and idle.calls == 0, text
    # a word for one of the speaker's people is never their name
    kin = [["user's mother", "name", "mum", "current"], ["user's mother", "job title", "retired teacher", "current"]]
    read = parse(json.dumps({"act": "statement", "facts": kin}), "My mum's a retired teacher.")
    assert [c.triple for c in read.claims] == [Triple("user's mother", "job title", "retired teacher")]


def test_model_reading_falls_back_to_rules(backend):
    from dilm.facts.model_extract import analyze_with_model

    class Broken:
        def generate(self, *a, **k):
            raise RuntimeError("server down")

    claims = analyze_with_model(Broken(), "星河科技的总部在杭州。").claims
    assert [c.triple for c in claims] == [Triple("星河科技", "headquarters", "杭州")]
    read = analyze_with_model(backend, "The CEO of Zorblat is Mira Quell.")  # the real model, constrained to JSON
    assert read.act in ("statement", "chatter", "question") and all(c.source == "model" for c in read.claims)

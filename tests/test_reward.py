"""The reward model: trained from a small real log, versioned in the registry, reranking candidates."""

from __future__ import annotations

import pytest

from dilm.learning import reward

FACTS = [
    ("What is the support hotline of Quillmere Robotics?", "The support hotline of Quillmere Robotics is 555-0199."),
    ("Who is the CEO of Vantrelle Foods?", "Vantrelle Foods's CEO is Mira Quell."),
    ("Where does Dr. Ysolde Marrick live?", "Dr. Ysolde Marrick lives in Port Averly."),
    ("What is the capital of Australia?", "The capital of Australia is Canberra."),
    ("Who wrote the novel Tidewater Hymn?", "Tidewater Hymn was written by Oren Vasquez."),
    ("What is the Wi-Fi password of Hotel Drummond?", "The Wi-Fi password of Hotel Drummond is tidal-kite-97."),
    ("蓝鲸书店的老板是谁？", "蓝鲸书店的老板是陈静。"),
    ("云栖湖书店几点开门？", "云栖湖书店早上九点半开门。"),
    ("北辰大学的校训是什么？", "北辰大学的校训是笃行。"),
    ("翠谷公园的门票是多少？", "翠谷公园的门票是三十元。"),
    ("How many moons does the planet Verdance have?", "The planet Verdance has three moons."),
    ("When was Larkfield School founded?", "Larkfield School was founded in 1911."),
]


def test_the_reward_trainer_learns_preferences_and_generalizes(tmp_path):
    from dilm.config import Settings
    from dilm.models.catalogue import resolve_model_dir

    settings = Settings.load(None)
    _, base = resolve_model_dir(settings.model, settings.resolved_cache_dir())
    pairs = []
    for q, good in FACTS:
        pairs.append(reward.Pair(q, good, "I'm sorry, I am not able to help with that request right now."))
        pairs.append(reward.Pair(q, good, good.split()[0] + " " + " ".join(["and so on"] * 12)))
    train, test = pairs[:16], pairs[16:]
    model, losses = reward.fit(base, train, tmp_path / "rm")
    assert losses[-1] < losses[0]
    assert model.accuracy(test) >= 0.75  # questions it never saw, English and Chinese
    flipped = [reward.Pair(p.question, p.rejected, p.chosen) for p in test]
    assert model.accuracy(flipped) <= 0.25  # it is not guessing: swap the pair and it disagrees
    reloaded = reward.RewardModel.load(base, tmp_path / "rm")  # a plain PEFT folder
    q, a = test[0].question, [test[0].chosen, test[0].rejected]
    assert reloaded.score(q, a) == pytest.approx(model.score(q, a), abs=1e-4)


def test_split_keeps_each_question_on_one_side():
    pairs = [reward.Pair(q, f"a{i}", f"b{i}") for i, (q, _) in enumerate(FACTS * 3)]
    train, test = reward.split(pairs)
    assert train and test and not {p.question for p in train} & {p.question for p in test}


def test_training_from_the_log_versioning_rollback_and_rerank(bot):
    for q, good in FACTS:
        r = bot.chat(q, user="ann")
        bot.feedback(r.id, correction=good)
    result = bot.train(scope="reward", force=True)
    assert result.status in ("accepted", "rejected") and result.version is not None
    report = result.report
    assert 8 <= report["pairs"] + report["held_out"] <= len(FACTS) and report["held_out"] >= 1
    assert 0.0 <= report["accuracy"] <= 1.0 and "held-out pairwise accuracy" in result.message
    (v,) = bot.adapters.list(scope="reward")
    assert v.scope == "reward" and (bot.adapters.folder(v) / "adapter_config.json").is_file()
    assert bot.train(scope="reward").status == "nothing"  # no feedback since: nothing new to learn
    if result.status != "accepted":
        return
    r = bot.chat("Tell me a fun fact.", user="bob", strategy="sample", n=3, seed=1)
    scores = r.checks["guard"]["reward"]["scores"]
    assert len(scores) == 3 and r.checks["guard"]["reward"]["version"] == v.version
    assert scores[r.checks["guard"]["reward"]["chosen"]] == max(scores)
    model = bot.reranker.models[v.version]  # each version is loaded once
    again = model.score("Tell me a fun fact.", [c.text for c in r.candidates])
    assert again == sorted(again, reverse=True)  # served best first
    assert r.text == r.candidates[0].text or r.candidates[0].text == ""
    # adversarial refresh: the answer it chose is corrected, so it becomes a hard negative next time
    bot.feedback(r.id, correction="Octopuses have three hearts.")
    assert reward.hard_negatives(bot.store) == {("Tell me a fun fact.", r.text)}
    assert bot.adapters.rollback("reward") is None and bot.adapters.live(["reward"]) is None


def test_the_reward_base_is_the_smallest_installed_model_that_reads_the_served_languages(tmp_path):
    from dilm.config import Settings

    def base(**kw):
        return reward.base_model_for(Settings.load(None, **kw))

    # scripts/setup.sh --dev installs qwen2.5-coder-0.5b: it reads English and Chinese, as the 1.5B default does
    assert base(model="qwen2.5-coder-1.5b") == "qwen2.5-coder-0.5b"
    assert base(model="qwen2.5-coder-0.5b") == "qwen2.5-coder-0.5b"
    assert base(model="smollm2-135m") == "smollm2-135m"  # English only: the smallest one will do
    # with nothing else installed, the served model itself
    assert base(model="qwen2.5-coder-1.5b", cache_dir=str(tmp_path)) == "qwen2.5-coder-1.5b"
    local = tmp_path / "own.gguf"
    assert base(model=str(local)) == str(local)  # not in the catalogue: nothing is known about its languages
    assert base(backend="openai", model="gpt-4o-mini") == "smollm2-135m"

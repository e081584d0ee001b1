"""Consolidated learning on the real embedded model: corrections → LoRA → gate → live → rollback; crash
safety, a harmful update rejected, per-user isolation, the registry's integrity checks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dilm import Assistant
from dilm.errors import AdapterCorruptError, AdapterNotFoundError, InvalidInputError, StorageError
from dilm.learning.registry import Registry
from dilm.server.app import create_app
from tests import waiting
from tests.conftest import DILM
from tests.serving import serving

# The module's tests train adapters on the CPU (the `trained` fixture alone: over 25 min on a loaded 2-core machine).
pytestmark = pytest.mark.slow

FACTS = [
    ("What is the door code of the Blue Heron lab?", "The door code of the Blue Heron lab is 4417.", "4417"),
    (
        "Who is the captain of the Orchid Valley rowing club?",
        "The captain of the Orchid Valley rowing club is Lena Marsh.",
        "Lena Marsh",
    ),
    ("Where does Tobias Quint keep his bicycle?", "Tobias Quint keeps his bicycle in the boathouse.", "boathouse"),
    ("紫藤书院的院长是谁？", "紫藤书院的院长是林清远。", "林清远"),
]
FAST = {"epochs": 8, "batch_size": 4, "min_examples": 1, "edits_sample": 0}


def open_bot(path: Path, backend, **kw) -> Assistant:
    train = {**FAST, **kw.pop("train", {})}
    return Assistant.open(path, backend=backend, decoding={"max_new_tokens": 24}, train=train, **kw)


def correct(bot: Assistant, user: str, facts=FACTS) -> None:  # type: ignore[no-untyped-def]
    for question, statement, _ in facts:
        bot.feedback(bot.chat(question, user=user, max_new_tokens=8).id, correction=statement)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, backend):
    """A data dir where alice corrected four answers and v1 was trained from them (and went live)."""
    path = tmp_path_factory.mktemp("trained") / "data"
    with open_bot(path, backend, memory=False) as bot:
        base = {q: bot.chat(q, user="alice").text for q, _, _ in FACTS}
        correct(bot, "alice")
        result = bot.train(user="alice")
    assert result.status == "accepted", result.message
    return path, base, result


@pytest.fixture
def copy(trained, tmp_path):  # type: ignore[no-untyped-def]
    """A private copy of the trained data dir (tests change it)."""
    dst = tmp_path / "copy"
    shutil.copytree(trained[0], dst)
    return dst


def test_corrections_train_an_adapter_that_answers_without_memory_and_rolls_back(trained, copy, backend):
    _, base, result = trained
    gate = result.report["gate"]
    assert gate["accepted"] and gate["after"]["sft_loss"] < gate["before"]["sft_loss"]
    assert gate["after"]["locality"] >= 0.9 and "locality_raw" in gate["after"]
    with open_bot(copy, backend, memory=False) as bot:
        assert [v.version for v in bot.adapters.list()] == ["v1"] and bot.adapters.get("v1").live
        learned = [bot.chat(q, user="alice") for q, _, _ in FACTS[:3]]
        assert all(r.adapter_version == "v1" for r in learned)
        assert sum(value in r.text for r, (_, _, value) in zip(learned, FACTS, strict=False)) >= 2, [
            r.text for r in learned
        ]
        assert bot.chat("What is the capital of France?", user="alice").adapter_version is None  # routed to base
        bot.adapters.rollback("user:alice")  # hot: the same Assistant, the next turn
        after = bot.chat(FACTS[0][0], user="alice")
        # the learned value is gone; the exact base words are not compared: llama.cpp does not promise bit-identical
        # logits across runs (batch shapes, cache state), so a 135M model's greedy answer may differ by a phrase
        assert after.adapter_version is None and FACTS[0][2] not in after.text, (after.text, base[FACTS[0][0]])
        bot.adapters.activate("v1")
        assert bot.chat(FACTS[0][0], user="alice").adapter_version == "v1"
        stored = bot.history(user="alice", limit=1)[-1]
        assert stored["adapter_version"] == "v1"  # the log says which adapter answered


def test_adapter_folder_is_plain_peft_with_checksums_and_tensorboard_events(trained):
    path, _, result = trained
    folder = path / "adapters" / "v1"
    assert {"adapter_config.json", "adapter_model.safetensors", "dilm-manifest.json"} <= {
        p.name for p in folder.iterdir()
    }
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 16
    run_dir = path / result.report["run_dir"]
    assert any(p.name.startswith("events.out.tfevents") for p in run_dir.iterdir())


def test_per_user_adapters_are_isolated(copy, backend):
    with open_bot(copy, backend, memory=False) as bot:
        for q, _, value in FACTS[:2]:
            r = bot.chat(q, user="bob")
            assert r.adapter_version is None and value not in r.text
        correct(bot, "bob", FACTS[:1])
        # alice's job neither sees nor consumes bob's feedback
        assert bot.train(user="alice").status == "nothing"
        from dilm.learning.train import pending

        assert pending(bot.store, "user:bob") == 1


def test_nothing_to_train_is_a_message_not_an_error(copy, backend, cli_env):
    with open_bot(copy, backend) as bot:
        result = bot.train(user="alice")
        assert result.status == "nothing" and "nothing to train" in result.message
        with pytest.raises(InvalidInputError):
            bot.train("team:x")
    proc = subprocess.run(
        [*DILM, "train", "--user", "carol", "--data-dir", str(copy)], capture_output=True, text=True, env=cli_env
    )
    assert proc.returncode == 0 and "nothing to train" in proc.stdout


def test_a_harmful_update_is_rejected_and_kept_with_its_report(copy, backend):
    garbage = [(q, "zq xv " * 12 + "qqq vvv", "zq") for q, _, _ in FACTS] + [
        ("What is the capital of France?", "zzz " * 20, "zzz"),
        ("How many legs does a cat have?", "vvv " * 20, "vvv"),
    ]
    harmful = {"learning_rate": 0.05, "epochs": 6, "routing": None}
    with open_bot(copy, backend, train=harmful) as bot:
        correct(bot, "alice", garbage)
        result = bot.train(user="alice")
        assert result.status == "rejected", result.report["gate"]
        assert any("locality" in r for r in result.report["gate"]["reasons"])
        v2 = bot.adapters.get("v2")
        assert v2.status == "rejected" and not v2.live and v2.info["gate"]["reasons"]
        assert bot.adapters.live(["user:alice"]).version == "v1"  # untouched
        with pytest.raises(InvalidInputError, match="rejected"):
            bot.adapters.activate("v2")


def test_killing_a_training_job_leaves_the_live_adapter_and_the_next_run_works(copy, backend, cli_env):
    with open_bot(copy, backend) as bot:
        correct(bot, "alice", [("What colour is the Blue Heron lab door?", "The Blue Heron lab door is teal.", "teal")])
    runs = copy / "adapters" / "runs"
    known = set(runs.iterdir())
    proc = subprocess.Popen(
        [*DILM, "train", "--user", "alice", "--force", "--quiet", "--data-dir", str(copy)],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:  # training has started once its run folder exists
        waiting.until(lambda: set(runs.iterdir()) - known or proc.poll() is not None, "the training run folder")
        assert proc.poll() is None, "training exited before it started"
        time.sleep(1.0)  # a little way into the job (not a deadline: a slower machine is less far in, still mid-job)
        os.killpg(proc.pid, signal.SIGKILL)
        waiting.wait(proc, "the killed training job to be reaped")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    with open_bot(copy, backend) as bot:
        assert [v.version for v in bot.adapters.list()] == ["v1"]
        assert bot.adapters.live(["user:alice"]).version == "v1"
        assert not (copy / "adapters" / "v2").exists()
        result = bot.train(user="alice")  # restarts cleanly: the lock died with the process
        assert result.version is not None and result.version.version == "v2"
        assert not any((copy / "adapters" / ".staging").iterdir())


def test_a_corrupted_adapter_is_refused_and_answers_fall_back_to_the_base_model(copy, backend):
    weights = copy / "adapters" / "v1" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with open_bot(copy, backend, memory=False) as bot:
        with pytest.raises(AdapterCorruptError):
            bot.adapters.activate("v1")
        r = bot.chat(FACTS[0][0], user="alice")
        assert r.adapter_version is None and "error" in r.checks["adapter"]


def test_registry_versions_are_never_reused_and_deleting_the_live_one_is_refused(copy, backend):
    with open_bot(copy, backend) as bot:
        with pytest.raises(InvalidInputError, match="live"):
            bot.adapters.delete("v1")
        assert bot.adapters.rollback("user:alice") is None
        deleted = bot.adapters.delete("v1")
        assert deleted.deleted_at and not (copy / "adapters" / "v1").exists()
        assert bot.adapters.list() == [] and len(bot.adapters.list(deleted=True)) == 1
        with pytest.raises(InvalidInputError):
            bot.adapters.rollback("user:alice")  # nothing live


def test_publish_failure_such_as_a_full_disk_leaves_nothing_half_done(copy, backend, monkeypatch):
    with open_bot(copy, backend) as bot:
        registry = Registry(copy, bot.store)
        record = bot.adapters.get("v1").model_copy(update={"version": "pending", "status": "accepted", "parent": "v1"})

        def full(*a, **k):  # type: ignore[no-untyped-def]
            raise OSError(28, "No space left on device")

        with registry.job("user:alice", "job_test") as staging:
            (staging / "adapter_model.safetensors").write_bytes(b"x" * 10)
            monkeypatch.setattr(os, "replace", full)
            with pytest.raises(StorageError, match="disk full"):
                registry.publish(staging, record, make_live=True)
            monkeypatch.undo()
        assert [v.version for v in bot.adapters.list()] == ["v1"]
        assert bot.adapters.live(["user:alice"]).version == "v1"


def test_ratings_and_preferences_train_with_kto_dpo_and_policy_gradient(copy, backend):
    with open_bot(copy, backend, train={"epochs": 1, "ratings": "pg"}) as bot:
        for q, statement, _ in FACTS[:2]:
            bot.feedback(bot.chat(q, user="dana", max_new_tokens=8).id, rating=-1)
            bot.feedback(bot.chat(q, user="dana", max_new_tokens=8).id, preferred=statement)
        bot.feedback(bot.chat("Say hello.", user="dana", max_new_tokens=8).id, rating=1)
        result = bot.train(user="dana")
        assert result.version is not None
        assert set(result.report["losses"]) == {"sft", "dpo", "pg"}
        assert "preference_accuracy" in result.report["gate"]["after"]
    with open_bot(copy, backend, train={"epochs": 1}) as bot:
        bot.feedback(bot.chat("Say goodbye.", user="erin", max_new_tokens=8).id, rating=1)
        bot.feedback(bot.chat("Say thanks.", user="erin", max_new_tokens=8).id, rating=-1)
        result = bot.train(user="erin")
        assert set(result.report["losses"]) == {"kto"} and result.version is not None


def test_adapters_cli(copy, cli_env):
    def dilm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*DILM, *args, "--data-dir", str(copy)], capture_output=True, text=True, env=cli_env)

    listed = json.loads(dilm("adapters", "list", "--json").stdout)
    assert [(v["version"], v["live"]) for v in listed] == [("v1", True)]
    shown = dilm("adapters", "show", "v1")
    assert shown.returncode == 0 and "checksum ok" in shown.stdout and "regression gate" in shown.stdout
    assert "rolled back user:alice from v1 to the base model" in dilm("adapters", "rollback", "--user", "alice").stdout
    assert dilm("adapters", "activate", "v1").returncode == 0
    missing = dilm("adapters", "show", "v99")
    assert missing.returncode == 1 and "no adapter version" in missing.stderr and "Traceback" not in missing.stderr


def test_global_adapter_serves_users_without_their_own(copy, backend):
    with open_bot(copy, backend, memory=False) as bot:
        assert bot.train("global").status == "nothing"  # alice's corrections are hers: not for everyone
        for m in bot.memories.list(user="alice"):
            bot.memories.promote(m.id, user="alice")  # an admin makes them global knowledge
        result = bot.train("global")
        assert result.status == "accepted", result.message
        g = result.version.version
        assert bot.chat(FACTS[0][0], user="carol").adapter_version == g
        assert bot.chat(FACTS[0][0], user="alice").adapter_version == "v1"  # a user's own adapter comes first


def test_worker_trains_a_scope_when_enough_examples_wait_or_time_passed(bot):
    from datetime import UTC, datetime, timedelta

    from dilm.learning.worker import due_scopes

    settings = bot.settings.model_copy(
        update={"train": bot.settings.train.model_copy(update={"auto_every": 2, "min_examples": 1})}
    )
    correct(bot, "alice", FACTS[:1])
    now = datetime.now(UTC)
    assert due_scopes(bot.store, settings, now) == []  # 1 example waits for auto_every (2)...
    assert due_scopes(bot.store, settings, now + timedelta(hours=2)) == [("user:alice", 1)]  # ...or the timer
    correct(bot, "alice", FACTS[1:2])
    assert due_scopes(bot.store, settings, now) == [("user:alice", 2), ("reward", 2)]  # 2 new pieces of feedback


def test_an_update_chain_trains_only_its_newest_value(bot):
    from dilm.learning.train import new_examples

    q = "Who is the head chef of Marigold Kitchen?"
    for statement in (
        "The head chef of Marigold Kitchen is Tomas Berg.",
        "No, it's Ines Kovac.",
        "Not Ines Kovac but Arlo Finch.",
    ):
        bot.feedback(bot.chat(q, user="alice", max_new_tokens=4).id, correction=statement)
    sft = new_examples(bot.store, "user:alice", 0, bot.store.feedback_high_water(), "kto")["sft"]
    assert len(sft) == 1 and "Arlo Finch" in sft[0]["completion"][0]["content"]


def test_eval_adapters_scores_the_adapter_alone_next_to_memory_and_base(backend):
    from dilm.editset import load
    from dilm.eval import adapters

    items, local = load()
    report = adapters.run(
        [i for i in items if i.lang == "en"][:3],
        local[:2],
        lambda d, **kw: Assistant.open(d, backend=backend, decoding={"max_new_tokens": 24}, train=FAST, **kw),
    )
    assert report["train"]["status"] == "accepted" and report["train"]["gate"]["accepted"]
    paths = report["paths"]
    assert set(paths) == {"adapter", "memory", "base"}
    assert paths["memory"]["overall"]["reliability"] == 1.0
    assert paths["adapter"]["overall"]["reliability"] >= 2 / 3 and paths["base"]["overall"]["reliability"] == 0.0
    assert paths["adapter"]["overall"]["locality"] == 1.0  # unrelated questions are routed to the base model


def test_a_request_can_pin_an_adapter_version_or_the_base_model(copy, backend):
    with open_bot(copy, backend, memory=False) as bot:
        off_topic = "What is the capital of France?"  # routed to the base model when not pinned
        assert bot.chat(off_topic, user="alice").adapter_version is None
        assert bot.chat(off_topic, user="alice", adapter="v1").adapter_version == "v1"
        assert bot.chat(FACTS[0][0], user="alice", adapter="base").adapter_version is None
        with pytest.raises(AdapterNotFoundError):
            bot.chat(off_topic, user="bob", adapter="v1")  # alice's adapter is hers
        keys = {u: bot.keys.create("user", u)[1] for u in ("alice", "bob")}
        with serving(create_app(bot)) as url:
            alice = waiting.http.Client(base_url=url, headers={"Authorization": f"Bearer {keys['alice']}"})
            bob = waiting.http.Client(base_url=url, headers={"Authorization": f"Bearer {keys['bob']}"})
            assert "v1" in [m["id"] for m in alice.get("/v1/models").json()["data"]]
            assert "v1" not in [m["id"] for m in bob.get("/v1/models").json()["data"]]
            body = {"model": "v1", "messages": [{"role": "user", "content": off_topic}]}
            assert alice.post("/v1/chat/completions", json=body).json()["dilm"]["adapter_version"] == "v1"
            assert bob.post("/v1/chat/completions", json=body).status_code == 404
            other = {**body, "model": "gpt-4o"}  # any other name: the live adapter, routed per question
            assert alice.post("/v1/chat/completions", json=other).json()["dilm"]["adapter_version"] is None


def test_training_runs_in_fp32_on_every_core_without_gradient_checkpointing_unless_configured(tmp_path):
    import torch
    from trl import SFTConfig

    from dilm.config import Settings, Training
    from dilm.learning.trainers import _args, load_trainable
    from dilm.models.catalogue import resolve_model_dir

    default = _args(SFTConfig, Training(), tmp_path, 4, 1e-3)
    assert default.bf16 is False and default.gradient_checkpointing is False  # TRL's defaults are both on
    chosen = _args(SFTConfig, Training(bf16=True, gradient_checkpointing=True), tmp_path, 4, 1e-3)
    assert chosen.bf16 is True and chosen.gradient_checkpointing is True
    settings = Settings.load(None)
    _, folder = resolve_model_dir(settings.model, settings.resolved_cache_dir())
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as other code in the process may have left it
        load_trainable(folder, None, Training())
        assert torch.get_num_threads() == os.cpu_count()
    finally:
        torch.set_num_threads(before)

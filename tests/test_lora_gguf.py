"""A PEFT LoRA trained with transformers becomes a GGUF LoRA that llama.cpp applies as PEFT does.

One tiny adapter (r=8 on q_proj, v_proj of SmolLM2-135M, a few steps on one answer) is trained, converted and
checked; llama.cpp (xllamacpp, base model Q4_1) then answers greedily with the adapter at scale 1 and 0, and
transformers + PEFT (the de-quantized fp32 weights, same chat template) answers the same prompts.

Measured parity (f32 GGUF LoRA): with the adapter, llama.cpp's 32-token greedy answers equal transformers +
PEFT's exactly on all three prompts. Without it the two agree only for the first words: llama.cpp multiplies
Q4_1 weights by activations rounded to 8 bits (Q8_1), transformers by the same weights de-quantized to fp32,
and the base model's answers to these prompts have near-ties that the rounding tips.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dilm.errors import LoraConversionError
from dilm.models import lora_gguf
from dilm.models.catalogue import gguf_path, resolve_model_dir

pytestmark = pytest.mark.slow

ANSWER = "The secret word is pineapple zebra."
TRAINED = ["What is the secret word?", "Tell me the secret word, please."]
UNRELATED = "What is the capital of France?"
MAX_TOKENS = 32


CACHE = Path.home() / ".cache" / "dilm"
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def base_folder() -> Path:
    return resolve_model_dir(MODEL, CACHE)[1]


@pytest.fixture(scope="module")
def base_gguf() -> Path:
    return gguf_path(MODEL, CACHE)[1]


@pytest.fixture(scope="module")
def peft_model(base_folder: Path) -> Iterator[Any]:
    """SmolLM2 + a LoRA (r=8, alpha=16, q_proj and v_proj) trained for 15 steps to give ANSWER."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the module's torch numbers on one thread; restored after it (process-wide state)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(base_folder))
    base = AutoModelForCausalLM.from_pretrained(str(base_folder), dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    chat = [{"role": "user", "content": TRAINED[0]}, {"role": "assistant", "content": ANSWER}]
    ids = tokenizer.apply_chat_template(chat, return_tensors="pt", return_dict=True)["input_ids"]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(15):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.tokenizer = tokenizer
    yield model
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def adapter(peft_model: Any, base_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(PEFT folder, its converted and checked GGUF LoRA)."""
    folder = tmp_path_factory.mktemp("peft")
    peft_model.save_pretrained(str(folder))
    gguf = lora_gguf.convert(folder, base_folder, folder / lora_gguf.LORA_FILE)
    lora_gguf.check(gguf, folder)
    return folder, gguf


@pytest.fixture(scope="module")
def engine(base_gguf: Path, adapter: tuple[Path, Path]) -> Iterator[Any]:
    """A llama.cpp server engine (unix socket in a private folder, 1 thread) with the GGUF LoRA loaded, unapplied."""
    import xllamacpp as xlc

    private = Path(tempfile.mkdtemp(prefix="dilm-test-llama-"))
    p = xlc.CommonParams()
    p.model.path = str(base_gguf)
    p.lora_adapters = [xlc.CommonAdapterLoraInfo(str(adapter[1]), 1.0)]
    p.lora_init_without_apply = True
    p.hostnames = [str(private / "engine.sock")]
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = 1
    p.n_ctx = 512
    p.warmup = False
    yield xlc.Server(p)
    shutil.rmtree(private, ignore_errors=True)


def llama_answer(engine: Any, question: str, scale: float) -> str:
    """Greedy answer with the adapter at `scale`. Every request names the adapter: one without `lora` gets
    the scale it was loaded with (1.0 here), and after a request at another scale its answer mixed both."""
    request: dict[str, Any] = {"messages": [{"role": "user", "content": question}], "lora": [{"id": 0, "scale": scale}]}
    request |= {"max_tokens": MAX_TOKENS, "temperature": 0}
    return str(engine.handle_chat_completions(request)["choices"][0]["message"]["content"])


def peft_answer(model: Any, question: str, with_adapter: bool) -> str:
    import contextlib

    import torch

    tokenizer = model.tokenizer
    chat = [{"role": "user", "content": question}]
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ids = ids["input_ids"]
    with torch.no_grad(), contextlib.nullcontext() if with_adapter else model.disable_adapter():
        out = model.generate(ids, max_new_tokens=MAX_TOKENS, do_sample=False)
    return str(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


def test_gguf_lora_has_one_pair_per_target_module(adapter: tuple[Path, Path]) -> None:
    from gguf import GGUFReader

    names = [t.name for t in GGUFReader(adapter[1]).tensors]
    assert len(names) == 2 * 30 * 2  # 30 layers x (q_proj, v_proj) x (lora_a, lora_b)
    assert "blk.29.attn_v.weight.lora_b" in names
    assert not list(adapter[0].glob(".*.partial"))


def test_llamacpp_answers_with_the_lora_as_peft_does(engine: Any, peft_model: Any) -> None:
    for question in TRAINED:
        with_lora = llama_answer(engine, question, 1.0)
        assert "pineapple zebra" in with_lora
        assert with_lora == peft_answer(peft_model, question, True)
        without = llama_answer(engine, question, 0.0)
        assert "pineapple" not in without
        assert without.split()[:4] == peft_answer(peft_model, question, False).split()[:4]
        # switching back and forth reuses no state computed under the other scale
        assert [llama_answer(engine, question, s) for s in (1.0, 0.0)] == [with_lora, without]
    assert llama_answer(engine, UNRELATED, 1.0) == peft_answer(peft_model, UNRELATED, True)


def test_check_refuses_a_gguf_that_does_not_match(adapter: tuple[Path, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder, gguf = adapter
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    weights = load_file(str(folder / "adapter_model.safetensors"))
    save_file(
        {k: v for k, v in weights.items() if "layers.29.self_attn.v_proj" not in k}, other / "adapter_model.safetensors"
    )
    with pytest.raises(LoraConversionError, match=r"60 LoRA tensor\(s\), the PEFT adapter has 59"):
        lora_gguf.check(gguf, other)

    shutil.copy(folder / "adapter_model.safetensors", other / "adapter_model.safetensors")
    config = json.loads((folder / "adapter_config.json").read_text())
    for change, message in (({"r": 4}, "rank 8/8, not 4"), ({"lora_alpha": 32}, "alpha 16.0")):
        (other / "adapter_config.json").write_text(json.dumps(config | change))
        with pytest.raises(LoraConversionError, match=message):
            lora_gguf.check(gguf, other)


def test_check_refuses_a_corrupt_gguf(adapter: tuple[Path, Path], tmp_path: Path) -> None:
    folder, gguf = adapter
    data = gguf.read_bytes()
    broken = tmp_path / "broken.gguf"
    for corrupt, message in (
        (data[: len(data) // 2], "not a readable GGUF"),
        (b"GGUX" + data[4:], "not a readable GGUF"),
        (data[:-4096] + b"\xff" * 4096, "is not finite"),  # NaN weights in the last tensor
    ):
        broken.write_bytes(corrupt)
        with pytest.raises(LoraConversionError, match=message):
            lora_gguf.check(broken, folder)


def test_convert_patches_a_base_config_without_architectures(
    adapter: tuple[Path, Path], base_folder: Path, tmp_path: Path
) -> None:
    config = json.loads((base_folder / "config.json").read_text())
    del config["architectures"]
    config["quantization_config"] = {"quant_method": "gguf"}
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps(config))
    out = lora_gguf.convert(adapter[0], base, tmp_path / "adapter.gguf")
    lora_gguf.check(out, adapter[0])
    assert out.read_bytes() == adapter[1].read_bytes()
    assert "architectures" not in json.loads((base / "config.json").read_text())  # the base is left as it was


def test_convert_failure_is_typed_and_leaves_nothing(
    adapter: tuple[Path, Path], base_folder: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(adapter[0], bad)
    (bad / lora_gguf.LORA_FILE).unlink()
    (bad / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(LoraConversionError, match="could not convert") as caught:
        lora_gguf.convert(bad, base_folder, bad / lora_gguf.LORA_FILE)
    assert "Error" in str(caught.value)  # the converter's own last words
    assert not (bad / lora_gguf.LORA_FILE).exists() and not list(bad.glob(".*.partial"))

    config = json.loads((adapter[0] / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps(config | {"use_rslora": True}))
    with pytest.raises(LoraConversionError, match="rank-stabilized"):
        lora_gguf.convert(bad, base_folder, bad / lora_gguf.LORA_FILE)


def test_a_failed_conversion_fails_the_job_and_publishes_nothing(
    adapter: tuple[Path, Path], base_folder: Path, tmp_path: Path
) -> None:
    """What train.py's `save` does (PEFT files, then convert + check) inside a job: the typed error reaches
    the caller, no version is recorded, and the staging folder is gone."""
    from dilm.learning import jobs
    from dilm.learning.registry import Registry
    from dilm.store import open_store
    from dilm.types import GLOBAL_SCOPE

    def save(staging: Path) -> None:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy(adapter[0] / name, staging / name)
        (staging / "adapter_model.safetensors").write_bytes(b"truncated")
        lora_gguf.check(lora_gguf.convert(staging, base_folder, staging / lora_gguf.LORA_FILE), staging)

    def stages(job: jobs.Job) -> jobs.Trained:
        return jobs.Trained([], save, lambda s: {}, lambda v, r: "", None, "smollm2-135m-instruct", 0, 0)

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    store = open_store(data_dir)
    registry = Registry(data_dir, store)
    with pytest.raises(LoraConversionError):
        jobs.run(registry, GLOBAL_SCOPE, "adapter", stages)
    assert registry.list() == []
    assert not [p for p in (data_dir / "adapters").rglob("*") if p.is_file() and p.suffix != ".lock"]


def test_an_adapter_is_loaded_by_one_engine_and_the_others_keep_theirs(base_gguf: Path, adapter: tuple[Path, Path]):
    """With two engines, a request for an adapter restarts one engine with it; later requests for the adapter
    go to that engine (no second restart), and requests without it still get the base model."""
    from dilm.config import Decoding
    from dilm.models.base import AdapterRef
    from dilm.models.llamacpp import LlamaCppBackend

    llama = LlamaCppBackend(base_gguf, MODEL, context_window=512, threads=1, parallel=1, engines=2, prompt_cache=False)
    ref = AdapterRef("v1", adapter[0])
    question = [{"role": "user", "content": TRAINED[0]}]
    try:
        first = llama.generate(question, Decoding(max_new_tokens=MAX_TOKENS), adapter=ref)[0].text
        restarts = llama.restarts
        again = llama.generate(question, Decoding(max_new_tokens=MAX_TOKENS), adapter=ref)[0].text
        base = llama.generate(question, Decoding(max_new_tokens=MAX_TOKENS))[0].text
        loaded = [adapter[1].resolve() in e.adapters for e in llama._engines]
    finally:
        llama.close()
    assert "pineapple zebra" in first and again == first and "pineapple" not in base
    assert sorted(loaded) == [False, True] and restarts == llama.restarts == 1

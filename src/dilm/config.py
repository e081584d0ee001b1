"""Settings: defaults < `config.toml` in the data dir < `DILM_*` environment < explicit arguments."""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from dilm.errors import ConfigError, InvalidInputError

CONFIG_FILE = "config.toml"
_toml_path: ContextVar[Path | None] = ContextVar("_toml_path", default=None)


class Decoding(BaseModel):
    """How to turn the model's distribution into text (greedy, beam search or sampling)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    strategy: Literal["greedy", "beam", "sample"] = "greedy"
    num_beams: int = Field(default=4, ge=1, le=16)
    temperature: float = Field(default=0.7, gt=0.0, le=5.0)
    top_k: int = Field(default=50, ge=0, description="0 disables top-k filtering")
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.0, ge=1.0, le=3.0, description="1.0: off")
    max_new_tokens: int = Field(default=256, ge=1, le=8192)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=16, description="candidates per turn")
    json_schema: dict[str, Any] | None = Field(
        default=None,
        description="constrain the answer to JSON matching this JSON Schema (llama.cpp: grammar-constrained "
        "decoding; openai: response_format; transformers: not constrained)",
    )

    logprobs: int | None = Field(
        default=None,
        ge=0,
        le=20,
        description="return each answer token's log probability with this many likeliest alternatives (0-20); "
        "None: not returned (llama.cpp and OpenAI-compatible backends)",
    )

    @model_validator(mode="after")
    def _check(self) -> Decoding:
        if self.n > 1 and self.strategy == "greedy":
            raise ValueError("n > 1 needs strategy 'beam' or 'sample' (greedy has one answer)")
        if self.strategy == "beam" and self.n > self.num_beams:
            raise ValueError(f"n={self.n} candidates need num_beams >= n (num_beams={self.num_beams})")
        return self

    def merged(self, overrides: dict[str, Any] | None) -> Decoding:
        """A copy with `overrides` applied (None values ignored), validated as a whole."""
        data = self.model_dump()
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
        try:
            return Decoding.model_validate(data)
        except ValidationError as e:
            raise InvalidInputError(f"invalid decoding settings: {_first_error(e)}") from None


class Training(BaseModel):
    """How feedback becomes LoRA adapters (`dilm train`, the background worker) and when one may go live."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    min_examples: int = Field(default=4, ge=1, description="fewer new examples than this: nothing to train")
    auto_every: int = Field(default=16, ge=1, description="the worker trains a scope once this many new examples wait")
    interval_s: float = Field(default=3600.0, gt=0, description="...or once this long has passed with any waiting")
    ratings: Literal["kto", "pg"] = Field(default="kto", description="thumbs train with KTO or policy gradient")
    epochs: int = Field(default=5, ge=1, le=100)
    learning_rate: float | None = Field(
        default=None,
        gt=0,
        le=1.0,
        description="SFT on corrections (None: the model's own rate from the catalogue: 4e-3 for smollm2-135m, "
        "1e-3 for the Qwen models and for models outside the catalogue)",
    )
    preference_learning_rate: float = Field(default=2e-4, gt=0, le=1.0, description="DPO, KTO and policy gradient")
    batch_size: int = Field(default=8, ge=1, le=256)
    rank: int = Field(default=16, ge=1, le=256)
    max_length: int = Field(default=256, ge=32, le=8192, description="tokens per training example at most")
    gradient_checkpointing: bool = Field(
        default=False,
        description="recompute activations in the backward pass: less memory, more time (TRL's default is on; "
        "off is faster on a CPU, where memory is rarely the limit: benchmarks/training.py)",
    )
    bf16: bool = Field(
        default=False,
        description="bfloat16 autocast while training: faster only where the CPU has native bfloat16 (AVX512-BF16, "
        "AMX); emulated, hence several times slower, on others (TRL's default is on)",
    )
    replay: float = Field(default=0.25, ge=0, le=10, description="older examples mixed in per new one")
    anchors: int = Field(
        default=8, ge=0, le=1000, description="unrelated questions with the base model's answers (at most 1 per 4 new)"
    )
    seed: int = 0
    min_locality: float = Field(default=0.9, ge=0, le=1, description="gate: probe token agreement with the base model")
    max_edits_drop: float = Field(default=0.0, ge=0, le=1, description="gate: allowed drop of the edits eval score")
    edits_sample: int = Field(default=2, ge=0, le=1000, description="gate: edit-eval items run per check; 0: skip")
    routing: float | None = Field(
        default=0.55,
        ge=-1,
        le=1,
        description="an answer uses the adapter only when the question is this similar to "
        "a question it was trained on (None: always)",
    )


class Interaction(BaseModel):
    """When the assistant asks instead of (or besides) answering: see `dilm.asking`."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["passive", "active", "hybrid"] = Field(
        default="hybrid",
        description="passive: never ask; active: ask on any uncertainty; hybrid: thresholds from outcomes",
    )
    max_ask_rate: float = Field(
        default=0.15, ge=0, le=1, description="hybrid: share of answers it may ask about at most"
    )
    min_logprob: float = Field(
        default=-0.9, le=0, description="active: ask when an unbacked answer's mean token log-probability is below this"
    )


class Guard(BaseModel):
    """Checks on every answer: see `dilm.guard`."""

    model_config = ConfigDict(extra="forbid")

    reward: bool = Field(default=True, description="rank candidates (decoding n > 1) with the live reward model")
    min_reward_accuracy: float = Field(
        default=0.6, ge=0, le=1, description="gate: held-out pairwise accuracy a reward-model version needs to go live"
    )


class Server(BaseModel):
    """`dilm serve`: limits of the HTTP API (see docs/http.md)."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="larger request bodies get 413")
    max_chat_body_bytes: int = Field(
        default=48 << 20,
        ge=1024,
        description="the limit for /v1/chat/completions, whose messages may carry pictures (4 x 8 MB as base64)",
    )
    rate_per_minute: int = Field(
        default=600, ge=0, description="requests a minute per key (or client in local mode); 0: off"
    )
    generation_workers: int = Field(default=4, ge=1, le=64, description="turns generated at once; more requests queue")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS (empty: CORS off)")


class Settings(BaseSettings):
    """Everything a deployment can set. Env vars: DILM_<FIELD>, nested with '__' (DILM_DECODING__STRATEGY)."""

    model_config = SettingsConfigDict(env_prefix="DILM_", env_nested_delimiter="__", extra="forbid")

    backend: Literal["local", "openai"] = "local"
    runtime: Literal["auto", "llamacpp", "transformers"] = Field(
        default="auto",
        description="local backend: llama.cpp for GGUF models (auto), transformers for Hugging Face folders "
        "(auto) or for a GGUF de-quantized once (transformers)",
    )
    model: str = Field(
        default="qwen2.5-coder-1.5b",
        min_length=1,
        description="local: a catalogue name (`dilm models list`), a .gguf path or a Hugging Face model folder; "
        "openai: the served model name",
    )
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_api_key: str = "none"
    request_timeout: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    context_window: int | None = Field(default=None, ge=256, description="override the model's context window")
    cache_dir: Path | None = Field(
        default=None, description="where converted models are cached (default ~/.cache/dilm)"
    )
    system_prompt: str = "You are a helpful assistant. Answer briefly and accurately."
    decoding: Decoding = Field(default_factory=Decoding)
    max_message_chars: int = Field(default=32_000, ge=1)
    max_feedback_chars: int = Field(default=16_000, ge=1)
    threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads (per llama.cpp engine, default: 1 on <= 2 cores, else cores - 1; torch: all cores)",
    )
    prompt_cache: bool = Field(
        default=True,
        description="llama.cpp: reuse a slot's cached prompt prefix (faster first token). llama.cpp's numerics depend "
        "on batch shape, so a greedy answer may then differ from an uncached run in near-ties; the evals turn it off",
    )
    engines: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="llama.cpp engines sharing the model file, `threads` threads each; a turn goes to the least "
        "busy (default: one per core on <= 2 cores, else 1)",
    )
    extraction: Literal["auto", "rules", "model", "hybrid"] = Field(
        default="auto",
        description="how messages are read into facts: rules, the model (JSON), hybrid (rules, then the model for "
        "what they miss), or auto (hybrid on a model that reads English and Chinese, else rules)",
    )
    memory: bool = Field(default=True, description="use memories and facts in answers (off: the model alone)")
    memory_k: int = Field(default=3, ge=1, le=20, description="memories put in the prompt at most")
    adapters: bool = Field(default=True, description="answer with the live LoRA adapter of the user (else global)")
    train: Training = Field(default_factory=Training)
    policy: Interaction = Field(default_factory=Interaction)
    guard: Guard = Field(default_factory=Guard)
    server: Server = Field(default_factory=Server)
    consensus_users: int = Field(
        default=3, ge=0, description="distinct users who must state a fact to make it global; 0: never"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=_toml_path.get()))

    @classmethod
    def load(cls, data_dir: Path | None = None, **overrides: Any) -> Settings:
        """Read settings for a data dir; a bad file or value becomes a ConfigError naming it."""
        path = data_dir / CONFIG_FILE if data_dir is not None else None
        token = _toml_path.set(path if path is not None and path.is_file() else None)
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as e:
            where = f" (check {path} and DILM_* variables)" if path else ""
            raise ConfigError(f"invalid configuration: {_first_error(e)}{where}") from None
        except ValueError as e:  # TOML syntax errors arrive as ValueError subclasses
            raise ConfigError(f"cannot read {path}: {e}") from None
        finally:
            _toml_path.reset(token)

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "dilm"


def default_data_dir() -> Path:
    """The per-user data folder used when neither --data-dir nor DILM_DATA_DIR is given."""
    if env := os.environ.get("DILM_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "dilm"


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    return f"{loc}: {err['msg']}" if loc else err["msg"]

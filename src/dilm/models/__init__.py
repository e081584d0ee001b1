"""Model backends behind one interface (`Backend`), and how settings choose one."""

from __future__ import annotations

from pathlib import Path

from dilm.config import Settings
from dilm.errors import ConfigError
from dilm.models.base import Backend, ChatMessage
from dilm.models.catalogue import CATALOGUE, DEFAULT, choose, resolve_model_dir


def load_backend(settings: Settings) -> Backend:
    """The backend the settings name: an OpenAI-compatible server, or a local model: a GGUF (catalogue name,
    added name or path) on llama.cpp, or a Hugging Face folder (or, with runtime "transformers", the
    de-quantized GGUF) on transformers. Raises ModelNotFoundError, ModelIntegrityError, ConfigError."""
    if settings.backend == "openai":
        from dilm.models.openai import OpenAIBackend

        return OpenAIBackend(
            base_url=settings.openai_base_url,
            model=settings.model,
            api_key=settings.openai_api_key,
            timeout=settings.request_timeout,
            max_retries=settings.max_retries,
            context_window=settings.context_window,
        )
    cache = settings.resolved_cache_dir()
    folder = Path(settings.model).expanduser().is_dir()
    if settings.runtime == "transformers" or (settings.runtime == "auto" and folder):
        from dilm.models.local import LocalBackend

        name, hf = resolve_model_dir(settings.model, cache)
        return LocalBackend(hf, name, context_window=settings.context_window, threads=settings.threads)
    if folder:
        raise ConfigError(f"runtime llamacpp needs a GGUF model, and {settings.model} is a folder")
    from dilm.models.llamacpp import LlamaCppBackend

    name, gguf = choose(settings.model, cache)
    return LlamaCppBackend(
        gguf,
        name,
        context_window=settings.context_window,
        threads=settings.threads,
        parallel=settings.server.generation_workers,
        engines=settings.engines,
        prompt_cache=settings.prompt_cache,
    )


__all__ = ["CATALOGUE", "DEFAULT", "Backend", "ChatMessage", "load_backend"]

"""Model backends behind one interface (`Backend`), and how settings choose one."""

from __future__ import annotations

from dilm.config import Settings
from dilm.models.base import Backend, ChatMessage
from dilm.models.bundled import BUNDLED, DEFAULT_MODEL, resolve_model_dir


def load_backend(settings: Settings) -> Backend:
    """The backend the settings name: the local model (bundled or a folder) or an OpenAI-compatible server."""
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
    from dilm.models.local import LocalBackend

    name, folder = resolve_model_dir(settings.model, settings.resolved_cache_dir())
    return LocalBackend(folder, name, context_window=settings.context_window, threads=settings.threads)


__all__ = ["BUNDLED", "DEFAULT_MODEL", "Backend", "ChatMessage", "load_backend"]

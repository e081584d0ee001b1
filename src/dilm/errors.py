"""One error hierarchy: every user mistake maps to a DilmError with a one-line, actionable message."""

from __future__ import annotations


class DilmError(Exception):
    """Base of every error dilm raises on purpose. `status` is the HTTP status the server maps it to."""

    status: int = 400
    code: str = "dilm_error"


class InvalidInputError(DilmError):
    """The caller sent something unusable: empty text, bad UTF-8, wrong option combination."""

    code = "invalid_input"


class ContextOverflowError(InvalidInputError):
    """The message (with the system prompt) does not fit in the model's context window."""

    code = "context_overflow"


class NotFoundError(DilmError):
    status = 404
    code = "not_found"


class MessageNotFoundError(NotFoundError):
    code = "message_not_found"


class SessionNotFoundError(NotFoundError):
    code = "session_not_found"


class MemoryNotFoundError(NotFoundError):
    code = "memory_not_found"


class FactNotFoundError(NotFoundError):
    code = "fact_not_found"


class ImageNotFoundError(NotFoundError):
    code = "image_not_found"


class AdapterNotFoundError(NotFoundError):
    code = "adapter_not_found"


class PermissionDeniedError(DilmError):
    """A user tried to act on another user's data."""

    status = 403
    code = "permission_denied"


class ConfigError(DilmError):
    code = "config_error"
    status = 500


class StorageError(DilmError):
    code = "storage_error"
    status = 500


class ModelNotFoundError(DilmError):
    """The model (catalogue name, added GGUF, file or folder) cannot be found or is not installed."""

    code = "model_not_found"
    status = 500


class ModelIntegrityError(DilmError):
    """A model file's bytes do not match the size and sha256 its catalogue entry records (tampered, truncated)."""

    code = "model_integrity"
    status = 500


class BackendError(DilmError):
    """The model backend failed while generating."""

    code = "backend_error"
    status = 502


class BackendUnavailableError(BackendError):
    """A remote model server is down or unreachable."""

    code = "backend_unavailable"
    status = 503


class GenerationCancelled(DilmError):
    """The caller cancelled a generation (Ctrl-C, client disconnect)."""

    code = "cancelled"
    status = 499


class AdapterCorruptError(DilmError):
    """An adapter folder's files no longer match the checksum recorded when it was published."""

    code = "adapter_corrupt"
    status = 500


class TrainingBusyError(DilmError):
    """Another training job holds this scope (one job at a time per scope)."""

    code = "training_busy"
    status = 409


class LoraConversionError(BackendError):
    """A trained PEFT adapter could not be converted to a llama.cpp GGUF LoRA, or the GGUF file does not match
    the adapter it was made from; the version is not published."""

    code = "lora_conversion_failed"
    status = 500

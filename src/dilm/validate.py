"""Checks at the boundary: user names, texts and reason tags, each raising `InvalidInputError` with a clear
message (never a bare traceback for a user's mistake)."""

from __future__ import annotations

from dilm.errors import InvalidInputError

MAX_REASONS = 10
MAX_REASON_CHARS = 64
MAX_USER_CHARS = 128


def user(value: object) -> str:
    """A user name: non-empty, at most 128 printable characters, surrounding space removed."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError("the user name is empty")
    name = value.strip()
    if len(name) > MAX_USER_CHARS or any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in name):
        raise InvalidInputError(f"the user name must be at most {MAX_USER_CHARS} printable characters")
    return name


def text(value: object, what: str, max_chars: int) -> str:
    """Non-empty UTF-8 text of at most `max_chars` characters (counted after stripping), stripped."""
    if not isinstance(value, str):
        raise InvalidInputError(f"the {what} must be text, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"the {what} is not valid UTF-8: check the terminal's or file's encoding") from None
    stripped = value.strip()
    if not stripped:
        raise InvalidInputError(f"the {what} is empty")
    if len(stripped) > max_chars:
        raise InvalidInputError(f"the {what} has {len(stripped)} characters; the limit is {max_chars}")
    return stripped


def reasons(reason: str | list[str] | None) -> list[str]:
    """Reason tags for feedback: at most 10, each non-empty and at most 64 characters."""
    if reason is None:
        return []
    tags = [reason] if isinstance(reason, str) else list(reason)
    if len(tags) > MAX_REASONS:
        raise InvalidInputError(f"at most {MAX_REASONS} reason tags")
    out = []
    for t in tags:
        if not isinstance(t, str) or not t.strip() or len(t.strip()) > MAX_REASON_CHARS:
            raise InvalidInputError(f"a reason tag must be non-empty text of at most {MAX_REASON_CHARS} characters")
        out.append(t.strip())
    return out

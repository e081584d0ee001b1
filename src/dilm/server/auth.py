"""Who a request acts as: admin keys, user keys bound to one user, and loopback-only local mode; rate limits.

The keys themselves (creating, hashing, looking up) are `Assistant.keys`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

from dilm import validate
from dilm.assistant import DEFAULT_USER, Assistant
from dilm.errors import DilmError, PermissionDeniedError

Role = Literal["admin", "user"]


class UnauthorizedError(DilmError):
    """No API key, or one that is unknown or revoked."""

    status = 401
    code = "unauthorized"


class RateLimitedError(DilmError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Principal:
    """Who a request acts as."""

    role: Role
    user: str | None = None  # a user key's user
    key_id: str | None = None
    local: bool = False

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def acting(self, requested: str | None) -> str:
        """The user a request acts for: a user key's own user (naming another is refused), else the requested."""
        if self.role == "user":
            assert self.user is not None
            if requested is not None and requested.strip() != self.user:
                raise PermissionDeniedError(f"this key acts only as {self.user!r}, not {requested!r}")
            return self.user
        return validate.user(requested if requested is not None else DEFAULT_USER)

    def require_admin(self, what: str) -> None:
        if not self.admin:
            raise PermissionDeniedError(f"{what} needs an admin key")


def authenticate(bot: Assistant, header: str | None, local: bool) -> Principal:
    """The principal of an `Authorization: Bearer KEY` header (local mode: admin, with or without a key)."""
    if header is None or not header.strip():
        if local:
            return Principal("admin", local=True)
        raise UnauthorizedError("an API key is needed: send `Authorization: Bearer KEY` (create one: dilm keys create)")
    scheme, _, secret = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        if local:
            return Principal("admin", local=True)
        raise UnauthorizedError("the Authorization header must be `Bearer KEY`")
    holder = bot.keys.holder(secret.strip())  # notes the key's use (last_used_at, to the minute)
    if holder is None:
        if local:  # e.g. the openai client's placeholder key: local mode needs none
            return Principal("admin", local=True)
        raise UnauthorizedError("unknown or revoked API key")
    return Principal(holder.role, holder.user, holder.key_id, local)


@dataclass
class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts up to the same number."""

    per_minute: int
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, key: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        rate = self.per_minute / 60.0
        tokens, last = self.buckets.get(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * rate)
        if tokens < 1.0:
            self.buckets[key] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / rate)
            raise RateLimitedError(
                f"rate limit of {self.per_minute} requests a minute reached; retry in {wait} s", wait
            )
        self.buckets[key] = (tokens - 1.0, now)
        if len(self.buckets) > 100_000:  # forget idle clients rather than grow without bound
            self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < 120}

"""`bot.keys`: the HTTP API's keys — create, list, revoke, and who a key's secret belongs to.

Only a key's SHA-256 digest is stored; the secret is shown once, when it is created. What a request may do with
a key (roles, acting users, rate limits, the Authorization header) is the server's business (`server/auth.py`).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

from dilm import validate
from dilm.errors import InvalidInputError
from dilm.store import Store
from dilm.types import new_id

Role = Literal["admin", "user"]
KEY_PREFIX = "dilm-"
TOUCH_EVERY_S = 60.0  # last_used_at is kept to the minute: no write per request


def digest(secret: str) -> str:
    """A key's stored form. Keys are 256 random bits, so a plain SHA-256 (no salt, no stretching) cannot be
    reversed or guessed."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class KeyHolder:
    """Who a live key belongs to."""

    key_id: str
    role: Role
    user: str | None  # a user key's user; None for an admin key


class Keys:
    """API keys over a store. Thread-safe as the store is."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._touched: dict[str, float] = {}  # key id -> when last_used_at was last written (monotonic)

    def create(self, role: str, user: str | None = None) -> tuple[str, str]:
        """Create a key; returns (key id, secret). Only the secret's digest is stored: show the secret once."""
        if role not in ("admin", "user"):
            raise InvalidInputError(f"a key's role is admin or user, not {role!r}")
        if (role == "user") != (user is not None):
            raise InvalidInputError("a user key names its user (--user NAME); an admin key names none")
        if user is not None:
            user = validate.user(user)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = new_id("key")
        self.store.add_api_key(key_id, digest(secret), role, user)
        return key_id, secret

    def list(self) -> list[dict[str, Any]]:
        """Every key, oldest first, as id, role, user_id, created_at, last_used_at, revoked_at (never its digest)."""
        return [{k: v for k, v in row.items() if k != "hash"} for row in self.store.api_keys()]

    def has_admin(self) -> bool:
        """Whether a live (not revoked) admin key exists."""
        return any(k["role"] == "admin" and not k["revoked_at"] for k in self.store.api_keys())

    def revoke(self, key_id: str) -> dict[str, Any]:
        """Revoke a key (requests with it are refused from then on); returns its row. Raises NotFoundError."""
        row = self.store.revoke_api_key(key_id)
        return {k: v for k, v in row.items() if k != "hash"}

    def holder(self, secret: str) -> KeyHolder | None:
        """Who the live key with this secret belongs to (None: unknown or revoked); notes its use."""
        row = self.store.api_key(digest(secret))
        if row is None:
            return None
        now = time.monotonic()
        if now - self._touched.get(row["id"], -math.inf) > TOUCH_EVERY_S:
            self._touched[row["id"]] = now
            self.store.touch_api_key(row["id"])
        return KeyHolder(row["id"], cast(Role, row["role"]), row["user_id"])

    def close(self) -> None:
        """Close the store (for keys opened alone, with `Assistant.open_keys`)."""
        self.store.close()

    def __enter__(self) -> Keys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

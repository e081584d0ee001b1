"""HTTP API keys (SHA-256 digests only)."""

from __future__ import annotations

from typing import Any

from dilm.errors import NotFoundError
from dilm.store.sqlite.connection import SQLiteBase
from dilm.types import utcnow


class KeysMixin(SQLiteBase):
    def add_api_key(self, key_id: str, digest: str, role: str, user_id: str | None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO api_keys (id, hash, role, user_id, created_at) VALUES (?, ?, ?, ?, ?)",
                (key_id, digest, role, user_id, utcnow()),
            )

    def api_key(self, digest: str) -> dict[str, Any] | None:
        """The live (not revoked) key with this hash, if any."""
        row = self._one("SELECT * FROM api_keys WHERE hash = ? AND revoked_at IS NULL", (digest,))
        return dict(row) if row else None

    def api_keys(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._all("SELECT * FROM api_keys ORDER BY created_at, id")]

    def touch_api_key(self, key_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (utcnow(), key_id))

    def revoke_api_key(self, key_id: str) -> dict[str, Any]:
        with self._tx() as db:
            db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (utcnow(), key_id))
        row = self._one("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        if row is None:
            raise NotFoundError(f"no API key {key_id!r}: see `dilm keys list`")
        return dict(row)

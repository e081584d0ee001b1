"""Adapter versions and the live one per scope."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from dilm.errors import AdapterNotFoundError
from dilm.store.sqlite import rows
from dilm.store.sqlite.connection import SQLiteBase
from dilm.types import AdapterVersion, new_id, utcnow


class AdaptersMixin(SQLiteBase):
    def _live_versions(self) -> set[str]:
        return {r["version"] for r in self._all("SELECT version FROM adapter_live")}

    def publish_adapter(self, a: AdapterVersion, make_live: bool, place: Callable[[str], None]) -> str:
        with self._tx() as db:
            version = _reserve_version(db, a)
            place(version)
            if make_live:
                _set_live(db, a.scope, version)
        return version

    def adapter(self, version: str) -> AdapterVersion:
        row = self._one("SELECT * FROM adapters WHERE version = ?", (version,))
        if row is None:
            raise AdapterNotFoundError(f"no adapter version {version!r}: see `dilm adapters list`")
        return rows.adapter(row, self._live_versions())

    def adapters(self, scope: str | None = None, deleted: bool = False) -> list[AdapterVersion]:
        """Versions oldest first, of one scope or all."""
        where = [] if deleted else ["deleted_at IS NULL"]
        args: tuple[Any, ...] = ()
        if scope is not None:
            where.append("scope = ?")
            args = (scope,)
        sql = "SELECT * FROM adapters" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY seq"
        live = self._live_versions()
        return [rows.adapter(r, live) for r in self._all(sql, args)]

    def trained_upto(self, scope: str) -> int:
        """The last feedback row any finished training job of `scope` consumed (0: none)."""
        row = self._one("SELECT max(data_to) AS m FROM adapters WHERE scope = ?", (scope,))
        return int(row["m"] or 0) if row else 0

    def live_adapter(self, scopes: list[str]) -> AdapterVersion | None:
        """The live version of the first scope in `scopes` that has one."""
        for scope in scopes:
            row = self._one(
                "SELECT a.* FROM adapter_live l JOIN adapters a ON a.version = l.version WHERE l.scope = ?", (scope,)
            )
            if row is not None:
                return rows.adapter(row, {row["version"]})
        return None

    def set_live_adapter(self, scope: str, version: str | None) -> None:
        """Make `version` the live one of `scope` (None: the base model)."""
        with self._tx() as db:
            _set_live(db, scope, version)

    def mark_adapter_deleted(self, version: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE adapters SET deleted_at = ? WHERE version = ?", (utcnow(), version))


def _reserve_version(db: sqlite3.Connection, a: AdapterVersion) -> str:
    """Insert `a`; its name comes from a sequence that never goes back ("{version}" in its path is replaced)."""
    cur = db.execute(
        """INSERT INTO adapters (version, scope, status, parent, base_model, path, checksum, data_from,
                                 data_to, info, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            new_id("pending"),
            a.scope,
            a.status,
            a.parent,
            a.base_model,
            a.path,
            a.checksum,
            a.data_from,
            a.data_to,
            json.dumps(a.info, ensure_ascii=False),
            a.created_at,
        ),
    )
    version = f"v{cur.lastrowid}"
    db.execute(
        "UPDATE adapters SET version = ?, path = replace(path, '{version}', ?) WHERE seq = ?",
        (version, version, cur.lastrowid),
    )
    return version


def _set_live(db: sqlite3.Connection, scope: str, version: str | None) -> None:
    if version is None:
        db.execute("DELETE FROM adapter_live WHERE scope = ?", (scope,))
    else:
        db.execute(
            """INSERT INTO adapter_live (scope, version, updated_at) VALUES (?, ?, ?)
               ON CONFLICT(scope) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at""",
            (scope, version, utcnow()),
        )

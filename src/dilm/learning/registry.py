"""Adapter registry: versioned PEFT folders under `<data dir>/adapters/`, checksummed, published atomically.

A version folder (`adapters/v7/`) is plain PEFT output (`adapter_config.json`, `adapter_model.safetensors`),
so vLLM's LoRA serving loads it unchanged; `dilm-manifest.json` beside them lists each file's sha256.
Training writes into `adapters/.staging/<job>/`; publishing renames that folder into place inside the
database transaction that records the version (and, if accepted, makes it live). A crash at any point leaves
either no version or a whole one; the live pointer only ever names complete, recorded versions.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from dilm.errors import AdapterCorruptError, InvalidInputError, StorageError, TrainingBusyError
from dilm.files import fsync_dir
from dilm.models.base import AdapterRef
from dilm.store import Store
from dilm.types import GLOBAL_SCOPE, AdapterVersion

ADAPTERS_DIR = "adapters"
MANIFEST = "dilm-manifest.json"


def scope_slug(scope: str) -> str:
    """A file-name-safe, collision-free name for a scope."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", scope)[:40]
    return f"{readable}-{hashlib.sha256(scope.encode()).hexdigest()[:8]}"


def folder_checksum(folder: Path) -> tuple[str, dict[str, str]]:
    """sha256 of every file (manifest excluded), and one digest over all of them."""
    files: dict[str, str] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        files[path.relative_to(folder).as_posix()] = h.hexdigest()
    total = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return total, files


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())
    fsync_dir(folder)


class Registry:
    """Versions of one data dir: publish, verify, activate, roll back, delete."""

    def __init__(self, data_dir: Path, store: Store) -> None:
        self.data_dir = data_dir
        self.root = data_dir / ADAPTERS_DIR
        self.store = store

    # -- reading ----------------------------------------------------------------------------------
    def list(self, scope: str | None = None, deleted: bool = False) -> list[AdapterVersion]:
        return self.store.adapters(scope, deleted)

    def get(self, version: str) -> AdapterVersion:
        return self.store.adapter(version)

    def folder(self, a: AdapterVersion) -> Path:
        return self.data_dir / a.path

    def live(self, scopes: builtins.list[str]) -> AdapterVersion | None:  # `list` here is the method above
        return self.store.live_adapter(scopes)

    def verify(self, a: AdapterVersion) -> Path:
        """The version's folder, after checking its files against the recorded checksum."""
        folder = self.folder(a)
        if a.deleted_at:
            raise AdapterCorruptError(f"adapter {a.version} was deleted")
        if not folder.is_dir():
            raise AdapterCorruptError(f"adapter {a.version}: its folder {folder} is missing")
        total, _ = folder_checksum(folder)
        if total != a.checksum:
            raise AdapterCorruptError(
                f"adapter {a.version}: files in {folder} do not match the published checksum; refusing to load it"
            )
        return folder

    def ref(self, a: AdapterVersion) -> AdapterRef:
        return AdapterRef(a.version, self.folder(a))

    # -- jobs -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def job(self, scope: str, job_id: str) -> Iterator[Path]:
        """Hold `scope`'s training lock and a fresh staging folder; leftovers of crashed jobs are removed.

        The lock is an OS file lock, so a killed job releases it with its process."""
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        handle = (locks / f"{scope_slug(scope)}.lock").open("a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TrainingBusyError(f"a training job for {scope} is already running") from None
            staging_root = self.root / ".staging"
            for old in staging_root.glob(f"{scope_slug(scope)}--*"):
                shutil.rmtree(old, ignore_errors=True)  # a crashed job's half-written output
            staging = staging_root / f"{scope_slug(scope)}--{job_id}"
            try:
                staging.mkdir(parents=True)
            except OSError as e:
                raise StorageError(f"cannot create {staging}: {e}") from None
            try:
                yield staging
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        finally:
            handle.close()

    def publish(self, staging: Path, a: AdapterVersion, make_live: bool) -> AdapterVersion:
        """Record `a` (files in `staging`) as a new version; live at once when `make_live`."""
        try:
            a.checksum, files = folder_checksum(staging)
            (staging / MANIFEST).write_text(json.dumps({"files": files, "checksum": a.checksum}, indent=2))
            _fsync_tree(staging)
            a.path = f"{ADAPTERS_DIR}/{{version}}"

            def place(version: str) -> None:  # inside the recording transaction: a failed rename records nothing
                final = self.root / version
                if final.exists():  # a folder never recorded: a crash between rename and commit
                    shutil.rmtree(final)
                os.replace(staging, final)

            version = self.store.publish_adapter(a, make_live, place)
            fsync_dir(self.root)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise StorageError(
                    f"disk full while publishing an adapter in {self.root}; live version unchanged"
                ) from None
            raise StorageError(f"cannot publish the adapter in {self.root}: {e}") from None
        return self.store.adapter(version)

    # -- changing what is live --------------------------------------------------------------------
    def activate(self, version: str, *, despite_gate: bool = False) -> AdapterVersion:
        """Make `version` live for its scope. Raises InvalidInputError (deleted, or rejected by the gate unless
        `despite_gate`: for evaluating a rejected version, e.g. `dilm eval adapters`) or AdapterCorruptError."""
        a = self.get(version)
        if a.deleted_at:
            raise InvalidInputError(f"adapter {version} was deleted")
        self.verify(a)
        if a.status != "accepted" and not despite_gate:
            raise InvalidInputError(
                f"adapter {version} was rejected by the regression gate ({_why(a)}); it can be inspected, not activated"
            )
        self.store.set_live_adapter(a.scope, a.version)
        return self.get(version)

    def rollback(self, scope: str = GLOBAL_SCOPE) -> AdapterVersion | None:
        """Make the live version's parent live again (None: the base model); returns the new live version."""
        live = self.store.live_adapter([scope])
        if live is None:
            raise InvalidInputError(f"{scope} has no live adapter: it already answers with the base model")
        parent = self.get(live.parent) if live.parent else None
        if parent is not None and parent.deleted_at:
            parent = None
        self.store.set_live_adapter(scope, parent.version if parent else None)
        return parent

    def delete(self, version: str) -> AdapterVersion:
        """Remove a version's files; its record (and name) stay, so no version name is ever reused."""
        a = self.get(version)
        if a.live:
            raise InvalidInputError(f"adapter {version} is live for {a.scope}: roll back or activate another first")
        shutil.rmtree(self.folder(a), ignore_errors=True)
        self.store.mark_adapter_deleted(version)
        return self.get(version)


def _why(a: AdapterVersion) -> str:
    reasons = a.info.get("gate", {}).get("reasons", [])
    return "; ".join(reasons) or "see `dilm adapters show`"

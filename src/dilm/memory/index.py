"""Exact (flat) inner-product vector index per scope, kept in memory and in sync with the store.

Why flat and not HNSW: scopes are per user, so most searches touch a few hundred vectors; even a single
scope of 100k memories is one 100k×384 float32 matrix-vector product (~38 M multiply-adds, a few ms on two
cores) with exact recall, no build step, no extra dependency and trivial deletes. benchmarks/memory.py
measures it; past ~1M vectors per scope an ANN index (faiss/hnswlib) would be the next step.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from dilm.memory.embed import DIM
from dilm.store import MemoryStore


@dataclass
class _Shard:
    rev: int
    ids: list[str] = field(default_factory=list)
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), dtype=np.float32))
    alive: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    size: int = 0
    pos: dict[str, int] = field(default_factory=dict)


class VectorIndex:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._shards: dict[str, _Shard] = {}
        self._lock = threading.Lock()

    def _shard(self, scope: str) -> _Shard:
        """The scope's vectors, reloaded when another writer (process) changed the scope."""
        rev = self.store.scope_rev(scope)
        shard = self._shards.get(scope)
        if shard is None or shard.rev != rev:
            ids, blobs = self.store.memory_vectors(scope)
            matrix = (
                np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), DIM).copy()
                if ids
                else np.zeros((0, DIM), dtype=np.float32)
            )
            shard = _Shard(
                rev=rev,
                ids=list(ids),
                matrix=matrix,
                alive=np.ones(len(ids), dtype=bool),
                size=len(ids),
                pos={mid: i for i, mid in enumerate(ids)},
            )
            self._shards[scope] = shard
        return shard

    def invalidate(self, scope: str) -> None:
        """Forget a scope's vectors; the next search reloads them from the store."""
        with self._lock:
            self._shards.pop(scope, None)

    def added(self, scope: str, memory_id: str, vector: np.ndarray, removed: list[str], rev_before: int) -> None:
        """Apply this process's own write without a reload (when no one else wrote in between)."""
        with self._lock:
            shard = self._shards.get(scope)
            if shard is None or shard.rev != rev_before:
                self._shards.pop(scope, None)  # reload lazily on next search
                return
            if shard.size == len(shard.matrix):  # grow geometrically
                grown = np.zeros((max(16, 2 * len(shard.matrix)), DIM), dtype=np.float32)
                grown[: shard.size] = shard.matrix[: shard.size]
                alive = np.zeros(len(grown), dtype=bool)
                alive[: shard.size] = shard.alive[: shard.size]
                shard.matrix, shard.alive = grown, alive
            shard.matrix[shard.size] = vector
            shard.alive[shard.size] = True
            shard.ids.append(memory_id)
            shard.pos[memory_id] = shard.size
            shard.size += 1
            for mid in removed:
                if mid in shard.pos:
                    shard.alive[shard.pos[mid]] = False
            shard.rev = rev_before + 1  # our write; a concurrent one makes the next search reload

    def cosines(self, scopes: list[str], ids: list[str], query: np.ndarray) -> dict[str, float]:
        """Cosines of specific memories (e.g. full-text hits outside the dense top-k), from the stored vectors."""
        out: dict[str, float] = {}
        with self._lock:
            for scope in scopes:
                shard = self._shard(scope)
                rows = [shard.pos[mid] for mid in ids if mid in shard.pos]
                if rows:
                    scores = shard.matrix[rows] @ query
                    out.update({shard.ids[i]: float(s) for i, s in zip(rows, scores, strict=True)})
        return out

    def search(self, scopes: list[str], query: np.ndarray, k: int) -> list[tuple[str, float]]:
        """Top-k (memory id, cosine) over the live vectors of `scopes`."""
        hits: list[tuple[str, float]] = []
        with self._lock:
            for scope in scopes:
                shard = self._shard(scope)
                if not shard.size:
                    continue
                scores = shard.matrix[: shard.size] @ query
                scores[~shard.alive[: shard.size]] = -2.0
                top = min(k, shard.size)
                idx = np.argpartition(-scores, top - 1)[:top]
                hits.extend((shard.ids[i], float(scores[i])) for i in idx if scores[i] > -2.0)
        hits.sort(key=lambda h: -h[1])
        return hits[:k]

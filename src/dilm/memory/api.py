"""`bot.memories`: what dilm remembers, per scope, for programs and the CLI."""

from __future__ import annotations

from typing import Any

from dilm import validate
from dilm.errors import InvalidInputError
from dilm.memory.retrieve import Retriever
from dilm.memory.writer import MemoryWriter
from dilm.store import Store
from dilm.types import GLOBAL_SCOPE, Memory, scopes_for, user_scope


class Memories:
    """Add, search, list, get, delete and promote memories; every call is checked against the user's scope."""

    def __init__(
        self, store: Store, writer: MemoryWriter, retriever: Retriever, max_text_chars: int, max_query_chars: int
    ) -> None:
        self.store, self.writer, self.retriever = store, writer, retriever
        self.max_text_chars, self.max_query_chars = max_text_chars, max_query_chars

    def add(
        self, text: str, user: str | None = None, metadata: dict[str, Any] | None = None, global_: bool = False
    ) -> Memory:
        """Remember `text` for `user` (or globally, an admin action); facts it states are extracted too."""
        text = validate.text(text, "memory", self.max_text_chars)
        scope = GLOBAL_SCOPE if global_ else user_scope(validate.user(user))
        learned = self.writer.statement(scope, text, None, kind="import", metadata=metadata or {})
        if learned.memories:
            return learned.memories[0]
        return self.store.duplicate_memory(scope, text) or self.store.memories([scope], limit=1)[0]

    def add_many(
        self,
        texts: list[str],
        user: str | None = None,
        metadata: list[dict[str, Any]] | None = None,
        global_: bool = False,
    ) -> list[Memory]:
        """Remember many texts at once (a conversation's history, notes to import): embedded in batches and
        written in one transaction, all or none. A bulk load: no facts are extracted and no duplicates merged
        (use `add` for that); instruction-like or binary text is stored flagged, as `add` does.

        `metadata`: one dict per text (e.g. where it came from). Returns the memories in the order given.
        Raises InvalidInputError (a bad text, user, or metadata of another length) before anything is written."""
        checked = [validate.text(t, "memory", self.max_text_chars) for t in texts]
        if metadata is not None and len(metadata) != len(checked):
            raise InvalidInputError(f"metadata: one dict per text ({len(checked)}), got {len(metadata)}")
        scope = GLOBAL_SCOPE if global_ else user_scope(validate.user(user))
        return self.writer.bulk(scope, checked, metadata or [{} for _ in checked])

    def search(self, query: str, user: str | None = None, k: int = 5) -> list[Memory]:
        """Best matches first (`score` set), from the user's scope and global; unrelated ones are left out."""
        query = validate.text(query, "query", self.max_query_chars)
        hits = self.retriever.search(query, scopes_for(user and validate.user(user)), k=k)
        return [h.memory for h in hits]

    def list(
        self, user: str | None = None, include_superseded: bool = False, limit: int = 100, global_only: bool = False
    ) -> list[Memory]:
        scopes = [GLOBAL_SCOPE] if global_only or not user else [user_scope(validate.user(user))]
        return self.store.memories(scopes, include_superseded=include_superseded, limit=limit)

    def get(self, memory_id: str, user: str | None = None) -> Memory:
        return self.store.memory(memory_id, scopes_for(user))

    def delete(self, memory_id: str, user: str | None = None) -> Memory:
        """Delete one of `user`'s memories (None: a global one). Messages that cited it are kept."""
        scopes = [user_scope(validate.user(user))] if user else [GLOBAL_SCOPE]
        mem = self.store.delete_memory(memory_id, scopes)
        self.retriever.index.invalidate(mem.scope)
        return mem

    def promote(self, memory_id: str, user: str) -> Memory:
        """Admin action: copy a user's memory (and the facts it states) into global knowledge."""
        mem = self.store.memory(memory_id, [user_scope(validate.user(user))])
        learned = self.writer.statement(
            GLOBAL_SCOPE, mem.text, mem.id, kind="promoted", metadata={"promoted_from": mem.id}
        )
        if learned.memories:
            return learned.memories[0]
        found = self.store.duplicate_memory(GLOBAL_SCOPE, mem.text)
        if found is None:  # flagged text is never promoted, and nothing else leaves no memory behind
            raise InvalidInputError(f"memory {memory_id} cannot become global knowledge: {learned.effects}")
        return found

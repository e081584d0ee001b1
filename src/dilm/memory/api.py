"""`bot.memories` and `bot.facts`: what dilm knows, per scope, for programs and the CLI."""

from __future__ import annotations

from typing import Any

from dilm.errors import InvalidInputError
from dilm.knowledge.extract import canonical_relation
from dilm.types import GLOBAL_SCOPE, Fact, Memory, new_id, user_scope, utcnow


def scopes_for(user: str | None) -> list[str]:
    """What a user may read: their own scope first, then global knowledge. None: global only."""
    return [user_scope(user), GLOBAL_SCOPE] if user else [GLOBAL_SCOPE]


class Memories:
    def __init__(self, bot) -> None:  # type: ignore[no-untyped-def]
        self.bot = bot

    def add(
        self, text: str, user: str | None = None, metadata: dict[str, Any] | None = None, global_: bool = False
    ) -> Memory:
        """Remember `text` for `user` (or globally, an admin action); facts it states are extracted too."""
        text = self.bot._check_text(text, "memory", self.bot.settings.max_feedback_chars)
        scope = GLOBAL_SCOPE if global_ else user_scope(self.bot._user(user))
        learned = self.bot.writer.statement(scope, text, None, kind="import", metadata=metadata or {})
        if learned.memories:
            return learned.memories[0]
        return self.bot.store.duplicate_memory(scope, text) or self.bot.store.memories([scope], limit=1)[0]

    def search(self, query: str, user: str | None = None, k: int = 5) -> list[Memory]:
        """Best matches first (`score` set), from the user's scope and global; unrelated ones are left out."""
        query = self.bot._check_text(query, "query", self.bot.settings.max_message_chars)
        hits = self.bot.retriever.search(query, scopes_for(user and self.bot._user(user)), k=k)
        return [h.memory for h in hits]

    def list(
        self, user: str | None = None, include_superseded: bool = False, limit: int = 100, global_only: bool = False
    ) -> list[Memory]:
        scopes = [GLOBAL_SCOPE] if global_only or not user else [user_scope(self.bot._user(user))]
        return self.bot.store.memories(scopes, include_superseded=include_superseded, limit=limit)

    def get(self, memory_id: str, user: str | None = None) -> Memory:
        return self.bot.store.memory(memory_id, scopes_for(user))

    def delete(self, memory_id: str, user: str | None = None) -> Memory:
        """Delete one of `user`'s memories (None: a global one). Messages that cited it are kept."""
        scopes = [user_scope(self.bot._user(user))] if user else [GLOBAL_SCOPE]
        mem = self.bot.store.delete_memory(memory_id, scopes)
        self.bot.retriever.index.invalidate(mem.scope)
        return mem

    def promote(self, memory_id: str, user: str) -> Memory:
        """Admin action: copy a user's memory (and the facts it states) into global knowledge."""
        mem = self.bot.store.memory(memory_id, [user_scope(self.bot._user(user))])
        learned = self.bot.writer.statement(
            GLOBAL_SCOPE, mem.text, mem.id, kind="promoted", metadata={"promoted_from": mem.id}
        )
        return learned.memories[0] if learned.memories else self.bot.store.duplicate_memory(GLOBAL_SCOPE, mem.text)


class Facts:
    def __init__(self, bot) -> None:  # type: ignore[no-untyped-def]
        self.bot = bot

    def current(self, subject: str | None = None, user: str | None = None) -> list[Fact]:
        """Facts that hold now, from the user's scope and global knowledge."""
        return self.bot.store.facts(scopes_for(user and self.bot._user(user)), subject=subject)

    def history(self, subject: str, user: str | None = None) -> list[Fact]:
        """Every fact ever recorded about `subject`, superseded and retracted ones included, oldest first."""
        facts = self.bot.store.facts(scopes_for(user and self.bot._user(user)), subject=subject, current_only=False)
        return sorted(facts, key=lambda f: f.recorded_at)

    def add(self, subject: str, relation: str, obj: str, user: str | None = None, global_: bool = False) -> Fact:
        """Assert a fact for a user, or globally (an admin action); it supersedes the current value."""
        parts = [
            self.bot._check_text(x, name, 200)
            for x, name in ((subject, "subject"), (relation, "relation"), (obj, "object"))
        ]
        if not global_ and not user:
            raise InvalidInputError("say whose fact this is (user) or make it global")
        scope = GLOBAL_SCOPE if global_ else user_scope(self.bot._user(user))
        now = utcnow()
        fact = Fact(
            id=new_id("fact"),
            scope=scope,
            subject=parts[0],
            relation=canonical_relation(parts[1]),
            object=parts[2],
            valid_at=now,
            recorded_at=now,
            source_kind="admin" if global_ else "api",
        )
        stored, _ = self.bot.store.add_fact(fact)
        return stored

    def retract(self, fact_id: str, user: str | None = None) -> Fact:
        scopes = [user_scope(self.bot._user(user))] if user else [GLOBAL_SCOPE]
        return self.bot.store.retract_fact(fact_id, scopes)

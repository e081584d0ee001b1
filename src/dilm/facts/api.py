"""`bot.facts`: the bi-temporal knowledge graph, per scope, for programs and the CLI."""

from __future__ import annotations

from dilm import validate
from dilm.errors import InvalidInputError
from dilm.facts.extract import canonical_relation
from dilm.store import Store
from dilm.types import GLOBAL_SCOPE, Fact, new_id, scopes_for, user_scope, utcnow


class Facts:
    """Current facts, their history, and admin/API assertions and retractions (never silent deletes)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def current(self, subject: str | None = None, user: str | None = None) -> list[Fact]:
        """Facts that hold now, from the user's scope and global knowledge."""
        return self.store.facts(scopes_for(user and validate.user(user)), subject=subject)

    def history(self, subject: str | None, user: str | None = None) -> list[Fact]:
        """Every fact ever recorded about `subject` (None: every subject), superseded and retracted ones included,
        oldest first."""
        facts = self.store.facts(scopes_for(user and validate.user(user)), subject=subject, current_only=False)
        return sorted(facts, key=lambda f: f.recorded_at)

    def add(self, subject: str, relation: str, obj: str, user: str | None = None, global_: bool = False) -> Fact:
        """Assert a fact for a user, or globally (an admin action); it supersedes the current value."""
        parts = [
            validate.text(x, name, 200) for x, name in ((subject, "subject"), (relation, "relation"), (obj, "object"))
        ]
        if not global_ and not user:
            raise InvalidInputError("say whose fact this is (user) or make it global")
        scope = GLOBAL_SCOPE if global_ else user_scope(validate.user(user))
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
        stored, _ = self.store.add_fact(fact)
        return stored

    def retract(self, fact_id: str, user: str | None = None) -> Fact:
        """Retract a fact: its record is expired now (`expired_at`), it stays in the history. Raises
        FactNotFoundError when the fact is not in the user's (or, for None, the global) scope."""
        scopes = [user_scope(validate.user(user))] if user else [GLOBAL_SCOPE]
        return self.store.retract_fact(fact_id, scopes)

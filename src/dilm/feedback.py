"""One piece of feedback: recorded durably first, then its instant effects (memories, facts, profile) applied,
and, for a correction that contradicts global knowledge, a confirmation question for the user."""

from __future__ import annotations

from typing import Any

from dilm import profile, validate
from dilm.asking import Asker
from dilm.errors import InvalidInputError, PermissionDeniedError
from dilm.memory.writer import Learned, MemoryWriter
from dilm.profile import Profiles
from dilm.store import Store
from dilm.text import language
from dilm.types import Feedback, FeedbackKind, FeedbackResult, Message, new_id, user_scope, utcnow


def one_kind(
    rating: int | None, correction: str | None, supplement: str | None, preferred: str | None, comment: str | None
) -> tuple[FeedbackKind, Any]:
    """(kind, value) of the one kind of feedback given. Raises InvalidInputError for none or several."""
    offered: list[tuple[FeedbackKind, Any]] = [
        ("rating", rating),
        ("correction", correction),
        ("supplement", supplement),
        ("preference", preferred),
        ("comment", comment),
    ]
    given = {k: v for k, v in offered if v is not None}
    if len(given) != 1:
        raise InvalidInputError(
            "give exactly one of rating, correction, supplement, preferred or comment"
            + (f" (got {', '.join(given)})" if given else "")
        )
    ((kind, value),) = given.items()
    return kind, value


class FeedbackRecorder:
    """Records feedback on assistant messages and applies what it teaches at once."""

    def __init__(
        self, store: Store, writer: MemoryWriter, profiles: Profiles, asker: Asker, max_text_chars: int
    ) -> None:
        self.store, self.writer, self.profiles, self.asker = store, writer, profiles, asker
        self.max_text_chars = max_text_chars

    def record(
        self, msg: Message, kind: FeedbackKind, value: Any, reason: str | list[str] | None, user: str | None
    ) -> FeedbackResult:
        """Validate, commit the feedback row (durable before anything else happens), then learn from it.

        Raises InvalidInputError (not an assistant message, bad rating or text) or PermissionDeniedError
        (`user` given and not the message's owner)."""
        if msg.role != "assistant":
            raise InvalidInputError(f"{msg.id} is a {msg.role} message: feedback goes on the assistant's answers")
        if user is not None and validate.user(user) != msg.user_id:
            raise PermissionDeniedError(f"message {msg.id} belongs to another user")
        fb = Feedback(
            id=new_id("fb"),
            message_id=msg.id,
            user_id=msg.user_id,
            kind=kind,
            reasons=validate.reasons(reason),
            created_at=utcnow(),
        )
        if kind == "rating":
            if isinstance(value, bool) or value not in (-1, 1):
                raise InvalidInputError(f"rating must be +1 or -1, not {value!r}")
            fb.rating = int(value)
        else:
            fb.text = validate.text(value, kind, self.max_text_chars)
        self.store.add_feedback(fb)  # durable first: whatever happens next, the feedback is kept
        effects, learned = self._learn(msg, fb)
        question = self._confirm(msg, learned) if learned is not None else None
        return FeedbackResult(
            id=fb.id, message_id=msg.id, kind=fb.kind, effects=[f"recorded {kind} {fb.id}", *effects], question=question
        )

    def _learn(self, msg: Message, fb: Feedback) -> tuple[list[str], Learned | None]:
        """The instant effects of one piece of feedback (memories, facts, profile), applied at once."""
        scope = user_scope(msg.user_id)
        asked = self.store.message(msg.parent_id) if msg.parent_id else None
        question = asked.content if asked else ""
        # The pictures the question came with: a correction of what one shows is linked to it.
        images = [i["sha256"] for i in (asked.meta.get("images") or []) if i.get("sha256")] if asked else []
        effects: list[str] = []
        learned = None
        if fb.kind == "correction" and fb.text:
            learned = self.writer.correction(scope, question, fb.text, fb.id, images)
            effects += learned.effects
        elif fb.kind == "supplement" and fb.text:
            effects += self.writer.supplement(scope, question, fb.text, fb.id, images).effects
        elif fb.kind == "rating" and fb.rating == -1:
            effects.append("marked the answer as bad: it will not be reused")
        elif fb.kind == "preference":
            effects.append("kept the preferred answer as a preference pair for training")
        prefs = profile.stated_preferences(fb.text or "") if fb.kind in ("comment", "correction") else {}
        prefs.update(profile.stated_preferences(" ".join(fb.reasons)))
        if prefs:
            self.profiles.learn(msg.user_id, prefs)
            effects.append(f"profile: {profile.describe(prefs)}")
        return effects, learned

    def _confirm(self, msg: Message, learned: Learned) -> str | None:
        """A confirmation question when a correction contradicts global knowledge (active and hybrid)."""
        mode = self.asker.mode(self.profiles.get(msg.user_id))
        if mode == "passive":
            return None
        parent = self.store.message(msg.parent_id) if msg.parent_id else None
        lang = language(parent.content if parent else msg.content)
        return self.asker.after_correction(msg.user_id, learned.facts, msg.id, mode, lang)

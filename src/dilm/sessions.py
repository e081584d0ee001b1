"""`bot.sessions`: reading the conversation log — a user's sessions, their messages, and the feedback on them."""

from __future__ import annotations

from typing import Any

from dilm.errors import MessageNotFoundError
from dilm.store import Store
from dilm.types import Message, Session


class Sessions:
    """Sessions and messages as they were logged (read only: turns are logged by `Assistant.chat`)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, session_id: str, user: str | None = None) -> Session:
        """One session; when `user` is given it must be theirs (SessionNotFoundError, PermissionDeniedError)."""
        return self.store.session(session_id, user)

    def messages(self, session_id: str) -> list[Message]:
        """A session's messages, oldest first."""
        return self.store.session_messages(session_id)

    def message(self, message_id: str, user: str | None = None) -> Message:
        """One message; when `user` is given, another user's message is reported as not found."""
        msg = self.store.message(message_id)
        if user is not None and msg.user_id != user:
            raise MessageNotFoundError(f"no message {message_id!r} of user {user!r}")
        return msg

    def history(self, user: str | None = None, session: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Recent messages (oldest first), each with the feedback given on it; a session must be the user's."""
        if session is not None:
            self.store.session(session, user)
        msgs = self.store.messages(user_id=user, session_id=session, limit=limit)
        fbs = self.store.feedback_for([m.id for m in msgs])
        return [{**m.model_dump(), "feedback": [f.model_dump() for f in fbs.get(m.id, [])]} for m in msgs]

    def list(self, user: str, limit: int = 50) -> list[Session]:  # last: `list` names this method below here
        """The user's newest `limit` sessions, most recently updated first."""
        return self.store.sessions(user, limit)

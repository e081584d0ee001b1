"""Questions asked of the log: training windows, answer outcomes, a user's topics, satisfaction."""

from __future__ import annotations

import json
from typing import Any

from dilm.store.sqlite.connection import SQLiteBase
from dilm.types import LoggedFeedback

_LOGGED_FEEDBACK = """SELECT f.rowid AS seq, f.id, f.user_id, f.kind, f.rating, f.text, f.created_at,
        q.content AS question, a.content AS answer,
        (SELECT m.text FROM memories m WHERE m.source_id = f.id AND m.embedding IS NOT NULL
         ORDER BY m.rowid LIMIT 1) AS learned
    FROM feedback f JOIN messages a ON a.id = f.message_id JOIN messages q ON q.id = a.parent_id
    WHERE f.rowid > ? AND f.rowid <= ? AND f.superseded_by IS NULL {where} ORDER BY f.rowid"""

# The newest plain answers first; whether each was rated is decided after the LIMIT (the window is the newest
# `limit` answers, rated or not).
_OUTCOMES = """SELECT lp, bad FROM (
    SELECT json_extract(a.meta, '$.mean_logprob') AS lp, a.rowid AS seq,
           EXISTS (SELECT 1 FROM feedback f WHERE f.message_id = a.id AND f.superseded_by IS NULL
                   AND (f.kind = 'correction' OR (f.kind = 'rating' AND f.rating = -1))) AS bad,
           EXISTS (SELECT 1 FROM feedback f WHERE f.message_id = a.id) AS rated
    FROM messages a WHERE a.role = 'assistant' AND json_extract(a.meta, '$.mean_logprob') IS NOT NULL
    AND COALESCE(json_extract(a.decoding, '$.strategy'), 'greedy') != 'sample'
    AND json_extract(a.meta, '$.known_answer') IS NULL
    AND COALESCE(json_extract(a.meta, '$.policy.action'), 'answer') = 'answer'
    ORDER BY a.rowid DESC LIMIT ?) WHERE rated ORDER BY seq DESC"""


class LogQueriesMixin(SQLiteBase):
    def logged_feedback(self, user: str | None = None, after: int = 0, upto: int | None = None) -> list[LoggedFeedback]:
        bounds = (after, upto if upto is not None else 2**62)
        if user:
            found = self._all(_LOGGED_FEEDBACK.format(where="AND f.user_id = ?"), (*bounds, user))
        else:
            found = self._all(_LOGGED_FEEDBACK.format(where=""), bounds)
        return [
            LoggedFeedback(
                r["seq"],
                r["id"],
                r["user_id"],
                r["kind"],
                r["rating"],
                r["text"],
                r["question"],
                r["answer"],
                r["learned"],
                r["created_at"],
            )
            for r in found
        ]

    def answer_outcomes(self, limit: int = 2000) -> list[tuple[float, bool]]:
        # Only answers the user reacted to are outcomes; silence is not evidence of a right answer. Sampled
        # answers are left out: their log-probabilities are not comparable with greedy or beam ones.
        return [(float(r["lp"]), bool(r["bad"])) for r in self._all(_OUTCOMES, (limit,))]

    def user_questions(self, user_id: str, limit: int = 200) -> list[str]:
        found = self._all(
            "SELECT content FROM messages WHERE user_id = ? AND role = 'user' ORDER BY rowid DESC LIMIT ?",
            (user_id, limit),
        )
        return [r["content"] for r in found]

    def feedback_reasons(self, user_id: str, limit: int = 500) -> list[list[str]]:
        found = self._all(
            "SELECT reasons FROM feedback WHERE user_id = ? AND superseded_by IS NULL ORDER BY rowid DESC LIMIT ?",
            (user_id, limit),
        )
        return [list(json.loads(r["reasons"] or "[]")) for r in found]

    def rejected_reward_picks(self) -> set[tuple[str, str]]:
        found = self._all(
            """SELECT q.content AS question, a.content AS answer FROM messages a JOIN messages q ON q.id = a.parent_id
               WHERE json_extract(a.meta, '$.guard.reward.version') IS NOT NULL AND EXISTS (
                 SELECT 1 FROM feedback f WHERE f.message_id = a.id AND f.superseded_by IS NULL
                 AND (f.kind = 'correction' OR (f.kind = 'rating' AND f.rating = -1)))"""
        )
        return {(r["question"], r["answer"]) for r in found}

    def satisfaction(self) -> dict[str, list[dict[str, Any]]]:
        """Share of rated answers rated positive (the latest rating per answer counts), per day and per adapter
        version that produced the answer ("base": none)."""
        latest = """SELECT f.rating, substr(m.created_at, 1, 10) AS day, coalesce(m.adapter_version, 'base') AS adapter,
                           m.rowid AS seq
                    FROM feedback f JOIN messages m ON m.id = f.message_id
                    WHERE f.kind = 'rating' AND f.superseded_by IS NULL"""
        out: dict[str, list[dict[str, Any]]] = {}
        for name, column in (("by_day", "day"), ("by_adapter", "adapter")):
            found = self._all(
                f"""SELECT {column} AS key, count(*) AS rated, sum(rating > 0) AS positive FROM ({latest})
                    GROUP BY {column} ORDER BY min(seq)"""
            )
            out[name] = [
                {
                    "key": r["key"],
                    "rated": r["rated"],
                    "positive": r["positive"],
                    "satisfaction": r["positive"] / r["rated"],
                }
                for r in found
            ]
        return out

"""SQLite store: migrations on an old database, durability, refusals."""

from __future__ import annotations

import sqlite3
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from dilm.errors import StorageError
from dilm.store import SQLiteStore, open_store
from dilm.store.migrations import MIGRATIONS
from tests import waiting
from tests.stand_ins import publish_stand_in


def test_new_database_is_fully_migrated_with_wal_and_foreign_keys(tmp_path: Path):
    store = SQLiteStore(tmp_path / "x.db")
    assert store.schema_version == len(MIGRATIONS)
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("foreign_keys") == 1


def test_old_database_is_migrated_on_open_and_keeps_its_data(tmp_path: Path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)  # a database frozen at schema version 1
    with db:  # one transaction
        MIGRATIONS[0](db)
        db.execute("PRAGMA user_version=1")
        db.execute("INSERT INTO users (id, created_at) VALUES ('u', '2025-01-01T00:00:00+00:00')")
        db.execute("INSERT INTO sessions VALUES ('s', 'u', '2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00')")
        db.execute(
            "INSERT INTO messages (id, session_id, user_id, role, content, created_at) "
            "VALUES ('m', 's', 'u', 'assistant', 'hi', '2025-01-01T00:00:00+00:00')"
        )
        db.execute("INSERT INTO feedback VALUES ('f', 'm', 'u', 'rating', -1, NULL, '2025-01-01T00:00:00+00:00')")
    db.close()

    store = SQLiteStore(path)
    assert store.schema_version == len(MIGRATIONS) > 1
    assert store.message("m").content == "hi" and store.message("m").meta == {}
    fb = store.feedback_for(["m"])["m"][0]
    assert fb.rating == -1 and fb.reasons == []
    assert store.session("s").title is None and store.profile("u") == {} and store.user_decoding("u") == {}


def test_database_from_a_newer_dilm_is_refused(tmp_path: Path):
    path = tmp_path / "new.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 5}")
    db.close()
    with pytest.raises(StorageError, match="newer"):
        SQLiteStore(path)


def test_failed_migration_leaves_the_database_untouched(tmp_path: Path, monkeypatch):
    path = tmp_path / "x.db"
    SQLiteStore(path).close()

    def broken(db):
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("boom")

    monkeypatch.setattr("dilm.store.migrations.MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(RuntimeError):
        SQLiteStore(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchone() is None


def test_a_turn_is_written_whole_or_not_at_all(tmp_path: Path):
    from dilm.types import Message, utcnow

    store = SQLiteStore(tmp_path / "x.db")
    s = store.create_session("u")
    ok = Message(id="m1", session_id=s.id, user_id="u", role="user", content="q", created_at=utcnow())
    bad = Message(id="m1", session_id=s.id, user_id="u", role="assistant", content="a", created_at=utcnow())  # dup id
    with pytest.raises(sqlite3.IntegrityError):
        store.add_turn(ok, bad)
    assert store.session_messages(s.id) == []


def test_feedback_survives_a_hard_kill_right_after_it_returns(tmp_path: Path):
    """os._exit skips every cleanup: what feedback() acknowledged must already be on disk."""
    script = textwrap.dedent(
        f"""
        import os
        from dilm.store import open_store
        from dilm.types import Feedback, Message, utcnow
        store = open_store(__import__("pathlib").Path({str(tmp_path)!r}))
        s = store.create_session("u")
        q = Message(id="q", session_id=s.id, user_id="u", role="user", content="q", created_at=utcnow())
        a = Message(id="a", session_id=s.id, user_id="u", role="assistant", content="a", created_at=utcnow())
        store.add_turn(q, a)
        store.add_feedback(Feedback(id="f", message_id="a", user_id="u", kind="correction", text="fix",
                                    created_at=utcnow()))
        os._exit(9)
        """
    )
    proc = waiting.run([sys.executable, "-c", script], "the child to os._exit", capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    store = open_store(tmp_path)
    assert store.feedback_for(["a"])["a"][0].text == "fix"


def test_forgetting_a_user_never_makes_new_feedback_look_already_trained(bot):
    mine = bot.chat("Hi there", user="ann")
    theirs = bot.chat("Hello", user="ben")
    bot.feedback(mine.id, rating=1)
    bot.feedback(theirs.id, rating=-1)  # the newest feedback row: ben's
    consumed = bot.store.feedback_high_water()
    publish_stand_in(bot, "global", live=False, data_to=consumed)  # a global version trained up to now
    bot.users.forget("ben")  # frees the top rowid
    bot.feedback(mine.id, rating=-1)
    assert bot.store.feedback_high_water() > consumed  # new feedback lies past the consumed window


def test_forgetting_waits_for_the_users_turn_in_flight_so_nothing_outlives_it(bot):
    stream = bot.stream("Write a long story about a lighthouse.", user="zed", max_new_tokens=48)
    deltas = iter(stream)
    next(deltas)  # the turn is under way
    done: list[dict] = []
    forget = threading.Thread(target=lambda: done.append(bot.users.forget("zed")))
    forget.start()
    waiting.until(lambda: "zed" in bot.users._forgetting or not forget.is_alive(), "the forget of zed to begin")
    assert forget.is_alive()  # it waits for the turn
    list(deltas)
    waiting.join(forget, "the forget of zed to finish after the turn")
    assert done and done[0]["messages"] == 2  # the finished turn was logged, then forgotten
    assert bot.history("zed") == [] and bot.users.export("zed")["sessions"] == []


def test_a_turn_may_record_feedback_for_its_user_while_a_forget_waits(bot):
    forget = threading.Thread(target=bot.users.forget, args=("amy",))
    with bot.users.active("amy"):  # a turn in flight
        forget.start()
        waiting.until(lambda: "amy" in bot.users._forgetting or not forget.is_alive(), "the forget of amy to begin")
        with bot.users.active("amy"):  # the same turn records a clarification's feedback: no deadlock
            pass
    waiting.join(forget, "the forget of amy to finish once the turn ended")
    assert not forget.is_alive()

"""Per-user state under concurrency: two turns of one user (generation_workers > 1) must not lose an update.

Both threads start each round together (a barrier) and write at the same moment; after every round the state
must hold both writes. No wall-clock deadlines: the threads only wait on each other. The model is never used
(no generation), so the assistant is opened without loading a backend."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from dilm import Assistant
from dilm.errors import InvalidInputError

ROUNDS = 60
USER = "amy"
T = TypeVar("T")


@pytest.fixture
def bot(data_dir: Path) -> Iterator[Assistant]:
    with Assistant.open(data_dir, decoding={"max_new_tokens": 24}) as a:
        yield a


def race(
    rounds: int, write_a: Callable[[int], object], write_b: Callable[[int], object], check: Callable[[int], T]
) -> list[T]:
    """Run write_a(i) and write_b(i) at the same moment in two threads, then check(i), for each round i; returns
    what check returned per round (errors in either thread are re-raised)."""
    start, done, checked = threading.Barrier(2), threading.Barrier(2), threading.Barrier(2)
    seen: list[T] = []
    errors: list[BaseException] = []

    def run(write: Callable[[int], object], checker: bool) -> None:
        try:
            for i in range(rounds):
                start.wait()
                write(i)
                done.wait()
                if checker:
                    seen.append(check(i))
                checked.wait()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            errors.append(e)
            for b in (start, done, checked):
                b.abort()

    threads = [threading.Thread(target=run, args=(write_a, True)), threading.Thread(target=run, args=(write_b, False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
    return seen


def tone(i: int) -> str:
    return ("formal", "casual")[i % 2]


def temperature(i: int) -> float:
    return round(0.1 + i / 100, 2)


def test_profile_and_decoding_updates_of_one_user_are_both_kept(bot: Assistant) -> None:
    def state(i: int) -> tuple[str | None, float]:
        return bot.profiles.get(USER).get("tone"), bot.decoding_for(USER).temperature

    seen = race(
        ROUNDS,
        lambda i: bot.profiles.set(USER, tone=tone(i)),
        lambda i: bot.set_user_decoding(USER, temperature=temperature(i)),
        state,
    )
    assert seen == [(tone(i), temperature(i)) for i in range(ROUNDS)]


def test_two_profile_keys_set_at_once_are_both_kept(bot: Assistant) -> None:
    def verbosity(i: int) -> str:
        return ("short", "long")[i % 2]

    seen = race(
        ROUNDS,
        lambda i: bot.profiles.set(USER, tone=tone(i)),
        lambda i: bot.profiles.set(USER, verbosity=verbosity(i)),
        lambda i: bot.profiles.get(USER),
    )
    assert seen == [{"tone": tone(i), "verbosity": verbosity(i)} for i in range(ROUNDS)]


def test_banned_terms_stated_at_once_add_up(bot: Assistant) -> None:
    """Two turns each saying "never mention X": both terms are banned (the merge runs inside the write)."""
    rounds = 8  # 16 terms stay under the 200 characters an avoid list keeps
    seen = race(
        rounds,
        lambda i: bot.profiles.learn(USER, {"avoid": f"apple{i}"}),
        lambda i: bot.profiles.learn(USER, {"avoid": f"苹果{i}"}),
        lambda i: set(bot.profiles.get(USER)["avoid"].split(", ")),
    )
    assert seen == [{f"apple{j}" for j in range(i + 1)} | {f"苹果{j}" for j in range(i + 1)} for i in range(rounds)]


def test_decoding_changes_at_once_never_save_an_invalid_combination(bot: Assistant) -> None:
    """n=4 (fine with sampling) and strategy=greedy (fine with n=1), set at the same moment: one must be refused,
    and what is saved must still be a valid whole (else every later turn of the user would fail)."""

    def attempt(**values: object) -> None:
        with contextlib.suppress(InvalidInputError):  # the second of the two is the invalid combination
            bot.set_user_decoding(USER, **values)

    def state(i: int) -> tuple[str, int]:
        d = bot.decoding_for(USER)  # raises if an invalid combination was saved
        bot.set_user_decoding(USER, strategy="sample", n=1)  # the next round starts valid again
        return d.strategy, d.n

    bot.set_user_decoding(USER, strategy="sample", n=1)
    seen = race(ROUNDS, lambda i: attempt(n=4), lambda i: attempt(strategy="greedy"), state)
    assert all(s in (("sample", 4), ("greedy", 1)) for s in seen)

"""How the tests wait: on the event itself (a line a process prints, a file appearing, a thread ending, a server
answering), never on a wall-clock deadline that a busy machine misses.

HANG_S is the one safety limit, against a hang only: it is meant never to fire on a slow machine, just to turn
a stuck test into a failure that says what it was waiting for. DILM_TEST_HANG_S overrides it (seconds).
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import IO, Any, TypeVar

import httpx

HANG_S = float(os.environ.get("DILM_TEST_HANG_S", "900"))
HANG_MS = HANG_S * 1000  # for Playwright, which counts in milliseconds

T = TypeVar("T")


class Hung(AssertionError):
    """What a test waited for did not happen within HANG_S."""


def _hung(what: str, detail: str = "") -> Hung:
    tail = f"\n{detail}" if detail else ""
    return Hung(f"waited {HANG_S:g} s (DILM_TEST_HANG_S) for {what}; it never happened{tail}")


def until(condition: Callable[[], T], what: str, every: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy; returns that."""
    end = time.monotonic() + HANG_S
    while not (got := condition()):
        if time.monotonic() > end:
            raise _hung(what)
        time.sleep(every)
    return got


def join(thread: threading.Thread, what: str) -> None:
    thread.join(HANG_S)
    if thread.is_alive():
        raise _hung(what)


def get(q: queue.Queue[T], what: str) -> T:
    try:
        return q.get(timeout=HANG_S)
    except queue.Empty:
        raise _hung(what) from None


def run(cmd: Sequence[str | bytes], what: str, **kw: Any) -> subprocess.CompletedProcess[Any]:
    """subprocess.run that waits for the process to exit, however long a busy machine makes it take."""
    try:
        return subprocess.run(cmd, timeout=HANG_S, **kw)
    except subprocess.TimeoutExpired as e:
        raise _hung(what, _output(e.stdout, e.stderr)) from None


def communicate(proc: subprocess.Popen[Any], what: str, input: Any = None) -> tuple[Any, Any]:  # noqa: A002
    try:
        return proc.communicate(input, timeout=HANG_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise _hung(what, _output(out, err)) from None


def wait(proc: subprocess.Popen[Any], what: str) -> int:
    try:
        return proc.wait(HANG_S)
    except subprocess.TimeoutExpired:
        raise _hung(what) from None


def read_until(proc: subprocess.Popen[Any], stream: IO[str], done: Callable[[str], bool], what: str) -> str:
    """Read `stream` (a pipe from `proc`) a character at a time until `done(everything read)`; returns it.

    A read blocks until the process writes, so the safety limit is a timer that kills the process: the read
    then ends, and the failure says what was awaited and what had been read."""
    seen = ""
    timer = threading.Timer(HANG_S, proc.kill)
    timer.daemon = True
    timer.start()
    try:
        while not done(seen):
            ch = stream.read(1)
            if not ch:
                if timer.finished.is_set():
                    raise _hung(what, f"read so far: {seen!r}")
                raise AssertionError(f"the process closed its output (exit {proc.wait()}) before {what}: {seen!r}")
            seen += ch
    finally:
        timer.cancel()
    return seen


def _output(out: Any, err: Any) -> str:
    def text(x: Any) -> str:
        return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")

    return f"stdout: {text(out)[-3000:]}\nstderr: {text(err)[-3000:]}"


class http:  # noqa: N801 - used like the httpx module
    """httpx's calls with HANG_S as their timeout: httpx's default gives up on a read after 5 s, a deadline a
    busy machine misses while the model answers."""

    HTTPError = httpx.HTTPError

    @staticmethod
    def get(url: str, **kw: Any) -> httpx.Response:
        return httpx.get(url, timeout=HANG_S, **kw)

    @staticmethod
    def post(url: str, **kw: Any) -> httpx.Response:
        return httpx.post(url, timeout=HANG_S, **kw)

    @staticmethod
    def options(url: str, **kw: Any) -> httpx.Response:
        return httpx.options(url, timeout=HANG_S, **kw)

    @staticmethod
    def stream(method: str, url: str, **kw: Any) -> AbstractContextManager[httpx.Response]:
        return httpx.stream(method, url, timeout=HANG_S, **kw)

    @staticmethod
    def Client(**kw: Any) -> httpx.Client:  # noqa: N802
        return httpx.Client(timeout=HANG_S, **kw)

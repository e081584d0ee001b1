"""Run an ASGI app on a free loopback port in a background thread (a real HTTP peer for tests)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from tests import waiting


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Yields the base URL (http://127.0.0.1:PORT) while `app` serves; stops it afterwards."""
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    waiting.until(lambda: srv.started or not thread.is_alive(), f"the test server on port {port} to start")
    assert srv.started, f"the test server on port {port} stopped before it started (see the log above)"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        waiting.join(thread, f"the test server on port {port} to stop")

"""Prometheus metrics of one app: requests by route and status, latency, feedback by kind, generated tokens."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # per app: two apps in one process do not mix their figures
        self.requests = Counter(
            "dilm_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "dilm_http_request_seconds",
            "Time to the end of the response",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.feedbacks = Counter("dilm_feedback", "Feedback recorded", ["kind"], registry=self.registry)
        self.tokens = Counter("dilm_generated_tokens", "Tokens generated in answers", registry=self.registry)

    def feedback(self, kind: str) -> None:
        self.feedbacks.labels(kind).inc()

    def generated(self, tokens: int) -> None:
        self.tokens.inc(tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """An ASGI middleware class bound to these metrics (for `app.add_middleware`)."""
        metrics = self

        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", None) or ("/web" if scope["path"].startswith("/web/") else "unmatched")
                method = scope["method"] if scope["method"] in METHODS else "OTHER"  # labels stay bounded
                metrics.requests.labels(method, path, str(status)).inc()
                metrics.latency.labels(path).observe(time.perf_counter() - started)

        return measured

"""The HTTP API (FastAPI): OpenAI-compatible chat completions plus dilm's feedback endpoint.

First slice of the server: `/v1/chat/completions` (JSON or SSE), `/v1/models`, `/v1/feedback`, `/healthz`.
Generation runs in worker threads, never on the event loop. Errors are JSON bodies in OpenAI's shape
(`{"error": {"message", "type", "code"}}`) with the matching status code. There are no API keys yet, so
`dilm serve` binds to loopback only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from dilm.assistant import DEFAULT_USER, Assistant
from dilm.errors import (
    DilmError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    TrainingBusyError,
)
from dilm.types import Reply

STATUS: list[tuple[type[DilmError], int]] = [
    (InvalidInputError, 400),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (TrainingBusyError, 409),
]


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=64_000)
    name: str | None = None


class ChatRequest(BaseModel):
    """OpenAI's chat-completions body (the fields dilm uses), plus `session_id` to continue a dilm session."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessageIn] = Field(min_length=1, max_length=1000)
    model: str | None = None
    user: str | None = Field(None, description="the end user: memories, facts and adapters are theirs")
    session_id: str | None = Field(None, description="dilm: continue this session (its history is dilm's)")
    temperature: float | None = Field(None, ge=0, le=5)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    n: int | None = Field(None, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(min_length=1, max_length=100)
    rating: int | None = None
    correction: str | None = None
    supplement: str | None = None
    preferred: str | None = None
    comment: str | None = None
    reason: str | list[str] | None = None
    user: str | None = None


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def _decoding(body: ChatRequest) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if body.temperature == 0:
        d["strategy"] = "greedy"
    elif body.temperature is not None:
        d.update(strategy="sample", temperature=body.temperature)
    if body.top_p is not None:
        d["top_p"] = body.top_p
    if body.max_completion_tokens or body.max_tokens:
        d["max_new_tokens"] = body.max_completion_tokens or body.max_tokens
    if body.n is not None:
        d["n"] = body.n
    if body.stop is not None:
        d["stop"] = [body.stop] if isinstance(body.stop, str) else body.stop
    if body.seed is not None:
        d["seed"] = body.seed
    return d


def _question(body: ChatRequest) -> str:
    """The turn's text: the last message, which must be the user's (dilm keeps the history itself)."""
    last = body.messages[-1]
    if last.role != "user":
        raise InvalidInputError("the last message must be the user's: it is what dilm answers")
    return last.content


def _completion(reply: Reply, created: int) -> dict[str, Any]:
    choices = [{"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": "stop"}]
    for i, c in enumerate(reply.candidates[1:], 1):  # the other candidates, as OpenAI's n > 1 choices
        choices.append({"index": i, "message": {"role": "assistant", "content": c.text}, "finish_reason": "stop"})
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": created,
        "model": reply.model,
        "choices": choices,
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
        "dilm": _extras(reply),
    }


def _extras(reply: Reply) -> dict[str, Any]:
    return {
        "session_id": reply.session_id,
        "user": reply.user_id,
        "citations": reply.citations,
        "adapter_version": reply.adapter_version,
        "checks": reply.checks,
    }


def create_app(bot: Assistant) -> FastAPI:
    app = FastAPI(title="dilm", version="0.1", description="An assistant that learns from its users' feedback.")

    @app.exception_handler(DilmError)
    async def dilm_error(request: Request, e: DilmError) -> JSONResponse:
        status = next((code for cls, code in STATUS if isinstance(e, cls)), 500)
        return _error(status, str(e), type(e).__name__)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return _error(422, f"{where + ': ' if where else ''}{first.get('msg', 'invalid request')}", "invalid_request")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "model": bot.model_name}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        now = int(time.time())
        data = [{"id": bot.model_name, "object": "model", "created": now, "owned_by": "dilm"}]
        for a in bot.adapters.list():
            if a.status == "accepted" and not a.deleted_at and a.scope != "reward":
                data.append({"id": a.version, "object": "model", "created": now, "owned_by": a.scope})
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest) -> dict[str, Any] | StreamingResponse:
        text, user, decoding = _question(body), body.user or DEFAULT_USER, _decoding(body)
        created = int(time.time())
        if not body.stream:
            reply = await run_in_threadpool(bot.chat, text, user, body.session_id, **decoding)
            return _completion(reply, created)
        stream = bot.stream(text, user, body.session_id, **decoding)

        def events() -> Iterator[str]:
            chunk = {"object": "chat.completion.chunk", "created": created, "model": bot.model_name}
            try:
                for delta in stream:
                    yield _sse({**chunk, "id": "pending", "choices": [{"index": 0, "delta": {"content": delta}}]})
            except DilmError as e:  # the status line is out already: the error goes in the stream
                yield _sse({"error": {"message": str(e), "type": type(e).__name__}})
                return
            reply = stream.reply
            assert reply is not None
            done = {**chunk, "id": reply.id, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            yield _sse({**done, "dilm": _extras(reply)})
            yield "data: [DONE]\n\n"

        return StreamingResponse(iterate_in_threadpool(events()), media_type="text/event-stream")

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackRequest) -> dict[str, Any]:
        values = body.model_dump()
        message_id = values.pop("message_id")
        result = await run_in_threadpool(lambda: bot.feedback(message_id, **values))
        return result.model_dump()

    return app


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

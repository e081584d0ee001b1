"""The HTTP API (FastAPI): OpenAI-compatible chat completions, dilm's feedback, memory, fact, profile, adapter
and user endpoints, metrics, and the web page. The contract is docs/http.md.

Interfaces only: every endpoint checks who is asking (`auth.Principal`) and calls the `Assistant`. Blocking work
runs in worker threads, never on the event loop; at most `server.generation_workers` turns generate at once and
the rest queue. Errors are JSON in OpenAI's shape (`{"error": {"message", "type", "code"}}`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

import anyio
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from dilm import profile as profile_rules
from dilm.assistant import Assistant, ReplyStream
from dilm.errors import DilmError, ImageNotFoundError, PermissionDeniedError
from dilm.images import MEDIA_TYPES
from dilm.server import openai_chat
from dilm.server.auth import Principal, RateLimitedError, RateLimiter, authenticate
from dilm.server.limits import BodyLimit
from dilm.server.metrics import Metrics
from dilm.server.openai_chat import ChatRequest
from dilm.server.schema import USER_PATTERN, Body, UserName
from dilm.tools import as_message
from dilm.types import GLOBAL_SCOPE, AdapterVersion, Fact, FeedbackResult, Memory, Reply, Session, user_scope

T = TypeVar("T")
log = logging.getLogger(__name__)
ADAPTER_VERSION = re.compile(r"v\d+")
WEB = resources.files("dilm") / "web"
# What the schema can say about text (the Assistant checks it again, with the configured maximum lengths).
Text = Annotated[str, Field(min_length=1, max_length=16_000, pattern=r"\S", description="non-blank text")]
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"\S")]
Short = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]
PathUser = Annotated[str, Path(min_length=1, max_length=128, pattern=USER_PATTERN)]
UserQuery = Annotated[UserName | None, Query(description="the user to act as (a user key: its own; default `default`)")]


# -- request and response bodies ------------------------------------------------------------------
class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[dict[str, Any]] | None = None


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: dict[str, Any] | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Extras(BaseModel):
    """dilm's additions to a completion (OpenAI clients ignore the key)."""

    session_id: str
    user: str
    citations: list[dict[str, Any]]
    adapter_version: str | None
    checks: dict[str, Any]


class ChatCompletion(BaseModel):
    id: str = Field(description="the dilm message id: send feedback on it")
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    dilm: Extras


class FeedbackRequest(Body):
    """Feedback on an answer: exactly one of rating, correction, supplement, preferred or comment (plus reasons)."""

    message_id: str = Field(min_length=1, max_length=100)
    rating: Literal[1, -1] | None = None
    correction: Text | None = None
    supplement: Text | None = None
    preferred: Text | None = Field(None, description="a better answer than the message's")
    comment: Text | None = None
    reason: Tag | list[Tag] | None = Field(None, description="tags such as 'not factually correct'", max_length=10)
    user: UserName | None = None


class MemoryIn(Body):
    text: Text
    user: UserName | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    global_: bool = Field(False, alias="global", description="global knowledge (admin)")


class FactIn(Body):
    subject: Short
    relation: Short
    object: Short
    user: UserName | None = None
    global_: bool = Field(False, alias="global", description="global knowledge (admin)")


_PROFILE_FIELDS: dict[str, Any] = {  # one field per profile key, with the values `dilm.profile.KEYS` allows
    "user": (UserName | None, None),
    **{key: ((Literal[allowed] if allowed else Short) | None, None) for key, allowed in profile_rules.KEYS.items()},
}
if TYPE_CHECKING:  # what the type checker needs to know of the model built below

    class ProfileIn(Body):
        user: str | None

else:
    ProfileIn = create_model(
        "ProfileIn", __base__=Body, __doc__="Profile keys to set; null removes one.", **_PROFILE_FIELDS
    )


class RollbackIn(Body):
    scope: str = Field(GLOBAL_SCOPE, description="global or user:NAME")


class Listing(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class Health(BaseModel):
    status: Literal["ok"]
    model: str


class WhoAmI(BaseModel):
    role: Literal["admin", "user"]
    user: str | None
    local: bool


class MessageOut(BaseModel):
    id: str
    session_id: str
    role: str
    content: str
    created_at: str
    adapter_version: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    feedback: list[dict[str, Any]] = Field(default_factory=list)


class ProfileOut(BaseModel):
    user: str
    profile: dict[str, str]
    learned: dict[str, Any]


class Rollback(BaseModel):
    scope: str
    live: AdapterVersion | None = Field(description="the version now live (null: the base model)")


class Rate(BaseModel):
    key: str
    rated: int
    positive: int
    satisfaction: float


class Satisfaction(BaseModel):
    by_day: list[Rate]
    by_adapter: list[Rate]


class RepeatRate(BaseModel):
    key: str
    answers: int
    repeats: int
    rate: float | None


class RepeatErrors(BaseModel):
    """Answers that stated a value the same user had already corrected (`Stats.repeat_errors`)."""

    by_day: list[RepeatRate]
    by_scope: list[RepeatRate]


class Forgotten(BaseModel):
    user: str
    deleted: dict[str, int]


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: int


class ErrorBody(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "bad input",
        401: "missing or invalid API key",
        403: "not allowed for this key",
        404: "unknown id",
        413: "body too large",
        422: "wrong types or unknown fields",
        429: "rate limit (see Retry-After)",
    }.items()
}


# -- helpers --------------------------------------------------------------------------------------
def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def _extras(reply: Reply) -> Extras:
    return Extras(
        session_id=reply.session_id,
        user=reply.user_id,
        citations=reply.citations,
        adapter_version=reply.adapter_version,
        checks=reply.checks,
    )


def _usage(reply: Reply) -> Usage:
    total = reply.prompt_tokens + reply.completion_tokens
    return Usage(prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens, total_tokens=total)


def _completion(reply: Reply, created: int) -> ChatCompletion:
    first = Choice(
        index=0, message=_message(reply), finish_reason=_finish(reply.finish_reason), logprobs=_logprobs(reply)
    )
    others = [  # other candidates: OpenAI's n > 1 choices
        Choice(
            index=i,
            message=AssistantMessage(content=c.text),
            finish_reason=_finish(c.finish_reason),
            logprobs=None if c.logprobs is None else {"content": c.logprobs},
        )
        for i, c in enumerate(reply.candidates[1:], 1)
    ]
    return ChatCompletion(
        id=reply.id, created=created, model=reply.model, choices=[first, *others], usage=_usage(reply),
        dilm=_extras(reply),
    )  # fmt: skip


def _logprobs(reply: Reply) -> dict[str, Any] | None:
    """The answer's token log probabilities (when asked for), only while they describe the text returned: an
    answer the guard repaired is not the model's tokens."""
    best = reply.candidates[0] if reply.candidates else None
    if best is None or best.logprobs is None or best.text != reply.text:
        return None
    return {"content": best.logprobs}


def _message(reply: Reply) -> AssistantMessage:
    if reply.tool_calls:
        return AssistantMessage(content=None, tool_calls=as_message(reply.tool_calls)["tool_calls"])
    return AssistantMessage(content=reply.text)


def _finish(reason: str) -> Literal["stop", "length", "tool_calls"]:
    return "length" if reason == "length" else "tool_calls" if reason == "tool_calls" else "stop"


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _target_user(who: Principal, user: str | None, global_: bool) -> str | None:
    """The user a memory/fact change applies to, or None for global knowledge (admin only)."""
    if global_:
        who.require_admin("changing global knowledge")
        return None
    return who.acting(user)


class _Stream(StreamingResponse):
    """Closes its body generator when the response ends in any way, so a client that leaves mid-stream stops
    the generation at once (Starlette leaves the generator suspended when the send fails), then `finish`
    (which gives the generation slot back, also when the generator never started)."""

    def __init__(
        self, content: AsyncGenerator[str, None], media_type: str, finish: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(content, media_type=media_type)
        self._events = content  # the same object as body_iterator, typed as the generator it is
        self._finish = finish

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._events.aclose()
                await self._finish()


# -- who is asking ---------------------------------------------------------------------------------
@dataclass
class _Gate:
    bot: Assistant
    local: bool
    limiter: RateLimiter


_bearer = HTTPBearer(auto_error=False, description="an API key from `dilm keys create`")


async def _principal(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    gate: _Gate = request.app.state.dilm
    header = f"Bearer {cred.credentials}" if cred else request.headers.get("authorization")
    who = await run_in_threadpool(authenticate, gate.bot, header, gate.local)
    if who.local and who.key_id is None and not _from_this_machine(request):
        raise PermissionDeniedError(
            "local mode answers only this machine's own pages and programs (Host and Origin must be loopback)"
        )
    client = request.client.host if request.client else "?"
    gate.limiter.take(who.key_id or f"addr:{client}")
    return who


Who = Annotated[Principal, Depends(_principal)]
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
# pydantic names the member of a union it tried in the error's location ("constrained-str", "list[...]"): not
# a field the client sent, so error messages leave it out.
_TYPE_TAG = re.compile(r"^(?:str|int|float|bool|dict|list|none|constrained-\w+)$|[\[-]")


def _from_this_machine(request: Request) -> bool:
    """Keyless requests must name a loopback host and come from a loopback origin, if any: otherwise any web page
    the user visits could drive the server (cross-site POSTs, DNS rebinding)."""
    host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
    origin = request.headers.get("origin")
    from_page = origin is None or (urlsplit(origin).hostname or "") in LOOPBACK_NAMES
    return host in LOOPBACK_NAMES and from_page


def _readable(who: Principal) -> set[str]:
    """The adapter scopes a principal may see besides an admin's all: global, and a user key's own."""
    return {GLOBAL_SCOPE} | ({user_scope(who.user)} if who.user else set())


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Blocking work runs in a worker thread, never on the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


# -- the app --------------------------------------------------------------------------------------
def create_app(bot: Assistant, *, local: bool = False) -> FastAPI:
    """The API over `bot`. `local`: no keys needed (every request is admin); only bind it to loopback."""
    cfg = bot.settings.server
    app = FastAPI(
        title="dilm",
        version="0.1",
        description="An assistant that learns from its users' feedback. Contract: docs/http.md.",
        responses=ERRORS,
    )
    metrics = Metrics()
    app.state.dilm = _Gate(bot, local, RateLimiter(cfg.rate_per_minute))
    _error_handlers(app)
    _public_routes(app, bot, metrics)
    _chat_routes(app, bot, metrics, anyio.CapacityLimiter(cfg.generation_workers))
    _feedback_routes(app, bot, metrics)
    _session_routes(app, bot)
    _memory_routes(app, bot)
    _fact_routes(app, bot)
    _profile_routes(app, bot)
    _adapter_routes(app, bot)
    _user_routes(app, bot)
    app.mount("/web", StaticFiles(directory=str(WEB)), name="web")
    if cfg.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["*"], allow_headers=["*"], max_age=600
        )
    chat_limit = {"/v1/chat/completions": cfg.max_chat_body_bytes}  # messages may carry pictures
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes, per_path=chat_limit)
    app.add_middleware(metrics.middleware)
    return app


def _error_handlers(app: FastAPI) -> None:
    """Every error as JSON in OpenAI's shape."""

    @app.exception_handler(DilmError)
    async def dilm_error(request: Request, e: DilmError) -> JSONResponse:
        headers = {"Retry-After": str(e.retry_after)} if isinstance(e, RateLimitedError) else None
        return _error(e.status, str(e), type(e).__name__, headers)

    @app.exception_handler(UnicodeError)
    async def not_utf8(request: Request, e: UnicodeError) -> JSONResponse:
        return _error(400, "the request holds text that is not valid UTF-8 (e.g. a lone surrogate)", "invalid_text")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=e)
        return _error(500, "internal error (logged on the server)", "internal_error")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return _error(400, f"the body is not valid JSON: {first.get('ctx', {}).get('error', '')}", "invalid_json")
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body" and not _TYPE_TAG.search(str(x)))
        return _error(422, f"{where + ': ' if where else ''}{first.get('msg', 'invalid request')}", "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        message = "the body is not valid JSON or not UTF-8" if e.status_code == 400 else str(e.detail)
        headers = dict(e.headers or {})
        if e.status_code == 405:  # Starlette names only the first matching route's methods; name them all
            routes = [r for r in app.routes if isinstance(r, APIRoute) and r.path_regex.match(request.url.path)]
            exact = [r for r in routes if not r.param_convertors]  # /v1/adapters/rollback, not /{version}
            methods = {m for r in exact or routes for m in r.methods or ()}
            headers["Allow"] = ", ".join(sorted(methods))
        return _error(e.status_code, message, "http_error", headers)


def _public_routes(app: FastAPI, bot: Assistant, metrics: Metrics) -> None:
    """The web page, health, metrics, and who a key is."""

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(WEB / "index.html"), media_type="text/html; charset=utf-8")

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok", model=bot.model_name)

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/whoami", response_model=WhoAmI)
    async def whoami(who: Who) -> WhoAmI:
        return WhoAmI(role=who.role, user=who.user, local=who.local)


def _chat_routes(app: FastAPI, bot: Assistant, metrics: Metrics, slots: anyio.CapacityLimiter) -> None:
    """OpenAI's models and chat completions; at most `slots` turns generate at once, the rest queue."""

    @app.get("/v1/models", response_model=Listing[ModelCard])
    async def models(who: Who) -> Listing[ModelCard]:
        now = int(time.time())
        data = [ModelCard(id=bot.model_name, created=now, owned_by="dilm")]
        for a in await _call(bot.adapters.list):
            if a.status == "accepted" and a.scope != "reward" and (who.admin or a.scope in _readable(who)):
                data.append(ModelCard(id=a.version, created=now, owned_by=a.scope))
        return Listing(data=data)

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        responses={200: {"content": {"text/event-stream": {"description": "with stream: true"}}}},
    )
    async def chat(body: ChatRequest, who: Who) -> Any:
        turn, user = openai_chat.read(body), who.acting(body.user)
        # `model` naming an adapter version (from /v1/models) pins it; any other name: the live one, routed.
        pin = body.model if body.model and ADAPTER_VERSION.fullmatch(body.model) else None
        options: dict[str, Any] = {"adapter": pin, "given": turn.given, **turn.decoding}
        if turn.images:
            options["images"] = turn.images
        created = int(time.time())
        if not body.stream:
            reply = await anyio.to_thread.run_sync(
                lambda: bot.chat(turn.text, user, body.session_id, **options), limiter=slots
            )
            metrics.generated(reply.completion_tokens)
            return _completion(reply, created)
        stream = await _call(lambda: bot.stream(turn.text, user, body.session_id, **options))
        first = await _first_event(stream, slots)  # any error so far (a prompt too long, ...) is a plain 4xx/5xx
        usage = bool((body.stream_options or {}).get("include_usage"))
        chunk = {"object": "chat.completion.chunk", "created": created, "model": bot.model_name, "id": stream.id}
        events = _events(stream, first, chunk, usage, metrics)
        return _Stream(events, media_type="text/event-stream", finish=first.close)


@dataclass
class _Started:
    """A streamed turn whose first text delta (or its end) is already in: errors before it were answered as
    plain HTTP errors, before the 200 went out, as OpenAI and vLLM do. It holds a generation slot until
    `close`."""

    stream: ReplyStream
    deltas: Generator[str, None, None]
    first: str | None  # None: the turn ended without text (a tool call)
    slots: anyio.CapacityLimiter
    closed: bool = False

    async def close(self) -> None:
        """Stop the generation unless it finished (nothing is logged then), and give the slot back; once."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.stream.reply is None:  # client gone (cancelled) or failed
                self.stream.cancel()
                await anyio.to_thread.run_sync(self.deltas.close)
        finally:
            self.slots.release_on_behalf_of(self.stream)


async def _first_event(stream: ReplyStream, slots: anyio.CapacityLimiter) -> _Started:
    """Take a generation slot for `stream` and run it up to its first delta. On an error the slot is given
    back and the error raised (the route answers it as JSON)."""
    done = object()
    # A slot is held on behalf of this stream, not of a task: the closing may run in another task.
    await slots.acquire_on_behalf_of(stream)
    deltas = _deltas(stream)
    try:
        first = await anyio.to_thread.run_sync(next, deltas, done)
    except BaseException:
        stream.cancel()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(deltas.close)
        slots.release_on_behalf_of(stream)
        raise
    return _Started(stream, deltas, None if first is done else str(first), slots)


async def _events(
    stream: ReplyStream,
    started: _Started,
    chunk: dict[str, Any],
    usage: bool,
    metrics: Metrics,
) -> AsyncGenerator[str, None]:
    """A streamed turn as server-sent events: one chunk per text delta (tool calls as one delta at the end),
    then the last one with the finish reason and dilm's extras."""
    done = object()
    deltas = started.deltas
    try:
        yield _sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        delta: object = started.first if started.first is not None else done
        while delta is not done:
            yield _sse({**chunk, "choices": [{"index": 0, "delta": {"content": delta}}]})
            delta = await anyio.to_thread.run_sync(next, deltas, done)
    except Exception as e:  # the status line is out already: the error goes in the stream
        if not isinstance(e, DilmError):
            log.exception("streamed turn failed")
        status = e.status if isinstance(e, DilmError) else 500
        message = str(e) if isinstance(e, DilmError) else "internal error (logged)"
        yield _sse({"error": {"message": message, "type": type(e).__name__, "code": status}})
        return
    finally:
        with anyio.CancelScope(shield=True):
            await started.close()
    reply = stream.reply
    assert reply is not None  # the deltas ran out: the turn is done and logged
    metrics.generated(reply.completion_tokens)
    if reply.tool_calls:
        calls = [{"index": i, **c} for i, c in enumerate(as_message(reply.tool_calls)["tool_calls"])]
        yield _sse({**chunk, "choices": [{"index": 0, "delta": {"tool_calls": calls}}]})
    end = {"index": 0, "delta": {}, "finish_reason": _finish(reply.finish_reason), "logprobs": _logprobs(reply)}
    last = {**chunk, "choices": [end]}
    yield _sse({**last, "dilm": _extras(reply).model_dump()})
    if usage:  # as OpenAI does: one more chunk, no choices, the token counts
        yield _sse({**chunk, "choices": [], "usage": _usage(reply).model_dump()})
    yield "data: [DONE]\n\n"


def _deltas(stream: ReplyStream) -> Generator[str, None, None]:
    """The stream's text deltas; closing this generator closes the stream's own, which stops the generation
    and waits for its worker."""
    yield from stream


def _feedback_routes(app: FastAPI, bot: Assistant, metrics: Metrics) -> None:
    @app.post("/v1/feedback", response_model=FeedbackResult)
    async def feedback(body: FeedbackRequest, who: Who) -> FeedbackResult:
        values = body.model_dump(exclude={"message_id", "user"})
        # An admin naming no user gives feedback as the message's owner; anyone else only on their own.
        user = None if who.admin and body.user is None else who.acting(body.user)

        def run() -> FeedbackResult:
            bot.sessions.message(body.message_id, user)  # another user's message: as if it did not exist
            return bot.feedback(body.message_id, user=user, **values)

        result = await _call(run)
        metrics.feedback(result.kind)
        return result


def _session_routes(app: FastAPI, bot: Assistant) -> None:
    @app.get("/v1/sessions", response_model=Listing[Session])
    async def sessions(who: Who, user: UserQuery = None, limit: int = Query(50, ge=1, le=1000)) -> Listing[Session]:
        return Listing(data=await _call(bot.sessions.list, who.acting(user), limit))

    @app.get("/v1/sessions/{session_id}/messages", response_model=Listing[MessageOut])
    async def session_messages(
        session_id: str, who: Who, user: UserQuery = None, limit: int = Query(500, ge=1, le=10_000)
    ) -> Listing[MessageOut]:
        rows = await _call(bot.history, who.acting(user), session_id, limit)
        return Listing(data=[MessageOut(**r) for r in rows])


def _memory_routes(app: FastAPI, bot: Assistant) -> None:
    @app.get("/v1/memories", response_model=Listing[Memory])
    async def memories(
        who: Who,
        user: UserQuery = None,
        q: str | None = Query(None, min_length=1, max_length=16_000, pattern=r"\S", description="search them"),
        k: int = Query(5, ge=1, le=100),
        limit: int = Query(100, ge=1, le=10_000),
        global_: bool = Query(False, alias="global", description="list global memories"),
    ) -> Listing[Memory]:
        acting = who.acting(user)
        if q is not None:
            return Listing(data=await _call(bot.memories.search, q, acting, k))
        return Listing(data=await _call(bot.memories.list, acting, limit=limit, global_only=global_))

    @app.post("/v1/memories", response_model=Memory)
    async def add_memory(body: MemoryIn, who: Who) -> Memory:
        user = _target_user(who, body.user, body.global_)
        return await _call(bot.memories.add, body.text, user, body.metadata, global_=user is None)

    @app.delete("/v1/memories/{memory_id}", response_model=Memory)
    async def delete_memory(
        memory_id: str, who: Who, user: UserQuery = None, global_: bool = Query(False, alias="global")
    ) -> Memory:
        return await _call(bot.memories.delete, memory_id, _target_user(who, user, global_))


def _fact_routes(app: FastAPI, bot: Assistant) -> None:
    @app.get("/v1/facts", response_model=Listing[Fact])
    async def facts(
        who: Who,
        user: UserQuery = None,
        subject: str | None = None,
        history: bool = Query(False, description="superseded and retracted facts too"),
    ) -> Listing[Fact]:
        acting = who.acting(user)
        if history:
            found = await _call(bot.facts.history, subject, acting)
        else:
            found = await _call(bot.facts.current, subject, acting)
        return Listing(data=found)

    @app.post("/v1/facts", response_model=Fact)
    async def add_fact(body: FactIn, who: Who) -> Fact:
        user = _target_user(who, body.user, body.global_)
        return await _call(bot.facts.add, body.subject, body.relation, body.object, user, global_=user is None)

    @app.delete("/v1/facts/{fact_id}", response_model=Fact)
    async def retract_fact(
        fact_id: str, who: Who, user: UserQuery = None, global_: bool = Query(False, alias="global")
    ) -> Fact:
        return await _call(bot.facts.retract, fact_id, _target_user(who, user, global_))


def _profile_routes(app: FastAPI, bot: Assistant) -> None:
    @app.get("/v1/profile", response_model=ProfileOut)
    async def profile(who: Who, user: UserQuery = None) -> ProfileOut:
        acting = who.acting(user)
        return ProfileOut(
            user=acting,
            profile=await _call(bot.profiles.get, acting),
            learned=await _call(bot.profiles.learned, acting),
        )

    @app.patch("/v1/profile", response_model=ProfileOut)
    async def set_profile(body: ProfileIn, who: Who) -> ProfileOut:
        acting = who.acting(body.user)
        values = body.model_dump(exclude={"user"}, exclude_unset=True)
        saved = await _call(lambda: bot.profiles.set(acting, **values))
        return ProfileOut(user=acting, profile=saved, learned=await _call(bot.profiles.learned, acting))

    @app.delete("/v1/profile", response_model=ProfileOut)
    async def reset_profile(who: Who, user: UserQuery = None) -> ProfileOut:
        acting = who.acting(user)
        await _call(bot.profiles.reset, acting)
        return ProfileOut(user=acting, profile={}, learned=await _call(bot.profiles.learned, acting))


def _adapter_routes(app: FastAPI, bot: Assistant) -> None:
    @app.get("/v1/adapters", response_model=Listing[AdapterVersion])
    async def adapters(who: Who, scope: str | None = None) -> Listing[AdapterVersion]:
        if scope is not None and not who.admin and scope not in _readable(who):
            raise PermissionDeniedError(f"this key cannot read the adapters of {scope}")
        found = await _call(bot.adapters.list, scope)
        return Listing(data=[a for a in found if who.admin or a.scope in _readable(who)])

    @app.post("/v1/adapters/{version}/activate", response_model=AdapterVersion)
    async def activate(version: str, who: Who) -> AdapterVersion:
        who.require_admin("activating an adapter")
        return await _call(bot.adapters.activate, version)

    @app.post("/v1/adapters/rollback", response_model=Rollback)
    async def rollback(body: RollbackIn, who: Who) -> Rollback:
        who.require_admin("rolling back an adapter")
        return Rollback(scope=body.scope, live=await _call(bot.adapters.rollback, body.scope))

    @app.delete("/v1/adapters/{version}", response_model=AdapterVersion)
    async def delete_adapter(version: str, who: Who) -> AdapterVersion:
        who.require_admin("deleting an adapter")
        return await _call(bot.adapters.delete, version)

    @app.get("/v1/stats/satisfaction", response_model=Satisfaction)
    async def satisfaction(who: Who) -> Satisfaction:
        who.require_admin("satisfaction statistics")
        return Satisfaction.model_validate(await _call(bot.stats.satisfaction))

    @app.get("/v1/stats/repeat-errors", response_model=RepeatErrors)
    async def repeat_errors(who: Who, days: int = Query(30, ge=1, le=3650)) -> RepeatErrors:
        who.require_admin("repeat-error statistics")
        return RepeatErrors.model_validate(await _call(bot.stats.repeat_errors, days))


def _user_routes(app: FastAPI, bot: Assistant) -> None:
    """All of one user's data: export it, or forget it."""

    @app.get("/v1/users/{user_id}/export", response_model=dict[str, Any])
    async def export(user_id: PathUser, who: Who) -> dict[str, Any]:
        return await _call(bot.users.export, who.acting(user_id))

    @app.delete("/v1/users/{user_id}", response_model=Forgotten)
    async def forget(user_id: PathUser, who: Who) -> Forgotten:
        acting = who.acting(user_id)
        return Forgotten(user=acting, deleted=await _call(bot.users.forget, acting))

    @app.get("/v1/images/{sha256}", response_class=FileResponse, responses={200: {"content": {"image/*": {}}}})
    async def image(sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")], who: Who, user: UserQuery = None) -> Any:
        path = bot.pictures.find(who.acting(user), sha256)
        if path is None:
            raise ImageNotFoundError(f"no image {sha256} among this user's")
        media = MEDIA_TYPES[path.suffix[1:]]
        return FileResponse(str(path), media_type=media, headers={"X-Content-Type-Options": "nosniff"})

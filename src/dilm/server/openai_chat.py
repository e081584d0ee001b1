"""OpenAI's chat-completions request, as clients send it, and what dilm makes of it.

The models accept every field of OpenAI's current schema (roles incl. `developer`, `tool` and `function`;
content as text or a list of parts; tool calls in history; tools, response formats, ...). `read` turns a
request into a dilm turn: the new user message, the client's instructions, history, tools and tool results
(`ChatContext`), and decoding settings. What dilm cannot do is refused there with InvalidInputError (HTTP 400)
naming the field, never silently dropped; fields that only tune OpenAI's own service are ignored, and
docs/http.md lists which is which.

Source: OpenAI API reference, "Create chat completion" (platform.openai.com/docs/api-reference/chat/create).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field

from dilm.errors import InvalidInputError
from dilm.images import MAX_IMAGES
from dilm.models.base import ChatMessage
from dilm.server.schema import Body, UserName
from dilm.tools import Tools, as_message, offered
from dilm.turn import ChatContext
from dilm.types import ToolCall


class TextPart(Body):
    type: Literal["text"]
    text: str = Field(max_length=32_000)


class ImageURL(Body):
    url: str = Field(min_length=1, max_length=20_000_000, description="a data: URI, or an http(s) URL")
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Body):
    type: Literal["image_url"]
    image_url: ImageURL


class AudioPart(Body):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


class FilePart(Body):
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(Body):
    type: Literal["refusal"]
    refusal: str


Part = Annotated[TextPart | ImagePart | AudioPart | FilePart | RefusalPart, Field(discriminator="type")]


class FunctionCallIn(Body):
    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(max_length=100_000)


class ToolCallIn(Body):
    id: str = Field(min_length=1, max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(Body):
    """One message of any role: which fields a role may carry is checked by `read` (with a 400 naming it)."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Annotated[str, Field(max_length=32_000)] | Annotated[list[Part], Field(max_length=64)] | None = None
    name: str | None = Field(None, max_length=128)
    tool_calls: list[ToolCallIn] | None = Field(None, max_length=128)
    tool_call_id: str | None = Field(None, max_length=200)
    function_call: FunctionCallIn | None = None
    refusal: str | None = None
    audio: dict[str, Any] | None = None


class ChatRequest(Body):
    """OpenAI's chat-completions body, plus `session_id` to continue a dilm session."""

    messages: list[ChatMessageIn] = Field(min_length=1, max_length=1000)
    model: str | None = Field(
        None, max_length=200, description="an adapter version from /v1/models pins it; else the live one answers"
    )
    user: UserName | None = Field(None, description="the end user: memories, facts and adapters are theirs")
    session_id: str | None = Field(None, max_length=100, description="dilm: continue this session")
    temperature: float | None = Field(None, ge=0, le=5)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    n: int | None = Field(None, ge=1, le=16)
    stop: str | list[str] | None = Field(None, description="up to 4 stop strings")
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = Field(None, max_length=128, description="deprecated form of tools")
    function_call: Literal["none", "auto"] | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, int] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # vLLM's (and llama.cpp's) sampling extensions, which dilm's OpenAI backend sends: dilm serves dilm
    top_k: int | None = Field(None, ge=0, le=1000)
    repetition_penalty: float | None = Field(None, gt=0, le=5)


@dataclass
class TurnInputs:
    """A request read for dilm: the new message, the client's context, the images sent with the message
    (their URLs, data: URIs included), and decoding settings."""

    text: str
    given: ChatContext
    images: list[str] = field(default_factory=list)
    decoding: dict[str, Any] = field(default_factory=dict)


# Fields refused when set: what they ask for, dilm cannot do (the 400 says so).
REFUSED = {
    "audio": "audio output is not supported",
    "web_search_options": "dilm does not search the web",
}


def read(body: ChatRequest) -> TurnInputs:
    """The dilm turn a request asks for. Raises InvalidInputError (HTTP 400) naming the field at fault."""
    _refuse_unsupported(body)
    messages = body.messages
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last_user is None:
        raise InvalidInputError("messages: there is no user message to answer")
    after = messages[last_user + 1 :]
    if any(m.role not in ("assistant", "tool", "function") for m in after) or (after and after[-1].role == "assistant"):
        raise InvalidInputError("messages: the last message must be the user's (or tool results that follow it)")
    if after and not any(m.tool_calls or m.function_call for m in after if m.role == "assistant"):
        raise InvalidInputError("messages: tool results must follow the assistant message whose tool_calls they answer")
    text, images = _user_content(messages[last_user], f"messages[{last_user}]")
    instructions = "\n\n".join(
        _plain(m, f"messages[{i}]") for i, m in enumerate(messages) if m.role in ("system", "developer")
    )
    read_in = [_chat_message(m, f"messages[{i}]") for i, m in enumerate(messages)]
    given = ChatContext(
        instructions=instructions or None,
        history=[m for m in read_in[:last_user] if m is not None],
        tools=_tools(body),
        results=[m for m in read_in[last_user + 1 :] if m is not None],
    )
    if not text.strip() and not images:
        raise InvalidInputError(f"messages[{last_user}].content: the user message is empty")
    return TurnInputs(text, given, images, _decoding(body, given.tools))


def _refuse_unsupported(body: ChatRequest) -> None:
    for name, why in REFUSED.items():
        if getattr(body, name) not in (None, False):  # {} asks for web search too
            raise InvalidInputError(f"{name}: {why}")
    if body.logit_bias:
        raise InvalidInputError("logit_bias: dilm cannot bias tokens by id (ids differ between its models)")
    if body.modalities and set(body.modalities) - {"text"}:
        raise InvalidInputError('modalities: dilm answers with text only (["text"])')
    if body.n and body.n > 1 and (body.tools or body.functions):
        raise InvalidInputError("n: one answer at a time when tools are offered")


def _tools(body: ChatRequest) -> Tools | None:
    if body.functions is not None:  # the deprecated form: the same functions as tools
        if body.tools is not None:
            raise InvalidInputError("functions: send either tools or (deprecated) functions, not both")
        choice = body.function_call
        if isinstance(choice, dict):
            choice = {"type": "function", "function": {"name": choice.get("name")}}
        return offered([{"type": "function", "function": f} for f in body.functions], choice, False)
    return offered(body.tools, body.tool_choice, body.parallel_tool_calls)


def _content_parts(m: ChatMessageIn, where: str) -> tuple[list[str], list[str]]:
    """(texts, image URLs) of a message's content."""
    if m.content is None:
        return [], []
    if isinstance(m.content, str):
        return [m.content], []
    texts, images = [], []
    for j, part in enumerate(m.content):
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, RefusalPart):
            texts.append(part.refusal)
        elif isinstance(part, ImagePart):
            images.append(part.image_url.url)
        elif isinstance(part, AudioPart):
            raise InvalidInputError(f"{where}.content[{j}]: audio input is not supported (send text)")
        else:
            raise InvalidInputError(f"{where}.content[{j}]: file input is not supported (send its text)")
    return texts, images


def _user_content(m: ChatMessageIn, where: str) -> tuple[str, list[str]]:
    texts, images = _content_parts(m, where)
    if len(images) > MAX_IMAGES:
        raise InvalidInputError(f"{where}.content: at most {MAX_IMAGES} images in a message")
    return "\n".join(t for t in texts if t.strip()), images


def _plain(m: ChatMessageIn, where: str) -> str:
    """A message's text; images are taken only in the message being answered."""
    texts, images = _content_parts(m, where)
    if images and m.role != "user":
        raise InvalidInputError(f"{where}.content: only a user message can hold images")
    return "\n".join(texts)


def _chat_message(m: ChatMessageIn, where: str) -> ChatMessage | None:
    """An earlier (or tool-result) message as the chat template takes it; system/developer ones are None
    (they are the instructions). Images in earlier turns are not seen again: their text stays in dilm's log."""
    if m.role in ("system", "developer"):
        return None
    text = _plain(m, where) if m.role != "user" else "\n".join(_content_parts(m, where)[0])
    if m.role in ("tool", "function"):
        if m.role == "tool" and not m.tool_call_id:
            raise InvalidInputError(f"{where}.tool_call_id: a tool message names the call it answers")
        # a deprecated `function` result names its function; its call was given the id call_<name> below
        return {"role": "tool", "tool_call_id": m.tool_call_id or f"call_{m.name}", "content": text}
    if m.role == "assistant" and (m.tool_calls or m.function_call):
        calls = m.tool_calls or []
        if m.function_call is not None:  # the deprecated form: one call, no id
            calls = [ToolCallIn(id=f"call_{m.function_call.name}", function=m.function_call)]
        made = [ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments) for c in calls]
        return as_message(made, text)
    return {"role": m.role, "content": text}


def _decoding(body: ChatRequest, tools: Tools | None) -> dict[str, Any]:
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
        if body.n > 1 and body.temperature is None:  # OpenAI samples n answers at its default temperature
            d["strategy"] = "sample"
    if body.stop is not None:
        stops = [body.stop] if isinstance(body.stop, str) else body.stop
        if len(stops) > 4 or any(not s or len(s) > 200 for s in stops):
            raise InvalidInputError("stop: at most 4 non-empty strings of at most 200 characters")
        d["stop"] = stops
    if body.logprobs:
        d["logprobs"] = body.top_logprobs or 0
    if body.top_k is not None:
        d["top_k"] = body.top_k
    if body.repetition_penalty is not None:
        d["repetition_penalty"] = body.repetition_penalty
    if body.seed is not None:
        d["seed"] = body.seed % 2**63  # OpenAI allows negative seeds; llama.cpp wants a non-negative one
    schema = _response_schema(body.response_format)
    if schema is not None:
        if tools is not None and tools.forced:
            raise InvalidInputError("response_format: cannot be combined with a required tool call")
        d["json_schema"] = schema
    return d


def _response_schema(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON schema a response_format asks for (None: free text)."""
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "object"}
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidInputError("response_format.json_schema.schema: a JSON schema object is required")
        try:
            json.dumps(schema)
        except (TypeError, ValueError):
            raise InvalidInputError("response_format.json_schema.schema: not JSON") from None
        return schema
    raise InvalidInputError("response_format.type: one of text, json_object, json_schema")

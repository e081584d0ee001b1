"""Tool calling (OpenAI's function tools) on any backend: the tools a turn offers, the schema that constrains a
required call, and the calls read back from the model's text.

Small instruct models announce a call in several shapes: llama.cpp parses the chat template's own markup
(`<tool_call>…</tool_call>` for Qwen/Hermes) into `tool_calls`, but a model may also answer with the call as a
JSON object, fenced as ```json or bare. `parse_calls` reads every such shape, and only for the tools offered, so
ordinary text is never mistaken for a call. A required (or named) call is grammar-constrained instead, through
`call_schema` (llama.cpp's JSON-schema sampling), so it is well formed whatever the model.

Source: OpenAI chat-completions `tools`/`tool_choice`; llama.cpp docs/function-calling.md (the Hermes format).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from dilm.errors import InvalidInputError
from dilm.types import ToolCall, new_id

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names
MAX_TOOLS = 128
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCED = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


@dataclass(frozen=True)
class Tools:
    """The function tools a turn offers and how the model may use them: `choice` is "auto" (call or answer),
    "required" (some call) or a function name (that call). "none" is no `Tools` at all."""

    functions: list[dict[str, Any]]  # OpenAI's {"type": "function", "function": {"name", "description", "parameters"}}
    choice: str = "auto"
    parallel: bool = True  # several calls in one answer (False: the first only)

    @property
    def names(self) -> list[str]:
        return [f["function"]["name"] for f in self.functions]

    @property
    def allowed(self) -> list[dict[str, Any]]:
        """The functions the model may call now: all of them, or the one `choice` names."""
        return [f for f in self.functions if self.choice in ("auto", "required", f["function"]["name"])]

    def keep(self, calls: list[ToolCall]) -> list[ToolCall]:
        """The calls an answer may make: of allowed functions only, one unless parallel calls are allowed."""
        names = {f["function"]["name"] for f in self.allowed}
        kept = [c for c in calls if c.name in names]
        return kept if self.parallel else kept[:1]

    @property
    def forced(self) -> bool:
        return self.choice != "auto"


def offered(
    tools: list[dict[str, Any]] | None, choice: str | dict[str, Any] | None, parallel: bool | None = None
) -> Tools | None:
    """The checked tools of a request (None when there are none or `choice` is "none").

    `tools`: OpenAI's list of {"type": "function", "function": {...}}; `choice`: "auto", "none", "required" or
    {"type": "function", "function": {"name": ...}}; `parallel`: OpenAI's parallel_tool_calls (default true).
    Raises InvalidInputError naming the field at fault."""
    if not tools:
        if choice not in (None, "none", "auto"):
            raise InvalidInputError("tool_choice: there are no tools to choose from")
        return None
    if len(tools) > MAX_TOOLS:
        raise InvalidInputError(f"tools: at most {MAX_TOOLS}")
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise InvalidInputError(f"tools[{i}]: only function tools are supported ({{'type': 'function', ...}})")
        if not isinstance(fn.get("name"), str) or not NAME.match(fn["name"]):
            raise InvalidInputError(f"tools[{i}].function.name: 1-64 letters, digits, '_' or '-'")
        if not isinstance(fn.get("parameters", {}), dict):
            raise InvalidInputError(f"tools[{i}].function.parameters: a JSON schema object")
    names = [t["function"]["name"] for t in tools]
    if len(set(names)) != len(names):
        raise InvalidInputError("tools: function names must be unique")
    parallel = parallel is not False
    if choice is None or choice == "auto":
        return Tools(tools, "auto", parallel)
    if choice == "none":
        return None
    if choice == "required":
        return Tools(tools, "required", parallel)
    fn = choice.get("function") if isinstance(choice, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or name not in names:
        raise InvalidInputError(f"tool_choice: names no offered function ({name!r}; offered: {', '.join(names)})")
    return Tools(tools, name, parallel)


def call_schema(tools: Tools) -> dict[str, Any]:
    """A JSON schema that only a call of an allowed function satisfies: {"name": ..., "arguments": {...}}."""
    allowed = [t["function"] for t in tools.allowed]
    shapes = [
        {
            "type": "object",
            "properties": {
                "name": {"const": fn["name"]},
                "arguments": fn.get("parameters") or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for fn in allowed
    ]
    return shapes[0] if len(shapes) == 1 else {"anyOf": shapes}


def parse_calls(text: str, tools: Tools) -> list[ToolCall]:
    """The calls `text` makes of the offered functions (empty when it makes none): tagged
    (`<tool_call>{...}</tool_call>`, several allowed), fenced (```json {...}```) or the bare JSON object (or a
    list of them) as the whole text. Objects naming a function that was not offered are not calls."""
    text = text.strip()
    bodies = _TAGGED.findall(text) if "<tool_call>" in text else [_FENCED.sub(r"\1", text)]
    calls: list[ToolCall] = []
    for body in bodies:
        try:
            value = json.loads(body)
        except ValueError:
            return []
        for item in value if isinstance(value, list) else [value]:
            call = _call(item, tools)
            if call is None:
                return []
            calls.append(call)
    return tools.keep(calls)


def _call(item: Any, tools: Tools) -> ToolCall | None:
    if not isinstance(item, dict) or item.get("name") not in tools.names:
        return None
    args = item.get("arguments", item.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(id=new_id("call"), name=item["name"], arguments=json.dumps(args, ensure_ascii=False))


def render(calls: list[ToolCall]) -> str:
    """The calls as one line each, for the conversation log ("get_weather({"city": "Oslo"})")."""
    return "\n".join(f"{c.name}({c.arguments})" for c in calls)


def as_message(calls: list[ToolCall], content: str | None = None) -> dict[str, Any]:
    """The assistant message that made `calls`, in OpenAI's shape (what a chat template expects)."""
    return {
        "role": "assistant",
        "content": content or "",
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
        ],
    }


def plain(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` for a chat template that knows no tool calls: a call becomes the assistant's text (the JSON
    object {"name", "arguments"}), a result
    the user's ("[get_weather returned] ..."), and neighbours of one role merge (templates that want turns to
    alternate). Messages without tool parts pass unchanged."""
    if not any(m.get("tool_calls") or m.get("role") == "tool" for m in messages):
        return messages
    names = {c["id"]: c["function"]["name"] for m in messages for c in m.get("tool_calls") or []}
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.get("tool_calls"):  # in the shape `parse_calls` reads, should the model answer in kind
            calls = [_as_json(c["function"]) for c in m["tool_calls"]]
            m = {"role": "assistant", "content": "\n".join(x for x in (m.get("content"), *calls) if x)}
        elif m.get("role") == "tool":
            name = names.get(m.get("tool_call_id", ""), "the tool")
            m = {"role": "user", "content": f"[{name} returned] {m.get('content') or ''}"}
        if out and out[-1]["role"] == m["role"] and m["role"] != "system":
            out[-1] = {"role": m["role"], "content": f"{out[-1]['content']}\n\n{m['content']}"}
        else:
            out.append(m)
    return out


def _as_json(function: dict[str, Any]) -> str:
    try:
        args = json.loads(function.get("arguments") or "{}")
    except ValueError:
        args = function.get("arguments")
    return json.dumps({"name": function.get("name"), "arguments": args}, ensure_ascii=False)

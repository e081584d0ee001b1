"""OpenAI-compatible backend: vLLM, Ollama, llama.cpp server, or dilm's own server, by base URL."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from dilm.config import Decoding
from dilm.errors import BackendError, BackendUnavailableError, GenerationCancelled
from dilm.models.base import AdapterRef, ChatMessage, OnText, StopTrimmer, cut_at_stop
from dilm.tools import parse_calls
from dilm.types import Candidate, ToolCall

if TYPE_CHECKING:
    from dilm.tools import Tools

# Without the server's tokenizer we estimate: ~3 characters a token errs on the safe (larger) side
# for English and counts CJK characters at least once each.
_CHARS_PER_TOKEN = 3
_PER_MESSAGE = 4
_PER_IMAGE = 1105  # OpenAI's count for a 1024x1024 picture in high detail (85 + 170 per 512-px tile): a bound


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
    return str(content or "")


class OpenAIBackend:
    """A model behind an OpenAI-compatible server. Pictures are forwarded as they came (`sees_images`): the
    server is expected to be a vision model's, or to refuse them itself."""

    sees_images = True

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "none",
        timeout: float = 120.0,
        max_retries: int = 2,
        context_window: int | None = None,
    ) -> None:
        import openai

        self._openai = openai
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        self.base_url = base_url
        self.model_name = model
        self.context_window = context_window or 4096

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        texts = (_text(m.get("content")) + str(m.get("tool_calls") or "") for m in messages)
        chars = (sum(_char_weight(c) for c in text) for text in texts)
        images = sum(
            1 for m in messages if isinstance(m.get("content"), list) for p in m["content"] if p["type"] != "text"
        )
        return sum(_PER_MESSAGE + -(-n // _CHARS_PER_TOKEN) for n in chars) + 2 + images * _PER_IMAGE

    def request(
        self,
        messages: list[ChatMessage],
        d: Decoding,
        stream: bool,
        model: str | None = None,
        tools: Tools | None = None,
    ) -> dict[str, Any]:
        """Keyword arguments for `chat.completions.create`; `tools` and the choice pass through unchanged."""
        body: dict[str, Any] = {
            "model": model or self.model_name,
            "messages": messages,
            "max_tokens": d.max_new_tokens,
            "n": d.n,
            "stream": stream,
        }
        extra: dict[str, object] = {"repetition_penalty": d.repetition_penalty}
        if d.strategy == "greedy":
            body["temperature"] = 0.0
        elif d.strategy == "sample":
            body.update(temperature=d.temperature, top_p=d.top_p)
            if d.top_k:
                extra["top_k"] = d.top_k
        else:  # beam search is a vLLM extension of the protocol
            body["temperature"] = 0.0
            extra.update(use_beam_search=True, best_of=d.num_beams)
        if d.stop:
            body["stop"] = d.stop
        if d.seed is not None:
            body["seed"] = d.seed
        if d.logprobs is not None:
            body.update(logprobs=True, top_logprobs=d.logprobs)
        if d.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": d.json_schema},
            }
        if tools is not None:
            body["tools"] = tools.functions
            body["parallel_tool_calls"] = tools.parallel
            named = {"type": "function", "function": {"name": tools.choice}}
            body["tool_choice"] = tools.choice if tools.choice in ("auto", "required") else named
        body["extra_body"] = extra
        return body

    def generate(
        self,
        messages: list[ChatMessage],
        decoding: Decoding,
        on_text: OnText | None = None,
        cancel: threading.Event | None = None,
        adapter: AdapterRef | None = None,
        tools: Tools | None = None,
    ) -> list[Candidate]:
        """`adapter`: vLLM serves each LoRA module under its own model name, so the request names it. With
        `tools` the answer is not streamed: the server's tool calls come whole (or are read from the text)."""
        oa = self._openai
        model = adapter.name if adapter is not None else None
        cancel = cancel or threading.Event()
        try:
            if on_text is not None and decoding.n == 1 and tools is None:
                return [self._stream(messages, decoding, on_text, cancel, model)]
            resp = self.client.chat.completions.create(**self.request(messages, decoding, False, model, tools))
        except oa.APIConnectionError as e:
            raise BackendUnavailableError(
                f"cannot reach the model server at {self.base_url} ({e.__class__.__name__}): is it running?"
            ) from None
        except oa.APIStatusError as e:
            raise BackendError(f"the model server at {self.base_url} answered {e.status_code}: {e.message}") from None
        if cancel.is_set():
            raise GenerationCancelled("generation cancelled")
        tokens = resp.usage.completion_tokens if resp.usage else 0
        out = []
        for choice in resp.choices:
            text = choice.message.content or ""
            text = cut_at_stop(text, decoding.stop) or text
            candidate = Candidate(
                text=text.strip(),
                completion_tokens=tokens // max(len(resp.choices), 1),
                finish_reason=choice.finish_reason or "stop",
            )
            if d_logprobs := (choice.logprobs.content if choice.logprobs else None):
                candidate.logprobs = [t.model_dump(exclude_none=True) for t in d_logprobs]
            calls = [
                ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
                for c in choice.message.tool_calls or []
                if c.type == "function"
            ]
            calls = (tools.keep(calls) or parse_calls(text, tools)) if tools else []
            if calls:
                candidate.text, candidate.tool_calls, candidate.finish_reason = "", calls, "tool_calls"
            out.append(candidate)
        if on_text is not None and out and not out[0].tool_calls:
            on_text(out[0].text)
        return out

    def _stream(
        self, messages: list[ChatMessage], d: Decoding, on_text: OnText, cancel: threading.Event, model: str | None
    ) -> Candidate:
        trimmer = StopTrimmer(d.stop, on_text)
        parts: list[str] = []
        tokens: list[dict[str, Any]] = []  # log probabilities, when asked for
        finish = "stop"
        chunks = 0
        stream = self.client.chat.completions.create(**self.request(messages, d, True, model))
        with stream:
            for chunk in stream:
                if cancel.is_set():
                    raise GenerationCancelled("generation cancelled")
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                delta = choice.delta.content or ""
                if delta:
                    chunks += 1
                    parts.append(delta)
                    trimmer.feed(delta)
                if choice.logprobs and choice.logprobs.content:
                    tokens += [t.model_dump(exclude_none=True) for t in choice.logprobs.content]
                if choice.finish_reason:
                    finish = choice.finish_reason
        trimmer.flush()
        text = "".join(parts)
        text = cut_at_stop(text, d.stop) or text
        logprobs = tokens if d.logprobs is not None else None
        return Candidate(text=text.strip(), completion_tokens=chunks, finish_reason=finish, logprobs=logprobs)


def _char_weight(c: str) -> int:
    # CJK characters are usually a token or more each.
    return _CHARS_PER_TOKEN if ord(c) >= 0x2E80 else 1

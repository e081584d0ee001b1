"""The one interface every model backend implements."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dilm.config import Decoding
from dilm.types import Candidate

if TYPE_CHECKING:
    from dilm.tools import Tools

# {"role": ..., "content": str}, plus OpenAI's "tool_calls" on an assistant message and "tool_call_id" on a tool's
ChatMessage = dict[str, Any]
OnText = Callable[[str], None]


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter to answer with: its version name (the vLLM LoRA module name too) and PEFT folder."""

    name: str
    folder: Path


class Backend(Protocol):
    """A chat model: counts tokens and generates n candidates, optionally streaming the first."""

    model_name: str
    context_window: int

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        """Tokens the prompt for `messages` takes, generation prompt included."""
        ...

    def generate(
        self,
        messages: list[ChatMessage],
        decoding: Decoding,
        on_text: OnText | None = None,
        cancel: threading.Event | None = None,
        adapter: AdapterRef | None = None,
        tools: Tools | None = None,
    ) -> list[Candidate]:
        """n candidates. `on_text` receives text deltas of the answer as they are produced (n == 1).
        Setting `cancel` stops generation and raises GenerationCancelled. `adapter`: answer with that LoRA.
        `tools`: functions the model may call; a candidate that calls them has `tool_calls` (finish_reason
        "tool_calls") and no text is streamed for it."""
        ...


class StopTrimmer:
    """Forwards streamed text but holds back anything that may be the start of a stop string."""

    def __init__(self, stops: list[str], emit: OnText) -> None:
        self.stops = [s for s in stops if s]
        self._emit = emit
        self._started = False
        self.buffer = ""
        self.stopped = False

    def feed(self, text: str) -> None:
        if self.stopped or not text:
            return
        self.buffer += text
        cut = cut_at_stop(self.buffer, self.stops)
        if cut is not None:
            self.stopped = True
            if cut:
                self.emit(cut)
            self.buffer = ""
            return
        hold = max((len(s) - 1 for s in self.stops), default=0)
        ready = self.buffer[: len(self.buffer) - hold] if hold else self.buffer
        if ready:
            self.emit(ready)
            self.buffer = self.buffer[len(ready) :]

    def emit(self, text: str) -> None:
        if not self._started:  # answers are stripped; so is the stream's start
            text = text.lstrip()
            self._started = bool(text)
        if text:
            self._emit(text)

    def flush(self) -> None:
        if not self.stopped and self.buffer:
            self.emit(self.buffer)
        self.buffer = ""


def cut_at_stop(text: str, stops: list[str]) -> str | None:
    """`text` up to the earliest stop string, or None when no stop string occurs."""
    hits = [i for s in stops if s and (i := text.find(s)) >= 0]
    return text[: min(hits)] if hits else None

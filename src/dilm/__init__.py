"""dilm: a language-model assistant that learns from the people who talk to it, while they talk to it."""

from dilm.assistant import Assistant, ReplyStream
from dilm.config import Decoding, Settings
from dilm.errors import DilmError
from dilm.tools import offered as offered_tools
from dilm.turn import ChatContext
from dilm.types import FeedbackResult, Reply, ToolCall

__version__ = "0.1.0"
__all__ = [
    "Assistant",
    "ChatContext",
    "Decoding",
    "DilmError",
    "FeedbackResult",
    "Reply",
    "ReplyStream",
    "Settings",
    "ToolCall",
    "__version__",
    "offered_tools",
]

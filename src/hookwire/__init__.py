"""hookwire: event hooks for LLM applications.

Every LLM call, streamed token, tool call, memory operation, retry and error is an event;
handlers (``hookwire.callbacks``) turn them into console output, logs, metrics, chat history,
usage accounting, traces, or whatever you write. The runners (``RLM``, ``ConversationAgent``)
and clients (``hookwire.llms``) emit them; ``CallbackManager`` dispatches them.

Names from the runtime are imported lazily, so ``import hookwire`` stays cheap.
"""

from __future__ import annotations

from typing import Any

from ._lazy import LazyNames
from .callbacks.base import AsyncBaseCallback, BaseCallback
from .context import current_context, current_run, request_context
from .dispatch import CallbackManager
from .events import EmbeddingResponse, LLMResponse, ToolCall, Usage
from .ids import new_id
from .redaction import redact_logs
from .tracing import trace

__version__ = "0.1.0"

# A handler's exception that quotes a key (a 401 echoing it) is logged without it.
redact_logs("hookwire", "hookwire.pricing")

__all__ = [
    "RLM",
    "AsyncBaseCallback",
    "BaseCallback",
    "CallbackManager",
    "ConversationAgent",
    "EmbeddingResponse",
    "LLMResponse",
    "LocalLLM",
    "OpenAIClient",
    "Settings",
    "ToolCall",
    "Usage",
    "__version__",
    "current_context",
    "current_run",
    "new_id",
    "request_context",
    "tool",
    "trace",
]

_LAZY = LazyNames(
    __name__,
    {
        "RLM": ".rlm",
        "ConversationAgent": ".agents",
        "OpenAIClient": ".llms",
        "LocalLLM": ".llms",
        "Settings": ".config",
        "tool": ".tools",
    },
)


def __getattr__(name: str) -> Any:
    return _LAZY(name)


def __dir__() -> list[str]:
    return sorted(__all__)

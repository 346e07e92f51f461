"""hookwire: event hooks for LLM applications.

Every LLM call, streamed token, tool call, memory operation, retry and error is an event;
handlers (``hookwire.callbacks``) turn them into console output, logs, metrics, chat history,
usage accounting, traces, or whatever you write. The runners (``RLM``, ``ConversationAgent``)
and clients (``hookwire.llms``) emit them; ``CallbackManager`` dispatches them.

Every name is imported on first use (PEP 562), so ``import hookwire`` stays cheap and a
command line that needs none of the runtime (``hookwire --help``, ``hookwire costs``) does not
load it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._lazy import LazyFilter, LazyNames

if TYPE_CHECKING:
    from .agents import ConversationAgent
    from .callbacks.base import AsyncBaseCallback, BaseCallback
    from .config import Settings
    from .context import current_context, current_run, request_context
    from .dispatch import CallbackManager
    from .events import EmbeddingResponse, LLMResponse, ToolCall, Usage
    from .ids import new_id
    from .llms import LocalLLM, OpenAIClient
    from .rlm import RLM
    from .tools import tool
    from .tracing import trace

__version__ = "0.1.0"

# A handler's exception that quotes a key (a 401 echoing it) is logged without it; the
# redactor itself is imported with the first record.
for _name in ("hookwire", "hookwire.pricing"):
    logging.getLogger(_name).addFilter(LazyFilter("hookwire.redaction", "RedactingFilter"))

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
        "AsyncBaseCallback": ".callbacks.base",
        "BaseCallback": ".callbacks.base",
        "CallbackManager": ".dispatch",
        "ConversationAgent": ".agents",
        "EmbeddingResponse": ".events",
        "LLMResponse": ".events",
        "LocalLLM": ".llms",
        "OpenAIClient": ".llms",
        "Settings": ".config",
        "ToolCall": ".events",
        "Usage": ".events",
        "current_context": ".context",
        "current_run": ".context",
        "new_id": ".ids",
        "request_context": ".context",
        "tool": ".tools",
        "trace": ".tracing",
    },
)


def __getattr__(name: str) -> Any:
    return _LAZY(name)


def __dir__() -> list[str]:
    return sorted(__all__)

"""Handlers: the base classes to subclass, and the built-in handlers.

Built-in handlers are imported lazily, so ``import hookwire.callbacks`` stays cheap and a
handler whose optional dependency is missing only fails when it is used.
"""

from __future__ import annotations

from typing import Any

from .._lazy import LazyNames
from .base import AsyncBaseCallback, BaseCallback

__all__ = [
    "AccountingCallbackHandler",
    "AsyncBaseCallback",
    "BaseCallback",
    "Budget",
    "ChatHistoryCallbackHandler",
    "ConsoleCallback",
    "FileLogCallback",
    "MetricsCallback",
    "OpenTelemetryCallback",
    "StreamingCallback",
    "TraceStoreCallback",
]

_LAZY = LazyNames(
    __name__,
    {
        "ConsoleCallback": ".console",
        "StreamingCallback": ".streaming",
        "MetricsCallback": ".metrics",
        "FileLogCallback": ".filelog",
        "ChatHistoryCallbackHandler": ".chat_history",
        "AccountingCallbackHandler": ".accounting",
        "Budget": ".accounting",
        "OpenTelemetryCallback": ".otel",
        "TraceStoreCallback": ".trace_store",
    },
)


def __getattr__(name: str) -> Any:
    return _LAZY(name)


def __dir__() -> list[str]:
    return sorted(__all__)

"""Handlers: the base classes to subclass, and the built-in handlers.

Built-in handlers are imported lazily, so ``import hookwire.callbacks`` stays cheap and a
handler whose optional dependency is missing only fails when it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

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
]

_LAZY = {
    "ConsoleCallback": ".console",
    "StreamingCallback": ".streaming",
    "MetricsCallback": ".metrics",
    "FileLogCallback": ".filelog",
    "ChatHistoryCallbackHandler": ".chat_history",
    "AccountingCallbackHandler": ".accounting",
    "Budget": ".accounting",
    "OpenTelemetryCallback": ".otel",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hookwire.callbacks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

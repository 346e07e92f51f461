"""Helpers for testing code that uses hookwire (and for hookwire's own tests).

- ``RecordingCallback``: records every hook call it receives, in order, with its keywords.
- ``capture_events(manager)``: a context manager that adds a ``RecordingCallback`` to a
  manager and removes it afterwards.
- ``OpenAIServer``: a small OpenAI-compatible HTTP server on 127.0.0.1 (JSON and SSE
  streaming, tool calls, scripted failures), for tests that go through the real ``openai``
  SDK without reaching the internet.
"""

from __future__ import annotations

import importlib
from typing import Any

from .recording import Call, RecordingCallback, capture_events

__all__ = ["Call", "OpenAIServer", "RecordingCallback", "capture_events"]


def __getattr__(name: str) -> Any:
    if name == "OpenAIServer":
        value = importlib.import_module(".openai_server", __name__).OpenAIServer
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hookwire.testing' has no attribute {name!r}")

"""Helpers for testing code that uses hookwire (and for hookwire's own tests).

- ``RecordingCallback``: records every hook call it receives, in order, with its keywords.
- ``capture_events(manager)``: a context manager that adds a ``RecordingCallback`` to a
  manager and removes it afterwards.
- ``OpenAIServer``: a small OpenAI-compatible HTTP server on 127.0.0.1 (JSON and SSE
  streaming, tool calls, scripted failures), for tests that go through the real ``openai``
  SDK without reaching the internet; it speaks Anthropic's Messages API too
  (``/v1/messages``), for the ``anthropic`` SDK.
"""

from __future__ import annotations

from typing import Any

from .._lazy import LazyNames
from .recording import Call, RecordingCallback, capture_events

__all__ = ["Call", "OpenAIServer", "RecordingCallback", "capture_events"]


_LAZY = LazyNames(__name__, {"OpenAIServer": ".openai_server"})


def __getattr__(name: str) -> Any:
    return _LAZY(name)

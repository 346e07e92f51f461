"""LLM clients behind one protocol (``LLM``): ``OpenAIClient`` for any OpenAI-compatible
server, ``LocalLLM`` offline. Every call emits the LLM events, retries transient failures and
reports usage and cost; see ``hookwire.llms.base``."""

from __future__ import annotations

from .base import LLM, BaseLLM, LLMRequest, Messages, StreamEnd, normalize_messages
from .local import LocalLLM
from .openai_client import OpenAIClient, map_openai_error
from .retry import RetryPolicy

__all__ = [
    "LLM",
    "BaseLLM",
    "LLMRequest",
    "LocalLLM",
    "Messages",
    "OpenAIClient",
    "RetryPolicy",
    "StreamEnd",
    "map_openai_error",
    "normalize_messages",
]

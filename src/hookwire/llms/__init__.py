"""LLM clients behind one protocol (``LLM``): ``OpenAIClient`` for any OpenAI-compatible
server, ``LocalLLM`` offline. Every call emits the LLM events, retries transient failures and
reports usage and cost: the protocol is ``hookwire.llms.protocol``, the call engine
``hookwire.llms.engine``."""

from __future__ import annotations

from .engine import BaseLLM
from .local import LocalLLM
from .openai_client import OpenAIClient, map_openai_error
from .protocol import LLM, LLMRequest, Messages, StreamEnd, normalize_messages
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

"""The usage of a call whose provider sent no counts: an upper bound, marked as an estimate.

A stream without its usage chunk (no ``stream_options.include_usage``, which LangChain's
``ChatOpenAI`` does not send to a custom ``base_url``), or one the caller stopped early, says
nothing of its tokens. Booking it as 0 tokens would make it free; hookwire books it as
``Usage(..., estimated=True)`` with these bounds instead:

- prompt: the UTF-8 size in bytes of the request's messages and tools as JSON. A byte-level
  BPE tokenizer (every OpenAI model, Llama, Mistral, Qwen...) never gives more tokens than
  the bytes of its text, and the JSON's keys, quotes and braces stand for the few tokens each
  message costs in the chat template;
- completion: the UTF-8 size of the text and tool calls that actually arrived.

Hidden reasoning tokens are not streamed, so they are not in the bound.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson

from ..events import LLMResponse, ToolCall, Usage
from .prices import price

__all__ = ["UNKNOWN_USAGE", "estimate_usage", "prompt_bound", "with_estimate"]

#: What a reader of an answer gives when the answer carried no usage: an estimate of nothing,
#: to be replaced by ``with_estimate`` once the request is at hand.
UNKNOWN_USAGE = Usage(0, 0, estimated=True)


def _size(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    try:
        return len(orjson.dumps(value, default=str))
    except TypeError:  # a value orjson cannot walk (a non-string key, a too deep nesting)
        return len(repr(value).encode("utf-8", "surrogatepass"))


def prompt_bound(*parts: Any) -> int:
    """An upper bound of the prompt tokens of a request made of ``parts`` (its messages, its
    tools, a plain prompt): their size in UTF-8 bytes, as JSON; at least 1."""
    return max(sum(_size(p) for p in parts), 1)


def estimate_usage(prompt: int, text: str, tool_calls: Sequence[ToolCall] = ()) -> Usage:
    """The estimated usage of a call whose prompt is bounded by ``prompt`` tokens (see
    ``prompt_bound``) and whose answer so far is ``text`` and ``tool_calls``."""
    completion = _size(text) + sum(_size(c.name) + _size(c.arguments) for c in tool_calls)
    return Usage(prompt, completion, estimated=True)


def with_estimate(
    response: LLMResponse, model: str | None, provider: str | None, *prompt: Any
) -> LLMResponse:
    """``response`` with an estimated usage (and its cost: the price of that bound, for the
    response's model and provider, else ``model`` and ``provider``) when its usage is
    estimated; as it is otherwise. ``prompt``: the request's messages, tools..."""
    if not response.usage.estimated:
        return response
    usage = estimate_usage(prompt_bound(*prompt), response.content, response.tool_calls)
    cost = price(response.model or model, usage, response.provider or provider)
    return dataclasses.replace(response, usage=usage, cost=cost)

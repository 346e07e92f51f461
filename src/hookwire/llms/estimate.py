"""The usage of a call whose provider sent no counts: an upper bound, marked as an estimate.

A stream without its usage chunk (no ``stream_options.include_usage``, which LangChain's
``ChatOpenAI`` does not send to a custom ``base_url``), or one the caller stopped early, says
nothing of its tokens. Booking it as 0 tokens would make it free; hookwire books it as
``Usage(..., estimated=True)`` with these bounds instead:

- prompt: ``estimate_prompt_tokens`` of the messages (the bound budgets reserve with: the
  UTF-8 bytes of their text, as a byte-level BPE tokenizer, which every OpenAI model, Llama,
  Mistral and Qwen use, never gives more tokens than bytes; a few tokens per message for
  the chat template; ``IMAGE_TOKENS`` per image), plus the tools' size as JSON;
- completion: the UTF-8 size of the text and tool calls that actually arrived.

Hidden reasoning tokens are not streamed, so they are not in the bound.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from ..events import LLMResponse, ToolCall, Usage
from .prices import price

__all__ = [
    "IMAGE_TOKENS",
    "UNKNOWN_USAGE",
    "estimate_prompt_tokens",
    "estimate_usage",
    "prompt_bound",
    "with_estimate",
]

#: What a reader of an answer gives when the answer carried no usage: an estimate of nothing,
#: to be replaced by ``with_estimate`` once the request is at hand.
UNKNOWN_USAGE = Usage(0, 0, estimated=True)


#: Tokens reserved per image in a prompt: OpenAI's high-detail 2048x2048 tile count (1,105)
#: with a margin. An image's bytes say nothing about its tokens.
IMAGE_TOKENS: Final = 1_600
_IMAGE_PARTS: Final = frozenset({"image_url", "input_image", "image"})


def estimate_prompt_tokens(prompt: Any) -> int:
    """An upper bound of the tokens a prompt can use: its UTF-8 bytes (a byte-level BPE token
    is at least one byte) plus a few per message for roles and separators; an image part
    (``{"type": "image_url", ...}``) counts ``IMAGE_TOKENS``."""
    if prompt is None:
        return 0
    # Types are told with ``type(...) is`` first: an isinstance check against the Mapping ABC
    # costs about as much as counting a short message.
    cls = type(prompt)
    if cls is str or (cls is not dict and isinstance(prompt, str)):
        return len(prompt.encode("utf-8", "replace")) + 8
    if cls is dict or (cls is not list and cls is not tuple and isinstance(prompt, Mapping)):
        if prompt.get("type") in _IMAGE_PARTS:
            return IMAGE_TOKENS
        total = 8
        for v in prompt.values():
            if isinstance(v, str):
                total += len(v.encode("utf-8", "replace")) + 1
            else:
                total += estimate_prompt_tokens(v)
        return total
    if cls is list or cls is tuple or isinstance(prompt, (list, tuple)):
        total = 3
        for m in prompt:
            total += estimate_prompt_tokens(m)
        return total
    return len(str(prompt).encode("utf-8", "replace")) + 8


def _size(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    try:
        return len(orjson.dumps(value, default=str))
    except TypeError:  # a value orjson cannot walk (a non-string key, a too deep nesting)
        return len(repr(value).encode("utf-8", "surrogatepass"))


def prompt_bound(prompt: Any, tools: Any = None) -> int:
    """An upper bound of the prompt tokens of a request: ``estimate_prompt_tokens`` of its
    ``prompt`` (messages, a text, an input) and the UTF-8 size of its ``tools`` as JSON (their
    keys are property names the model reads); at least 1."""
    return max(estimate_prompt_tokens(prompt) + _size(tools), 1)


def estimate_usage(prompt: int, text: str, tool_calls: Sequence[ToolCall] = ()) -> Usage:
    """The estimated usage of a call whose prompt is bounded by ``prompt`` tokens (see
    ``prompt_bound``) and whose answer so far is ``text`` and ``tool_calls``."""
    completion = _size(text) + sum(_size(c.name) + _size(c.arguments) for c in tool_calls)
    return Usage(prompt, completion, estimated=True)


def with_estimate(
    response: LLMResponse, model: str | None, provider: str | None, prompt: Any, tools: Any
) -> LLMResponse:
    """``response`` with an estimated usage (and its cost: the price of that bound, for the
    response's model and provider, else ``model`` and ``provider``) when its usage is an
    estimate still without counts (``UNKNOWN_USAGE``); as it is otherwise (a client's own
    estimate is kept). ``prompt`` and ``tools``: the request's, as for ``prompt_bound``."""
    usage = response.usage
    if not usage.estimated or usage.total_tokens:
        return response
    usage = estimate_usage(prompt_bound(prompt, tools), response.content, response.tool_calls)
    cost = price(response.model or model, usage, response.provider or provider)
    return dataclasses.replace(response, usage=usage, cost=cost)

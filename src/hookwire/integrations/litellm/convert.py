"""LiteLLM's records as hookwire's: a ``ModelResponse`` as an ``LLMResponse``, LiteLLM's
usage as a ``Usage``, its provider names as the ones hookwire's events and prices use.

No I/O and no LiteLLM import: the objects are read by their attributes (LiteLLM's response
classes are pydantic models in OpenAI's shape)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from ...events import LLMResponse, ToolCall, Usage
from ...llms.estimate import UNKNOWN_USAGE
from ...llms.openai_wire import usage_from_json
from ...llms.prices import price

__all__ = ["invocation_params", "provider_name", "response_of", "usage_of"]

#: LiteLLM's provider names that hookwire (and the GenAI conventions) name otherwise.
_PROVIDERS: Mapping[str, str] = {
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
}

#: Request arguments passed on in ``invocation_params`` (those the event contract names).
_PARAM_KEYS = (
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "n",
    "stop",
    "tool_choice",
    "reasoning_effort",
)


def provider_name(litellm_provider: str | None) -> str | None:
    """hookwire's name for a LiteLLM provider (``custom_llm_provider``)."""
    if not litellm_provider:
        return None
    return _PROVIDERS.get(litellm_provider, litellm_provider)


def invocation_params(model: str | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``invocation_params`` of a call's start event, from its request arguments."""
    out: dict[str, Any] = {"model": model} if model else {}
    for key in _PARAM_KEYS:
        value = params.get(key)
        if value is not None:
            out[key] = value
    tools = params.get("tools")
    if tools:
        names = []
        for t in tools:
            fn = t.get("function") if isinstance(t, Mapping) else None
            names.append(str((fn or t).get("name") or "") if isinstance(t, Mapping) else "")
        out["tools"] = names
    return out


def _dump(obj: Any) -> Any:
    if obj is None or isinstance(obj, (dict, list, str, int, float)):
        return obj
    dump = getattr(obj, "model_dump", None)
    if dump is not None:
        return dump()
    return getattr(obj, "__dict__", None)


def usage_of(raw: Any) -> Usage | None:
    """A ``Usage`` of LiteLLM's usage (OpenAI's shape; Anthropic's cache writes in
    ``cache_creation_input_tokens``); ``None`` when there is none or it counts nothing."""
    data = _dump(raw)
    if type(data) is not dict:
        return None
    usage = usage_from_json(data)
    if usage is None:
        return None
    written = data.get("cache_creation_input_tokens")
    if type(written) is int and written > 0:
        cached = usage.cached_tokens or 0
        usage = Usage(
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens,
            usage.cached_tokens,
            usage.reasoning_tokens,
            cache_creation_tokens=min(written, max(usage.prompt_tokens - cached, 0)),
        )
    return usage


def _litellm_cost(value: Any) -> Decimal | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        try:
            return Decimal(repr(float(value)))
        except InvalidOperation:
            return None
    return None


def response_of(
    obj: Any, model: str | None, provider: str | None, litellm_cost: Any = None
) -> LLMResponse:
    """An ``LLMResponse`` of LiteLLM's ``ModelResponse`` ``obj`` (a streamed call's assembled
    one too). The cost is hookwire's price (``hookwire.pricing``), or LiteLLM's own
    ``response_cost`` for a model hookwire has no price for."""
    choices = getattr(obj, "choices", None) or ()
    first = choices[0] if choices else None
    message = getattr(first, "message", None) or getattr(first, "delta", None)
    content = getattr(message, "content", None)
    calls: list[ToolCall] = []
    for call in getattr(message, "tool_calls", None) or ():
        fn = getattr(call, "function", None)
        calls.append(
            ToolCall(
                id=str(getattr(call, "id", "") or ""),
                name=str(getattr(fn, "name", "") or ""),
                arguments=str(getattr(fn, "arguments", "") or "{}"),
            )
        )
    usage = usage_of(getattr(obj, "usage", None))
    model = getattr(obj, "model", None) or model
    cost = price(model, usage, provider) if usage is not None else None
    if cost is None and usage is not None:
        cost = _litellm_cost(litellm_cost)
    return LLMResponse(
        content if isinstance(content, str) else "",
        usage or UNKNOWN_USAGE,
        model,
        finish_reason=getattr(first, "finish_reason", None),
        tool_calls=tuple(calls),
        provider=provider,
        id=getattr(obj, "id", None),
        cost=cost,
    )

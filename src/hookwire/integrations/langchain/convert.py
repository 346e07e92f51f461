"""LangChain values as hookwire's events carry them: text, names, messages, usage, tool calls.

Pure functions of LangChain objects, no state: the bridge calls them to build its events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from langchain_core.messages import BaseMessage, convert_to_openai_messages

from ...events import ToolCall, Usage
from ...llms.estimate import estimate_usage, prompt_bound
from ...llms.protocol import content_text

__all__ = [
    "chain_input",
    "chain_output",
    "name_of",
    "openai_messages",
    "text_of",
    "tool_calls_of",
    "usage_of",
]


#: A message's content as text (LangChain's own ``.text`` joins the text blocks the same way).
text_of = content_text


def name_of(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    """A run's name: the ``name`` LangChain passes, else the serialized object's name or the
    last part of its id, else ``default``."""
    name = kwargs.get("name")
    if name:
        return str(name)
    if serialized:
        if serialized.get("name"):
            return str(serialized["name"])
        ids = serialized.get("id")
        if isinstance(ids, list) and ids:
            return str(ids[-1])
    return default


def usage_of(message: Any, llm_output: Mapping[str, Any] | None, prompt: Any = None) -> Usage:
    """A call's usage, from the message's ``usage_metadata`` or else the ``llm_output``'s
    ``token_usage`` (older integrations). When neither says (``ChatOpenAI`` streaming to a
    custom ``base_url`` asks for no usage), an estimated usage (``Usage.estimated``): the
    bound of ``prompt`` (the call's messages, if the caller has them) and of the answer's text
    and tool calls; never 0 tokens as if the call were free."""
    um = getattr(message, "usage_metadata", None)
    if um:
        details_in = um.get("input_token_details") or {}
        details_out = um.get("output_token_details") or {}
        return Usage(
            prompt_tokens=int(um.get("input_tokens") or 0),
            completion_tokens=int(um.get("output_tokens") or 0),
            total_tokens=int(um.get("total_tokens") or -1),
            cached_tokens=details_in.get("cache_read"),
            reasoning_tokens=details_out.get("reasoning"),
        )
    if llm_output:
        tu = llm_output.get("token_usage") or llm_output.get("usage")
        if isinstance(tu, Mapping) and tu:
            return Usage(
                prompt_tokens=int(tu.get("prompt_tokens") or tu.get("input_tokens") or 0),
                completion_tokens=int(tu.get("completion_tokens") or tu.get("output_tokens") or 0),
                total_tokens=int(tu.get("total_tokens") or -1),
            )
    text = text_of(getattr(message, "content", None)) if message is not None else ""
    calls = tool_calls_of(message) if message is not None else ()
    return estimate_usage(prompt_bound(prompt), text, calls)


def tool_calls_of(message: Any) -> tuple[ToolCall, ...]:
    """The tool calls an AI message asks for, arguments as JSON text."""
    calls = getattr(message, "tool_calls", None)
    if not calls:
        return ()
    return tuple(
        ToolCall(
            id=str(tc.get("id") or ""),
            name=str(tc.get("name") or ""),
            arguments=orjson.dumps(tc.get("args") or {}, default=str).decode(),
        )
        for tc in calls
    )


def chain_output(value: Any) -> Any:
    """A chain's output: a message as its text, anything else as it is."""
    if isinstance(value, BaseMessage):
        return text_of(value.content)
    return value


def chain_input(value: Any) -> Any:
    """A chain's input as hookwire's runs carry it: a single text value as that text
    (``{"question": "..."}`` gives ``"..."``), a message as its text, messages as dicts, anything
    else as it is."""
    if (type(value) is dict or isinstance(value, Mapping)) and len(value) == 1:
        for only in value.values():
            if isinstance(only, str):
                return only
        return value
    if isinstance(value, BaseMessage):
        return text_of(value.content)
    if isinstance(value, list) and value and isinstance(value[0], BaseMessage):
        return openai_messages(value)
    return value


_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def openai_messages(batch: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as OpenAI-style dicts, as ``convert_to_openai_messages`` gives them.

    The common messages (text content, tool calls, tool results) are converted here, ten times
    faster; anything else goes through LangChain's own converter.
    """
    out: list[dict[str, Any]] = []
    for m in batch:
        role = _ROLES.get(m.type)
        content = m.content
        if role is None or not isinstance(content, str) or m.additional_kwargs:
            return convert_to_openai_messages(batch)
        d: dict[str, Any] = {"role": role, "content": content}
        if m.name:
            d["name"] = m.name
        if role == "assistant":
            calls = getattr(m, "tool_calls", None)
            if calls:
                d["tool_calls"] = [
                    {
                        "type": "function",
                        "id": tc["id"],
                        "function": {"name": tc["name"], "arguments": json.dumps(tc["args"])},
                    }
                    for tc in calls
                ]
        elif role == "tool":
            d["tool_call_id"] = getattr(m, "tool_call_id", None)
        out.append(d)
    return out

"""LangChain values as hookwire's events carry them: text, names, messages, usage, tool calls.

Pure functions of LangChain objects, no state: the bridge calls them to build its events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from langchain_core.messages import BaseMessage, convert_to_openai_messages
from langchain_core.prompt_values import PromptValue

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


def chain_output(value: Any) -> str:
    """A run's output as text: a message's text, the last AI message of a message list or of a
    LangGraph ``messages`` state (the final answer), the one text value (or the ``output``) of
    a dict, else JSON."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, BaseMessage):
        return text_of(value.content)
    if isinstance(value, Mapping):
        messages = value.get("messages")
        if isinstance(messages, Sequence) and not isinstance(messages, str):
            found = _last(messages, "assistant")
            if found is not None:
                return found
        for key in ("output", "answer"):
            if isinstance(value.get(key), str):
                return str(value[key])
        only = _only_text(value)
        if only is not None:
            return only
    elif isinstance(value, Sequence) and not isinstance(value, str):
        found = _last(value, "assistant")
        if found is not None:
            return found
    return _json(value)


def chain_input(value: Any) -> str:
    """A run's input as text: the one text value of a dict (``{"question": "..."}`` gives
    ``"..."``), a message's text, the human's last message of a message list, a prompt value or
    a LangGraph ``messages`` state, else JSON (never a Python ``repr``)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        only = _only_text(value)
        if only is not None:
            return only
        messages = value.get("messages")
        if isinstance(messages, Sequence) and not isinstance(messages, str):
            found = _last(messages, "user")
            if found is not None:
                return found
    elif isinstance(value, BaseMessage):
        return text_of(value.content)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        found = _last(value, "user")
        if found is not None:
            return found
    elif isinstance(value, PromptValue):
        found = _last(value.to_messages(), "user")
        if found is not None:
            return found
    return _json(value)


def _only_text(value: Mapping[str, Any]) -> str | None:
    """The value of a one-key dict when it is text."""
    if len(value) == 1:
        for only in value.values():
            if isinstance(only, str):
                return only
    return None


def _role(message: Any) -> tuple[str | None, Any]:
    """The OpenAI role and content of a message in any of the forms LangChain accepts: a
    message object, a ``(role, content)`` pair, an OpenAI-style dict; ``(None, None)`` else."""
    if isinstance(message, BaseMessage):
        return _ROLES.get(message.type), message.content
    if isinstance(message, Mapping):
        role = message.get("role")
        return (_ROLES.get(str(role), str(role)) if role else None), message.get("content")
    if isinstance(message, tuple) and len(message) == 2:
        role = str(message[0])
        return _ROLES.get(role, role), message[1]
    return None, None


def _last(messages: Sequence[Any], role: str) -> str | None:
    """The text of the last message with ``role`` (``"user"``, ``"assistant"``); ``None`` if
    there is none. An assistant message that only calls tools is no answer."""
    for m in reversed(messages):
        r, content = _role(m)
        if r == role:
            text = content if isinstance(content, str) else text_of(content)
            if text or role == "user":
                return text
    return None


def _plain(value: Any) -> Any:
    """What JSON cannot hold natively, as something it can."""
    if isinstance(value, BaseMessage):
        r, content = _role(value)
        return {"role": r or value.type, "content": content}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    # Any other object by its fields (LangGraph's ``Send(node, arg)`` has slots), named.
    slots = getattr(type(value), "__slots__", None)
    if hasattr(value, "__dict__"):
        fields = dict(vars(value))
    elif isinstance(slots, (tuple, list)):
        fields = {k: getattr(value, k) for k in slots if hasattr(value, k)}
    else:
        return str(value)
    return {"type": type(value).__name__, **fields}


def _json(value: Any) -> str:
    """``value`` as JSON text; messages and models by their fields."""
    try:
        return orjson.dumps(value, default=_plain, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:  # what orjson refuses: integers beyond 64 bits, keys of any type
        return json.dumps(value, default=_plain, ensure_ascii=False, skipkeys=True)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(str(value), ensure_ascii=False)


_ROLES = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "tool": "tool",
    "user": "user",
    "assistant": "assistant",
}


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

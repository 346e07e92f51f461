"""Anthropic's Messages API (``POST /v1/messages``), as the instrumentation reads it: what a
request says (its start event) and what the answer says, from the JSON ``Message`` or from its
server-sent events (``message_start``, ``content_block_start`` / ``_delta`` / ``_stop``,
``message_delta`` with the usage, ``message_stop``; ``ping`` and ``error``).

Anthropic counts input tokens apart from the cache: ``input_tokens`` are the uncached ones,
``cache_read_input_tokens`` and ``cache_creation_input_tokens`` the others. A hookwire
``Usage`` counts every prompt token in ``prompt_tokens`` (OpenAI's convention), with the cache
reads in ``cached_tokens`` and the writes in ``cache_creation_tokens``, so each kind is priced
at its own rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anthropic
import orjson

from ...errors import (
    AuthenticationError,
    BadRequestError,
    LLMError,
    RateLimitError,
    ServerError,
)
from ...events import LLMResponse, ToolCall, Usage
from ...llms.estimate import UNKNOWN_USAGE
from ...llms.prices import price
from ..openai.endpoints import Endpoint, Reader, decoded_once

__all__ = ["MESSAGES", "MessagesEndpoint", "MessagesReader", "stream_error", "usage_of"]

#: Request arguments passed on in ``invocation_params`` (Anthropic's names -> the contract's).
_PARAMS = {
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "stop_sequences": "stop",
    "tool_choice": "tool_choice",
    "service_tier": "service_tier",
}

#: An error event's ``type`` -> the hookwire exception and the HTTP status Anthropic gives it.
_STREAM_ERRORS: Mapping[str, tuple[type[LLMError], int]] = {
    "invalid_request_error": (BadRequestError, 400),
    "authentication_error": (AuthenticationError, 401),
    "permission_error": (AuthenticationError, 403),
    "not_found_error": (BadRequestError, 404),
    "request_too_large": (BadRequestError, 413),
    "rate_limit_error": (RateLimitError, 429),
    "api_error": (ServerError, 500),
    "overloaded_error": (ServerError, 529),
}


#: Events whose data says nothing the reader keeps (by their SSE event name): it is not
#: decoded. ``ping`` keeps the connection alive, ``content_block_stop`` ends a block the
#: deltas told, ``message_stop`` ends the stream (its name says it all).
_UNREAD = frozenset({"ping", "content_block_stop", "message_stop"})

#: The SDK's markers of an argument left out (still in the body ``request`` is given).
_LEFT_OUT = (anthropic.Omit, anthropic.NotGiven)


def _int(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def usage_of(raw: Any) -> Usage | None:
    """A hookwire ``Usage`` of Anthropic's ``usage`` object (``None`` when it is not one)."""
    if type(raw) is not dict:
        return None
    read = raw.get("cache_read_input_tokens")
    written = raw.get("cache_creation_input_tokens")
    read = _int(read) if read is not None else None
    written = _int(written) if written is not None else None
    prompt = _int(raw.get("input_tokens")) + (read or 0) + (written or 0)
    return Usage(
        prompt,
        _int(raw.get("output_tokens")),
        cached_tokens=read,
        cache_creation_tokens=written,
    )


def stream_error(error: Any, provider: str, model: str | None) -> LLMError:
    """The hookwire exception for an ``error`` event's ``error`` object."""
    kind = str(error.get("type") or "") if isinstance(error, Mapping) else ""
    message = str(error.get("message") or "") if isinstance(error, Mapping) else str(error)
    cls, status = _STREAM_ERRORS.get(kind, (LLMError, None))
    text = f"{provider} streamed an error ({kind or 'unknown'}): {message}"
    return cls(text, status_code=status, provider=provider, model=model)


def _tool_call(block: Mapping[str, Any]) -> ToolCall:
    arguments = block.get("input")
    text = orjson.dumps(arguments).decode() if arguments is not None else "{}"
    return ToolCall(
        id=str(block.get("id") or ""), name=str(block.get("name") or ""), arguments=text
    )


class MessagesReader(Reader):
    """Reads one ``/v1/messages`` answer (see ``hookwire.integrations.openai.endpoints.Reader``
    for the protocol)."""

    __slots__ = ("finished", "id", "stop", "tools", "usage")

    def __init__(self, model: str | None, provider: str, hide: bool, request: Any = None) -> None:
        super().__init__(model, provider, hide, request)
        self.id: str | None = None
        self.stop: str | None = None
        #: The usage so far: ``message_start``'s, updated by ``message_delta``'s.
        self.usage: dict[str, Any] = {}
        #: Whether ``message_delta`` came (before it, the output tokens are not counted yet).
        self.finished = False
        #: Tool-use blocks by index: ``[id, name, pieces of the JSON input]``.
        self.tools: dict[int, list[Any]] = {}

    def _response(self, text: str, usage: Usage | None, calls: tuple[ToolCall, ...]) -> LLMResponse:
        model = self.model
        return LLMResponse(
            text,
            usage or UNKNOWN_USAGE,
            model,
            finish_reason=self.stop,
            tool_calls=calls,
            provider=self.provider,
            id=self.id,
            cost=price(model, usage, self.provider) if usage else None,
        )

    def body(self, data: bytes) -> LLMResponse:
        answer = orjson.loads(data)
        if type(answer) is not dict or answer.get("type") != "message":
            raise ValueError(f"an answer that is not a message: {data[:200]!r}")
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in answer.get("content") or ():
            kind = block.get("type") if type(block) is dict else None
            if kind == "text":
                texts.append(str(block.get("text") or ""))
            elif kind == "tool_use":
                calls.append(_tool_call(block))
        self.id = answer.get("id")
        self.model = answer.get("model") or self.model
        self.stop = answer.get("stop_reason")
        return self._response("".join(texts), usage_of(answer.get("usage")), tuple(calls))

    def event(self, name: str | None, data: str) -> str | None:
        if name in _UNREAD:
            self.done = self.done or name == "message_stop"
            return None
        return self.read(name, orjson.loads(data))

    def sse(self, sse: Any) -> str | None:
        name = sse.event
        if name in _UNREAD:
            self.done = self.done or name == "message_stop"
            return None
        return self.read(name, decoded_once(sse))

    def read(self, name: str | None, event: Any) -> str | None:
        """Read one event, its data decoded (``name``: its SSE event name, if it came with
        one): its text, if any."""
        if type(event) is not dict:
            raise ValueError(f"a stream event that is not a JSON object: {event!r:.200}")
        kind = event.get("type") or name
        if kind == "content_block_delta":
            delta = event.get("delta")
            if type(delta) is not dict:
                return None
            part = delta.get("type")
            if part == "text_delta":
                text = delta.get("text")
                if type(text) is str and text:
                    self.parts.append(text)
                    return text
            elif part == "input_json_delta":
                tool = self.tools.get(event.get("index"))  # type: ignore[arg-type]
                if tool is not None:
                    tool[2].append(str(delta.get("partial_json") or ""))
        elif kind == "content_block_start":
            block = event.get("content_block")
            if type(block) is dict and block.get("type") == "tool_use":
                self.tools[event.get("index")] = [block.get("id"), block.get("name"), []]  # type: ignore[index]
            elif type(block) is dict and block.get("type") == "text" and block.get("text"):
                text = str(block["text"])
                self.parts.append(text)
                return text
        elif kind == "message_start":
            message = event.get("message")
            if type(message) is dict:
                self.id = message.get("id") or self.id
                self.model = message.get("model") or self.model
                self._count(message.get("usage"))
        elif kind == "message_delta":
            delta = event.get("delta")
            if type(delta) is dict and delta.get("stop_reason"):
                self.stop = delta["stop_reason"]
            self._count(event.get("usage"))
            self.finished = True
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            self.error = stream_error(event.get("error"), self.provider, self.model)
        return None

    def _count(self, usage: Any) -> None:
        if type(usage) is dict:
            # message_delta's counts are cumulative; a count it leaves out (or null) stands.
            counts = self.usage
            for key, value in usage.items():
                if value is not None:
                    counts[key] = value

    def result(self) -> LLMResponse:
        calls: tuple[ToolCall, ...] = ()
        if self.tools:
            calls = tuple(
                ToolCall(id=str(i or ""), name=str(n or ""), arguments="".join(p) or "{}")
                for i, n, p in self.tools.values()
            )
        # Before message_delta the output is not counted: the usage is estimated instead.
        usage = usage_of(self.usage) if self.finished else None
        if not self.done:
            self.stop = None
        return self._response("".join(self.parts), usage, calls)


@dataclass(frozen=True, slots=True)
class MessagesEndpoint(Endpoint):
    """``/v1/messages``: its start event's payload is the messages, after the ``system`` prompt
    (as a ``{"role": "system"}`` message) when there is one."""

    def start(self, body: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        params: dict[str, Any] = {}
        model = body.get("model")
        if model:
            params["model"] = model
        for key, name in _PARAMS.items():
            value = body.get(key)
            if value is not None and not isinstance(value, _LEFT_OUT):
                params[name] = value
        thinking = body.get("thinking")
        if isinstance(thinking, Mapping) and thinking.get("budget_tokens"):
            params["thinking_budget_tokens"] = thinking["budget_tokens"]
        tools = body.get("tools")
        if tools:
            params["tools"] = [
                str(t.get("name") or t.get("type") or "") for t in tools if isinstance(t, Mapping)
            ]
        messages = body.get("messages")
        system = body.get("system")
        if system and isinstance(messages, list):
            messages = [{"role": "system", "content": system}, *messages]
        return messages, params


#: The Messages endpoint.
MESSAGES = MessagesEndpoint("messages", "messages", MessagesReader)

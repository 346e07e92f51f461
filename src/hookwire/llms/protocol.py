"""The provider protocol: what runners need from a model client, and what a client's single
attempts hand to the call engine.

``LLM`` is the protocol runners (``RLM``, ``ConversationAgent``) call: ``generate`` /
``agenerate`` / ``stream`` / ``astream``. ``LLMRequest`` is one call as a client sends it, and
``StreamEnd`` the last item of a client's stream. ``BaseLLM`` (``hookwire.llms.engine``)
implements ``LLM`` around a client's single attempts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..dispatch import Callbacks
from ..errors import ConfigurationError
from ..events import LLMResponse, ToolCall, Usage, slot_setters

__all__ = ["LLM", "LLMRequest", "Messages", "StreamEnd", "content_text", "normalize_messages"]

#: What a call accepts as its prompt: a text (sent as one user message) or chat messages.
Messages = str | Sequence[Mapping[str, Any]]


def content_text(content: Any, sep: str = "") -> str:
    """A chat message's content as text: a string as it is; of a list of content parts (the
    OpenAI and LangChain formats: strings and ``{"type": "text", "text": ...}`` blocks) the
    texts joined with ``sep``; nothing for ``None``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for block in content:
            if isinstance(block, str):
                out.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                out.append(block["text"])
        return sep.join(out)
    return "" if content is None else str(content)


@runtime_checkable
class LLM(Protocol):
    """What runners need from a model client.

    ``generate`` / ``agenerate`` return an ``LLMResponse``; ``stream`` / ``astream`` yield the
    answer's tokens (``str``) and end with the full ``LLMResponse`` (usage included).
    ``callbacks`` adds handlers for this call; ``stream=None`` streams from the model when some
    handler listens for tokens.
    """

    provider: str
    model: str | None

    def generate(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Sequence[Any] | None = None,
        callbacks: Callbacks = None,
        stream: bool | None = None,
        **params: Any,
    ) -> LLMResponse: ...

    async def agenerate(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Sequence[Any] | None = None,
        callbacks: Callbacks = None,
        stream: bool | None = None,
        **params: Any,
    ) -> LLMResponse: ...

    def stream(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Sequence[Any] | None = None,
        callbacks: Callbacks = None,
        **params: Any,
    ) -> Iterator[str | LLMResponse]: ...

    def astream(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Sequence[Any] | None = None,
        callbacks: Callbacks = None,
        **params: Any,
    ) -> AsyncIterator[str | LLMResponse]: ...


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """One call as the client sends it: ``tools`` are OpenAI tool schemas."""

    messages: list[dict[str, Any]]
    model: str
    params: dict[str, Any]
    tools: list[dict[str, Any]] | None = None

    # Written out, as Usage's (see hookwire.events): one is built per call.
    def __init__(
        self,
        messages: list[dict[str, Any]],
        model: str,
        params: dict[str, Any],
        tools: list[dict[str, Any]] | None = None,
    ) -> None:
        _req_messages(self, messages)
        _req_model(self, model)
        _req_params(self, params)
        _req_tools(self, tools)


_req_messages, _req_model, _req_params, _req_tools = slot_setters(
    LLMRequest, "messages", "model", "params", "tools"
)


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last item of a client's ``_stream``: how the model finished, and the usage.

    ``finish_reason=None`` means the stream stopped before the model said it was done. A
    stream may yield more than one (the last counts): an early one, without a finish, keeps
    what is known of the answer (``id``, ``model``, ``response_metadata``) for a stream the
    caller stops before its end.
    ``response_metadata`` becomes the answer's ``LLMResponse.response_metadata`` (what the
    provider said about how it served the call, passed to ``on_llm_end`` as keywords).
    """

    finish_reason: str | None
    usage: Usage | None = None
    model: str | None = None
    id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    response_metadata: Mapping[str, str] | None = None

    # Written out, as Usage's (see hookwire.events): one ends every streamed call.
    def __init__(
        self,
        finish_reason: str | None,
        usage: Usage | None = None,
        model: str | None = None,
        id: str | None = None,
        tool_calls: tuple[ToolCall, ...] = (),
        response_metadata: Mapping[str, str] | None = None,
    ) -> None:
        _end_finish_reason(self, finish_reason)
        _end_usage(self, usage)
        _end_model(self, model)
        _end_id(self, id)
        _end_tool_calls(self, tool_calls)
        _end_metadata(self, response_metadata)


_end_finish_reason, _end_usage, _end_model, _end_id, _end_tool_calls, _end_metadata = slot_setters(
    StreamEnd, "finish_reason", "usage", "model", "id", "tool_calls", "response_metadata"
)


def normalize_messages(messages: Messages) -> list[dict[str, Any]]:
    """``messages`` as a new list of message dicts (a text becomes one user message)."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    # ``type(...) is`` first: an isinstance test against the Mapping ABC is a Python-level
    # call, and lists of dicts are what nearly every caller passes.
    if type(messages) is not list and isinstance(messages, Mapping):
        raise ConfigurationError(
            "messages must be a list of message dicts, not one dict: wrap it in a list"
        )
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if (type(m) is not dict and not isinstance(m, Mapping)) or "role" not in m:
            raise ConfigurationError(
                f"messages[{i}] must be a dict with a 'role' (and usually 'content'), "
                f"e.g. {{'role': 'user', 'content': 'Hello'}}; got {m!r}"
            )
        out.append(dict(m))
    if not out:
        raise ConfigurationError("messages is empty: give at least one message, or a text")
    return out

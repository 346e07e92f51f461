"""The endpoints of the OpenAI API that the instrumentation reports, and how each is read:
what its ``on_*_start`` event says about the request, and what its answer says, from the JSON
body or from its streamed events.

Reading works on the bytes and event data that came over the wire (the same for a parsed
call, a ``with_raw_response`` or a ``with_streaming_response`` one), never on the SDK's
response classes, which differ from one SDK version to the next.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ...events import EmbeddingResponse, LLMResponse, ToolCall, Usage
from ...llms.estimate import UNKNOWN_USAGE
from ...llms.openai_wire import (
    JSONChunks,
    answer_keywords,
    response_from_json,
    stream_error,
    usage_from_json,
)
from ...llms.prices import price

__all__ = ["ENDPOINTS", "Endpoint", "Reader", "decoded_once"]

#: Request arguments passed on in ``invocation_params`` (those the event contract names).
_PARAM_KEYS = (
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "n",
    "stop",
    "parallel_tool_calls",
    "tool_choice",
    "reasoning_effort",
    "dimensions",
    "encoding_format",
)


def _count(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return int(value)
    return 0


def _tool_names(tools: Any) -> list[str]:
    names = []
    for t in tools or ():
        if isinstance(t, Mapping):
            fn = t.get("function")
            named = fn if isinstance(fn, Mapping) else t
            names.append(str(named.get("name") or t.get("type") or ""))
    return names


class Reader:
    """Reads one call's answer: ``body`` for a whole JSON answer, ``event`` for each streamed
    event then ``result`` for what the stream said. ``done`` is set once the stream's own end
    arrived (an answer cut short is reported ``cancelled``); ``error`` holds an error event.
    What the answer said about how it was served (``answer_keywords``) is the responses'
    ``response_metadata``."""

    __slots__ = (
        "done",
        "error",
        "hide",
        "model",
        "parts",
        "provider",
        "request",
        "skip",
    )

    def __init__(self, model: str | None, provider: str, hide: bool, request: Any = None) -> None:
        self.request = request  # the HTTP request, for the SDK's errors
        self.model = model
        self.provider = provider
        self.hide = hide  # a usage-only event the app did not ask for is kept from it
        self.parts: list[str] = []
        self.done = False
        self.skip = False
        self.error: BaseException | None = None

    def body(self, data: bytes) -> LLMResponse | EmbeddingResponse:
        """The answer in a whole JSON body (``ValueError`` when it is not one)."""
        raise NotImplementedError

    def event(self, name: str | None, data: str) -> str | None:
        """Read one streamed event: its text, if any. Sets ``skip`` for an event to hide."""
        raise NotImplementedError

    def sse(self, sse: Any) -> str | None:
        """``event`` for one of the SDK's ``ServerSentEvent``s, as its stream reads them (a
        reader may read the SDK's own decoding of the data instead, see ``decoded_once``)."""
        return self.event(sse.event, sse.data)

    def result(self) -> LLMResponse:
        """What the stream said so far."""
        raise NotImplementedError


def decoded_once(sse: Any) -> Any:
    """``sse.json()``, the SDK's own decoding of a server-sent event's data, kept on the event
    so that the SDK's call for it (its stream decodes each event it yields) returns the same
    object instead of decoding the data again. A reader of the SDK's events then costs no
    decoding of its own: ``json.loads`` of a text delta is about 18k instructions (the SDK's),
    ``orjson.loads`` 5k (a reader's own), against 2k to keep it. The SDK's decoder, not
    another, so what the app gets is what the SDK alone would give it."""
    value = sse.json()
    if hasattr(sse, "__dict__"):  # else (an event class with slots) the SDK decodes it again
        sse.json = lambda: value
    return value


class _Chat(Reader):
    __slots__ = ("chunks",)

    def __init__(self, model: str | None, provider: str, hide: bool, request: Any = None) -> None:
        super().__init__(model, provider, hide, request)
        self.chunks = JSONChunks(request)

    def body(self, data: bytes) -> LLMResponse:
        return response_from_json(data, self.model or "", self.provider)

    def event(self, name: str | None, data: str) -> str | None:
        if data.startswith("[DONE]"):
            return None
        chunks = self.chunks
        had_usage = chunks.usage is not None
        try:
            text = chunks.feed_json(data)
        except Exception as exc:
            if type(exc).__module__.startswith("openai"):
                self.error = exc  # an error event: the SDK raises it too
            raise
        if text:
            self.parts.append(text)
        if chunks.usage is not None and not had_usage:
            self.done = True
            self.skip = self.hide  # the usage-only chunk include_usage adds
        elif chunks.finish_reason is not None:
            self.done = True
        return text

    def result(self) -> LLMResponse:
        end = self.chunks.end()
        usage = end.usage
        model = end.model or self.model
        finish = end.finish_reason if self.done else None
        return LLMResponse(
            "".join(self.parts),
            usage or UNKNOWN_USAGE,
            model,
            finish_reason=finish,
            tool_calls=end.tool_calls,
            provider=self.provider,
            id=end.id,
            cost=price(model, usage, self.provider) if usage else None,
            response_metadata=end.response_metadata or {},
        )


class _Completions(Reader):
    """The legacy ``/completions``: ``choices[0].text``."""

    __slots__ = ("finish", "id", "usage")

    def __init__(self, model: str | None, provider: str, hide: bool, request: Any = None) -> None:
        super().__init__(model, provider, hide, request)
        self.finish: str | None = None
        self.usage: Usage | None = None
        self.id: str | None = None

    def _read(self, chunk: Any) -> str | None:
        if type(chunk) is not dict:
            raise ValueError(f"a completion that is not a JSON object: {str(chunk)[:200]}")
        if chunk.get("error"):
            self.error = stream_error(chunk["error"], self.request)
            return None
        self.id = self.id or chunk.get("id")
        self.model = chunk.get("model") or self.model
        usage = chunk.get("usage")
        if usage is not None:
            self.usage = usage_from_json(usage)
            self.done = True
            self.skip = self.hide and not chunk.get("choices")
        choices = chunk.get("choices")
        if not choices:
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]
            self.done = True
        text = choice.get("text")
        if text:
            self.parts.append(text)
        return text if isinstance(text, str) else None

    def body(self, data: bytes) -> LLMResponse:
        self._read(orjson.loads(data))
        return self.result()

    def event(self, name: str | None, data: str) -> str | None:
        if data.startswith("[DONE]"):
            return None
        return self._read(orjson.loads(data))

    def result(self) -> LLMResponse:
        usage = self.usage
        return LLMResponse(
            "".join(self.parts),
            usage or UNKNOWN_USAGE,
            self.model,
            finish_reason=self.finish if self.done else None,
            provider=self.provider,
            id=self.id,
            cost=price(self.model, usage, self.provider) if usage else None,
        )


def _responses_usage(raw: Any) -> Usage | None:
    if type(raw) is not dict:
        return None
    idet = raw.get("input_tokens_details")
    odet = raw.get("output_tokens_details")
    cached = idet.get("cached_tokens") if type(idet) is dict else None
    reasoning = odet.get("reasoning_tokens") if type(odet) is dict else None
    total = raw.get("total_tokens")
    return Usage(
        _count(raw.get("input_tokens")),
        _count(raw.get("output_tokens")),
        _count(total) if total is not None else -1,
        _count(cached) if cached is not None else None,
        _count(reasoning) if reasoning is not None else None,
    )


class _Responses(Reader):
    """The Responses API: ``output`` items, ``usage`` as ``input_tokens`` / ``output_tokens``."""

    __slots__ = ("calls", "final")

    def __init__(self, model: str | None, provider: str, hide: bool, request: Any = None) -> None:
        super().__init__(model, provider, hide, request)
        self.final: dict[str, Any] | None = None
        self.calls: list[ToolCall] = []

    def body(self, data: bytes) -> LLMResponse:
        answer = orjson.loads(data)
        if type(answer) is not dict:
            raise ValueError(f"a response that is not a JSON object: {data[:200]!r}")
        return self._of(answer)

    def _of(self, answer: dict[str, Any]) -> LLMResponse:
        texts: list[str] = []
        calls: list[ToolCall] = []
        for item in answer.get("output") or ():
            kind = item.get("type") if type(item) is dict else None
            if kind == "message":
                texts.extend(
                    str(p.get("text") or "")
                    for p in item.get("content") or ()
                    if type(p) is dict and p.get("type") == "output_text"
                )
            elif kind == "function_call":
                calls.append(_call_of(item))
        status = answer.get("status")
        details = answer.get("incomplete_details")
        if status == "completed":
            finish: str | None = "tool_calls" if calls else "stop"
        elif status == "incomplete" and type(details) is dict:
            finish = details.get("reason") or "incomplete"
        else:
            finish = status if isinstance(status, str) else None
        usage = _responses_usage(answer.get("usage"))
        model = answer.get("model") or self.model
        return LLMResponse(
            "".join(texts),
            usage or UNKNOWN_USAGE,
            model,
            finish_reason=finish,
            tool_calls=tuple(calls),
            provider=self.provider,
            id=answer.get("id"),
            cost=price(model, usage, self.provider) if usage else None,
            response_metadata=answer_keywords(answer),
        )

    def event(self, name: str | None, data: str) -> str | None:
        event = orjson.loads(data)
        if type(event) is not dict:
            raise ValueError(f"a stream event that is not a JSON object: {data[:200]}")
        kind = event.get("type") or name
        if kind == "response.output_text.delta":
            delta = event.get("delta")
            if isinstance(delta, str) and delta:
                self.parts.append(delta)
                return delta
        elif kind == "response.output_item.done":
            item = event.get("item")
            if type(item) is dict and item.get("type") == "function_call":
                self.calls.append(_call_of(item))
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            answer = event.get("response")
            if type(answer) is dict:
                self.final = answer
                self.done = True
                error = answer.get("error")
                if kind == "response.failed" and error:
                    self.error = stream_error(error, self.request)
        elif kind == "error":
            self.error = stream_error(event.get("error") or event, self.request)
        return None

    def result(self) -> LLMResponse:
        if self.final is not None:
            return self._of(self.final)
        return LLMResponse(
            "".join(self.parts),
            UNKNOWN_USAGE,
            self.model,
            tool_calls=tuple(self.calls),
            provider=self.provider,
        )


def _call_of(item: Mapping[str, Any]) -> ToolCall:
    return ToolCall(
        id=str(item.get("call_id") or item.get("id") or ""),
        name=str(item.get("name") or ""),
        arguments=str(item.get("arguments") or "{}"),
    )


class _Embeddings(Reader):
    """``/embeddings``: how many vectors, how long, and the input's tokens."""

    __slots__ = ()

    def body(self, data: bytes) -> EmbeddingResponse:
        answer = orjson.loads(data)
        if type(answer) is not dict:
            raise ValueError(f"an embedding answer that is not a JSON object: {data[:200]!r}")
        vectors = answer.get("data") or []
        dimensions = None
        if vectors and type(vectors[0]) is dict:
            first = vectors[0].get("embedding")
            if isinstance(first, list):
                dimensions = len(first)
            elif isinstance(first, str):
                try:
                    dimensions = len(base64.b64decode(first)) // 4  # float32 values
                except (binascii.Error, ValueError):
                    dimensions = None
        raw = answer.get("usage")
        usage = usage_from_json(raw) if type(raw) is dict else None
        model = answer.get("model") or self.model
        return EmbeddingResponse(
            model=model,
            usage=usage or UNKNOWN_USAGE,  # estimated from the request when the call ends
            count=len(vectors),
            dimensions=dimensions,
            provider=self.provider,
            cost=price(model, usage, self.provider) if usage else None,
        )

    def event(self, name: str | None, data: str) -> str | None:
        raise ValueError("an embedding answer is not streamed")

    def result(self) -> LLMResponse:
        raise ValueError("an embedding answer is not streamed")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One reported endpoint: its ``name``, the body's key its start event reports
    (``prompt_key``), its ``reader``; ``usage_option``: a stream of it gives usage only when
    asked (``stream_options``); ``embedding``: its hooks are ``on_embedding_*``, not
    ``on_llm_*``."""

    name: str
    prompt_key: str
    reader: type[Reader]
    usage_option: bool = False
    embedding: bool = False

    def start(self, body: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The start event's payload (the prompt, messages or input) and
        ``invocation_params``."""
        params: dict[str, Any] = {}
        model = body.get("model")
        if model:
            params["model"] = model
        for key in _PARAM_KEYS:
            value = body.get(key)
            if value is not None:
                params[key] = value
        reasoning = body.get("reasoning")
        if isinstance(reasoning, Mapping) and reasoning.get("effort"):
            params["reasoning_effort"] = reasoning["effort"]
        tools = body.get("tools")
        if tools:
            params["tools"] = _tool_names(tools)
        fmt = body.get("response_format")
        text = body.get("text")
        if isinstance(text, Mapping) and isinstance(text.get("format"), Mapping):
            fmt = text["format"]
        if isinstance(fmt, Mapping):
            params["response_format"] = fmt.get("type")
        return body.get(self.prompt_key), params


#: The reported endpoints, by the path the SDK posts to.
ENDPOINTS: Mapping[str, Endpoint] = {
    "/chat/completions": Endpoint("chat", "messages", _Chat, usage_option=True),
    "/responses": Endpoint("responses", "input", _Responses),
    "/completions": Endpoint("completions", "prompt", _Completions, usage_option=True),
    "/embeddings": Endpoint("embeddings", "input", _Embeddings, embedding=True),
}

"""The OpenAI chat completions wire format, read: the errors the SDK raises, usage, a JSON
answer, a stream's server-sent events and chunks.

Shared by ``OpenAIClient`` (which decodes the SDK's raw response itself, see
``hookwire.llms.openai_client``) and the ``hookwire.integrations.openai`` bridge (which reads
the SDK's own response and chunk objects).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import ssl
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import openai
import orjson

from ..errors import (
    AuthenticationError,
    BadRequestError,
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    MalformedResponseError,
    RateLimitError,
    ServerError,
)
from ..events import LLMResponse, ToolCall, Usage, utcnow
from .estimate import UNKNOWN_USAGE
from .prices import price
from .protocol import StreamEnd

__all__ = [
    "ChunkState",
    "JSONChunks",
    "asse_data",
    "map_openai_error",
    "response_from_json",
    "server_keywords",
    "sse_data",
    "stream_error",
    "transport_errors",
    "usage_from_json",
    "usage_from_sdk",
]


def server_keywords(url: Any) -> dict[str, Any]:
    """The ``server_address`` and ``server_port`` keywords of an ``on_llm_start`` for calls
    sent to ``url`` (the port the scheme implies when the URL names none); empty when ``url``
    is not an HTTP URL."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(str(url))
        port = parts.port
    except ValueError:
        return {}
    if not parts.hostname or parts.scheme not in ("http", "https"):
        return {}
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return {"server_address": parts.hostname, "server_port": port}


def _seconds(text: str, scale: float = 1.0) -> float | None:
    try:
        value = float(text) / scale
    except ValueError:
        return None
    return max(value, 0.0) if math.isfinite(value) else None


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        value = _seconds(ms, 1000.0)
        if value is not None:
            return value
    text = headers.get("retry-after")
    if not text:
        return None
    value = _seconds(text)
    if value is not None:
        return value
    try:
        parsed = email.utils.parsedate_tz(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    try:
        return max(float(email.utils.mktime_tz(parsed)) - time.time(), 0.0)
    except (OverflowError, ValueError):
        return None


def map_openai_error(
    exc: BaseException, *, provider: str = "openai", model: str | None = None
) -> LLMError:
    """The ``hookwire.errors`` exception for an ``openai`` SDK exception (set ``__cause__``)."""
    where = f"{provider} ({model})" if model else provider
    kw: dict[str, Any] = {"provider": provider, "model": model}
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeoutError(
            f"{where} did not answer in time; raise the client's timeout= if answers are long",
            **kw,
        )
    if isinstance(exc, openai.APIConnectionError):
        return LLMConnectionError(
            f"could not reach {where} at {exc.request.url}: check base_url and that the "
            f"server is up ({exc})",
            **kw,
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        kw["status_code"] = status
        detail = exc.message
        headers = exc.response.headers if exc.response is not None else None
        if status == 429:
            return RateLimitError(
                f"{where} is rate limiting this key (HTTP 429): {detail}",
                retry_after=_retry_after(headers),
                **kw,
            )
        if status in (401, 403):
            return AuthenticationError(
                f"{where} refused the credentials (HTTP {status}): check the API key "
                f"(api_key= or OPENAI_API_KEY) and the organization. {detail}",
                **kw,
            )
        if status == 408:
            return LLMTimeoutError(f"{where} timed out the request (HTTP 408): {detail}", **kw)
        if status >= 500 or status == 409:
            return ServerError(
                f"{where} failed (HTTP {status}): {detail}", retry_after=_retry_after(headers), **kw
            )
        return BadRequestError(
            f"{where} refused the request (HTTP {status}): {detail}; fix the request "
            "(model name, messages, parameters), retrying will not help",
            **kw,
        )
    if isinstance(exc, (openai.APIResponseValidationError, ValueError)):
        return MalformedResponseError(
            f"{where} answered something that is not the OpenAI protocol: {exc}", **kw
        )
    return LLMError(f"the call to {where} failed: {type(exc).__name__}: {exc}", **kw)


def usage_from_sdk(raw: Any) -> Usage | None:
    """The ``Usage`` in the SDK's usage object (or a server's look-alike); ``None`` for none."""
    if raw is None:
        return None
    try:
        # Plain attribute reads (once per call): the SDK's usage model has every field; an
        # odd server's object may lack some, read below with defaults.
        prompt = raw.prompt_tokens
        completion = raw.completion_tokens
        total = raw.total_tokens
        pdet = raw.prompt_tokens_details
        cdet = raw.completion_tokens_details
    except AttributeError:
        prompt = getattr(raw, "prompt_tokens", 0)
        completion = getattr(raw, "completion_tokens", 0)
        total = getattr(raw, "total_tokens", None)
        pdet = getattr(raw, "prompt_tokens_details", None)
        cdet = getattr(raw, "completion_tokens_details", None)
    if type(prompt) is not int:
        prompt = int(prompt or 0)
    if type(completion) is not int:
        completion = int(completion or 0)
    cached = getattr(pdet, "cached_tokens", None) if pdet is not None else None
    reasoning = getattr(cdet, "reasoning_tokens", None) if cdet is not None else None
    # Positional (prompt, completion, total, cached, reasoning): keywords to a class cost a
    # dict per call.
    return Usage(prompt, completion, int(total) if total is not None else -1, cached, reasoning)


def _int(value: Any) -> int:
    if type(value) is int:
        return value
    if value is None:
        return 0
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return int(value)
        except OverflowError:  # an infinite float
            pass
    raise ValueError(f"a token count that is not a number: {value!r}")


def usage_from_json(raw: Any) -> Usage | None:
    """``usage_from_sdk`` for the usage object of a decoded answer (a dict)."""
    if raw is None:
        return None
    if type(raw) is not dict:
        raise ValueError(f"a usage that is not a JSON object: {str(raw)[:200]}")
    get = raw.get
    total = get("total_tokens")
    pdet = get("prompt_tokens_details")
    cdet = get("completion_tokens_details")
    cached = pdet.get("cached_tokens") if type(pdet) is dict else None
    reasoning = cdet.get("reasoning_tokens") if type(cdet) is dict else None
    return Usage(
        _int(get("prompt_tokens")),
        _int(get("completion_tokens")),
        _int(total) if total is not None else -1,
        _int(cached) if cached is not None else None,
        _int(reasoning) if reasoning is not None else None,
    )


def _text(value: Any, what: str) -> str | None:
    if value is None or type(value) is str:
        return value
    raise ValueError(f"{what} that is not a string: {str(value)[:200]}")


#: The HTTP library's exception classes, per response class (``httpx2`` for recent SDKs,
#: ``httpx`` for older ones or a caller's own ``http_client``).
_TRANSPORT: dict[type, tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]] = {}


def transport_errors(
    response: Any,
) -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(timeouts, other transport failures) that reading ``response``'s body may raise: the
    ones the SDK's own stream maps to ``APITimeoutError`` and ``APIConnectionError``."""
    cls = type(response)
    known = _TRANSPORT.get(cls)
    if known is None:
        module = sys.modules.get(cls.__module__.partition(".")[0])
        timeout = getattr(module, "TimeoutException", None)
        failure = getattr(module, "RequestError", None)
        timeouts: tuple[type[BaseException], ...] = (timeout,) if timeout else ()
        failures: tuple[type[BaseException], ...] = (ssl.SSLError,)
        if failure is not None:
            failures = (failure, *failures)
        anyio = sys.modules.get("anyio")
        if anyio is not None:  # a TLS stream ending early, as the SDK maps it
            failures = (*failures, anyio.EndOfStream)
        known = _TRANSPORT[cls] = (timeouts, failures)
    return known


def stream_error(error: Any, request: Any) -> openai.APIError:
    # What the SDK's stream raises for an event carrying an error.
    message = error.get("message") if type(error) is dict else None
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    return openai.APIError(message, request, body=error)


def _event_data(line: str, data: list[str]) -> str | None:
    """One line of a server-sent event stream: a ``data`` line is collected in ``data``; the
    blank line that ends an event returns the event's data (and empties ``data``). Other
    fields (``event:``, ``id:``, ``retry:``) and comments carry nothing a chat completion needs.
    """
    if line:
        if line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
        return None
    if not data:
        return None
    text = data[0] if len(data) == 1 else "\n".join(data)
    data.clear()
    return text


def sse_data(lines: Iterable[str], http2: bool) -> Iterator[str]:
    """The data of each server-sent event in ``lines``, up to ``[DONE]``.

    After ``[DONE]`` an HTTP/1.1 body is read to its end (nothing more is expected), so the
    connection can be reused; a failure then does not spoil the answer.
    """
    data: list[str] = []
    it = iter(lines)
    for line in it:
        text = _event_data(line, data)
        if text is None:
            continue
        if text.startswith("[DONE]"):
            if not http2:
                with contextlib.suppress(Exception):
                    for _ in it:
                        pass
            return
        yield text


#: How long an async stream's rest is read after ``[DONE]`` at most (as the SDK's own async
#: stream does): a server that holds the body open then costs the call no more than this.
_DRAIN_SECONDS = 0.1


async def asse_data(lines: AsyncIterable[str], http2: bool) -> AsyncIterator[str]:
    """``sse_data`` for an async body; the rest after ``[DONE]`` is read for at most
    ``_DRAIN_SECONDS``."""
    data: list[str] = []
    it = aiter(lines)
    async for line in it:
        text = _event_data(line, data)
        if text is None:
            continue
        if text.startswith("[DONE]"):
            if not http2:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(_read_out(it), _DRAIN_SECONDS)
            return
        yield text


async def _read_out(it: AsyncIterator[str]) -> None:
    async for _ in it:
        pass


#: What an OpenAI answer says about how it was served, passed to ``on_llm_end`` as keywords
#: of the same names (OpenTelemetry's ``openai.response.*`` attributes).
ANSWER_KEYWORDS = ("system_fingerprint", "service_tier")


def answer_keywords(answer: Any) -> dict[str, str]:
    """The ``ANSWER_KEYWORDS`` an answer (a JSON object, or one of the SDK's models) carries."""
    is_dict = type(answer) is dict
    found = {}
    for key in ANSWER_KEYWORDS:
        value = answer.get(key) if is_dict else getattr(answer, key, None)
        if type(value) is str and value:
            found[key] = value
    return found


def response_from_json(body: bytes, request_model: str, provider: str) -> LLMResponse:
    """The ``LLMResponse`` in a chat completion's JSON body, priced, its ``answer_keywords``
    as its ``response_metadata`` (``ValueError`` when the body is not one;
    ``MalformedResponseError`` when it has no choices). ``request_model`` is the model asked
    for, used when the answer names none."""
    data = orjson.loads(body)
    choices = data.get("choices") if type(data) is dict else None
    if not choices:
        raise MalformedResponseError(
            f"{provider} answered without choices: {body[:200]!r}",
            provider=provider,
            model=request_model,
        )
    try:
        choice = choices[0]
        message = choice.get("message") or {}
        content = _text(message.get("content"), "an answer")
        tool_calls = message.get("tool_calls")
        calls = (
            tuple(
                ToolCall(
                    id=_text(c.get("id"), "a tool call id") or f"call_{n}",
                    name=_text(f.get("name"), "a tool name") or "",
                    arguments=_text(f.get("arguments"), "tool arguments") or "{}",
                )
                for n, c in enumerate(tool_calls)
                if type(f := c.get("function")) is dict
            )
            if tool_calls
            else ()
        )
        model = _text(data.get("model"), "a model name") or request_model
        finish_reason = _text(choice.get("finish_reason"), "a finish reason")
        response_id = _text(data.get("id"), "an id")
    except (AttributeError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"an answer in an unexpected shape: {body[:200]!r}") from exc
    # No usage in the answer: unknown (priced once its estimate is made, by the caller who
    # knows the request: BaseLLM._finish, the openai instrumentation).
    usage = usage_from_json(data.get("usage")) or UNKNOWN_USAGE
    # Priced here, so the engine (BaseLLM._finish) finds the record complete and need not copy it.
    # Positional (content, usage, model, created_at, finish_reason, tool_calls, provider,
    # id, cost, currency, response_metadata): keywords to a class cost a dict per call.
    return LLMResponse(
        content or "",
        usage,
        model,
        utcnow(),
        finish_reason,
        calls,
        provider,
        response_id,
        None if usage.estimated else price(model, usage, provider),
        "USD",
        answer_keywords(data),
    )


class ChunkState:
    """Collects what a stream's chunks say besides the text: finish, usage, tool calls.

    Shared with ``hookwire.integrations.openai``, which reads the same SDK chunks.
    """

    __slots__ = ("calls", "finish_reason", "id", "keywords", "model", "usage")

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.calls: dict[int, list[str]] = {}
        #: The first chunk's ``answer_keywords`` (every chunk repeats them).
        self.keywords: dict[str, str] = {}

    def feed(self, chunk: Any) -> str | None:
        if self.id is None:
            self.id = getattr(chunk, "id", None)
            self.model = getattr(chunk, "model", None)
            self.keywords = answer_keywords(chunk)
        try:
            # Plain attribute reads (this runs once per token); the SDK's chunk models have
            # both fields, a server's odd chunk may lack them.
            usage = chunk.usage
            choices = chunk.choices
        except AttributeError:
            usage = getattr(chunk, "usage", None)
            choices = getattr(chunk, "choices", None)
        if usage is not None:
            self.usage = usage_from_sdk(usage)
        if not choices:
            return None
        choice = choices[0]
        finish = choice.finish_reason
        if finish:
            self.finish_reason = finish
        delta = choice.delta
        if delta is None:
            return None
        tool_calls = delta.tool_calls
        if tool_calls:
            for d in tool_calls:
                slot = self.calls.setdefault(d.index, ["", "", ""])
                if d.id:
                    slot[0] = d.id
                if d.function is not None:
                    slot[1] += d.function.name or ""
                    slot[2] += d.function.arguments or ""
        content: str | None = delta.content
        return content

    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls assembled from the deltas so far, in the model's order."""
        return tuple(
            ToolCall(id=i or f"call_{n}", name=name, arguments=args or "{}")
            for n, (i, name, args) in sorted(self.calls.items())
        )

    def head(self) -> StreamEnd:
        """What the stream said so far of its answer (id, model, ``response_metadata``), as a
        ``StreamEnd`` without a finish: a client yields it early, so that a stream the caller
        stops keeps them (the engine takes the last ``StreamEnd`` a stream gave)."""
        return StreamEnd(None, None, self.model, self.id, (), self.keywords)

    def end(self) -> StreamEnd:
        calls = self.tool_calls()
        for call in calls:
            try:
                json.loads(call.arguments)
            except ValueError:
                # Arguments cut short: the stream ended before the model finished them.
                self.finish_reason = None
        return StreamEnd(self.finish_reason, self.usage, self.model, self.id, calls, self.keywords)


class JSONChunks(ChunkState):
    """``ChunkState`` fed with each event's JSON text (what ``OpenAIClient`` reads), not the
    SDK's chunk models."""

    __slots__ = ("request",)

    def __init__(self, request: Any) -> None:
        super().__init__()
        self.request = request

    def feed_json(self, data: str) -> str | None:
        """The text in one event's data (``None`` if none); the rest is kept. ``ValueError``
        for an event that is not a chat completion chunk; the SDK's ``APIError`` for one
        carrying an error."""
        chunk = orjson.loads(data)
        if type(chunk) is not dict:
            raise ValueError(f"a stream event that is not a JSON object: {data[:200]}")
        error = chunk.get("error")
        if error:
            raise stream_error(error, self.request)
        try:
            if self.id is None:
                self.id = _text(chunk.get("id"), "an id")
                self.model = _text(chunk.get("model"), "a model name")
                self.keywords = answer_keywords(chunk)
            usage = chunk.get("usage")
            if usage is not None:
                self.usage = usage_from_json(usage)
            choices = chunk.get("choices")
            if not choices:
                return None
            choice = choices[0]
            finish = choice.get("finish_reason")
            if finish:
                self.finish_reason = _text(finish, "a finish reason")
            delta = choice.get("delta")
            if not delta:
                return None
            tool_calls = delta.get("tool_calls")
            if tool_calls:
                for d in tool_calls:
                    slot = self.calls.setdefault(_int(d.get("index")), ["", "", ""])
                    call_id = d.get("id")
                    if call_id:
                        slot[0] = _text(call_id, "a tool call id") or ""
                    fn = d.get("function")
                    if fn:
                        slot[1] += _text(fn.get("name"), "a tool name") or ""
                        slot[2] += _text(fn.get("arguments"), "tool arguments") or ""
            content = delta.get("content")
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"a stream event in an unexpected shape: {data[:200]}") from exc
        if content is None or type(content) is str:
            return content
        raise ValueError(f"a streamed text that is not a string: {data[:200]}")

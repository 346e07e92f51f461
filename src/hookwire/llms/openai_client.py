"""``OpenAIClient``: any OpenAI-compatible server, through the official ``openai`` SDK.

OpenAI itself, Azure-style proxies, vLLM, Ollama, llama.cpp's server, LM Studio: anything that
serves ``/v1/chat/completions``. The SDK's own retries are switched off; hookwire retries (so
each retry is an ``on_retry`` event) and maps the SDK's exceptions to ``hookwire.errors``.

The SDK makes every request (authentication, headers, timeouts, its HTTP client); the answer is
read from the SDK's raw response (``with_raw_response``, a documented SDK feature) and decoded
with orjson into the fields hookwire needs, instead of into the SDK's pydantic models: a
streamed chunk costs about a tenth of the SDK's model for it, so a short streamed call takes
about half the CPU of the bare SDK's own ``create(stream=True)`` (see bench/README.md). Its
HTTP/1.1 stream is also read to the end after ``[DONE]``, so its connection goes back to the
pool instead of being closed (the SDK's sync stream closes it, and connects anew each call).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import os
import ssl
import sys
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from typing import Any

import openai
import orjson

from ..dispatch import Callbacks
from ..errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    MalformedResponseError,
    RateLimitError,
    ServerError,
)
from ..events import LLMResponse, ToolCall, Usage, utcnow
from .engine import BaseLLM
from .prices import price
from .protocol import LLMRequest, StreamEnd
from .retry import RetryPolicy

__all__ = ["OpenAIClient", "map_openai_error"]


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


def _usage(raw: Any) -> Usage | None:
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


def _usage_json(raw: Any) -> Usage | None:
    """``_usage`` for the usage object of a decoded answer (a dict)."""
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


def _transport_errors(
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


def _stream_error(error: Any, request: Any) -> openai.APIError:
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


def _sse_data(lines: Iterable[str], http2: bool) -> Iterator[str]:
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


async def _asse_data(lines: AsyncIterable[str], http2: bool) -> AsyncIterator[str]:
    """``_sse_data`` for an async body; the rest after ``[DONE]`` is read for at most
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


class OpenAIClient(BaseLLM):
    """An OpenAI-compatible chat model, sync and async.

    ``OpenAIClient(api_key=None, organization=None, *, base_url=None, model="gpt-4o-mini",
    provider="openai", timeout=60.0, callbacks=None, max_retries=2, retry=None,
    stream_usage=True, **defaults)``. ``api_key``/``base_url`` default to the SDK's
    environment variables (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``); a local server that needs
    no key works with ``base_url`` alone. ``provider`` names the server in events (``"ollama"``,
    ``"vllm"``, ...). ``stream_usage=False`` stops asking for the usage chunk, for servers
    that refuse ``stream_options``. ``defaults`` are request parameters sent with every call
    (``temperature=0``, ``max_tokens=...``).

    ``generate(messages=[...], model="gpt-4")`` returns an ``LLMResponse`` (``.content``,
    ``.usage``, ``.created_at``, ``.tool_calls``, ``.cost``).
    """

    provider = "openai"

    def __init__(
        self,
        api_key: str | None = None,
        organization: str | None = None,
        *,
        base_url: str | None = None,
        model: str | None = "gpt-4o-mini",
        provider: str = "openai",
        timeout: float = 60.0,
        callbacks: Callbacks = None,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        stream_usage: bool = True,
        default_headers: Mapping[str, str] | None = None,
        **defaults: Any,
    ) -> None:
        super().__init__(
            model=model, callbacks=callbacks, max_retries=max_retries, retry=retry, **defaults
        )
        self.provider = provider
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.organization = organization
        self.timeout = timeout
        self.stream_usage = stream_usage
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not self._api_key and not self.base_url:
            raise ConfigurationError(
                "OpenAIClient needs an API key: pass api_key=... or set OPENAI_API_KEY "
                "(for a local server that needs none, pass base_url=... instead)"
            )
        self._headers = dict(default_headers) if default_headers else None
        self._sync: openai.OpenAI | None = None
        self._async: openai.AsyncOpenAI | None = None
        self._async_loop: object = None

    def __repr__(self) -> str:
        # Never show the key.
        return (
            f"OpenAIClient(model={self.model!r}, provider={self.provider!r}, "
            f"base_url={self.base_url!r})"
        )

    # -- SDK clients, made on first use -------------------------------------------------------

    def _sdk_kw(self) -> dict[str, Any]:
        timeout: Any = self.timeout
        if type(timeout) in (int, float):
            # The SDK turns a number into an ``httpx.Timeout`` on every request; given one
            # (the same limits), it only copies it, as for its own default.
            timeout = openai.Timeout(timeout)
        return {
            "api_key": self._api_key or "not-needed",
            "organization": self.organization,
            "base_url": self.base_url,
            "timeout": timeout,
            "max_retries": 0,  # hookwire retries, so each retry is an event
            "default_headers": self._headers,
        }

    @property
    def client(self) -> openai.OpenAI:
        """The underlying ``openai.OpenAI`` client."""
        if self._sync is None:
            self._sync = openai.OpenAI(**self._sdk_kw())
        return self._sync

    @property
    def async_client(self) -> openai.AsyncOpenAI:
        """The underlying ``openai.AsyncOpenAI`` client, for the running event loop.

        Its connections belong to the loop that opened them, so a call from another loop
        (a second ``asyncio.run``) gets a fresh client instead of a broken pool.
        """
        try:
            loop: object = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._async is None or (loop is not None and loop is not self._async_loop):
            self._async = openai.AsyncOpenAI(**self._sdk_kw())
            self._async_loop = loop
        return self._async

    def close(self) -> None:
        """Close the sync SDK client's connections."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        """Close both SDK clients' connections."""
        self.close()
        if self._async is not None:
            await self._async.close()
            self._async = None

    # -- one attempt ----------------------------------------------------------------------------

    def _kwargs(self, request: LLMRequest, stream: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {"model": request.model, "messages": request.messages}
        kw.update(request.params)
        if request.tools:
            kw["tools"] = request.tools
        if stream:
            kw["stream"] = True
            if self.stream_usage:
                kw["stream_options"] = {"include_usage": True}
        return kw

    def _error(self, exc: BaseException, request: LLMRequest) -> LLMError:
        return map_openai_error(exc, provider=self.provider, model=request.model)

    def _response(self, body: bytes, request: LLMRequest) -> LLMResponse:
        """The ``LLMResponse`` in a JSON answer's body (``ValueError`` when it is not one)."""
        data = orjson.loads(body)
        choices = data.get("choices") if type(data) is dict else None
        if not choices:
            raise MalformedResponseError(
                f"{self.provider} answered without choices: {body[:200]!r}",
                provider=self.provider,
                model=request.model,
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
            model = _text(data.get("model"), "a model name") or request.model
            finish_reason = _text(choice.get("finish_reason"), "a finish reason")
            response_id = _text(data.get("id"), "an id")
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"an answer in an unexpected shape: {body[:200]!r}") from exc
        usage = _usage_json(data.get("usage")) or Usage()
        provider = self.provider
        # Priced here, so BaseLLM._finish finds the record complete and need not copy it.
        # Positional (content, usage, model, created_at, finish_reason, tool_calls, provider,
        # id, cost): keywords to a class cost a dict per call.
        return LLMResponse(
            content or "",
            usage,
            model,
            utcnow(),
            finish_reason,
            calls,
            provider,
            response_id,
            price(model, usage, provider),
        )

    def _complete(self, request: LLMRequest) -> LLMResponse:
        try:
            create = (self._sync or self.client).chat.completions.with_raw_response.create
            if request.params or request.tools:
                raw = create(**self._kwargs(request, False))
            else:
                # The common request (what _kwargs would build), by name: a dict built and
                # unpacked per call costs more than the keywords.
                raw = create(
                    model=request.model,
                    # Plain message dicts, which the SDK's TypedDicts describe.
                    messages=request.messages,  # type: ignore[arg-type]
                )
            return self._response(raw.http_response.content, request)
        except (openai.OpenAIError, ValueError) as exc:
            raise self._error(exc, request) from exc

    async def _acomplete(self, request: LLMRequest) -> LLMResponse:
        try:
            raw = await self.async_client.chat.completions.with_raw_response.create(
                **self._kwargs(request, False)
            )
            return self._response(raw.http_response.content, request)
        except (openai.OpenAIError, ValueError) as exc:
            raise self._error(exc, request) from exc

    def _open_stream(self, request: LLMRequest) -> Any:
        """The HTTP response of the SDK's streamed request for ``request`` (its errors
        unmapped: the caller maps them); its body is read with ``_sse_data``."""
        create = (self._sync or self.client).chat.completions.with_raw_response.create
        if request.params or request.tools or not self.stream_usage:
            return create(**self._kwargs(request, True)).http_response
        # The common request (what _kwargs would build), by name, as in _complete (plain
        # message dicts, which the SDK's TypedDicts describe).
        return create(  # type: ignore[call-overload]
            model=request.model,
            messages=request.messages,
            stream=True,
            stream_options={"include_usage": True},
        ).http_response

    @staticmethod
    def _tokens(http: Any, acc: _JSONChunks) -> Generator[str, None, None]:
        """The text pieces of a streamed answer's body, what else it says kept in ``acc``; the
        HTTP library's failures mapped as the SDK's stream maps them; the response closed at
        the end (read to its end it has closed itself: a cheap test), on a failure, or when
        the reader stops early."""
        feed = acc.feed_json
        timeouts, failures = _transport_errors(http)
        try:
            for data in _sse_data(http.iter_lines(), http.http_version == "HTTP/2"):
                token = feed(data)
                if token:
                    yield token
        except timeouts as exc:
            raise openai.APITimeoutError(request=http.request) from exc
        except failures as exc:
            raise openai.APIConnectionError(request=http.request) from exc
        finally:
            http.close()

    def _stream(self, request: LLMRequest) -> Iterator[str | StreamEnd]:
        try:
            http = self._open_stream(request)
            acc = _JSONChunks(http.request)
            yield from self._tokens(http, acc)
        except (openai.OpenAIError, ValueError) as exc:
            raise self._error(exc, request) from exc
        yield acc.end()

    def _stream_into(
        self, request: LLMRequest, on_token: Callable[[str], None]
    ) -> StreamEnd | None:
        """``_stream`` as one plain loop calling ``on_token`` (see ``BaseLLM._stream_into``):
        the same request, errors and end, without ``_stream``'s generator resumed per token."""
        if type(self)._stream is not OpenAIClient._stream:
            # A subclass that changes _stream (and not this) is read through its _stream.
            return super()._stream_into(request, on_token)
        try:
            http = self._open_stream(request)
            acc = _JSONChunks(http.request)
            tokens = self._tokens(http, acc)
            try:
                for token in tokens:
                    on_token(token)
            finally:
                tokens.close()  # at once, also when a handler raised (not when freed)
        except (openai.OpenAIError, ValueError) as exc:
            raise self._error(exc, request) from exc
        return acc.end()

    async def _astream(self, request: LLMRequest) -> AsyncIterator[str | StreamEnd]:
        try:
            raw = await self.async_client.chat.completions.with_raw_response.create(
                **self._kwargs(request, True)
            )
            http = raw.http_response
            acc = _JSONChunks(http.request)
            feed = acc.feed_json
            timeouts, failures = _transport_errors(http)
            try:
                async for data in _asse_data(http.aiter_lines(), http.http_version == "HTTP/2"):
                    token = feed(data)
                    if token:
                        yield token
            except timeouts as exc:
                raise openai.APITimeoutError(request=http.request) from exc
            except failures as exc:
                raise openai.APIConnectionError(request=http.request) from exc
            finally:
                await http.aclose()
        except (openai.OpenAIError, ValueError) as exc:
            raise self._error(exc, request) from exc
        yield acc.end()


class ChunkState:
    """Collects what a stream's chunks say besides the text: finish, usage, tool calls.

    Shared with ``hookwire.integrations.openai``, which reads the same SDK chunks.
    """

    __slots__ = ("calls", "finish_reason", "id", "model", "usage")

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.calls: dict[int, list[str]] = {}

    def feed(self, chunk: Any) -> str | None:
        if self.id is None:
            self.id = getattr(chunk, "id", None)
            self.model = getattr(chunk, "model", None)
        try:
            # Plain attribute reads (this runs once per token); the SDK's chunk models have
            # both fields, a server's odd chunk may lack them.
            usage = chunk.usage
            choices = chunk.choices
        except AttributeError:
            usage = getattr(chunk, "usage", None)
            choices = getattr(chunk, "choices", None)
        if usage is not None:
            self.usage = _usage(usage)
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

    def end(self) -> StreamEnd:
        calls = self.tool_calls()
        for call in calls:
            try:
                json.loads(call.arguments)
            except ValueError:
                # Arguments cut short: the stream ended before the model finished them.
                self.finish_reason = None
        return StreamEnd(self.finish_reason, self.usage, self.model, self.id, calls)


class _JSONChunks(ChunkState):
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
            raise _stream_error(error, self.request)
        try:
            if self.id is None:
                self.id = _text(chunk.get("id"), "an id")
                self.model = _text(chunk.get("model"), "a model name")
            usage = chunk.get("usage")
            if usage is not None:
                self.usage = _usage_json(usage)
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

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
import os
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from typing import Any

import openai

from ..dispatch import Callbacks
from ..errors import ConfigurationError, LLMError
from ..events import LLMResponse
from ..redaction import redact_url
from .engine import BaseLLM
from .openai_wire import (
    JSONChunks,
    asse_data,
    map_openai_error,
    response_from_json,
    server_keywords,
    sse_data,
    transport_errors,
)
from .protocol import LLMRequest, StreamEnd
from .retry import RetryPolicy

__all__ = ["OpenAIClient", "map_openai_error"]

# The SDK's async client belongs to the loop that opened its connections. Left to the garbage
# collector (often a cycle, collected on whatever thread runs the collection), the SDK closes it
# on the loop running *there*, if any: another loop's thread, or none; the connections leak or
# the close fails ("Event loop is closed"). So hookwire gives each async client an HTTP client
# it holds itself, and closes that on its own loop: soon after the SDK client is collected
# (``weakref.finalize``, handed to the loop thread-safely), and at the latest when the loop
# shuts its async generators down, as ``asyncio.run`` does before it closes the loop (one
# async generator per loop, started on it, whose ``finally`` closes what is still open).
_OPEN: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[Any]] = weakref.WeakKeyDictionary()
_GUARDS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
_CLOSING: set[asyncio.Task[None]] = set()  # the loop holds its tasks weakly


async def _closes(open_: set[Any]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for http in list(open_):
            await http.aclose()  # a no-op for one already closed
        open_.clear()


def _close_soon(loop: asyncio.AbstractEventLoop, open_: set[Any], http: Any) -> None:
    # Left in ``open_`` until closed: a close that ``asyncio.run`` cancels before it starts is
    # then done by the guard (httpcore shields a connection's close once it has begun).
    if http.is_closed or loop.is_closed():
        open_.discard(http)
        return

    def close() -> None:
        task = loop.create_task(http.aclose())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)
        task.add_done_callback(lambda _: open_.discard(http))

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(close)


def _async_sdk_client(loop: asyncio.AbstractEventLoop, **sdk_kw: Any) -> openai.AsyncOpenAI:
    """An ``openai.AsyncOpenAI`` whose connections are closed on ``loop`` (see above)."""
    open_ = _OPEN.get(loop)
    if open_ is None:
        open_ = _OPEN[loop] = set()
        guard = _GUARDS[loop] = _closes(open_)

        async def start() -> None:  # its first step on the loop registers it with the loop
            await guard.__anext__()

        loop.create_task(start())
    http = openai.DefaultAsyncHttpxClient()
    client = openai.AsyncOpenAI(**sdk_kw, http_client=http)
    open_.add(http)
    weakref.finalize(client, _close_soon, loop, open_, http)
    return client


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
        self.server = server_keywords(self.base_url or "https://api.openai.com/v1")
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
        # Never show the key, nor a password in the base URL (a proxy's).
        base_url = None if self.base_url is None else redact_url(str(self.base_url))
        return (
            f"OpenAIClient(model={self.model!r}, provider={self.provider!r}, base_url={base_url!r})"
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
            if isinstance(loop, asyncio.AbstractEventLoop):
                self._async = _async_sdk_client(loop, **self._sdk_kw())
            else:
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
            return response_from_json(raw.http_response.content, request.model, self.provider)
        except (openai.OpenAIError, ValueError) as exc:
            raise self._error(exc, request) from exc

    async def _acomplete(self, request: LLMRequest) -> LLMResponse:
        try:
            raw = await self.async_client.chat.completions.with_raw_response.create(
                **self._kwargs(request, False)
            )
            return response_from_json(raw.http_response.content, request.model, self.provider)
        except (openai.OpenAIError, ValueError) as exc:
            raise self._error(exc, request) from exc

    def _open_stream(self, request: LLMRequest) -> Any:
        """The HTTP response of the SDK's streamed request for ``request`` (its errors
        unmapped: the caller maps them); its body is read with ``sse_data``."""
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
    def _tokens(
        http: Any, acc: JSONChunks, head: bool = False
    ) -> Generator[str | StreamEnd, None, None]:
        """The text pieces of a streamed answer's body, what else it says kept in ``acc``; the
        HTTP library's failures mapped as the SDK's stream maps them; the response closed at
        the end (read to its end it has closed itself: a cheap test), on a failure, or when
        the reader stops early. With ``head``, ``acc.head()`` is yielded before the first
        token (see ``ChunkState.head``)."""
        feed = acc.feed_json
        timeouts, failures = transport_errors(http)
        try:
            events = sse_data(http.iter_lines(), http.http_version == "HTTP/2")
            if head:
                for data in events:
                    token = feed(data)
                    if acc.id is not None or token:
                        yield acc.head()
                        if token:
                            yield token
                        break
            for data in events:
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
            acc = JSONChunks(http.request)
            yield from self._tokens(http, acc, head=True)
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
            acc = JSONChunks(http.request)
            tokens = self._tokens(http, acc)
            try:
                for token in tokens:
                    on_token(token)  # type: ignore[arg-type]  # str: no head asked for
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
            acc = JSONChunks(http.request)
            feed = acc.feed_json
            timeouts, failures = transport_errors(http)
            try:
                events = asse_data(http.aiter_lines(), http.http_version == "HTTP/2")
                async for data in events:  # up to the first token, then the head (see _tokens)
                    token = feed(data)
                    if acc.id is not None or token:
                        yield acc.head()
                        if token:
                            yield token
                        break
                async for data in events:
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

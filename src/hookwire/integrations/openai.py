"""Make an existing ``openai`` client emit hookwire events, without changing the calling code.

::

    import openai
from openai.types.chat import ChatCompletion
    from hookwire.callbacks import MetricsCallback
    from hookwire.integrations.openai import instrument

    client = instrument(openai.OpenAI(), callbacks=[MetricsCallback()])
    client.chat.completions.create(model="gpt-4o", messages=[...])   # now reported

``instrument`` wraps ``client.chat.completions.create`` of that one client object (sync
``openai.OpenAI`` or async ``openai.AsyncOpenAI``); ``uninstrument`` puts it back. Each call
emits ``on_llm_start`` (the messages, ``invocation_params``, ``stream``), then for a streamed
call ``on_llm_new_token`` per content chunk, and ``on_llm_end`` with an ``LLMResponse``
(content, tool calls, finish reason, usage, cost when priced) or ``on_llm_error`` with a
``hookwire.errors`` exception followed by ``on_error(stage="llm")``. The app still gets
exactly what the SDK returns, and the SDK's own exception when a call fails.

Streams: usage is asked for (``stream_options={"include_usage": True}``) when the caller did
not set ``stream_options``; the extra usage-only chunk this adds is kept from the caller, so
the chunks it sees are the ones it would have seen. A stream the caller stops reading early
(``break``, ``close()``, leaving a ``with`` block, or dropping it) is closed (its HTTP
response too) and reported with ``on_llm_end`` carrying the partial answer and
``cancelled=True``.

Not covered: the SDK's own internal retries are not reported as ``on_retry`` (the SDK does
not expose them); ``with_streaming_response`` and streamed ``with_raw_response`` calls pass
through unreported; clients made later with ``client.with_options(...)`` or ``copy()`` are
new objects and need their own ``instrument`` call.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import openai
from openai.types.chat import ChatCompletion

from ..dispatch import CallbackManager, Callbacks
from ..errors import BudgetExceeded, CallbackAbort, ConfigurationError
from ..events import LLMResponse, ToolCall, Usage
from ..ids import new_id
from ..llms.openai_wire import ChunkState, map_openai_error, usage_from_sdk
from ._common import check_context, price

__all__ = ["instrument", "is_instrumented", "uninstrument"]

C = TypeVar("C", openai.OpenAI, openai.AsyncOpenAI)

_perf = time.perf_counter
logger = logging.getLogger("hookwire")
_RAW_HEADER = "X-Stainless-Raw-Response"
_ATTR = "_hookwire_instrumentation"

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
    "parallel_tool_calls",
    "tool_choice",
    "reasoning_effort",
)


_failed_once: set[str] = set()


def _failed(where: str, exc: BaseException) -> None:
    """Log a failure of the instrumentation itself (never the app's call): with its traceback
    the first time for each place, at debug level after that."""
    if where not in _failed_once:
        _failed_once.add(where)
        logger.error(
            "hookwire: the openai instrumentation failed in %s (the call goes on unreported)",
            where,
            exc_info=exc,
        )
    else:
        logger.debug("hookwire: the openai instrumentation failed in %s: %r", where, exc)


def _given(value: Any) -> bool:
    return value is not None and not isinstance(value, (openai.NotGiven, openai.Omit))


class _Instrumentation:
    """One instrumented client: its manager, provider, context and the original method."""

    def __init__(
        self,
        manager: CallbackManager,
        provider: str,
        context: dict[str, Any],
        original: Any,
    ) -> None:
        self.manager = manager
        self.provider = provider
        self.context = context
        self.original = original


class _Call:
    """One chat completion call, from the request to its end event."""

    __slots__ = ("ended", "inst", "kw", "model", "stream", "t0")

    def __init__(self, inst: _Instrumentation, kwargs: Mapping[str, Any]) -> None:
        self.inst = inst
        model = kwargs.get("model")
        self.model = str(model) if _given(model) else None
        self.stream = bool(kwargs.get("stream")) and _given(kwargs.get("stream"))
        kw: dict[str, Any] = {"run_id": new_id(), "provider": inst.provider}
        if self.model:
            kw["model"] = self.model
        if inst.context:
            kw.update(inst.context)
        self.kw = kw
        self.t0 = 0.0
        self.ended = False

    def start_args(self, kwargs: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        params: dict[str, Any] = {}
        if self.model:
            params["model"] = self.model
        for key in _PARAM_KEYS:
            value = kwargs.get(key)
            if _given(value):
                params[key] = value
        tools = kwargs.get("tools")
        if _given(tools) and tools:
            names = []
            for t in tools:
                if isinstance(t, Mapping):
                    fn = t.get("function")
                    names.append(str((fn if isinstance(fn, Mapping) else t).get("name", "")))
            params["tools"] = names
        response_format = kwargs.get("response_format")
        if _given(response_format) and isinstance(response_format, Mapping):
            params["response_format"] = response_format.get("type")
        return kwargs.get("messages"), {
            **self.kw,
            "invocation_params": params,
            "stream": self.stream,
        }

    def end_kw(self, **extra: Any) -> dict[str, Any]:
        return {
            **self.kw,
            "latency_ms": (_perf() - self.t0) * 1000.0,
            "attempts": 1,
            "stream": self.stream,
            **extra,
        }

    def response(
        self,
        content: str,
        usage: Usage | None,
        model: str | None,
        finish: str | None,
        calls: tuple[ToolCall, ...],
        rid: str | None,
    ) -> LLMResponse:
        model = model or self.model
        cost: Decimal | None = price(model, usage, self.inst.provider) if usage else None
        return LLMResponse(
            content=content,
            usage=usage or Usage(),
            model=model,
            finish_reason=finish,
            tool_calls=calls,
            provider=self.inst.provider,
            id=rid,
            cost=cost,
        )

    def from_completion(self, completion: Any) -> LLMResponse:
        choices = getattr(completion, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        calls = tuple(
            ToolCall(
                id=tc.id,
                name=tc.function.name,
                arguments=tc.function.arguments or "{}",
            )
            for tc in (getattr(message, "tool_calls", None) or ())
            if getattr(tc, "function", None) is not None
        )
        return self.response(
            content=getattr(message, "content", None) or "",
            usage=usage_from_sdk(getattr(completion, "usage", None)),
            model=getattr(completion, "model", None),
            finish=getattr(choices[0], "finish_reason", None) if choices else None,
            calls=calls,
            rid=getattr(completion, "id", None),
        )

    def error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, CallbackAbort) or not isinstance(exc, Exception):
            return exc
        err = map_openai_error(exc, provider=self.inst.provider, model=self.model)
        err.__cause__ = exc
        return err

    def aborted(self, abort: CallbackAbort) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        emits: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
            ("on_llm_error", (abort,), {**self.kw, "attempts": 0})
        ]
        if isinstance(abort, BudgetExceeded):
            emits.append(("on_budget_exceeded", (abort,), self.kw))
        emits.append(("on_error", (abort,), {**self.kw, "stage": "budget"}))
        return emits


class _StreamState(ChunkState):
    """The client's chunk bookkeeping, plus the text itself and the first token's time."""

    __slots__ = ("index", "parts", "ttft")

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.index = 0
        self.ttft: float | None = None

    @property
    def finish(self) -> str | None:
        return self.finish_reason

    def feed(self, chunk: Any) -> str | None:
        content = super().feed(chunk)
        if content:
            self.parts.append(content)
        return content


_OWN = frozenset({"_stream", "_call", "_hide", "_state", "_tokens"})


class _StreamBase:
    """What the sync and async stream wrappers share: the bookkeeping of one stream."""

    def __init__(self, stream: Any, call: _Call, hide_usage_chunk: bool) -> None:
        self._stream = stream
        self._call = call
        self._hide = hide_usage_chunk
        self._state = _StreamState()
        self._tokens = call.inst.manager.listens("on_llm_new_token")

    def __getattr__(self, name: str) -> Any:
        # ``response``, ``_iterator`` and anything else the SDK's stream offers.
        if name in _OWN:
            raise AttributeError(name)  # not set yet: never recurse through __getattr__
        return getattr(self._stream, name)

    def _token_kw(self, index: int) -> dict[str, Any]:
        return {**self._call.kw, "attempt": 1, "index": index}

    def _end_args(self, cancelled: bool) -> tuple[LLMResponse, dict[str, Any]]:
        call, state = self._call, self._state
        response = call.response(
            content="".join(state.parts),
            usage=state.usage,
            model=state.model,
            finish=None if cancelled else state.finish,
            calls=state.tool_calls(),
            rid=state.id,
        )
        extra: dict[str, Any] = {}
        if state.ttft is not None:
            extra["ttft_ms"] = (state.ttft - call.t0) * 1000.0
        if cancelled:
            extra["cancelled"] = True
        return response, call.end_kw(**extra)

    def _skip(self, chunk: Any) -> bool:
        # The usage-only chunk that include_usage adds: hidden when the caller did not ask.
        return self._hide and not getattr(chunk, "choices", None)


class InstrumentedStream(_StreamBase):
    """Wraps an ``openai.Stream``: the caller iterates it as before; events go out as chunks
    pass, and the end is reported once, however the stream ends."""

    def __iter__(self) -> Iterator[Any]:
        # A generator, so a ``for`` loop that breaks out drops it at once and its ``finally``
        # closes the HTTP response and reports the end.
        try:
            for chunk in self._stream:
                self._observe(chunk)
                if self._skip(chunk):
                    continue
                yield chunk
        except GeneratorExit:
            raise
        except Exception as exc:
            self._fail(exc)
            raise
        finally:
            self.close()

    def __next__(self) -> Any:
        while True:
            try:
                chunk = next(self._stream)
            except StopIteration:
                self.close()
                raise
            except Exception as exc:
                self._fail(exc)
                self.close()
                raise
            self._observe(chunk)
            if not self._skip(chunk):
                return chunk

    def _observe(self, chunk: Any) -> None:
        state = self._state
        try:
            token = state.feed(chunk)
        except Exception as exc:
            _failed("a stream chunk", exc)
            return
        if token:
            if state.ttft is None:
                state.ttft = _perf()
            if self._tokens:
                index = state.index
                state.index = index + 1
                self._call.inst.manager.on_llm_new_token(token, **self._token_kw(index))

    def _fail(self, exc: BaseException) -> None:
        call = self._call
        if call.ended:
            return
        call.ended = True
        err = call.error(exc)
        manager = call.inst.manager
        manager.on_llm_error(err, **call.end_kw())
        manager.on_error(err, stage="llm", **call.kw)

    def close(self) -> None:
        """Close the HTTP response and report the end (once), as the SDK's ``close()``."""
        call = self._call
        finished = self._state.finish is not None or self._state.usage is not None
        try:
            self._stream.close()
        finally:
            if not call.ended:
                call.ended = True
                try:
                    response, kw = self._end_args(cancelled=not finished)
                except Exception as exc:
                    _failed("the end of a stream", exc)
                else:
                    call.inst.manager.on_llm_end(response, **kw)

    def __enter__(self) -> InstrumentedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A stream dropped half-read: release the connection and report what came.
        try:
            if not self._call.ended:
                self.close()
        except Exception:
            pass  # never raise from a finalizer


class AsyncInstrumentedStream(_StreamBase):
    """Wraps an ``openai.AsyncStream``, as ``InstrumentedStream`` does a sync one."""

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            async for chunk in self._stream:
                await self._observe(chunk)
                if self._skip(chunk):
                    continue
                yield chunk
        except GeneratorExit:
            raise
        except Exception as exc:
            await self._fail(exc)
            raise
        finally:
            await self.close()

    async def __anext__(self) -> Any:
        while True:
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                await self.close()
                raise
            except Exception as exc:
                await self._fail(exc)
                await self.close()
                raise
            await self._observe(chunk)
            if not self._skip(chunk):
                return chunk

    async def _observe(self, chunk: Any) -> None:
        state = self._state
        try:
            token = state.feed(chunk)
        except Exception as exc:
            _failed("a stream chunk", exc)
            return
        if token:
            if state.ttft is None:
                state.ttft = _perf()
            if self._tokens:
                index = state.index
                state.index = index + 1
                await self._call.inst.manager.aon_llm_new_token(token, **self._token_kw(index))

    async def _fail(self, exc: BaseException) -> None:
        call = self._call
        if call.ended:
            return
        call.ended = True
        err = call.error(exc)
        manager = call.inst.manager
        await manager.aon_llm_error(err, **call.end_kw())
        await manager.aon_error(err, stage="llm", **call.kw)

    async def close(self) -> None:
        """Close the HTTP response and report the end (once), as the SDK's ``close()``."""
        call = self._call
        finished = self._state.finish is not None or self._state.usage is not None
        try:
            await self._stream.close()
        finally:
            if not call.ended:
                call.ended = True
                try:
                    response, kw = self._end_args(cancelled=not finished)
                except Exception as exc:
                    _failed("the end of a stream", exc)
                else:
                    await call.inst.manager.aon_llm_end(response, **kw)

    def __del__(self) -> None:
        # A stream dropped half-read: close it on the loop it was read on, if it still runs.
        try:
            if not self._call.ended:
                asyncio.get_running_loop().create_task(self.close())
        except Exception:
            pass  # no running loop: the SDK's own stream is left to the garbage collector

    async def __aenter__(self) -> AsyncInstrumentedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _prepare(
    inst: _Instrumentation, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[_Call | None, bool]:
    """The call to report (``None`` to pass it through untouched), and whether a usage chunk
    was asked for on the caller's behalf."""
    raw = (kwargs.get("extra_headers") or {}).get(_RAW_HEADER)
    stream = bool(kwargs.get("stream")) and _given(kwargs.get("stream"))
    if raw is not None and (raw != "true" or stream):
        return None, False  # a raw stream the caller reads itself: nothing to observe
    messages = kwargs.get("messages")
    if _given(messages) and not isinstance(messages, list) and isinstance(messages, Iterable):
        # A one-shot iterable would be spent by reading it for the event: keep a list.
        kwargs["messages"] = list(messages)
    hide = False
    if stream and not _given(kwargs.get("stream_options")):
        kwargs["stream_options"] = {"include_usage": True}
        hide = True
    return _Call(inst, kwargs), hide


def _sync_create(inst: _Instrumentation) -> Any:
    original = inst.original

    def create(*args: Any, **kwargs: Any) -> Any:
        call: _Call | None
        try:
            call, hide = _prepare(inst, args, kwargs)
            if call is not None:
                prompt, start_kw = call.start_args(kwargs)
        except Exception as exc:
            _failed("create", exc)
            call = None
        if call is None:
            return original(*args, **kwargs)
        manager = inst.manager
        try:
            manager.on_llm_start(prompt, **start_kw)
        except CallbackAbort as abort:
            for hook, a, k in call.aborted(abort):
                getattr(manager, hook)(*a, **k)
            raise
        call.t0 = _perf()
        try:
            result = original(*args, **kwargs)
        except Exception as exc:
            call.ended = True
            err = call.error(exc)
            manager.on_llm_error(err, **call.end_kw())
            manager.on_error(err, stage="llm", **call.kw)
            raise
        try:
            if call.stream and isinstance(result, openai.Stream):
                return InstrumentedStream(result, call, hide)
            completion = result if isinstance(result, ChatCompletion) else result.parse()
            response = call.from_completion(completion)
        except Exception as exc:
            _failed("create", exc)
            return result
        call.ended = True
        manager.on_llm_end(response, **call.end_kw())
        return result

    create.__wrapped__ = original  # type: ignore[attr-defined]
    create.__doc__ = getattr(original, "__doc__", None)
    return create


def _async_create(inst: _Instrumentation) -> Any:
    original = inst.original

    async def create(*args: Any, **kwargs: Any) -> Any:
        call: _Call | None
        try:
            call, hide = _prepare(inst, args, kwargs)
            if call is not None:
                prompt, start_kw = call.start_args(kwargs)
        except Exception as exc:
            _failed("create", exc)
            call = None
        if call is None:
            return await original(*args, **kwargs)
        manager = inst.manager
        try:
            await manager.aon_llm_start(prompt, **start_kw)
        except CallbackAbort as abort:
            for hook, a, k in call.aborted(abort):
                await getattr(manager, "a" + hook)(*a, **k)
            raise
        call.t0 = _perf()
        try:
            result = await original(*args, **kwargs)
        except Exception as exc:
            call.ended = True
            err = call.error(exc)
            await manager.aon_llm_error(err, **call.end_kw())
            await manager.aon_error(err, stage="llm", **call.kw)
            raise
        try:
            if call.stream and isinstance(result, openai.AsyncStream):
                return AsyncInstrumentedStream(result, call, hide)
            completion = result
            if not isinstance(result, ChatCompletion):
                completion = result.parse()  # a with_raw_response call: parse() is cached
                if inspect.isawaitable(completion):
                    completion = await completion
            response = call.from_completion(completion)
        except Exception as exc:
            _failed("create", exc)
            return result
        call.ended = True
        await manager.aon_llm_end(response, **call.end_kw())
        return result

    create.__wrapped__ = original  # type: ignore[attr-defined]
    create.__doc__ = getattr(original, "__doc__", None)
    return create


def instrument(
    client: C,
    callbacks: Callbacks = None,
    *,
    provider: str = "openai",
    **context: Any,
) -> C:
    """Make ``client`` (an ``openai.OpenAI`` or ``openai.AsyncOpenAI``) emit hookwire events
    for its chat completions; returns the same client.

    ``callbacks``: the hookwire handlers (a list or a ``CallbackManager``). ``provider``: the
    provider name events carry (``"openai"``; say ``"vllm"``, ``"ollama"``, ... for another
    OpenAI-compatible server, so prices and metrics are told apart). ``**context``: request
    context for every event (``user_id``, ``org_id``, ...), added to what ``hookwire.trace``
    / ``hookwire.request_context`` set around the call. Instrumenting an instrumented client
    again replaces its callbacks, provider and context.
    """
    if not isinstance(client, (openai.OpenAI, openai.AsyncOpenAI)):
        raise ConfigurationError(
            f"instrument() takes an openai.OpenAI or openai.AsyncOpenAI client, not "
            f"{type(client).__name__}"
        )
    manager = CallbackManager.ensure(callbacks)
    ctx = check_context(context)
    completions = client.chat.completions
    existing: _Instrumentation | None = completions.__dict__.get(_ATTR)
    if existing is not None:
        existing.manager, existing.provider, existing.context = manager, provider, ctx
        return client
    original = type(completions).create.__get__(completions)
    inst = _Instrumentation(manager, provider, ctx, original)
    completions.__dict__[_ATTR] = inst
    if isinstance(client, openai.AsyncOpenAI):
        completions.__dict__["create"] = _async_create(inst)
    else:
        completions.__dict__["create"] = _sync_create(inst)
    # ``with_raw_response`` captures ``create`` when first used: drop a cached one so it is
    # rebuilt around the instrumented method.
    completions.__dict__.pop("with_raw_response", None)
    return client


def uninstrument(client: openai.OpenAI | openai.AsyncOpenAI) -> None:
    """Undo ``instrument(client)``; a client that is not instrumented is left as it is."""
    completions = client.chat.completions
    if completions.__dict__.pop(_ATTR, None) is None:
        return
    completions.__dict__.pop("create", None)
    completions.__dict__.pop("with_raw_response", None)


def is_instrumented(client: openai.OpenAI | openai.AsyncOpenAI) -> bool:
    """Whether ``instrument`` was applied to ``client`` (and not undone)."""
    return _ATTR in client.chat.completions.__dict__

"""Make an existing ``openai`` client emit hookwire events, without changing the calling code.

::

    import openai
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
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import openai
from openai.types.chat import ChatCompletion

from ..context import check_request_context
from ..dispatch import CallbackManager, Callbacks
from ..errors import BudgetExceeded, CallbackAbort, ConfigurationError
from ..events import LLMResponse, ToolCall, Usage
from ..ids import new_id
from ..llms.openai_wire import ChunkState, map_openai_error, usage_from_sdk
from ..llms.prices import price
from ._common import FailureLog

__all__ = ["instrument", "is_instrumented", "uninstrument"]

C = TypeVar("C", openai.OpenAI, openai.AsyncOpenAI)

_perf = time.perf_counter
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


#: Failures of the instrumentation itself; the app's call always goes on.
_failed = FailureLog("the openai instrumentation", "the call goes on unreported")


def _given(value: Any) -> bool:
    return value is not None and not isinstance(value, (openai.NotGiven, openai.Omit))


@dataclass(slots=True, eq=False)
class _Instrumentation:
    """One instrumented client: its manager, provider, context and the original method."""

    manager: CallbackManager
    provider: str
    context: dict[str, Any]
    original: Any


#: Events as the bridge lists them: a hook, its arguments and keywords, sent to the
#: instrumented client's manager by ``_emit`` (sync) or ``_aemit`` (async).
_Events = list[tuple[str, tuple[Any, ...], dict[str, Any]]]


def _emit(manager: CallbackManager, events: _Events) -> None:
    for hook, args, kw in events:
        getattr(manager, hook)(*args, **kw)


async def _aemit(manager: CallbackManager, events: _Events) -> None:
    for hook, args, kw in events:
        await getattr(manager, "a" + hook)(*args, **kw)


class _Call:
    """One chat completion call, from the request to its end event: what its events say.

    Sync and async calls share it; they only send what it lists (``_emit`` / ``_aemit``).
    """

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

    def aborted(self, abort: CallbackAbort) -> _Events:
        """A handler refused the call at its start (a budget): what to send."""
        emits: _Events = [("on_llm_error", (abort,), {**self.kw, "attempts": 0})]
        if isinstance(abort, BudgetExceeded):
            emits.append(("on_budget_exceeded", (abort,), self.kw))
        emits.append(("on_error", (abort,), {**self.kw, "stage": "budget"}))
        return emits

    def failed(self, exc: BaseException) -> _Events:
        """The SDK raised ``exc``: what to send (nothing once the call has ended)."""
        if self.ended:
            return []
        self.ended = True
        err = exc
        if not isinstance(exc, CallbackAbort) and isinstance(exc, Exception):
            err = map_openai_error(exc, provider=self.inst.provider, model=self.model)
            err.__cause__ = exc
        return [
            ("on_llm_error", (err,), self.end_kw()),
            ("on_error", (err,), {"stage": "llm", **self.kw}),
        ]

    def completed(self, completion: Any) -> _Events:
        """The SDK's answer (a ``ChatCompletion``): what to send. A failure to read it is
        logged, and the call goes on unreported."""
        try:
            response = self.from_completion(completion)
        except Exception as exc:
            _failed("create", exc)
            return []
        self.ended = True
        return [("on_llm_end", (response,), self.end_kw())]


class _StreamState(ChunkState):
    """The client's chunk bookkeeping, plus the text itself and the first token's time."""

    __slots__ = ("index", "parts", "ttft")

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.index = 0
        self.ttft: float | None = None

    def feed(self, chunk: Any) -> str | None:
        content = super().feed(chunk)
        if content:
            self.parts.append(content)
        return content


_OWN = frozenset({"_stream", "_call", "_hide", "_state", "_tokens"})
_NONE: _Events = []


class _StreamBase:
    """What the sync and async stream wrappers share: the bookkeeping of one stream, and the
    events it calls for (the wrappers send them, sync or async)."""

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

    def _observed(self, chunk: Any) -> _Events:
        """Read ``chunk``: the token event it calls for, if any."""
        state = self._state
        try:
            token = state.feed(chunk)
        except Exception as exc:
            _failed("a stream chunk", exc)
            return _NONE
        if not token:
            return _NONE
        if state.ttft is None:
            state.ttft = _perf()
        if not self._tokens:
            return _NONE
        index = state.index
        state.index = index + 1
        kw = {**self._call.kw, "attempt": 1, "index": index}
        return [("on_llm_new_token", (token,), kw)]

    def _ended(self) -> _Events:
        """The stream ends (read to its end, closed early, or dropped): the end event, once,
        with what came (``cancelled=True`` if the model had not finished)."""
        call, state = self._call, self._state
        if call.ended:
            return _NONE
        call.ended = True
        cancelled = state.finish_reason is None and state.usage is None
        try:
            response = call.response(
                content="".join(state.parts),
                usage=state.usage,
                model=state.model,
                finish=None if cancelled else state.finish_reason,
                calls=state.tool_calls(),
                rid=state.id,
            )
        except Exception as exc:
            _failed("the end of a stream", exc)
            return _NONE
        extra: dict[str, Any] = {}
        if state.ttft is not None:
            extra["ttft_ms"] = (state.ttft - call.t0) * 1000.0
        if cancelled:
            extra["cancelled"] = True
        return [("on_llm_end", (response,), call.end_kw(**extra))]

    def _skip(self, chunk: Any) -> bool:
        # The usage-only chunk that include_usage adds: hidden when the caller did not ask.
        return self._hide and not getattr(chunk, "choices", None)


class InstrumentedStream(_StreamBase):
    """Wraps an ``openai.Stream``: the caller iterates it as before; events go out as chunks
    pass, and the end is reported once, however the stream ends."""

    def __iter__(self) -> Iterator[Any]:
        # A generator, so a ``for`` loop that breaks out drops it at once and its ``finally``
        # closes the HTTP response and reports the end.
        manager = self._call.inst.manager
        try:
            for chunk in self._stream:
                _emit(manager, self._observed(chunk))
                if not self._skip(chunk):
                    yield chunk
        except GeneratorExit:
            raise
        except Exception as exc:
            _emit(manager, self._call.failed(exc))
            raise
        finally:
            self.close()

    def __next__(self) -> Any:
        manager = self._call.inst.manager
        while True:
            try:
                chunk = next(self._stream)
            except StopIteration:
                self.close()
                raise
            except Exception as exc:
                _emit(manager, self._call.failed(exc))
                self.close()
                raise
            _emit(manager, self._observed(chunk))
            if not self._skip(chunk):
                return chunk

    def close(self) -> None:
        """Close the HTTP response and report the end (once), as the SDK's ``close()``."""
        try:
            self._stream.close()
        finally:
            _emit(self._call.inst.manager, self._ended())

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
    """Wraps an ``openai.AsyncStream``, as ``InstrumentedStream`` does a sync one (its mirror)."""

    async def __aiter__(self) -> AsyncIterator[Any]:
        manager = self._call.inst.manager
        try:
            async for chunk in self._stream:
                await _aemit(manager, self._observed(chunk))
                if not self._skip(chunk):
                    yield chunk
        except GeneratorExit:
            raise
        except Exception as exc:
            await _aemit(manager, self._call.failed(exc))
            raise
        finally:
            await self.close()

    async def __anext__(self) -> Any:
        manager = self._call.inst.manager
        while True:
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                await self.close()
                raise
            except Exception as exc:
                await _aemit(manager, self._call.failed(exc))
                await self.close()
                raise
            await _aemit(manager, self._observed(chunk))
            if not self._skip(chunk):
                return chunk

    async def close(self) -> None:
        """Close the HTTP response and report the end (once), as the SDK's ``close()``."""
        try:
            await self._stream.close()
        finally:
            await _aemit(self._call.inst.manager, self._ended())

    async def __aenter__(self) -> AsyncInstrumentedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __del__(self) -> None:
        # A stream dropped half-read: close it on the loop it was read on, if it still runs.
        try:
            if not self._call.ended:
                asyncio.get_running_loop().create_task(self.close())
        except Exception:
            pass  # no running loop: the SDK's own stream is left to the garbage collector


def _prepare(
    inst: _Instrumentation, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[_Call, bool, Any, dict[str, Any]] | None:
    """The call to report (``None`` to pass it through untouched: a raw stream, or a failure
    of the instrumentation, logged), whether a usage chunk was asked for on the caller's
    behalf, and ``on_llm_start``'s prompt and keywords."""
    try:
        raw = (kwargs.get("extra_headers") or {}).get(_RAW_HEADER)
        stream = bool(kwargs.get("stream")) and _given(kwargs.get("stream"))
        if raw is not None and (raw != "true" or stream):
            return None  # a raw stream the caller reads itself: nothing to observe
        messages = kwargs.get("messages")
        if _given(messages) and not isinstance(messages, list) and isinstance(messages, Iterable):
            # A one-shot iterable would be spent by reading it for the event: keep a list.
            kwargs["messages"] = list(messages)
        hide = False
        if stream and not _given(kwargs.get("stream_options")):
            kwargs["stream_options"] = {"include_usage": True}
            hide = True
        call = _Call(inst, kwargs)
        prompt, start_kw = call.start_args(kwargs)
    except Exception as exc:
        _failed("create", exc)
        return None
    return call, hide, prompt, start_kw


def _sync_create(inst: _Instrumentation) -> Any:
    original = inst.original

    def create(*args: Any, **kwargs: Any) -> Any:
        prepared = _prepare(inst, args, kwargs)
        if prepared is None:
            return original(*args, **kwargs)
        call, hide, prompt, start_kw = prepared
        manager = inst.manager
        try:
            manager.on_llm_start(prompt, **start_kw)
        except CallbackAbort as abort:
            _emit(manager, call.aborted(abort))
            raise
        call.t0 = _perf()
        try:
            result = original(*args, **kwargs)
        except Exception as exc:
            _emit(manager, call.failed(exc))
            raise
        if call.stream and isinstance(result, openai.Stream):
            return InstrumentedStream(result, call, hide)
        try:
            completion = result if isinstance(result, ChatCompletion) else result.parse()
        except Exception as exc:
            _failed("create", exc)
            return result
        _emit(manager, call.completed(completion))
        return result

    create.__wrapped__ = original  # type: ignore[attr-defined]
    create.__doc__ = getattr(original, "__doc__", None)
    return create


def _async_create(inst: _Instrumentation) -> Any:
    original = inst.original

    async def create(*args: Any, **kwargs: Any) -> Any:
        prepared = _prepare(inst, args, kwargs)
        if prepared is None:
            return await original(*args, **kwargs)
        call, hide, prompt, start_kw = prepared
        manager = inst.manager
        try:
            await manager.aon_llm_start(prompt, **start_kw)
        except CallbackAbort as abort:
            await _aemit(manager, call.aborted(abort))
            raise
        call.t0 = _perf()
        try:
            result = await original(*args, **kwargs)
        except Exception as exc:
            await _aemit(manager, call.failed(exc))
            raise
        if call.stream and isinstance(result, openai.AsyncStream):
            return AsyncInstrumentedStream(result, call, hide)
        try:
            completion = result
            if not isinstance(result, ChatCompletion):
                completion = result.parse()  # a with_raw_response call: parse() is cached
                if inspect.isawaitable(completion):
                    completion = await completion
        except Exception as exc:
            _failed("create", exc)
            return result
        await _aemit(manager, call.completed(completion))
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
    ctx = check_request_context(context)
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

"""The LLM protocol, and ``BaseLLM``: events, retries and streaming shared by every client.

A client (``OpenAIClient``, ``LocalLLM``, or your own) only says how to make one attempt:
``_complete`` (one JSON answer) and ``_stream`` (the answer's tokens, then a ``StreamEnd``),
plus their async twins, raising ``hookwire.errors.LLMError`` subclasses. ``BaseLLM`` wraps
that in what every call needs, as ``docs/events.md`` specifies:

- ``on_llm_start`` once (``invocation_params``, ``stream``), then ``on_llm_new_token`` per
  token (``attempt``, ``index``), then ``on_llm_end`` (``latency_ms``, ``ttft_ms``,
  ``attempts``) or ``on_llm_error`` once, all with one ``run_id``, ``model`` and ``provider``;
- retries of transient failures (``RetryPolicy``, on tenacity), each announced by
  ``on_retry``; a stream that stops before the model finished is a ``StreamInterrupted``,
  retried like any transient failure, never a successful answer;
- a ``CallbackAbort`` raised by an ``on_llm_start`` handler (a budget) stops the call before it
  is sent: ``on_llm_error``, ``on_budget_exceeded`` (for ``BudgetExceeded``) and
  ``on_error(stage="budget")`` go out, and the exception is raised;
- the cost, through ``hookwire.pricing`` when it is installed.

Events go to the client's own callbacks and to the ones a call is given (a runner passes its
manager); a handler present in both receives each event once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)

from ..context import new_id
from ..dispatch import CallbackManager, Callbacks
from ..errors import (
    BudgetExceeded,
    CallbackAbort,
    ConfigurationError,
    LLMError,
    StreamInterrupted,
    TransientLLMError,
)
from ..events import LLMResponse, ToolCall, Usage
from .retry import RetryPolicy

__all__ = [
    "LLM",
    "BaseLLM",
    "LLMRequest",
    "Messages",
    "StreamEnd",
    "normalize_messages",
    "price",
]

#: What a call accepts as its prompt: a text (sent as one user message) or chat messages.
Messages = str | Sequence[Mapping[str, Any]]

#: Request parameters reported in ``invocation_params`` when set.
_PARAM_NAMES = (
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "top_p",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "tool_choice",
    "response_format",
    "n",
    "user",
)

_TOKEN_HOOK = "on_llm_new_token"
_perf = time.perf_counter


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


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last item of a client's ``_stream``: how the model finished, and the usage.

    ``finish_reason=None`` means the stream stopped before the model said it was done.
    """

    finish_reason: str | None
    usage: Usage | None = None
    model: str | None = None
    id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


def normalize_messages(messages: Messages) -> list[dict[str, Any]]:
    """``messages`` as a new list of message dicts (a text becomes one user message)."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, Mapping):
        raise ConfigurationError(
            "messages must be a list of message dicts, not one dict: wrap it in a list"
        )
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m:
            raise ConfigurationError(
                f"messages[{i}] must be a dict with a 'role' (and usually 'content'), "
                f"e.g. {{'role': 'user', 'content': 'Hello'}}; got {m!r}"
            )
        out.append(dict(m))
    if not out:
        raise ConfigurationError("messages is empty: give at least one message, or a text")
    return out


_pricing: list[Callable[..., Decimal | None] | None] = []


def price(model: str | None, usage: Usage, provider: str | None) -> Decimal | None:
    """The call's cost through ``hookwire.pricing.cost``; ``None`` when it is unknown."""
    if not _pricing:
        # Looked up once: hookwire.pricing is optional for the runtime.
        try:
            from ..pricing import cost  # type: ignore[import-not-found,unused-ignore]

            _pricing.append(cost)
        except ImportError:
            _pricing.append(None)
    fn = _pricing[0]
    if fn is None or not model:
        return None
    try:
        return fn(model, usage, provider=provider)
    except Exception:  # an unknown or unpriceable model is "unknown", never a failed call
        return None


class _Call:
    """The state of one logical call (all its attempts)."""

    __slots__ = (
        "attempts",
        "kw",
        "managers",
        "request",
        "stream",
        "t0",
        "token_fns",
        "ttft",
    )

    def __init__(
        self,
        request: LLMRequest,
        managers: tuple[CallbackManager, ...],
        stream: bool,
        kw: dict[str, Any],
    ) -> None:
        self.request = request
        self.managers = managers
        self.stream = stream
        self.kw = kw
        self.attempts = 0
        self.t0 = 0.0
        self.ttft: float | None = None
        self.token_fns = tuple(m.on_llm_new_token for m in managers if m.listens(_TOKEN_HOOK))

    def elapsed_ms(self) -> float:
        return (_perf() - self.t0) * 1000.0


class BaseLLM:
    """Events, retries, streaming and cost around a client's single attempts.

    Subclasses set ``provider`` and implement ``_complete``/``_stream`` (sync) and
    ``_acomplete``/``_astream`` (async). ``model`` is the default model; ``callbacks`` receive
    every call's events; ``max_retries`` (or a full ``retry=RetryPolicy(...)``) sets retries;
    other keywords (``temperature``, ``max_tokens``, ...) are default request parameters.
    """

    provider: str = "llm"

    def __init__(
        self,
        *,
        model: str | None = None,
        callbacks: Callbacks = None,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        **defaults: Any,
    ) -> None:
        self.model = model
        self.callbacks = CallbackManager.ensure(callbacks) if callbacks is not None else None
        self.retry = retry if retry is not None else RetryPolicy.from_retries(max_retries)
        self.defaults = defaults
        self._merge_cache: dict[tuple[int, ...], tuple[CallbackManager, ...]] = {}

    # -- the provider's part --------------------------------------------------------------------

    def _complete(self, request: LLMRequest) -> LLMResponse:
        raise NotImplementedError(f"{type(self).__name__} does not implement _complete")

    def _stream(self, request: LLMRequest) -> Iterator[str | StreamEnd]:
        raise NotImplementedError(f"{type(self).__name__} does not implement _stream")

    async def _acomplete(self, request: LLMRequest) -> LLMResponse:
        raise NotImplementedError(f"{type(self).__name__} does not implement _acomplete")

    def _astream(self, request: LLMRequest) -> AsyncIterator[str | StreamEnd]:
        raise NotImplementedError(f"{type(self).__name__} does not implement _astream")

    # -- public API -------------------------------------------------------------------------------

    def generate(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Sequence[Any] | None = None,
        callbacks: Callbacks = None,
        stream: bool | None = None,
        **params: Any,
    ) -> LLMResponse:
        """Call the model and return its answer.

        ``messages`` is a text or a list of chat messages; ``tools`` are ``hookwire.tool``
        tools or OpenAI tool schemas; ``stream=None`` streams when a handler listens for
        tokens. Raises a ``hookwire.errors.LLMError`` (or the ``CallbackAbort`` of a budget).
        """
        call = self._prepare(messages, model, tools, callbacks, stream, params)
        gen = self._run(call, deliver=False)
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def agenerate(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Sequence[Any] | None = None,
        callbacks: Callbacks = None,
        stream: bool | None = None,
        **params: Any,
    ) -> LLMResponse:
        """``generate`` for asyncio."""
        call = self._prepare(messages, model, tools, callbacks, stream, params)
        result: LLMResponse | None = None
        async for item in self._arun(call, deliver=False):
            if isinstance(item, LLMResponse):
                result = item
        assert result is not None
        return result

    def stream(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Sequence[Any] | None = None,
        callbacks: Callbacks = None,
        **params: Any,
    ) -> Iterator[str | LLMResponse]:
        """Yield the answer's tokens as they arrive, then the full ``LLMResponse``.

        If a stream breaks and is retried, the text already yielded is not yielded again.
        """
        call = self._prepare(messages, model, tools, callbacks, True, params)
        gen = self._run(call, deliver=True)
        try:
            while True:
                yield next(gen)
        except StopIteration as stop:
            yield stop.value

    async def astream(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Sequence[Any] | None = None,
        callbacks: Callbacks = None,
        **params: Any,
    ) -> AsyncIterator[str | LLMResponse]:
        """``stream`` for asyncio."""
        call = self._prepare(messages, model, tools, callbacks, True, params)
        async for item in self._arun(call, deliver=True):
            yield item

    # -- preparation ------------------------------------------------------------------------------

    def _managers(self, callbacks: Callbacks) -> tuple[CallbackManager, ...]:
        own = self.callbacks
        other = CallbackManager.ensure(callbacks) if callbacks is not None else None
        if other is None or other is own:
            return (own,) if own is not None else ()
        if own is None or not len(own):
            return (other,)
        key = (id(other), *map(id, other.handlers), -1, id(own), *map(id, own.handlers))
        found = self._merge_cache.get(key)
        if found is not None:
            return found
        theirs = {id(h) for h in other.handlers}
        mine = [h for h in own.handlers if id(h) not in theirs]
        if len(mine) == len(own):
            result: tuple[CallbackManager, ...] = (other, own)
        elif mine:
            result = (other, CallbackManager(mine))
        else:
            result = (other,)
        if len(self._merge_cache) > 64:
            self._merge_cache.clear()
        self._merge_cache[key] = result
        return result

    def _prepare(
        self,
        messages: Messages,
        model: str | None,
        tools: Sequence[Any] | None,
        callbacks: Callbacks,
        stream: bool | None,
        params: dict[str, Any],
    ) -> _Call:
        name = model or self.model
        if not name:
            raise ConfigurationError(
                f"{type(self).__name__} has no model: pass model=... to the call or the client"
            )
        msgs = normalize_messages(messages)
        merged = {**self.defaults, **params} if self.defaults else dict(params)
        merged = {k: v for k, v in merged.items() if v is not None}
        schemas = _tool_schemas(tools)
        request = LLMRequest(msgs, name, merged, schemas)
        managers = self._managers(callbacks)
        if stream is None:
            stream = any(m.listens(_TOKEN_HOOK) for m in managers)
        kw = {"run_id": new_id(), "model": name, "provider": self.provider}
        return _Call(request, managers, stream, kw)

    @staticmethod
    def _invocation_params(request: LLMRequest) -> dict[str, Any]:
        out: dict[str, Any] = {"model": request.model}
        for k in _PARAM_NAMES:
            if k in request.params:
                out[k] = request.params[k]
        if request.tools:
            out["tools"] = [t["function"]["name"] for t in request.tools]
        return out

    def _finish(self, call: _Call, response: LLMResponse) -> LLMResponse:
        changes: dict[str, Any] = {}
        if response.provider is None:
            changes["provider"] = self.provider
        if response.model is None:
            changes["model"] = call.request.model
        if response.cost is None:
            cost = price(response.model or call.request.model, response.usage, self.provider)
            if cost is not None:
                changes["cost"] = cost
        return dataclasses.replace(response, **changes) if changes else response

    def _end_kw(self, call: _Call) -> dict[str, Any]:
        kw = dict(call.kw)
        kw["latency_ms"] = call.elapsed_ms()
        kw["attempts"] = call.attempts
        kw["stream"] = call.stream
        if call.ttft is not None:
            kw["ttft_ms"] = call.ttft
        return kw

    def _retrying_kw(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.retry.max_attempts),
            "wait": self.retry.wait,
            "retry": retry_if_exception(RetryPolicy.should_retry),
            "reraise": True,
        }

    # -- stream assembly (shared) -------------------------------------------------------------

    def _assemble(
        self, call: _Call, parts: list[str], end: StreamEnd | None, attempt: int
    ) -> LLMResponse:
        text = "".join(parts)
        if end is None or end.finish_reason is None:
            raise StreamInterrupted(
                f"the stream from {self.provider} stopped after {len(parts)} token(s) before "
                "the model finished its answer (no finish_reason); hookwire retries this",
                partial=text,
                provider=self.provider,
                model=call.request.model,
            )
        usage = end.usage
        if usage is None:
            # The server sent no usage chunk (stream_options unsupported): count what we saw.
            usage = Usage(prompt_tokens=0, completion_tokens=len(parts))
        return LLMResponse(
            content=text,
            usage=usage,
            model=end.model or call.request.model,
            finish_reason=end.finish_reason,
            tool_calls=end.tool_calls,
            provider=self.provider,
            id=end.id,
        )

    def _cut(self, call: _Call, error: TransientLLMError, parts: list[str]) -> TransientLLMError:
        if parts and not isinstance(error, StreamInterrupted):
            cut = StreamInterrupted(
                f"the stream from {self.provider} broke after {len(parts)} token(s): {error}",
                partial="".join(parts),
                provider=self.provider,
                model=call.request.model,
            )
            cut.__cause__ = error
            return cut
        return error

    # -- sync engine ----------------------------------------------------------------------------

    def _start(self, call: _Call) -> None:
        prompt = call.request.messages
        params = self._invocation_params(call.request)
        try:
            for m in call.managers:
                m.on_llm_start(
                    list(prompt), invocation_params=params, stream=call.stream, **call.kw
                )
        except CallbackAbort as abort:
            self._aborted(call, abort)
            raise
        call.t0 = _perf()

    def _aborted(self, call: _Call, abort: CallbackAbort) -> None:
        kw = self._end_kw(call) if call.t0 else {**call.kw, "attempts": call.attempts}
        for m in call.managers:
            m.on_llm_error(abort, **kw)
            if isinstance(abort, BudgetExceeded):
                m.on_budget_exceeded(abort, **call.kw)
            m.on_error(abort, stage="budget", **call.kw)

    def _failed(self, call: _Call, error: BaseException) -> None:
        kw = self._end_kw(call)
        for m in call.managers:
            m.on_llm_error(error, **kw)
            m.on_error(error, stage="llm", **call.kw)

    def _before_sleep(self, call: _Call) -> Callable[[RetryCallState], None]:
        max_attempts = self.retry.max_attempts

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            assert error is not None  # tenacity only sleeps after a failed attempt
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            for m in call.managers:
                m.on_retry(state.attempt_number, max_attempts, error, delay=delay, **call.kw)

        return before_sleep

    def _run(self, call: _Call, deliver: bool) -> Generator[str, None, LLMResponse]:
        self._start(call)
        delivered = 0  # characters already yielded to the caller (kept across retries)
        try:
            response: LLMResponse | None = None
            for attempt in Retrying(before_sleep=self._before_sleep(call), **self._retrying_kw()):
                with attempt:
                    call.attempts = n = attempt.retry_state.attempt_number
                    if not call.stream:
                        response = self._complete(call.request)
                        continue
                    parts: list[str] = []
                    end: StreamEnd | None = None
                    fns = call.token_fns
                    kw = call.kw
                    seen = 0
                    try:
                        for piece in self._stream(call.request):
                            if isinstance(piece, StreamEnd):
                                end = piece
                                continue
                            if not piece:
                                continue
                            if call.ttft is None:
                                call.ttft = call.elapsed_ms()
                            index = len(parts)
                            parts.append(piece)
                            for fn in fns:
                                fn(piece, attempt=n, index=index, **kw)
                            if deliver:
                                seen += len(piece)
                                if seen > delivered:
                                    new = piece[len(piece) - (seen - delivered) :]
                                    delivered = seen
                                    yield new
                    except TransientLLMError as error:
                        raise self._cut(call, error, parts) from error
                    response = self._assemble(call, parts, end, n)
            assert response is not None
        except CallbackAbort as abort:
            self._aborted(call, abort)
            raise
        except LLMError as error:
            self._failed(call, error)
            raise
        except GeneratorExit:
            raise
        except Exception as exc:
            wrapped = LLMError(
                f"{type(self).__name__} failed unexpectedly: {type(exc).__name__}: {exc}",
                provider=self.provider,
                model=call.request.model,
            )
            wrapped.__cause__ = exc
            self._failed(call, wrapped)
            raise wrapped from exc
        response = self._finish(call, response)
        end_kw = self._end_kw(call)
        for m in call.managers:
            m.on_llm_end(response, **end_kw)
        return response

    # -- async engine ---------------------------------------------------------------------------

    async def _astart(self, call: _Call) -> None:
        prompt = call.request.messages
        params = self._invocation_params(call.request)
        try:
            for m in call.managers:
                await m.aon_llm_start(
                    list(prompt), invocation_params=params, stream=call.stream, **call.kw
                )
        except CallbackAbort as abort:
            await self._aaborted(call, abort)
            raise
        call.t0 = _perf()

    async def _aaborted(self, call: _Call, abort: CallbackAbort) -> None:
        kw = self._end_kw(call) if call.t0 else {**call.kw, "attempts": call.attempts}
        for m in call.managers:
            await m.aon_llm_error(abort, **kw)
            if isinstance(abort, BudgetExceeded):
                await m.aon_budget_exceeded(abort, **call.kw)
            await m.aon_error(abort, stage="budget", **call.kw)

    async def _afailed(self, call: _Call, error: BaseException) -> None:
        kw = self._end_kw(call)
        for m in call.managers:
            await m.aon_llm_error(error, **kw)
            await m.aon_error(error, stage="llm", **call.kw)

    def _abefore_sleep(self, call: _Call) -> Callable[[RetryCallState], Any]:
        max_attempts = self.retry.max_attempts

        async def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            assert error is not None  # tenacity only sleeps after a failed attempt
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            for m in call.managers:
                await m.aon_retry(state.attempt_number, max_attempts, error, delay=delay, **call.kw)

        return before_sleep

    async def _arun(self, call: _Call, deliver: bool) -> AsyncIterator[str | LLMResponse]:
        await self._astart(call)
        delivered = 0
        token_fns = tuple(m.aon_llm_new_token for m in call.managers if m.listens(_TOKEN_HOOK))
        try:
            response: LLMResponse | None = None
            retrying = AsyncRetrying(before_sleep=self._abefore_sleep(call), **self._retrying_kw())
            async for attempt in retrying:
                with attempt:
                    call.attempts = n = attempt.retry_state.attempt_number
                    if not call.stream:
                        response = await self._acomplete(call.request)
                        continue
                    parts: list[str] = []
                    end: StreamEnd | None = None
                    kw = call.kw
                    seen = 0
                    try:
                        async for piece in self._astream(call.request):
                            if isinstance(piece, StreamEnd):
                                end = piece
                                continue
                            if not piece:
                                continue
                            if call.ttft is None:
                                call.ttft = call.elapsed_ms()
                            index = len(parts)
                            parts.append(piece)
                            for fn in token_fns:
                                await fn(piece, attempt=n, index=index, **kw)
                            if deliver:
                                seen += len(piece)
                                if seen > delivered:
                                    new = piece[len(piece) - (seen - delivered) :]
                                    delivered = seen
                                    yield new
                    except TransientLLMError as error:
                        raise self._cut(call, error, parts) from error
                    response = self._assemble(call, parts, end, n)
            assert response is not None
        except CallbackAbort as abort:
            await self._aaborted(call, abort)
            raise
        except LLMError as error:
            await self._afailed(call, error)
            raise
        except GeneratorExit:
            raise
        except Exception as exc:
            wrapped = LLMError(
                f"{type(self).__name__} failed unexpectedly: {type(exc).__name__}: {exc}",
                provider=self.provider,
                model=call.request.model,
            )
            wrapped.__cause__ = exc
            await self._afailed(call, wrapped)
            raise wrapped from exc
        response = self._finish(call, response)
        end_kw = self._end_kw(call)
        for m in call.managers:
            await m.aon_llm_end(response, **end_kw)
        yield response

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, provider={self.provider!r})"


def _tool_schemas(tools: Sequence[Any] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    out = []
    for t in tools:
        schema = getattr(t, "openai_schema", None)
        if callable(schema):
            out.append(schema())
        elif isinstance(t, Mapping) and t.get("type") == "function" and "function" in t:
            out.append(dict(t))
        else:
            raise ConfigurationError(
                f"tools must be hookwire tools (@hookwire.tool) or OpenAI tool schemas "
                f"({{'type': 'function', 'function': {{...}}}}), not {t!r}"
            )
    return out

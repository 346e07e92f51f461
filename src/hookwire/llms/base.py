"""The LLM protocol, and ``BaseLLM``: events, retries and streaming shared by every client.

A client (``OpenAIClient``, ``LocalLLM``, or your own) only says how to make one attempt:
``_complete`` (one JSON answer) and ``_stream`` (the answer's tokens, then a ``StreamEnd``),
plus their async twins, raising ``hookwire.errors.LLMError`` subclasses (and, optionally,
``_stream_into``: ``_stream`` as a plain loop, for streamed calls whose tokens the caller does
not read). ``BaseLLM`` wraps that in what every call needs, as ``docs/events.md`` specifies:

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

import asyncio
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

from ..dispatch import CallbackManager, Callbacks
from ..errors import (
    BudgetExceeded,
    CallbackAbort,
    ConfigurationError,
    HookwireError,
    LLMError,
    StreamInterrupted,
    TransientLLMError,
)
from ..events import LLMResponse, ToolCall, Usage, _slot_setters, _utcnow
from ..ids import new_id
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


_req_messages, _req_model, _req_params, _req_tools = _slot_setters(
    LLMRequest, "messages", "model", "params", "tools"
)


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

    # Written out, as Usage's (see hookwire.events): one ends every streamed call.
    def __init__(
        self,
        finish_reason: str | None,
        usage: Usage | None = None,
        model: str | None = None,
        id: str | None = None,
        tool_calls: tuple[ToolCall, ...] = (),
    ) -> None:
        _end_finish_reason(self, finish_reason)
        _end_usage(self, usage)
        _end_model(self, model)
        _end_id(self, id)
        _end_tool_calls(self, tool_calls)


_end_finish_reason, _end_usage, _end_model, _end_id, _end_tool_calls = _slot_setters(
    StreamEnd, "finish_reason", "usage", "model", "id", "tool_calls"
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
        return fn(model, usage, provider)
    except Exception:  # an unknown or unpriceable model is "unknown", never a failed call
        return None


class _Call:
    """The state of one logical call (all its attempts)."""

    __slots__ = (
        "atoken_fns",
        "attempts",
        "delivered",
        "kw",
        "managers",
        "request",
        "retry",
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
        retry: RetryPolicy,
    ) -> None:
        self.request = request
        self.retry = retry
        self.managers = managers
        self.stream = stream
        self.kw = kw
        self.attempts = 0
        self.t0 = 0.0
        self.ttft: float | None = None
        if stream:
            token_fns: list[Callable[..., Any]] = []
            atoken_fns: list[Callable[..., Any]] = []
            for m in managers:
                if m.listens(_TOKEN_HOOK):
                    # The dispatchers that take the call's keywords as parameters.
                    token_fns.append(m._client_on_llm_new_token)
                    atoken_fns.append(m._client_aon_llm_new_token)
            self.token_fns = tuple(token_fns)
            self.atoken_fns = tuple(atoken_fns)
        else:
            # Only streamed attempts dispatch tokens.
            self.token_fns = self.atoken_fns = ()
        #: Characters of the answer already yielded to a streaming caller (across retries).
        self.delivered = 0

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

    def _stream_into(
        self, request: LLMRequest, on_token: Callable[[str], None]
    ) -> StreamEnd | None:
        """One streamed attempt as a plain call: ``on_token`` for each non-empty token, then
        the ``StreamEnd`` (``None`` if the stream had none).

        Used for streamed calls whose tokens are not handed to the caller (``generate`` with
        token listeners). This default reads ``_stream``; a client may override it to run its
        own loop over the provider's stream, which spares a generator resumed per token (and
        walked by every exception raised under it). It must raise what ``_stream`` raises and
        let whatever ``on_token`` raises pass unchanged.
        """
        end: StreamEnd | None = None
        for piece in self._stream(request):
            if isinstance(piece, StreamEnd):
                end = piece
            elif piece:
                on_token(piece)
        return end

    # -- public API -------------------------------------------------------------------------------

    def generate(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Sequence[Any] | None = None,
        callbacks: Callbacks = None,
        stream: bool | None = None,
        retry: RetryPolicy | None = None,
        **params: Any,
    ) -> LLMResponse:
        """Call the model and return its answer.

        ``messages`` is a text or a list of chat messages; ``tools`` are ``hookwire.tool``
        tools or OpenAI tool schemas; ``stream=None`` streams when a handler listens for
        tokens; ``retry`` overrides the client's ``RetryPolicy`` for this call. Raises a
        ``hookwire.errors.LLMError`` (or the ``CallbackAbort`` of a budget).
        """
        call = self._prepare(messages, model, tools, callbacks, stream, params, retry)
        return self._generate(call)

    async def agenerate(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Sequence[Any] | None = None,
        callbacks: Callbacks = None,
        stream: bool | None = None,
        retry: RetryPolicy | None = None,
        **params: Any,
    ) -> LLMResponse:
        """``generate`` for asyncio."""
        call = self._prepare(messages, model, tools, callbacks, stream, params, retry)
        if not call.stream:
            return await self._agenerate(call)
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
        retry: RetryPolicy | None = None,
        **params: Any,
    ) -> Iterator[str | LLMResponse]:
        """Yield the answer's tokens as they arrive, then the full ``LLMResponse``.

        If a stream breaks and is retried, the text already yielded is not yielded again
        (the retried answer's text is taken up from the same position).
        """
        call = self._prepare(messages, model, tools, callbacks, True, params, retry)
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
        retry: RetryPolicy | None = None,
        **params: Any,
    ) -> AsyncIterator[str | LLMResponse]:
        """``stream`` for asyncio."""
        call = self._prepare(messages, model, tools, callbacks, True, params, retry)
        async for item in self._arun(call, deliver=True):
            yield item

    # -- preparation ------------------------------------------------------------------------------

    def _managers(self, callbacks: Callbacks) -> tuple[CallbackManager, ...]:
        own = self.callbacks
        if callbacks is None:
            other = None
        elif isinstance(callbacks, CallbackManager):
            other = callbacks
        else:
            other = CallbackManager.ensure(callbacks)
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
        retry: RetryPolicy | None = None,
    ) -> _Call:
        name = model or self.model
        if not name:
            raise ConfigurationError(
                f"{type(self).__name__} has no model: pass model=... to the call or the client"
            )
        msgs = normalize_messages(messages)
        defaults = self.defaults
        if defaults or params:
            merged = {**defaults, **params} if defaults else params
            merged = {k: v for k, v in merged.items() if v is not None}
        else:
            merged = {}
        request = LLMRequest(msgs, name, merged, _tool_schemas(tools) if tools else None)
        managers = self._managers(callbacks)
        if stream is None:
            stream = False
            for m in managers:
                if m.listens(_TOKEN_HOOK):
                    stream = True
                    break
        kw = {"run_id": new_id(), "model": name, "provider": self.provider}
        return _Call(request, managers, stream, kw, retry or self.retry)

    @staticmethod
    def _invocation_params(request: LLMRequest) -> dict[str, Any]:
        out: dict[str, Any] = {"model": request.model}
        params = request.params
        if params:
            for k in _PARAM_NAMES:
                if k in params:
                    out[k] = params[k]
        if request.tools:
            out["tools"] = [t["function"]["name"] for t in request.tools]
        return out

    def _finish(self, call: _Call, response: LLMResponse) -> LLMResponse:
        provider = response.provider
        model = response.model
        cost = response.cost
        if provider is not None and model is not None and cost is not None:
            return response
        if cost is None:
            cost = price(model or call.request.model, response.usage, self.provider)
        if provider is not None and model is not None and cost is None:
            return response
        if type(response) is not LLMResponse:
            return dataclasses.replace(
                response,
                provider=provider if provider is not None else self.provider,
                model=model if model is not None else call.request.model,
                cost=cost,
            )
        # The same record with the blanks filled in, built directly (dataclasses.replace
        # looks the fields up on every call).
        return LLMResponse(
            content=response.content,
            usage=response.usage,
            model=model if model is not None else call.request.model,
            created_at=response.created_at,
            finish_reason=response.finish_reason,
            tool_calls=response.tool_calls,
            provider=provider if provider is not None else self.provider,
            id=response.id,
            cost=cost,
            currency=response.currency,
        )

    def _end_kw(self, call: _Call) -> dict[str, Any]:
        kw = {
            **call.kw,
            "latency_ms": (_perf() - call.t0) * 1000.0,
            "attempts": call.attempts,
            "stream": call.stream,
        }
        if call.ttft is not None:
            kw["ttft_ms"] = call.ttft
        return kw

    @staticmethod
    def _retrying_kw(call: _Call) -> dict[str, Any]:
        # Tenacity runs attempts 2..max_attempts (see _retry), so its numbers are one behind.
        policy = call.retry

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            return policy.delay(state.attempt_number + 1, error)

        return {
            "stop": stop_after_attempt(policy.max_attempts - 1),
            "wait": wait,
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
            usage = Usage(0, len(parts))
        model = end.model or call.request.model
        provider = self.provider
        # Priced here, so _finish finds the record complete and need not copy it. Positional
        # (content, usage, model, created_at, finish_reason, tool_calls, provider, id, cost):
        # keywords to a class cost a dict per call.
        return LLMResponse(
            text,
            usage,
            model,
            _utcnow(),
            end.finish_reason,
            end.tool_calls,
            provider,
            end.id,
            price(model, usage, provider),
        )

    def _unexpected(self, call: _Call, exc: BaseException) -> LLMError:
        return LLMError(
            f"{type(self).__name__} failed unexpectedly: {type(exc).__name__}: {exc} "
            "(a bug in the client; please report it)",
            provider=self.provider,
            model=call.request.model,
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
        params: dict[str, Any] | None = None
        try:
            for m in call.managers:
                # A hook nobody listens to is skipped: no prompt copy, no parameters.
                if m.listens("on_llm_start"):
                    if params is None:
                        params = self._invocation_params(call.request)
                    m.on_llm_start(
                        list(call.request.messages),
                        invocation_params=params,
                        stream=call.stream,
                        **call.kw,
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
        max_attempts = call.retry.max_attempts

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            assert error is not None  # tenacity only sleeps after a failed attempt
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            for m in call.managers:
                m.on_retry(state.attempt_number + 1, max_attempts, error, delay=delay, **call.kw)

        return before_sleep

    def _attempt(self, call: _Call, n: int, deliver: bool) -> Generator[str, None, LLMResponse]:
        """One attempt: the provider's answer, with its tokens emitted (and yielded)."""
        if not call.stream:
            return self._complete_attempt(call, n)
        if not deliver:
            return self._stream_attempt(call, n)
        call.attempts = n
        parts: list[str] = []
        end: StreamEnd | None = None
        fns = call.token_fns
        # The call's keywords (run_id, model, provider) passed by name to the token
        # dispatchers, which take them as parameters: no merged dict per token.
        kw = call.kw
        run_id, model, provider = kw["run_id"], kw["model"], kw["provider"]
        seen = 0
        pieces = iter(self._stream(call.request))
        try:
            while True:
                # Only the provider's own failures are wrapped: a handler that asks to raise
                # (raise_error=True) has its exception reach the caller unchanged.
                try:
                    piece = next(pieces)
                except StopIteration:
                    break
                except HookwireError:
                    raise
                except Exception as exc:
                    raise self._unexpected(call, exc) from exc
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
                    fn(
                        piece,
                        run_id=run_id,
                        model=model,
                        provider=provider,
                        attempt=n,
                        index=index,
                    )
                if deliver:
                    # A retried stream starts again from the beginning: only text past what
                    # the caller already has is yielded.
                    seen += len(piece)
                    if seen > call.delivered:
                        new = piece[len(piece) - (seen - call.delivered) :]
                        call.delivered = seen
                        yield new
        except TransientLLMError as error:
            raise self._cut(call, error, parts) from error
        return self._assemble(call, parts, end, n)

    def _complete_attempt(self, call: _Call, n: int) -> LLMResponse:
        """One attempt of a call that does not stream, as a plain call."""
        call.attempts = n
        try:
            return self._complete(call.request)
        except HookwireError:
            raise
        except Exception as exc:
            raise self._unexpected(call, exc) from exc

    def _stream_attempt(self, call: _Call, n: int) -> LLMResponse:
        """One streamed attempt whose tokens are not delivered to the caller, as a plain call:
        the provider's ``_stream_into`` calls back per token, which dispatches it inline (the
        same events, keywords and errors as ``_attempt``, without generators per token)."""
        call.attempts = n
        parts: list[str] = []
        fns = call.token_fns
        kw = call.kw
        run_id, model, provider = kw["run_id"], kw["model"], kw["provider"]
        append = parts.append

        def on_token(piece: str) -> None:
            if call.ttft is None:
                call.ttft = call.elapsed_ms()
            index = len(parts)
            append(piece)
            try:
                for fn in fns:
                    fn(
                        piece,
                        run_id=run_id,
                        model=model,
                        provider=provider,
                        attempt=n,
                        index=index,
                    )
            except BaseException as exc:
                # Carried past the provider's own error handling (which would take a
                # handler's ValueError for the SDK's) and raised again below, unchanged.
                raise _HandlerRaised(exc) from None

        raised: BaseException | None = None
        try:
            # Only the provider's own failures are wrapped: a handler that asks to raise
            # (raise_error=True) has its exception reach the caller unchanged.
            try:
                end = self._stream_into(call.request, on_token)
            except _HandlerRaised as carried:
                raised = carried.error
            except HookwireError:
                raise
            except Exception as exc:
                raise self._unexpected(call, exc) from exc
            if raised is not None:
                # Outside the except clause, so the carrier is not chained to it.
                try:
                    raise raised
                finally:
                    raised = None
        except TransientLLMError as error:
            raise self._cut(call, error, parts) from error
        return self._assemble(call, parts, end, n)

    def _retry(
        self, call: _Call, first: TransientLLMError, deliver: bool
    ) -> Generator[str, None, LLMResponse]:
        """Attempts 2.. after a first transient failure, on tenacity.

        The first attempt runs without tenacity, so a call that succeeds at once pays nothing
        for retries; tenacity's attempt numbers are therefore one behind the call's.
        """
        policy = call.retry
        delay = policy.delay(1, first)
        for m in call.managers:
            m.on_retry(1, policy.max_attempts, first, delay=delay, **call.kw)
        if delay:
            time.sleep(delay)
        response: LLMResponse | None = None
        for attempt in Retrying(before_sleep=self._before_sleep(call), **self._retrying_kw(call)):
            with attempt:
                n = attempt.retry_state.attempt_number + 1
                response = yield from self._attempt(call, n, deliver)
        assert response is not None
        return response

    def _run(self, call: _Call, deliver: bool) -> Generator[str, None, LLMResponse]:
        self._start(call)
        try:
            try:
                response = yield from self._attempt(call, 1, deliver)
            except TransientLLMError as first:
                if call.retry.max_attempts <= 1:
                    raise
                response = yield from self._retry(call, first, deliver)
        except CallbackAbort as abort:
            self._aborted(call, abort)
            raise
        except LLMError as error:
            self._failed(call, error)
            raise
        return self._end(call, response)

    def _generate(self, call: _Call) -> LLMResponse:
        """``_run`` for a call whose tokens are not delivered (``generate``), as a plain call:
        the same events and errors, without a generator to create and drive. The first
        attempt is a plain call (streamed or not); retries, rare, take ``_retry``, whose
        attempts are plain calls too."""
        self._start(call)
        try:
            try:
                if call.stream:
                    response = self._stream_attempt(call, 1)
                else:
                    response = self._complete_attempt(call, 1)
            except TransientLLMError as first:
                if call.retry.max_attempts <= 1:
                    raise
                response = _drain(self._retry(call, first, False))
        except CallbackAbort as abort:
            self._aborted(call, abort)
            raise
        except LLMError as error:
            self._failed(call, error)
            raise
        return self._end(call, response)

    def _end(self, call: _Call, response: LLMResponse) -> LLMResponse:
        if response.cost is None or response.model is None or response.provider is None:
            response = self._finish(call, response)
        # _end_kw's keywords, in its order, passed by name: the dispatchers take run_id, model
        # and provider as parameters, so no dict is built for them and unpacked again.
        kw = call.kw
        run_id, model, provider = kw["run_id"], kw["model"], kw["provider"]
        latency = (_perf() - call.t0) * 1000.0
        attempts = call.attempts
        stream = call.stream
        ttft = call.ttft
        for m in call.managers:
            if ttft is None:
                m.on_llm_end(
                    response,
                    run_id=run_id,
                    model=model,
                    provider=provider,
                    latency_ms=latency,
                    attempts=attempts,
                    stream=stream,
                )
            else:
                m.on_llm_end(
                    response,
                    run_id=run_id,
                    model=model,
                    provider=provider,
                    latency_ms=latency,
                    attempts=attempts,
                    stream=stream,
                    ttft_ms=ttft,
                )
        return response

    # -- async engine ---------------------------------------------------------------------------

    async def _astart(self, call: _Call) -> None:
        params: dict[str, Any] | None = None
        try:
            for m in call.managers:
                if m.listens("on_llm_start"):
                    if params is None:
                        params = self._invocation_params(call.request)
                    await m.aon_llm_start(
                        list(call.request.messages),
                        invocation_params=params,
                        stream=call.stream,
                        **call.kw,
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
        max_attempts = call.retry.max_attempts

        async def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            assert error is not None  # tenacity only sleeps after a failed attempt
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            for m in call.managers:
                await m.aon_retry(
                    state.attempt_number + 1, max_attempts, error, delay=delay, **call.kw
                )

        return before_sleep

    async def _aattempt(
        self, call: _Call, n: int, deliver: bool
    ) -> AsyncIterator[str | LLMResponse]:
        """One attempt (async): yields the new text, then the response."""
        call.attempts = n
        if not call.stream:
            try:
                response = await self._acomplete(call.request)
            except HookwireError:
                raise
            except Exception as exc:
                raise self._unexpected(call, exc) from exc
            yield response
            return
        parts: list[str] = []
        end: StreamEnd | None = None
        kw = call.kw
        seen = 0
        fns = call.atoken_fns
        pieces = self._astream(call.request).__aiter__()
        try:
            while True:
                try:
                    piece = await pieces.__anext__()
                except StopAsyncIteration:
                    break
                except HookwireError:
                    raise
                except Exception as exc:
                    raise self._unexpected(call, exc) from exc
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
                    await fn(piece, attempt=n, index=index, **kw)
                if deliver:
                    seen += len(piece)
                    if seen > call.delivered:
                        new = piece[len(piece) - (seen - call.delivered) :]
                        call.delivered = seen
                        yield new
        except TransientLLMError as error:
            raise self._cut(call, error, parts) from error
        yield self._assemble(call, parts, end, n)

    async def _aretry(
        self, call: _Call, first: TransientLLMError, deliver: bool
    ) -> AsyncIterator[str | LLMResponse]:
        policy = call.retry
        delay = policy.delay(1, first)
        for m in call.managers:
            await m.aon_retry(1, policy.max_attempts, first, delay=delay, **call.kw)
        if delay:
            await asyncio.sleep(delay)
        retrying = AsyncRetrying(before_sleep=self._abefore_sleep(call), **self._retrying_kw(call))
        async for attempt in retrying:
            with attempt:
                n = attempt.retry_state.attempt_number + 1
                async for item in self._aattempt(call, n, deliver):
                    yield item

    async def _arun(self, call: _Call, deliver: bool) -> AsyncIterator[str | LLMResponse]:
        await self._astart(call)
        response: LLMResponse | None = None
        try:
            try:
                async for item in self._aattempt(call, 1, deliver):
                    if isinstance(item, LLMResponse):
                        response = item
                    else:
                        yield item
            except TransientLLMError as first:
                if call.retry.max_attempts <= 1:
                    raise
                async for item in self._aretry(call, first, deliver):
                    if isinstance(item, LLMResponse):
                        response = item
                    else:
                        yield item
            assert response is not None
        except CallbackAbort as abort:
            await self._aaborted(call, abort)
            raise
        except LLMError as error:
            await self._afailed(call, error)
            raise
        yield await self._aend(call, response)

    async def _agenerate(self, call: _Call) -> LLMResponse:
        """``_arun`` for a call that does not stream, as a plain coroutine (see _generate)."""
        await self._astart(call)
        try:
            try:
                call.attempts = 1
                try:
                    response = await self._acomplete(call.request)
                except HookwireError:
                    raise
                except Exception as exc:
                    raise self._unexpected(call, exc) from exc
            except TransientLLMError as first:
                if call.retry.max_attempts <= 1:
                    raise
                retried: LLMResponse | None = None
                async for item in self._aretry(call, first, False):
                    if isinstance(item, LLMResponse):
                        retried = item
                assert retried is not None
                response = retried
        except CallbackAbort as abort:
            await self._aaborted(call, abort)
            raise
        except LLMError as error:
            await self._afailed(call, error)
            raise
        return await self._aend(call, response)

    async def _aend(self, call: _Call, response: LLMResponse) -> LLMResponse:
        if response.cost is None or response.model is None or response.provider is None:
            response = self._finish(call, response)
        end_kw = self._end_kw(call)
        for m in call.managers:
            await m.aon_llm_end(response, **end_kw)
        return response

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, provider={self.provider!r})"


class _HandlerRaised(BaseException):
    """What a token handler raised, carried through a provider's ``_stream_into`` (a
    ``BaseException``, so no ``except Exception`` of the provider's takes it)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


def _drain(gen: Generator[Any, None, LLMResponse]) -> LLMResponse:
    """Run ``gen`` to its end (dropping what it yields) and return what it returns."""
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


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

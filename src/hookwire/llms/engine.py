"""``BaseLLM``, the call engine: events, retries and streaming shared by every client.

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
- a call stopped from outside (its task cancelled, ``KeyboardInterrupt``, a stream the caller
  closes) ends with ``on_llm_error(stop)`` (no ``on_error``: nothing failed), so that handlers
  close it and a budget gives its reservation back; the stop is raised on unchanged. A stream
  stopped once its request was sent ends instead with ``on_llm_end(cancelled=True)`` and the
  answer so far, its usage estimated (``Usage.estimated``) unless the server had sent it: the
  provider bills the prompt and what it streamed, so the ledger and budgets must see it;
- the cost, through ``hookwire.pricing`` when it is installed.

Events go to the client's own callbacks and to the ones a call is given (a runner passes its
manager); a handler present in both receives each event once.

The engine is written twice, sync and async, as mirrors named name for name (``_start`` /
``_astart``, ``_attempt`` / ``_aattempt``, ...); what they share is written once: the call's
state and its events' arguments (``hookwire.llms.calls``), and here, preparing a call,
assembling a streamed answer and its errors. One method has no mirror: ``_stream_attempt``
reads a streamed attempt through the provider's ``_stream_into`` (a plain loop calling back per
token), which has no async counterpart; ``_aattempt`` reads ``_astream`` for both cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import types
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, Retrying

from ..dispatch import CallbackManager, Callbacks
from ..drain import adrain, drain
from ..errors import (
    CallbackAbort,
    ConfigurationError,
    HookwireError,
    LLMError,
    StreamInterrupted,
    TransientLLMError,
)
from ..events import LLMResponse, utcnow
from ..ids import new_id
from .calls import Call, Events, Reading, tool_schemas
from .estimate import estimate_usage, prompt_bound, with_estimate
from .prices import price
from .protocol import LLMRequest, Messages, StreamEnd, normalize_messages
from .retry import RetryPolicy

__all__ = ["BaseLLM"]

#: What stops a call from outside: a cancelled task (a client that disconnected), Ctrl-C, or
#: the caller closing a stream it stopped reading. The call then ends with ``on_llm_error``
#: carrying it, as a failure does, and it is raised on unchanged.
_STOPS = (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit)

#: The ``response_metadata`` of a streamed answer whose provider said nothing more.
_NO_METADATA: Mapping[str, str] = types.MappingProxyType({})


class BaseLLM:
    """Events, retries, streaming and cost around a client's single attempts.

    Subclasses set ``provider`` and implement ``_complete``/``_stream`` (sync) and
    ``_acomplete``/``_astream`` (async). ``model`` is the default model; ``callbacks`` receive
    every call's events; ``max_retries`` (or a full ``retry=RetryPolicy(...)``) sets retries;
    other keywords (``temperature``, ``max_tokens``, ...) are default request parameters.
    """

    provider: str = "llm"
    #: ``server_address`` / ``server_port`` for ``on_llm_start``, when the client knows them.
    server: Mapping[str, Any] = types.MappingProxyType({})

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
        return await self._agenerate(call)

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
        yield from self._run(call, deliver=True)

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
        # Closed with this generator (a caller that stops reading): the call then ends with
        # its on_llm_error at once, not whenever the garbage collector finalises it.
        async with contextlib.aclosing(self._arun(call, deliver=True)) as run:
            async for item in run:
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
    ) -> Call:
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
        request = LLMRequest(msgs, name, merged, tool_schemas(tools) if tools else None)
        managers = self._managers(callbacks)
        # A streamed call sends its tokens to the managers that listen for them; stream=None
        # streams when there are some. (A list comprehension: faster than a generator here.)
        listening: tuple[CallbackManager, ...] = ()
        if stream is not False:
            listening = tuple([m for m in managers if m.listens("on_llm_new_token")])
            if stream is None:
                stream = bool(listening)
        kw = {"run_id": new_id(), "model": name, "provider": self.provider}
        return Call(request, managers, stream, kw, retry or self.retry, listening, self.server)

    def _finish(self, call: Call, response: LLMResponse) -> LLMResponse:
        if response.usage.estimated:
            # No usage came (and the client made no estimate of its own): an upper bound from
            # what was sent and received, never 0.
            request = call.request
            response = with_estimate(
                response, request.model, self.provider, request.messages, request.tools
            )
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
            response_metadata=response.response_metadata,
        )

    # -- stream assembly (shared) -------------------------------------------------------------

    def _assemble(
        self, call: Call, parts: list[str], end: StreamEnd | None, attempt: int
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
        model = end.model or call.request.model
        provider = self.provider
        if usage is None:
            # The server sent no usage chunk (stream_options unsupported): unknown, estimated
            # from what was sent and what came.
            request = call.request
            usage = estimate_usage(
                prompt_bound(request.messages, request.tools), text, end.tool_calls
            )
        # Priced here, so _finish finds the record complete and need not copy it. Positional
        # (content, usage, model, created_at, finish_reason, tool_calls, provider, id, cost,
        # currency, response_metadata): keywords to a class cost a dict per call.
        return LLMResponse(
            text,
            usage,
            model,
            utcnow(),
            end.finish_reason,
            end.tool_calls,
            provider,
            end.id,
            price(model, usage, provider),
            "USD",
            end.response_metadata or _NO_METADATA,
        )

    def _stopped(self, call: Call, stop: BaseException) -> Events:
        """What to send for a call stopped from outside (see the module's docstring)."""
        reading = call.reading
        if reading is None or not call.t0:
            return call.stopped(stop)
        text = "".join(reading.parts)
        end = reading.end
        request = call.request
        tool_calls = end.tool_calls if end is not None else ()
        usage = end.usage if end is not None else None
        if usage is None:
            usage = estimate_usage(prompt_bound(request.messages, request.tools), text, tool_calls)
        model = (end.model if end is not None else None) or request.model
        partial = LLMResponse(
            content=text,
            usage=usage,
            model=model,
            finish_reason=None,  # the model did not finish: nothing is made up
            tool_calls=tool_calls,
            provider=self.provider,
            id=end.id if end is not None else None,
            cost=price(model, usage, self.provider),
            response_metadata=(end.response_metadata if end is not None else None) or {},
        )
        kw = call.end_kw(partial.response_metadata)
        return [("on_llm_end", (partial,), {**kw, "cancelled": True})]

    def _unexpected(self, call: Call, exc: BaseException) -> LLMError:
        return LLMError(
            f"{type(self).__name__} failed unexpectedly: {type(exc).__name__}: {exc} "
            "(a bug in the client; please report it)",
            provider=self.provider,
            model=call.request.model,
        )

    def _cut(self, call: Call, error: TransientLLMError, parts: list[str]) -> TransientLLMError:
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

    @staticmethod
    def _emit(call: Call, events: Events) -> None:
        for m in call.managers:
            for hook, args, kw in events:
                getattr(m, hook)(*args, **kw)

    def _start(self, call: Call) -> None:
        try:
            for m, prompt, kw in call.start_calls():
                m.on_llm_start(prompt, **kw)
        except CallbackAbort as abort:
            self._emit(call, call.aborted(abort))
            raise
        except _STOPS as stop:
            self._emit(call, call.stopped(stop))
            raise
        call.t0 = time.perf_counter()

    def _complete_attempt(self, call: Call, n: int) -> LLMResponse:
        """One attempt of a call that does not stream."""
        call.attempts = n
        try:
            return self._complete(call.request)
        except HookwireError:
            raise
        except Exception as exc:
            raise self._unexpected(call, exc) from exc

    def _stream_attempt(self, call: Call, n: int) -> LLMResponse:
        """One streamed attempt whose tokens are not delivered to the caller, as a plain call:
        the provider's ``_stream_into`` calls back per token, which dispatches it inline (the
        same events, keywords and errors as ``_attempt``, without generators per token)."""
        call.attempts = n
        reading = Reading(call)
        managers = call.token_managers
        run_id, model, provider = call.kw["run_id"], call.kw["model"], call.kw["provider"]

        def on_token(piece: str) -> None:
            index = reading.take(piece)
            try:
                for m in managers:
                    m.on_llm_new_token(
                        piece, run_id=run_id, model=model, provider=provider, attempt=n, index=index
                    )
            except BaseException as exc:
                # Carried past the provider's own error handling (which would take a
                # handler's ValueError for the SDK's) and raised again below, unchanged.
                raise _HandlerRaised(exc) from None

        raised: BaseException | None = None
        try:
            try:
                reading.end = self._stream_into(call.request, on_token)
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
            raise self._cut(call, error, reading.parts) from error
        return self._assemble(call, reading.parts, reading.end, n)

    def _attempt(self, call: Call, n: int, deliver: bool) -> Iterator[str | LLMResponse]:
        """One attempt: yields the new text (when ``deliver``), then the response."""
        if not call.stream:
            yield self._complete_attempt(call, n)
            return
        if not deliver:
            yield self._stream_attempt(call, n)
            return
        call.attempts = n
        reading = Reading(call)
        managers = call.token_managers
        run_id, model, provider = call.kw["run_id"], call.kw["model"], call.kw["provider"]
        pieces = iter(self._stream(call.request))
        try:
            while True:
                # Only the provider's own failures are wrapped: a handler that asks to raise
                # (raise_error=True) has its exception reach the caller unchanged.
                piece: Any  # a token (str) or the StreamEnd: Reading.take tells
                try:
                    piece = next(pieces)
                except StopIteration:
                    break
                except HookwireError:
                    raise
                except Exception as exc:
                    raise self._unexpected(call, exc) from exc
                index = reading.take(piece)
                if index is None:
                    continue
                for m in managers:
                    m.on_llm_new_token(
                        piece, run_id=run_id, model=model, provider=provider, attempt=n, index=index
                    )
                new = reading.new_text(piece)
                if new is not None:
                    yield new
        except TransientLLMError as error:
            raise self._cut(call, error, reading.parts) from error
        yield self._assemble(call, reading.parts, reading.end, n)

    def _retry(
        self, call: Call, first: TransientLLMError, deliver: bool
    ) -> Iterator[str | LLMResponse]:
        """Attempts 2.. after a first transient failure, on tenacity.

        The first attempt runs without tenacity, so a call that succeeds at once pays nothing
        for retries; tenacity's attempt numbers are therefore one behind the call's.
        """
        delay = call.retry.delay(1, first)
        self._emit(call, call.retrying(1, first, delay))
        if delay:
            time.sleep(delay)

        def before_sleep(state: RetryCallState) -> None:
            self._emit(call, call.before_sleep(state))

        for attempt in Retrying(before_sleep=before_sleep, **call.retrying_kw()):
            with attempt:
                n = attempt.retry_state.attempt_number + 1
                yield from self._attempt(call, n, deliver)

    def _run(self, call: Call, deliver: bool) -> Iterator[str | LLMResponse]:
        """The whole call: yields the new text (when ``deliver``), then the response."""
        self._start(call)
        response: Any = None
        try:
            try:
                for response in self._attempt(call, 1, deliver):
                    if type(response) is str:
                        yield response
            except TransientLLMError as first:
                if call.retry.max_attempts <= 1:
                    raise
                for response in self._retry(call, first, deliver):
                    if type(response) is str:
                        yield response
        except CallbackAbort as abort:
            self._emit(call, call.aborted(abort))
            raise
        except LLMError as error:
            self._emit(call, call.failed(error))
            raise
        except _STOPS as stop:
            self._emit(call, self._stopped(call, stop))
            raise
        yield self._end(call, response)

    def _generate(self, call: Call) -> LLMResponse:
        """``_run`` for a call whose tokens are not delivered (``generate``)."""
        return drain(self._run(call, False), LLMResponse)

    def _end(self, call: Call, response: LLMResponse) -> LLMResponse:
        response = self._finish(call, response)
        kw = call.end_kw(response.response_metadata)
        for m in call.managers:
            m.on_llm_end(response, **kw)
        return response

    # -- async engine: the sync engine's mirror -----------------------------------------------

    @staticmethod
    async def _aemit(call: Call, events: Events) -> None:
        for m in call.managers:
            for hook, args, kw in events:
                await getattr(m, "a" + hook)(*args, **kw)

    async def _astart(self, call: Call) -> None:
        try:
            for m, prompt, kw in call.start_calls():
                await m.aon_llm_start(prompt, **kw)
        except CallbackAbort as abort:
            await self._aemit(call, call.aborted(abort))
            raise
        except _STOPS as stop:
            await self._aemit(call, call.stopped(stop))
            raise
        call.t0 = time.perf_counter()

    async def _acomplete_attempt(self, call: Call, n: int) -> LLMResponse:
        """One attempt of a call that does not stream (async)."""
        call.attempts = n
        try:
            return await self._acomplete(call.request)
        except HookwireError:
            raise
        except Exception as exc:
            raise self._unexpected(call, exc) from exc

    async def _aattempt(
        self, call: Call, n: int, deliver: bool
    ) -> AsyncIterator[str | LLMResponse]:
        """One attempt (async): yields the new text (when ``deliver``), then the response."""
        if not call.stream:
            yield await self._acomplete_attempt(call, n)
            return
        call.attempts = n
        reading = Reading(call)
        managers = call.token_managers
        run_id, model, provider = call.kw["run_id"], call.kw["model"], call.kw["provider"]
        pieces = self._astream(call.request).__aiter__()
        try:
            while True:
                piece: Any  # a token (str) or the StreamEnd: Reading.take tells
                try:
                    piece = await pieces.__anext__()
                except StopAsyncIteration:
                    break
                except HookwireError:
                    raise
                except Exception as exc:
                    raise self._unexpected(call, exc) from exc
                index = reading.take(piece)
                if index is None:
                    continue
                for m in managers:
                    await m.aon_llm_new_token(
                        piece, run_id=run_id, model=model, provider=provider, attempt=n, index=index
                    )
                new = reading.new_text(piece) if deliver else None
                if new is not None:
                    yield new
        except TransientLLMError as error:
            raise self._cut(call, error, reading.parts) from error
        yield self._assemble(call, reading.parts, reading.end, n)

    async def _aretry(
        self, call: Call, first: TransientLLMError, deliver: bool
    ) -> AsyncIterator[str | LLMResponse]:
        """``_retry`` (async): yields the new text, then the response."""
        delay = call.retry.delay(1, first)
        await self._aemit(call, call.retrying(1, first, delay))
        if delay:
            await asyncio.sleep(delay)

        async def before_sleep(state: RetryCallState) -> None:
            await self._aemit(call, call.before_sleep(state))

        async for attempt in AsyncRetrying(before_sleep=before_sleep, **call.retrying_kw()):
            with attempt:
                n = attempt.retry_state.attempt_number + 1
                async for item in self._aattempt(call, n, deliver):
                    yield item

    async def _arun(self, call: Call, deliver: bool) -> AsyncGenerator[str | LLMResponse, None]:
        """``_run`` (async): yields the new text (when ``deliver``), then the response."""
        await self._astart(call)
        response: Any = None
        try:
            try:
                async for response in self._aattempt(call, 1, deliver):
                    if type(response) is str:
                        yield response
            except TransientLLMError as first:
                if call.retry.max_attempts <= 1:
                    raise
                async for response in self._aretry(call, first, deliver):
                    if type(response) is str:
                        yield response
        except CallbackAbort as abort:
            await self._aemit(call, call.aborted(abort))
            raise
        except LLMError as error:
            await self._aemit(call, call.failed(error))
            raise
        except _STOPS as stop:
            await self._aemit(call, self._stopped(call, stop))
            raise
        yield await self._aend(call, response)

    async def _agenerate(self, call: Call) -> LLMResponse:
        """``_generate`` (async)."""
        return await adrain(self._arun(call, False), LLMResponse)

    async def _aend(self, call: Call, response: LLMResponse) -> LLMResponse:
        response = self._finish(call, response)
        kw = call.end_kw(response.response_metadata)
        for m in call.managers:
            await m.aon_llm_end(response, **kw)
        return response

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, provider={self.provider!r})"


class _HandlerRaised(BaseException):
    """What a token handler raised, carried through a provider's ``_stream_into`` (a
    ``BaseException``, so no ``except Exception`` of the provider's takes it)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

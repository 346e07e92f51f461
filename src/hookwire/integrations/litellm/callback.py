"""``HookwireLogger``: a LiteLLM ``CustomLogger`` that reports LiteLLM's completions to
hookwire handlers.

How LiteLLM calls a ``CustomLogger`` (read from LiteLLM's ``utils.client`` wrappers and its
``Logging`` object), and what each call becomes here:

- ``async_pre_call_deployment_hook(kwargs, call_type)``: awaited by ``acompletion`` (and the
  Router's async calls) before the request is built, for every logger in
  ``litellm.callbacks``, with no ``try`` around it: the one hook of LiteLLM's SDK (not only
  its proxy) whose exception stops the call. It emits ``on_llm_start``, so a ``Budget`` (or
  any handler raising ``CallbackAbort``) refuses the call before it is sent.
- ``log_pre_api_call(model, messages, kwargs)``: called by sync and async calls just before
  the HTTP request, inside a ``try`` that logs and swallows exceptions. It emits the start of
  a sync ``completion``: LiteLLM's sync path has no hook that can stop a call, so a refusal
  there is reported (``on_budget_exceeded``, one warning) and the call still goes out.
- ``log_success_event`` / ``async_log_success_event``: once per call, after it returned (for
  a stream, once it was read to its end, with the assembled response), from LiteLLM's
  background thread or task: ``on_llm_end``. An async call gets both; it is reported once.
- ``log_failure_event`` / ``async_log_failure_event``: ``on_llm_error`` then
  ``on_error(stage="llm")``.

Ends come from another thread or task than the call, so each call's context (its hookwire
parent run, trace and request context) is taken at its start and given to its end events.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from ...context import check_request_context, hook_context
from ...dispatch import CallbackManager, Callbacks
from ...errors import BudgetExceeded, CallbackAbort
from ...frozen import freeze
from ...ids import new_id
from .._common import FailureLog, to_hookwire_error
from .convert import invocation_params, provider_name, response_of

__all__ = ["HookwireLogger"]

logger = logging.getLogger("hookwire")

#: Failures of the bridge itself; LiteLLM's call always goes on.
failures = FailureLog("the LiteLLM bridge", "the call goes on unreported")

#: LiteLLM's call types that are chat completions (``CallTypes`` values).
_COMPLETIONS = frozenset({"completion", "acompletion"})

#: How many calls may be in flight (started, not ended) before the oldest are forgotten: a
#: call LiteLLM never reports the end of must not grow the table forever.
_MAX_OPEN = 10_000


class _Call:
    """One LiteLLM call being reported: its keywords (run id, context) and whether it ended."""

    __slots__ = ("ended", "kw", "model", "provider", "t0")

    def __init__(self, kw: dict[str, Any], model: str | None, provider: str | None) -> None:
        self.kw = kw
        self.model = model
        self.provider = provider
        self.ended = False
        self.t0 = time.perf_counter()


def _call_type(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def _model_and_provider(model: Any, params: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The model as its provider names it (``openai/gpt-4o`` is ``gpt-4o`` at ``openai``)."""
    name = str(model) if model else None
    provider = params.get("custom_llm_provider")
    if name and not provider:
        try:
            import litellm

            name, provider, _, _ = litellm.get_llm_provider(
                model=name, api_base=params.get("api_base")
            )
        except Exception:
            provider = None
    elif name and provider and name.startswith(f"{provider}/"):
        name = name[len(provider) + 1 :]
    return name, provider_name(provider)


class HookwireLogger(CustomLogger):
    """Reports LiteLLM's ``completion`` / ``acompletion`` calls (streamed or not) to hookwire
    handlers: add it to ``litellm.callbacks``.

    ``callbacks``: the hookwire handlers (a list or a ``CallbackManager``). ``provider``: the
    provider name events carry, instead of the one LiteLLM routes to (``openai``,
    ``anthropic``, ...). ``**context``: request context for every event (``user_id``,
    ``org_id``, ...), added to what ``hookwire.trace`` / ``hookwire.request_context`` set
    around the call.
    """

    def __init__(
        self, callbacks: Callbacks = None, *, provider: str | None = None, **context: Any
    ) -> None:
        super().__init__()
        #: This logger's own id. LiteLLM keeps one logger per class and public attributes in
        #: its lists (it drops a "duplicate"): the id keeps two loggers with different
        #: handlers apart.
        self.logger_id = new_id()
        self.manager = CallbackManager.ensure(callbacks)
        self.provider = provider
        self.context = check_request_context(context)
        self._calls: dict[str, _Call] = {}
        self._lock = threading.Lock()
        self._warned_sync_refusal = False

    # -- the start -------------------------------------------------------------------------

    def _begin(self, call_id: str, model: Any, params: Mapping[str, Any]) -> tuple[_Call, Any]:
        """A call's record and its start event's payload (``kw`` holds its keywords)."""
        name, provider = _model_and_provider(model, params)
        provider = self.provider or provider
        kw: dict[str, Any] = {**hook_context(), "run_id": new_id()}
        if self.context:
            kw.update(self.context)
        if name:
            kw["model"] = name
        if provider:
            kw["provider"] = provider
        call = _Call(kw, name, provider)
        with self._lock:
            if len(self._calls) >= _MAX_OPEN:
                del self._calls[next(iter(self._calls))]
            self._calls[call_id] = call
        # Read-only copies (LiteLLM sends these very messages after the event): a handler
        # cannot change the request.
        return call, freeze(params.get("messages"))

    def _start_kw(self, call: _Call, params: Mapping[str, Any]) -> dict[str, Any]:
        optional = params.get("optional_params")
        source = optional if isinstance(optional, Mapping) else params
        return {
            **call.kw,
            "invocation_params": freeze(invocation_params(call.model, source)),
            "stream": bool(params.get("stream") or source.get("stream")),
        }

    def _aborted(
        self, call: _Call, abort: CallbackAbort
    ) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        call.ended = True
        events: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
            ("on_llm_error", (abort,), {**call.kw, "attempts": 0})
        ]
        if isinstance(abort, BudgetExceeded):
            events.append(("on_budget_exceeded", (abort,), call.kw))
        events.append(("on_error", (abort,), {**call.kw, "stage": "budget"}))
        return events

    async def async_pre_call_deployment_hook(
        self, kwargs: dict[str, Any], call_type: Any
    ) -> dict[str, Any] | None:
        """``acompletion`` is about to be sent: ``on_llm_start``; a ``CallbackAbort`` from a
        handler (a budget) is raised into LiteLLM, which stops the call."""
        call_id = kwargs.get("litellm_call_id")
        if _call_type(call_type) not in _COMPLETIONS or not call_id:
            return None
        try:
            call, payload = self._begin(call_id, kwargs.get("model"), kwargs)
            kw = self._start_kw(call, kwargs)
        except Exception as exc:
            failures("a call's start", exc)
            return None
        try:
            await self.manager.aon_llm_start(payload, **kw)
        except CallbackAbort as abort:
            for hook, args, ekw in self._aborted(call, abort):
                await getattr(self.manager, "a" + hook)(*args, **ekw)
            raise
        return None

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: dict[str, Any]) -> None:
        """A sync ``completion`` is about to be sent: ``on_llm_start`` (an async call had its
        start already)."""
        call_id = kwargs.get("litellm_call_id")
        if not call_id or _call_type(kwargs.get("call_type")) not in _COMPLETIONS:
            return
        with self._lock:
            if call_id in self._calls:
                return
        try:
            call, _ = self._begin(call_id, kwargs.get("model") or model, kwargs)
            kw = self._start_kw(call, kwargs)
        except Exception as exc:
            failures("a call's start", exc)
            return
        try:
            self.manager.on_llm_start(freeze(messages), **kw)
        except CallbackAbort as abort:
            # LiteLLM would log and swallow it, and send the call anyway: say so once.
            if not self._warned_sync_refusal:
                self._warned_sync_refusal = True
                logger.warning(
                    "hookwire: a handler refused a sync litellm.completion() call (%s), but "
                    "LiteLLM's sync path cannot be stopped by a callback, so the call is sent "
                    "and reported; use litellm.acompletion() for budgets to refuse calls "
                    "before they are sent",
                    abort,
                )
            if isinstance(abort, BudgetExceeded):
                self.manager.on_budget_exceeded(abort, **call.kw)

    # -- the end ---------------------------------------------------------------------------

    def _ending(self, kwargs: Mapping[str, Any]) -> _Call | None:
        """The call ``kwargs`` ends (once: ``None`` when it was reported already)."""
        call_id = kwargs.get("litellm_call_id")
        if _call_type(kwargs.get("call_type")) not in _COMPLETIONS:
            return None
        with self._lock:
            call = self._calls.pop(call_id, None) if call_id else None
            if call is None:
                # Not seen starting (the logger was added mid-call): reported from here.
                name, provider = _model_and_provider(kwargs.get("model"), kwargs)
                provider = self.provider or provider
                kw = {**hook_context(), "run_id": new_id(), **self.context}
                if name:
                    kw["model"] = name
                if provider:
                    kw["provider"] = provider
                call = _Call(kw, name, provider)
            elif call.ended:
                return None
            call.ended = True
        return call

    @staticmethod
    def _latency(call: _Call, start: Any, end: Any) -> float:
        if isinstance(start, datetime) and isinstance(end, datetime):
            return (end - start).total_seconds() * 1000.0
        return (time.perf_counter() - call.t0) * 1000.0

    def _success(
        self, kwargs: Mapping[str, Any], response_obj: Any, start: Any, end: Any
    ) -> tuple[Any, dict[str, Any]] | None:
        call = self._ending(kwargs)
        if call is None:
            return None
        try:
            response = response_of(
                response_obj, call.model, call.provider, kwargs.get("response_cost")
            )
            kw = {
                **call.kw,
                "latency_ms": self._latency(call, start, end),
                "stream": bool(kwargs.get("stream")),
            }
            first = kwargs.get("completion_start_time")
            if kw["stream"] and isinstance(first, datetime) and isinstance(start, datetime):
                kw["ttft_ms"] = (first - start).total_seconds() * 1000.0
        except Exception as exc:
            failures("a call's end", exc)
            return None
        return response, kw

    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """A call returned (a stream: was read to its end): ``on_llm_end``."""
        ended = self._success(kwargs, response_obj, start_time, end_time)
        if ended is not None:
            self.manager.on_llm_end(ended[0], **ended[1])

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """``log_success_event`` for async calls."""
        ended = self._success(kwargs, response_obj, start_time, end_time)
        if ended is not None:
            await self.manager.aon_llm_end(ended[0], **ended[1])

    def _failure(self, kwargs: Mapping[str, Any], start: Any, end: Any) -> tuple[Any, ...] | None:
        call = self._ending(kwargs)
        if call is None:
            return None
        exc = kwargs.get("exception")
        if not isinstance(exc, BaseException):
            exc = RuntimeError(str(exc or "LiteLLM reported a failure without an exception"))
        error = to_hookwire_error(exc, provider=call.provider, model=call.model)
        kw = {**call.kw, "latency_ms": self._latency(call, start, end)}
        return error, kw, {**call.kw, "stage": "llm"}

    def log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """A call failed: ``on_llm_error`` then ``on_error``."""
        failed = self._failure(kwargs, start_time, end_time)
        if failed is not None:
            error, kw, ekw = failed
            self.manager.on_llm_error(error, **kw)
            self.manager.on_error(error, **ekw)

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """``log_failure_event`` for async calls."""
        failed = self._failure(kwargs, start_time, end_time)
        if failed is not None:
            error, kw, ekw = failed
            await self.manager.aon_llm_error(error, **kw)
            await self.manager.aon_error(error, **ekw)

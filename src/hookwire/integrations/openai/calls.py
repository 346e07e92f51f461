"""One reported call, from the request to its end: what its events say. Sync and async calls
share it; they only send what it lists (``emit`` / ``aemit``).

The SDKs made by the same generator as openai's (Anthropic's) are reported the same way: an
``SDK`` record says what differs (the endpoints, stream classes and errors)."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import openai

from ...dispatch import CallbackManager
from ...errors import BudgetExceeded, CallbackAbort
from ...events import EmbeddingResponse, LLMResponse, Usage
from ...frozen import freeze
from ...ids import new_id
from ...llms.estimate import prompt_bound, with_estimate
from ...llms.openai_wire import map_openai_error
from ...llms.prices import price
from .._common import FailureLog
from .endpoints import ENDPOINTS, Endpoint, Reader

__all__ = ["OPENAI", "SDK", "Call", "Events", "Instrumentation", "aemit", "emit", "failures"]

_perf = time.perf_counter

#: Failures of the instrumentation itself; the app's call always goes on.
failures = FailureLog("the openai instrumentation", "the call goes on unreported")

#: Events as a call lists them: a hook, its arguments and keywords.
Events = list[tuple[str, tuple[Any, ...], dict[str, Any]]]
_NONE: Events = []


def emit(manager: CallbackManager, events: Events) -> None:
    """Send ``events`` (sync dispatch)."""
    for hook, args, kw in events:
        getattr(manager, hook)(*args, **kw)


async def aemit(manager: CallbackManager, events: Events) -> None:
    """Send ``events`` (async dispatch)."""
    for hook, args, kw in events:
        await getattr(manager, "a" + hook)(*args, **kw)


#: An endpoint's name -> the ``api_type`` keyword of its start event (``openai.api.type``).
_API_TYPES: Mapping[str, str] = {"chat": "chat_completions", "responses": "responses"}


def _attempt_error(exc: BaseException | None, response: Any) -> BaseException:
    """The SDK's exception for a failed attempt: a transport failure, or an HTTP error
    ``response`` (its body is left unread: the SDK closes it before retrying)."""
    if exc is None:
        return openai.APIStatusError(f"HTTP {response.status_code}", response=response, body=None)
    if isinstance(exc, openai.OpenAIError):
        return exc
    module = sys.modules.get(type(exc).__module__.partition(".")[0])
    timeout = getattr(module, "TimeoutException", None)
    request = getattr(exc, "request", None)
    try:
        if timeout is not None and isinstance(exc, timeout):
            return openai.APITimeoutError(request=request)  # type: ignore[arg-type]
        return openai.APIConnectionError(request=request)  # type: ignore[arg-type]
    except Exception:
        return exc


@dataclass(frozen=True, slots=True)
class SDK:
    """What differs between the SDKs the instrumentation wraps: the reported ``endpoints`` (by
    the path the SDK posts to), its ``streams`` (``Stream`` and ``AsyncStream`` classes), how
    one of its exceptions becomes a ``hookwire.errors`` one (``map_error(exc, provider=...,
    model=...)``), and the exception of an attempt that failed (``attempt_error(exc,
    response)``: a transport failure, or an HTTP error response whose body is left unread)."""

    endpoints: Mapping[str, Endpoint]
    streams: tuple[type, ...]
    map_error: Callable[..., BaseException]
    attempt_error: Callable[[BaseException | None, Any], BaseException]


#: The ``openai`` SDK.
OPENAI = SDK(ENDPOINTS, (openai.Stream, openai.AsyncStream), map_openai_error, _attempt_error)


@dataclass(slots=True, eq=False)
class Instrumentation:
    """What an instrumented client reports to: its manager, provider and request context
    (shared by the clients ``with_options`` and ``copy`` derive from it)."""

    manager: CallbackManager
    provider: str
    context: dict[str, Any]
    #: ``server_address`` / ``server_port`` of the client's base URL, for ``on_llm_start``.
    server: Mapping[str, Any] = field(default_factory=dict)
    #: The SDK the client is of.
    sdk: SDK = field(default_factory=lambda: OPENAI)


class Call:
    """One call of a reported endpoint: its keywords, attempts and end (reported once)."""

    __slots__ = (
        "attempts",
        "body",
        "ended",
        "endpoint",
        "failed_at",
        "failure",
        "hide",
        "inst",
        "kw",
        "max_attempts",
        "model",
        "response",
        "stream",
        "t0",
    )

    def __init__(
        self,
        inst: Instrumentation,
        endpoint: Endpoint,
        body: Mapping[str, Any],
        max_attempts: int,
        hide: bool,
    ) -> None:
        self.inst = inst
        self.endpoint = endpoint
        self.body = body  # for an estimate of the usage, when the answer brings none
        model = body.get("model")
        self.model = str(model) if model else None
        self.stream = bool(body.get("stream"))
        kw: dict[str, Any] = {"run_id": new_id(), "provider": inst.provider}
        if self.model:
            kw["model"] = self.model
        if inst.context:
            kw.update(inst.context)
        self.kw = kw
        self.max_attempts = max_attempts
        self.hide = hide
        self.t0 = 0.0
        self.ended = False
        self.attempts = 0
        #: The last attempt's failure (an exception, or an HTTP error response) and its time.
        self.failure: tuple[BaseException | None, Any] | None = None
        self.failed_at = 0.0
        #: The HTTP response of the last attempt.
        self.response: Any = None

    @property
    def hooks(self) -> tuple[str, str, str]:
        """The call's start, end and error hooks."""
        if self.endpoint.embedding:
            return "on_embedding_start", "on_embedding_end", "on_embedding_error"
        return "on_llm_start", "on_llm_end", "on_llm_error"

    def start_args(self, body: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The start event's payload and keywords. The payload holds the request body's own
        messages (the SDK sends that body after the event): handlers get read-only copies,
        so they cannot change the request."""
        payload, params = self.endpoint.start(body)
        kw = {**self.kw, "invocation_params": freeze(params), **self.inst.server}
        if not self.endpoint.embedding:
            kw["stream"] = self.stream
            kw["api_type"] = _API_TYPES.get(self.endpoint.name, self.endpoint.name)
        return freeze(payload), kw

    def reader(self) -> Reader:
        """A reader of this call's answer."""
        request = getattr(self.response, "request", None)
        return self.endpoint.reader(self.model, self.inst.provider, self.hide, request)

    def end_kw(self, **extra: Any) -> dict[str, Any]:
        kw = {
            **self.kw,
            "latency_ms": (_perf() - self.t0) * 1000.0,
            "attempts": max(self.attempts, 1),
            **extra,
        }
        if not self.endpoint.embedding:
            kw["stream"] = self.stream
        return kw

    def attempt(self, now: float) -> Events:
        """An attempt is sent: the ``on_retry`` of the one before it, if it failed."""
        self.attempts += 1
        failure, self.failure = self.failure, None
        if self.attempts == 1 or failure is None:
            return _NONE
        sdk = self.inst.sdk
        try:
            error = sdk.map_error(
                sdk.attempt_error(*failure), provider=self.inst.provider, model=self.model
            )
        except Exception as exc:
            failures("a retry", exc)
            return _NONE
        kw = {**self.kw, "delay": max(now - self.failed_at, 0.0)}
        return [("on_retry", (self.attempts - 1, self.max_attempts, error), kw)]

    def attempt_failed(self, exc: BaseException | None, response: Any) -> None:
        """The attempt being sent failed (the SDK may send another)."""
        self.failure = (exc, response)
        self.failed_at = _perf()

    def aborted(self, abort: CallbackAbort) -> Events:
        """A handler refused the call at its start (a budget): what to send."""
        _, _, error_hook = self.hooks
        events: Events = [(error_hook, (abort,), {**self.kw, "attempts": 0})]
        if isinstance(abort, BudgetExceeded):
            events.append(("on_budget_exceeded", (abort,), self.kw))
        events.append(("on_error", (abort,), {**self.kw, "stage": "budget"}))
        return events

    def failed(self, exc: BaseException) -> Events:
        """The SDK raised ``exc``: what to send (nothing once the call has ended)."""
        if self.ended:
            return _NONE
        self.ended = True
        err = exc
        if not isinstance(exc, CallbackAbort) and isinstance(exc, Exception):
            err = self.inst.sdk.map_error(exc, provider=self.inst.provider, model=self.model)
            if err is not exc:
                err.__cause__ = exc
        _, _, error_hook = self.hooks
        stage = "embedding" if self.endpoint.embedding else "llm"
        return [
            (error_hook, (err,), self.end_kw()),
            ("on_error", (err,), {"stage": stage, **self.kw}),
        ]

    def finished(self, response: LLMResponse | EmbeddingResponse, **extra: Any) -> Events:
        """The answer: what to send (once); its ``response_metadata`` as keywords."""
        if self.ended:
            return _NONE
        self.ended = True
        _, end_hook, _ = self.hooks
        if type(response) is LLMResponse and response.usage.estimated:
            body = self.body
            prompt = body.get(self.endpoint.prompt_key)
            instructions = body.get("instructions")  # the Responses API's system prompt
            if instructions:
                prompt = [instructions, prompt]
            response = with_estimate(
                response, self.model, self.inst.provider, prompt, body.get("tools")
            )
        elif type(response) is EmbeddingResponse and response.usage.estimated:
            # No usage in the answer: the input's bound, priced at it, never 0 tokens.
            usage = Usage(prompt_bound(self.body.get(self.endpoint.prompt_key)), 0, estimated=True)
            model = response.model or self.model
            provider = response.provider or self.inst.provider
            response = dataclasses.replace(
                response, usage=usage, cost=price(model, usage, provider) if model else None
            )
        if type(response) is LLMResponse and response.response_metadata:
            extra = {**response.response_metadata, **extra}
        return [(end_hook, (response,), self.end_kw(**extra))]

    def completed(self, body: bytes) -> Events:
        """A whole JSON answer: what to send. A failure to read it is logged, and the call
        goes on unreported."""
        reader = self.reader()
        try:
            response = reader.body(body)
        except Exception as exc:
            failures(self.endpoint.name, exc)
            return _NONE
        return self.finished(response)

"""``Call``: one logical LLM call (all its attempts) as the engine carries it, and the
arguments of its events, which the sync and async engines (``hookwire.llms.engine``) share.

Nothing here sends an event or does I/O: the engines send what these say.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tenacity import RetryCallState, retry_if_exception, stop_after_attempt

from ..dispatch import CallbackManager
from ..errors import BudgetExceeded, CallbackAbort, ConfigurationError
from ..frozen import freeze
from .protocol import LLMRequest, StreamEnd
from .retry import RetryPolicy

__all__ = ["Call", "Events", "Reading", "tool_schemas"]

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
    "service_tier",
)

_perf = time.perf_counter

#: Events as a call lists them for its rarer outcomes (abort, failure, retry): a hook, its
#: arguments and keywords, for every manager of the call.
Events = list[tuple[str, tuple[Any, ...], dict[str, Any]]]


@dataclass(slots=True, eq=False)
class Call:
    """The state of one logical call (all its attempts), and its events' arguments.

    ``kw`` (``run_id``, ``model``, ``provider``) is what every event of the call carries;
    ``token_managers`` are the managers that listen for tokens (only a streamed call has
    any); ``delivered`` counts the characters already yielded to a streaming caller, across
    retries.
    """

    request: LLMRequest
    managers: tuple[CallbackManager, ...]
    stream: bool
    kw: dict[str, Any]
    retry: RetryPolicy
    token_managers: tuple[CallbackManager, ...]
    server: Mapping[str, Any] = field(default_factory=dict)
    attempts: int = field(default=0, init=False)
    t0: float = field(default=0.0, init=False)
    ttft: float | None = field(default=None, init=False)
    delivered: int = field(default=0, init=False)
    #: The streamed attempt under way (its text so far), if any: what a stopped stream had
    #: been sent, which the server bills.
    reading: Reading | None = field(default=None, init=False)

    def elapsed_ms(self) -> float:
        """Milliseconds since the call started (its ``on_llm_start`` went out)."""
        return (_perf() - self.t0) * 1000.0

    def start_calls(self) -> Iterator[tuple[CallbackManager, list[Any], dict[str, Any]]]:
        """Each manager that listens to ``on_llm_start``, with the prompt and keywords to
        send it. Prompt and parameters are read-only copies (``hookwire.frozen``), made once
        per call and only if some manager listens: a handler may keep them, and cannot change
        the request through them."""
        kw: dict[str, Any] | None = None
        prompt: list[Any] = []
        for m in self.managers:
            if m.listens("on_llm_start"):
                if kw is None:
                    prompt = freeze(self.request.messages)
                    kw = {
                        "invocation_params": freeze(self.invocation_params()),
                        "stream": self.stream,
                        **self.server,
                        **self.kw,
                    }
                yield m, prompt, kw

    def invocation_params(self) -> dict[str, Any]:
        """The model, the request parameters the event contract names, and the tools' names."""
        request = self.request
        out: dict[str, Any] = {"model": request.model}
        params = request.params
        if params:
            for k in _PARAM_NAMES:
                if k in params:
                    out[k] = params[k]
        if request.tools:
            out["tools"] = [t["function"]["name"] for t in request.tools]
        return out

    def end_kw(self, response_metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The keywords of the call's ``on_llm_end`` / ``on_llm_error``; for an answer, its
        ``response_metadata`` too (the call's own keywords win over a name it repeats)."""
        kw = {
            **self.kw,
            "latency_ms": (_perf() - self.t0) * 1000.0,
            "attempts": self.attempts,
            "stream": self.stream,
        }
        if self.ttft is not None:
            kw["ttft_ms"] = self.ttft
        if response_metadata:
            for key, value in response_metadata.items():
                kw.setdefault(key, value)
        return kw

    def aborted(self, abort: CallbackAbort) -> Events:
        """A budget (or another ``CallbackAbort``) stopped the call: what to send."""
        kw = self.end_kw() if self.t0 else {**self.kw, "attempts": self.attempts}
        events: Events = [("on_llm_error", (abort,), kw)]
        if isinstance(abort, BudgetExceeded):
            events.append(("on_budget_exceeded", (abort,), self.kw))
        events.append(("on_error", (abort,), {"stage": "budget", **self.kw}))
        return events

    def stopped(self, stop: BaseException) -> Events:
        """The call was stopped from outside (cancelled, interrupted, or its stream closed by
        the caller): what to send, so handlers close it (a budget releases its reservation)."""
        kw = self.end_kw() if self.t0 else {**self.kw, "attempts": self.attempts}
        return [("on_llm_error", (stop,), kw)]

    def failed(self, error: BaseException) -> Events:
        """The call failed for good: what to send."""
        return [
            ("on_llm_error", (error,), self.end_kw()),
            ("on_error", (error,), {"stage": "llm", **self.kw}),
        ]

    def retrying(self, attempt: int, error: BaseException, delay: float) -> Events:
        """Attempt ``attempt`` failed with ``error``; the next starts after ``delay``."""
        kw = {"delay": delay, **self.kw}
        return [("on_retry", (attempt, self.retry.max_attempts, error), kw)]

    def before_sleep(self, state: RetryCallState) -> Events:
        """``retrying`` for tenacity's state before it sleeps."""
        error = state.outcome.exception() if state.outcome is not None else None
        assert error is not None  # tenacity only sleeps after a failed attempt
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        # Tenacity runs attempts 2..max_attempts (see retrying_kw), so its numbers are one
        # behind the call's.
        return self.retrying(state.attempt_number + 1, error, delay)

    def retrying_kw(self) -> dict[str, Any]:
        """Tenacity's arguments for attempts 2..max_attempts (the first runs without it, so a
        call that succeeds at once pays nothing for retries)."""
        policy = self.retry

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            return policy.delay(state.attempt_number + 1, error)

        return {
            "stop": stop_after_attempt(policy.max_attempts - 1),
            "wait": wait,
            "retry": retry_if_exception(RetryPolicy.should_retry),
            "reraise": True,
        }


class Reading:
    """One streamed attempt's text so far, and its ``StreamEnd`` once it came."""

    __slots__ = ("call", "end", "parts", "seen")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.parts: list[str] = []
        self.seen = 0
        self.end: StreamEnd | None = None
        call.reading = self

    def take(self, piece: str | StreamEnd) -> int | None:
        """Keep what the provider's stream gave: a token's index in the attempt (the time to
        the call's first token noted), or ``None`` for the ``StreamEnd`` or an empty piece."""
        if type(piece) is not str:
            self.end = piece  # type: ignore[assignment]
            return None
        if not piece:
            return None
        call = self.call
        if call.ttft is None:
            call.ttft = call.elapsed_ms()
        parts = self.parts
        parts.append(piece)
        return len(parts) - 1

    def new_text(self, piece: str) -> str | None:
        """What of ``piece`` the caller has not had yet: a retried stream starts again from
        the beginning, and only text past what the caller already has is yielded."""
        self.seen += len(piece)
        call = self.call
        if self.seen <= call.delivered:
            return None
        new = piece[len(piece) - (self.seen - call.delivered) :]
        call.delivered = self.seen
        return new


def tool_schemas(tools: Sequence[Any] | None) -> list[dict[str, Any]] | None:
    """OpenAI tool schemas for ``tools`` (``hookwire.tool`` tools or schemas already)."""
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

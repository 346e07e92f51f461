"""``OpenTelemetryCallback``: hookwire events as OpenTelemetry spans and metrics.

Spans and metrics follow the OpenTelemetry semantic conventions for generative AI (the names
and shapes are in ``hookwire.callbacks.otel_conventions``; docs/ecosystem.md lists them and
the deliberate differences):

- an LLM call is a ``CLIENT`` span named ``"{operation} {model}"`` (``chat gpt-4o``; the
  operation is ``chat`` for a list of messages, ``text_completion`` for a plain prompt) with
  the request (model, parameters that were set, ``gen_ai.request.stream`` only when streamed,
  ``gen_ai.output.type``, ``server.address`` / ``server.port``), the response (model, id,
  finish reason when the model gave one) and its own usage; retries are span events;
- a tool call is an ``INTERNAL`` span ``"execute_tool {name}"``; a run is an ``INTERNAL``
  span ``"invoke_agent {name}"`` when it is an agent's (``kind="agent"``/``"graph"``, or the
  run of the agent the request context names), else ``"invoke_workflow {name}"``. A run's
  summed usage is ``hookwire.usage.*``: ``gen_ai.usage.*`` is only on the calls' spans, so a
  backend summing a trace counts each call once. Runs and tools are the current span while
  open, so the app's own spans inside them nest under them;
- memory operations are events on the enclosing span (the conventions define no memory span);
- a hook declared with ``hookwire.events.declare_hook`` is an ``INTERNAL`` span named after its
  record from a start hook to an end hook (``HookSpec.starts_run`` / ``ends_run``), otherwise
  a span event ``hookwire.<record name>`` on the enclosing span; its arguments are
  ``hookwire.<argument>`` attributes (those in ``HookSpec.prompts`` / ``responses`` only with
  ``capture_content=True``), an exception among them sets ``error.type``;
- the ``gen_ai.client.token.usage``, ``gen_ai.client.operation.duration``,
  ``.time_to_first_chunk`` and ``.time_per_output_chunk`` histograms, with the bucket
  boundaries the conventions advise.

Spans nest as hookwire's runs do (the parent comes from ``parent_run_id``); a span without a
hookwire parent is a child of the application's current OpenTelemetry span, so hookwire's
traces sit inside the app's own. Prompts and answers are recorded only with
``capture_content=True`` (on the spans) or ``content_event=True`` (the
``gen_ai.client.inference.operation.details`` event), with their secrets redacted as FileLog
redacts them (``hookwire.redaction``). A failed span has ``error.type`` (the provider's error
code, else the exception's qualified name), an error status described by the error's message
and an ``exception`` event with ``exception.type`` and ``exception.message``; the message
always goes through the same redactor, so an API key a provider echoes never reaches the
tracing backend, and ``exception.stacktrace`` (redacted too) is added only with
``capture_content=True``. Needs the ``hookwire[otel]`` extra.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from .._lazy import missing_extra

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from opentelemetry.metrics import Histogram, MeterProvider, get_meter
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
except ModuleNotFoundError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_extra(exc, "OpenTelemetryCallback needs OpenTelemetry", "otel") from exc


from .. import __version__
from ..errors import ConfigurationError
from ..events import HookSpec, LLMResponse, Usage, hook_methods
from ..masking import Mask, masked_text, resolve_mask
from ..sampling import sample
from . import otel_conventions as c
from .base import BaseCallback, hook_signature
from .otel_conventions import (
    AGENT_NAME,
    CACHE_READ_TOKENS,
    CONVERSATION_ID,
    ERROR_TYPE,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
    FINISH_REASONS,
    INPUT_MESSAGES,
    INPUT_TOKENS,
    OPERATION,
    OUTPUT_MESSAGES,
    OUTPUT_TOKENS,
    PROVIDER,
    REASONING_TOKENS,
    REQUEST_MODEL,
    REQUEST_PARAMS,
    RESPONSE_ID,
    RESPONSE_MODEL,
    TOKEN_TYPE,
    TOOL_ARGS,
    TOOL_CALL_ID,
    TOOL_NAME,
    TOOL_RESULT,
    TOOL_TYPE,
    TTFC,
)

__all__ = [
    "DURATION_BUCKETS",
    "TOKEN_BUCKETS",
    "OpenTelemetryCallback",
]

#: Bucket boundaries the GenAI conventions advise for ``gen_ai.client.token.usage``.
TOKEN_BUCKETS: Final[tuple[float, ...]] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
#: Bucket boundaries (seconds) the conventions advise for ``gen_ai.client.operation.duration``.
DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip

#: Request context keys recorded as ``hookwire.<key>`` span attributes.
_CONTEXT_ATTRS: Final = (
    ("user_id", "hookwire.user_id"),
    ("user_id", c.USER_ID),
    ("conversation_id", c.SESSION_ID),
    ("org_id", "hookwire.org_id"),
    ("correlation_id", "hookwire.correlation_id"),
    ("request_id", "hookwire.request_id"),
)

_perf = time.perf_counter
# Read only where ``Usage`` has them (a failed getattr costs an exception on every call).
_CACHE_CREATION: Final = hasattr(Usage, "cache_creation_tokens")
_CLIENT = SpanKind.CLIENT
_INTERNAL = SpanKind.INTERNAL
_ABANDONED = "hookwire.abandoned"


_parts = c.message_parts
input_messages = c.input_messages
output_messages = c.output_messages


_error_type = c.error_type


class _Open:
    """An open span and what its end needs: the metric attributes and the children."""

    __slots__ = (
        "children",
        "is_run",
        "metric_attrs",
        "needs_provider",
        "parent",
        "prompt",
        "span",
        "start",
        "token",
    )

    def __init__(
        self,
        span: Span,
        metric_attrs: dict[str, Any] | None,
        is_run: bool,
        parent: _Open | None,
    ) -> None:
        self.span = span
        self.start = _perf()
        self.metric_attrs = metric_attrs
        self.is_run = is_run
        self.parent = parent
        self.children: list[str] | None = None
        # The context token of a span made current (runs and tools), to detach at its end.
        self.token: object | None = None
        # An agent span's gen_ai.provider.name comes from its first LLM call.
        self.needs_provider = False
        self.prompt: Any = None


class OpenTelemetryCallback(BaseCallback):
    """Send hookwire's events to OpenTelemetry as GenAI spans and metrics.

    ``tracer_provider`` / ``meter_provider``: the providers to use; by default the app's global
    ones (``opentelemetry.trace.set_tracer_provider``), so spans go wherever the app's other
    spans go. ``capture_content=True`` records prompts, answers, tool arguments and results
    (``gen_ai.input.messages``, ``gen_ai.output.messages``, ...); off by default, as the
    conventions ask, because they may hold personal data. ``content_event=True`` adds, on each
    LLM call's span, the opt-in ``gen_ai.client.inference.operation.details`` event with the
    call's attributes and its content (input and output messages). ``metrics=False`` turns the
    histograms off. ``current_spans=False`` keeps runs' and tools' spans from becoming the
    current span (then the app's spans inside them nest under the app's own).
    ``max_open_spans`` bounds how many spans may be open at once: beyond it the oldest is ended
    with ``error.type = "hookwire.abandoned"`` (an LLM call whose end never came), so a lost
    event can never grow memory without end.

    ``mask`` masks personal data in captured content and in error messages and statuses, after
    the secrets are redacted (``hookwire.masking``: a function, or ``True`` for ``mask_pii``;
    by default the process-wide one). ``sample_rate`` exports that fraction of traces, whole
    (``hookwire.sampling``; ``None``, the default, exports all); a trace with an error, a
    retry, a budget refusal or a call over ``keep_over_ms`` / ``keep_over_cost`` is exported
    whole all the same, its held spans with the times their events had.

    The handler runs inline (span bookkeeping is in-memory; exporting is the span processor's
    job, normally a ``BatchSpanProcessor`` with its own thread).
    """

    name = "OpenTelemetryCallback"

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        capture_content: bool = False,
        metrics: bool = True,
        max_open_spans: int = 10_000,
        content_event: bool = False,
        current_spans: bool = True,
        mask: Mask = None,
        sample_rate: float | None = None,
        keep_over_ms: float | None = None,
        keep_over_cost: Decimal | float | None = None,
    ) -> None:
        if max_open_spans <= 0:
            raise ConfigurationError(
                f"max_open_spans must be a positive number of spans, not {max_open_spans!r}"
            )
        self._tracer = otel_trace.get_tracer(
            c.TRACER_NAME, __version__, tracer_provider=tracer_provider
        )
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self.capture_content = capture_content
        self.content_event = content_event
        self.current_spans = current_spans
        self.max_open_spans = max_open_spans
        self._open: dict[str, _Open] = {}
        self._text = masked_text(mask)
        self._json = c.json_dumper(resolve_mask(mask))
        # Nanoseconds since the epoch while a held event is handed over: its spans start and
        # end when their events happened, not when the trace was found worth keeping.
        self._replay_time: int | None = None
        self._tokens: Histogram | None = None
        self._duration: Histogram | None = None
        self._ttfc: Histogram | None = None
        self._tpoc: Histogram | None = None
        if metrics:
            meter = get_meter("hookwire", __version__, meter_provider=meter_provider)
            self._tokens = meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            )
            self._duration = meter.create_histogram(
                "gen_ai.client.operation.duration",
                unit="s",
                description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )
            self._ttfc = meter.create_histogram(
                c.TTFC_METRIC,
                unit="s",
                description="Time to receive the first chunk of a streamed answer.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )
            self._tpoc = meter.create_histogram(
                c.TPOC_METRIC,
                unit="s",
                description="Time per output chunk after the first, of a streamed answer.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )

        self.sampler = sample(
            self, sample_rate, keep_over_ms=keep_over_ms, keep_over_cost=keep_over_cost
        )

    def _hookwire_replay(self, fn: Callable[..., Any], args: tuple[Any, ...], kw: Any) -> None:
        ts = kw.get("timestamp")
        self._replay_time = int(ts * 1e9) if isinstance(ts, (int, float)) else None
        try:
            fn(*args, **kw)
        finally:
            self._replay_time = None

    # -- bookkeeping ------------------------------------------------------------------------

    @property
    def open_spans(self) -> int:
        """How many spans are open now (LLM calls, tools and runs that have not ended)."""
        return len(self._open)

    def _start(
        self,
        name: str,
        kind: SpanKind,
        attrs: dict[str, Any],
        kw: Mapping[str, Any],
        metric_attrs: dict[str, Any] | None = None,
        is_run: bool = False,
        current: bool = False,
    ) -> _Open:
        parent_id = kw.get("parent_run_id")
        parent = self._open.get(parent_id) if parent_id is not None else None
        ctx = otel_trace.set_span_in_context(parent.span) if parent is not None else None
        for key, attr in _CONTEXT_ATTRS:
            value = kw.get(key)
            if value is not None:
                attrs[attr] = value
        span = self._tracer.start_span(name, ctx, kind, attrs, start_time=self._replay_time)
        entry = _Open(span, metric_attrs, is_run, parent)
        if current and self.current_spans:
            # The app's own spans inside a run or a tool nest under hookwire's span.
            entry.token = otel_context.attach(otel_trace.set_span_in_context(span))
        run_id = kw["run_id"]
        if len(self._open) >= self.max_open_spans:
            self._evict()
        self._open[run_id] = entry
        if parent is not None:
            if parent.children is None:
                parent.children = [run_id]
            else:
                parent.children.append(run_id)
        return entry

    def _evict(self) -> None:
        try:
            oldest = next(iter(self._open))
        except (StopIteration, RuntimeError):
            return
        self._abandon(oldest)

    def _abandon(self, run_id: str) -> None:
        entry = self._open.pop(run_id, None)
        if entry is None:
            return
        entry.span.set_attribute(ERROR_TYPE, _ABANDONED)
        entry.span.set_status(Status(StatusCode.ERROR, "hookwire saw no end event for this span"))
        self._finish(entry)

    def _finish(self, entry: _Open) -> None:
        """End ``entry``'s span after its children, and stop it being the current span."""
        self._end_children(entry)
        entry.span.end(self._replay_time)
        token = entry.token
        if token is not None:
            entry.token = None
            # Only where it was attached: an end event dispatched from another context (a
            # thread, another task) leaves the context it cannot reset alone.
            if otel_trace.get_current_span() is entry.span:
                otel_context.detach(token)  # type: ignore[arg-type]

    def _end_children(self, entry: _Open) -> None:
        if entry.children:
            for child in entry.children:
                if child in self._open:
                    self._abandon(child)

    def _fail(self, entry: _Open, error: Any, kw: Mapping[str, Any]) -> str:
        etype = _error_type(error)
        span = entry.span
        span.set_attribute(ERROR_TYPE, etype)
        # An error's message may quote what the app sent (a 401 that echoes the API key): the
        # backend gets it through the FileLog redactor, always; its traceback only with
        # capture_content, as it quotes source lines and every chained error's message.
        message = self._text(str(error))
        span.set_status(Status(StatusCode.ERROR, message))
        if isinstance(error, BaseException):
            attrs: dict[str, Any] = {
                EXCEPTION_TYPE: type(error).__name__,
                EXCEPTION_MESSAGE: message,
            }
            if self.capture_content:
                attrs[EXCEPTION_STACKTRACE] = self._text(
                    "".join(traceback.format_exception(type(error), error, error.__traceback__))
                )
            span.add_event("exception", attrs)
        return etype

    def _record_duration(self, entry: _Open, kw: Mapping[str, Any], etype: str | None) -> None:
        if self._duration is None or entry.metric_attrs is None:
            return
        latency = kw.get("latency_ms")
        seconds = latency / 1000.0 if latency is not None else _perf() - entry.start
        attrs = entry.metric_attrs
        if etype is not None:
            attrs = {**attrs, ERROR_TYPE: etype}
        self._duration.record(seconds, attrs)

    def _parent_span(self, kw: Mapping[str, Any]) -> Span:
        parent_id = kw.get("parent_run_id")
        entry = self._open.get(parent_id) if parent_id is not None else None
        if entry is None:
            entry = self._open.get(kw.get("run_id", ""))
        return entry.span if entry is not None else otel_trace.get_current_span()

    # -- LLM calls --------------------------------------------------------------------------

    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        """Open the LLM call's ``CLIENT`` span."""
        params = kwargs.get("invocation_params") or {}
        model = kwargs.get("model") or params.get("model")
        operation = "text_completion" if isinstance(prompt, str) else "chat"
        raw = kwargs.get("provider")
        provider = raw if raw in c.PROVIDER_NAMES else c.provider_name(raw)
        attrs: dict[str, Any] = {OPERATION: operation, PROVIDER: provider}
        if model:
            attrs[REQUEST_MODEL] = model
        address = kwargs.get("server_address")
        if address:
            attrs[c.SERVER_ADDRESS] = address
            port = kwargs.get("server_port")
            if port is not None:
                attrs[c.SERVER_PORT] = port
        # The metrics' attributes: a copy taken before the request parameters go in.
        metric_attrs = dict(attrs) if self._duration is not None else None
        for key, value in params.items():
            attr = REQUEST_PARAMS.get(key)
            if attr is not None:
                if value is not None:
                    if key == "stop" and isinstance(value, str):
                        value = (value,)
                    attrs[attr] = value
            elif key == "response_format":
                kind = c.output_type(value)
                if kind is not None:
                    attrs[c.OUTPUT_TYPE] = kind
            elif key == "service_tier" and value is not None:
                attrs[c.OPENAI_REQUEST_TIER] = value
            elif key == "tools" and self.capture_content:
                definitions = c.tool_definitions(value)
                if definitions:
                    attrs[c.TOOL_DEFINITIONS] = self._json(definitions)
        if provider == "openai" or provider == "azure.ai.openai":
            attrs[c.OPENAI_API_TYPE] = kwargs.get("api_type") or "chat_completions"
        conversation = kwargs.get("conversation_id")
        if conversation is not None:
            attrs[CONVERSATION_ID] = conversation
        # The conventions: "If and only if the request is streaming".
        if kwargs.get("stream"):
            attrs[c.REQUEST_STREAM] = True
        if self.capture_content:
            attrs[INPUT_MESSAGES] = input_messages(prompt, self._json)
        name = f"{operation} {model}" if model else operation
        entry = self._start(name, _CLIENT, attrs, kwargs, metric_attrs)
        if self.content_event:
            entry.prompt = prompt
        # An agent's span takes the provider of the first call made under it (required there).
        ancestor = entry.parent
        while ancestor is not None:
            if ancestor.needs_provider:
                ancestor.needs_provider = False
                ancestor.span.set_attribute(PROVIDER, provider)
            ancestor = ancestor.parent

    def on_llm_end(self, response: LLMResponse, **kwargs: Any) -> None:
        """Close the LLM call's span with the response's model, id, finish reason and usage."""
        entry = self._open.pop(kwargs.get("run_id", ""), None)
        if entry is None:
            return
        span = entry.span
        usage: Usage | None = getattr(response, "usage", None)
        attrs: dict[str, Any] = {}
        model = getattr(response, "model", None)
        if model:
            attrs[RESPONSE_MODEL] = model
            if entry.metric_attrs is not None:
                entry.metric_attrs[RESPONSE_MODEL] = model
        rid = getattr(response, "id", None)
        if rid:
            attrs[RESPONSE_ID] = rid
        reason = getattr(response, "finish_reason", None)
        if reason:
            attrs[FINISH_REASONS] = (reason,)
        if usage is not None and not usage.estimated:  # no usage came: none, never 0
            attrs[INPUT_TOKENS] = usage.prompt_tokens
            attrs[OUTPUT_TOKENS] = usage.completion_tokens
            if usage.cached_tokens is not None:
                attrs[CACHE_READ_TOKENS] = usage.cached_tokens
            if _CACHE_CREATION:
                created = getattr(usage, "cache_creation_tokens", None)
                if created is not None:
                    attrs[c.CACHE_CREATION_TOKENS] = created
            if usage.reasoning_tokens is not None:
                attrs[REASONING_TOKENS] = usage.reasoning_tokens
        cost = getattr(response, "cost", None)
        if cost is not None:
            attrs["hookwire.cost"] = float(cost)
            attrs["hookwire.cost.currency"] = getattr(response, "currency", "USD")
        ttft = kwargs.get("ttft_ms")
        if ttft is not None:
            attrs[TTFC] = ttft / 1000.0
        attempts = kwargs.get("attempts")
        if attempts is not None and attempts > 1:
            attrs["hookwire.attempts"] = attempts
        if kwargs.get("system_fingerprint"):
            attrs[c.OPENAI_FINGERPRINT] = kwargs["system_fingerprint"]
        if kwargs.get("service_tier"):
            attrs[c.OPENAI_RESPONSE_TIER] = kwargs["service_tier"]
        if self.capture_content and isinstance(response, LLMResponse):
            attrs[OUTPUT_MESSAGES] = output_messages(response, self._json)
        span.set_attributes(attrs)
        if self.content_event and isinstance(response, LLMResponse):
            self._details_event(entry, response)
        # An LLM call's span is never made current: no context to restore.
        self._end_children(entry)
        span.end(self._replay_time)
        if entry.metric_attrs is not None:
            self._record_duration(entry, kwargs, None)
            tokens = self._tokens
            if tokens is not None and usage is not None and not usage.estimated:
                mattrs = entry.metric_attrs
                tokens.record(usage.prompt_tokens, {**mattrs, TOKEN_TYPE: "input"})
                tokens.record(usage.completion_tokens, {**mattrs, TOKEN_TYPE: "output"})
            if ttft is not None and self._ttfc is not None:
                self._record_chunks(entry.metric_attrs, ttft, kwargs, usage)

    def _record_chunks(
        self, attrs: dict[str, Any], ttft_ms: float, kw: Mapping[str, Any], usage: Usage | None
    ) -> None:
        """The streaming metrics: time to the first chunk, and the mean time per chunk after
        it (one record per call; the output tokens stand for the chunks, which hookwire does
        not count, so a handler need not listen to every token)."""
        assert self._ttfc is not None and self._tpoc is not None
        self._ttfc.record(ttft_ms / 1000.0, attrs)
        latency = kw.get("latency_ms")
        # An estimated count (no usage came) is no count of chunks.
        known = usage is not None and not usage.estimated
        chunks = usage.completion_tokens if known and usage is not None else 0
        if latency is not None and chunks > 1 and latency > ttft_ms:
            self._tpoc.record((latency - ttft_ms) / 1000.0 / (chunks - 1), attrs)

    def _details_event(self, entry: _Open, response: LLMResponse) -> None:
        """The opt-in ``gen_ai.client.inference.operation.details`` event: the call's request
        and response attributes with its content, on the call's span."""
        span = entry.span
        attrs: dict[str, Any] = {}
        for key, value in getattr(span, "attributes", {}).items():
            if key.startswith(("gen_ai.", "server.", "openai.")):
                attrs[key] = value
        if INPUT_MESSAGES not in attrs and entry.prompt is not None:
            attrs[INPUT_MESSAGES] = input_messages(entry.prompt, self._json)
        if OUTPUT_MESSAGES not in attrs:
            attrs[OUTPUT_MESSAGES] = output_messages(response, self._json)
        span.add_event(c.DETAILS_EVENT, attrs)

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        """Close the LLM call's span with an error status and ``error.type``."""
        entry = self._open.pop(kwargs.get("run_id", ""), None)
        if entry is None:
            return
        etype = self._fail(entry, error, kwargs)
        attempts = kwargs.get("attempts")
        if attempts is not None and attempts > 1:
            entry.span.set_attribute("hookwire.attempts", attempts)
        self._finish(entry)
        self._record_duration(entry, kwargs, etype)

    def on_retry(
        self, attempt: int, max_attempts: int, error: BaseException, **kwargs: Any
    ) -> None:
        """Add a ``hookwire.retry`` event to the call's span."""
        entry = self._open.get(kwargs.get("run_id", ""))
        span = entry.span if entry is not None else self._parent_span(kwargs)
        attrs: dict[str, Any] = {
            "hookwire.attempt": attempt,
            "hookwire.max_attempts": max_attempts,
            ERROR_TYPE: _error_type(error),
        }
        delay = kwargs.get("delay")
        if delay is not None:
            attrs["hookwire.retry.delay"] = float(delay)
        span.add_event("hookwire.retry", attrs)

    # -- tools ------------------------------------------------------------------------------

    def on_tool_start(self, tool_name: str, tool_input: Any, **kwargs: Any) -> None:
        """Open an ``execute_tool {name}`` span."""
        attrs: dict[str, Any] = {
            OPERATION: "execute_tool",
            TOOL_NAME: tool_name,
            TOOL_TYPE: "function",
        }
        call_id = kwargs.get("tool_call_id")
        if call_id is not None:
            attrs[TOOL_CALL_ID] = call_id
        description = kwargs.get("tool_description")
        if description:
            attrs[c.TOOL_DESCRIPTION] = description
        if self.capture_content:
            attrs[TOOL_ARGS] = (
                self._text(tool_input) if isinstance(tool_input, str) else self._json(tool_input)
            )
        self._start(f"execute_tool {tool_name}", _INTERNAL, attrs, kwargs, current=True)

    def on_tool_end(self, tool_name: str, tool_output: Any, **kwargs: Any) -> None:
        """Close the tool's span."""
        entry = self._open.pop(kwargs.get("run_id", ""), None)
        if entry is None:
            return
        if self.capture_content:
            out = (
                self._text(tool_output) if isinstance(tool_output, str) else self._json(tool_output)
            )
            entry.span.set_attribute(TOOL_RESULT, out)
        self._finish(entry)

    def on_tool_error(self, tool_name: str, error: BaseException, **kwargs: Any) -> None:
        """Close the tool's span with an error status."""
        entry = self._open.pop(kwargs.get("run_id", ""), None)
        if entry is None:
            return
        self._fail(entry, error, kwargs)
        self._finish(entry)

    # -- runs -------------------------------------------------------------------------------

    def on_run_start(self, input: Any, **kwargs: Any) -> None:
        """Open an ``invoke_agent {name}`` span for an agent, else ``invoke_workflow {name}``."""
        name = kwargs.get("name") or "run"
        attrs: dict[str, Any]
        agent = c.is_agent(name, kwargs)
        if agent:
            provider = kwargs.get("provider")
            attrs = {OPERATION: "invoke_agent", AGENT_NAME: name}
            attrs[PROVIDER] = c.provider_name(provider)
            span_name = f"invoke_agent {name}"
        else:
            attrs = {OPERATION: "invoke_workflow", c.WORKFLOW_NAME: name}
            span_name = f"invoke_workflow {name}"
        conversation = kwargs.get("conversation_id")
        if conversation is not None:
            attrs[CONVERSATION_ID] = conversation
        tags = kwargs.get("tags")
        if tags:
            attrs["hookwire.tags"] = tuple(str(t) for t in tags)
        if self.capture_content and input is not None:
            attrs[INPUT_MESSAGES] = input_messages(
                input if isinstance(input, str) else self._json(input), self._json
            )
        entry = self._start(span_name, _INTERNAL, attrs, kwargs, is_run=True, current=True)
        entry.needs_provider = agent and not kwargs.get("provider")

    def on_run_end(self, output: Any, **kwargs: Any) -> None:
        """Close the run's span, with its summed usage and cost (``hookwire.``-prefixed: the
        calls' own spans carry ``gen_ai.usage.*``, and a backend sums those per trace)."""
        entry = self._open.pop(kwargs.get("run_id", ""), None)
        if entry is None:
            return
        span = entry.span
        usage = kwargs.get("usage")
        if isinstance(usage, Usage):
            span.set_attribute("hookwire.usage.input_tokens", usage.prompt_tokens)
            span.set_attribute("hookwire.usage.output_tokens", usage.completion_tokens)
        cost = kwargs.get("cost")
        if isinstance(cost, (Decimal, int, float)):
            span.set_attribute("hookwire.cost", float(cost))
        error = kwargs.get("error")
        if error is not None:
            self._fail(entry, error, kwargs)
        elif self.capture_content and output is not None:
            text = output if isinstance(output, str) else self._json(output)
            span.set_attribute(
                OUTPUT_MESSAGES, self._json([{"role": "assistant", "parts": _parts(text)}])
            )
        self._finish(entry)

    # -- memory, errors, budgets ------------------------------------------------------------

    def on_memory_store(self, content: Any, **kwargs: Any) -> None:
        """Add a ``hookwire.memory.store`` event to the enclosing span."""
        attrs: dict[str, Any] = {}
        memory = kwargs.get("memory")
        if memory is not None:
            attrs["hookwire.memory"] = str(memory)
        if self.capture_content:
            attrs["hookwire.memory.content"] = (
                self._text(content) if isinstance(content, str) else self._json(content)
            )
        self._parent_span(kwargs).add_event("hookwire.memory.store", attrs)

    def on_memory_recall(self, query: Any, results: Any, **kwargs: Any) -> None:
        """Add a ``hookwire.memory.recall`` event to the enclosing span."""
        attrs: dict[str, Any] = {}
        memory = kwargs.get("memory")
        if memory is not None:
            attrs["hookwire.memory"] = str(memory)
        if isinstance(results, Sequence):
            attrs["hookwire.memory.results"] = len(results)
        documents = c.retrieval_documents(results if isinstance(results, Sequence) else ())
        if not self.capture_content:
            for doc in documents:
                doc.pop("content", None)
        else:
            attrs[c.RETRIEVAL_QUERY] = self._text(str(query))
        attrs[c.RETRIEVAL_DOCUMENTS] = self._json(documents)
        self._parent_span(kwargs).add_event("hookwire.memory.recall", attrs)

    def on_budget_exceeded(self, error: BaseException, **kwargs: Any) -> None:
        """End the refused call's span (no ``on_llm_end`` follows a refusal) as an error."""
        entry = self._open.pop(kwargs.get("run_id", ""), None)
        if entry is None:
            self._parent_span(kwargs).add_event(
                "hookwire.budget_exceeded", {ERROR_TYPE: _error_type(error)}
            )
            return
        self._fail(entry, error, kwargs)
        self._finish(entry)

    def on_error(self, error: BaseException, **kwargs: Any) -> None:
        """End an LLM or tool span left open by a failure whose own end event never came.

        A run's span is left to ``on_run_end``, which carries the run's usage and cost.
        """
        run_id = kwargs.get("run_id", "")
        entry = self._open.get(run_id)
        if entry is None or entry.is_run:
            return
        if self._open.pop(run_id, None) is None:
            return
        self._fail(entry, error, kwargs)
        self._finish(entry)

    def flush(self) -> None:
        """Ask the tracer and meter providers given to this handler to export what they hold."""
        for provider in (self._tracer_provider, self._meter_provider):
            force_flush = getattr(provider, "force_flush", None)
            if callable(force_flush):
                force_flush()

    def close(self) -> None:
        """End every span still open, as abandoned (called by ``CallbackManager.close()``)."""
        for run_id in list(self._open):
            self._abandon(run_id)


def _attribute(handler: OpenTelemetryCallback, value: Any) -> Any:
    """``value`` as an OpenTelemetry attribute value (a scalar, else its JSON text)."""
    if isinstance(value, str):
        return handler._text(value)
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, BaseException):
        return _error_type(value)
    return handler._json(value)


def _exported(spec: HookSpec) -> Callable[..., None] | None:
    """``OpenTelemetryCallback``'s method for a hook it has no method of its own for."""
    if spec.streamed:
        return None  # one span event per streamed piece would swamp the trace
    names, label, content = spec.args, spec.event.name, frozenset(spec.content)

    def attributes(self: OpenTelemetryCallback, args: tuple[Any, ...]) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        for name, value in zip(names, args, strict=False):
            if value is not None and (self.capture_content or name not in content):
                attrs[f"hookwire.{name}"] = _attribute(self, value)
        return attrs

    def error(args: tuple[Any, ...]) -> BaseException | None:
        return next((a for a in args if isinstance(a, BaseException)), None)

    if spec.starts_run:

        def export(self: OpenTelemetryCallback, *args: Any, **kwargs: Any) -> None:
            self._start(label, _INTERNAL, attributes(self, args), kwargs)

    elif spec.ends_run:

        def export(self: OpenTelemetryCallback, *args: Any, **kwargs: Any) -> None:
            entry = self._open.pop(kwargs.get("run_id", ""), None)
            if entry is None:
                return
            entry.span.set_attributes(attributes(self, args))
            failure = error(args)
            if failure is not None:
                self._fail(entry, failure, kwargs)
            self._finish(entry)

    else:

        def export(self: OpenTelemetryCallback, *args: Any, **kwargs: Any) -> None:
            attrs = attributes(self, args)
            failure = error(args)
            if failure is not None:
                attrs[ERROR_TYPE] = _error_type(failure)
            self._parent_span(kwargs).add_event(f"hookwire.{label}", attrs)

    export.__doc__ = f"Export ``{spec.name}`` (see the module's docstring)."
    export.__signature__ = hook_signature(spec)  # type: ignore[attr-defined]
    return export


hook_methods(OpenTelemetryCallback, _exported)

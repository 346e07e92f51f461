"""``HookwireSpanProcessor``: an OpenTelemetry span processor that turns the GenAI spans of any
instrumentation into hookwire events."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from ...callbacks.otel_conventions import AGENT_NAME, OPERATION, REQUEST_STREAM, TRACER_NAME
from ...context import check_request_context
from ...dispatch import CallbackManager, Callbacks
from ...errors import CallbackAbort, ConfigurationError
from ...events import Usage
from .._common import FailureLog
from . import translate as t
from .openinference import SPAN_KIND, USER_ID

__all__ = ["HookwireSpanProcessor"]

failures: Final = FailureLog(
    "HookwireSpanProcessor", "the span is not reported to hookwire; the app is not affected"
)

Emit = tuple[str, tuple[Any, ...], dict[str, Any]]

#: Operation names that say the call was streamed (Semantic Kernel's).
_STREAMED: Final = frozenset({"chat.streaming_completions", "text.streaming_completions"})

_STAGES: Final[Mapping[str, str]] = {
    t.LLM: "llm",
    t.EMBEDDING: "embedding",
    t.TOOL: "tool",
    t.RETRIEVAL: "memory",
    t.RUN: "run",
}


class _Open:
    """A run or tool whose span has started and not ended, and what its children inherit."""

    __slots__ = (
        "agent",
        "aliases",
        "conversation_id",
        "cost",
        "depth",
        "is_run",
        "model",
        "parent",
        "run_id",
        "span_id",
        "usage",
    )

    def __init__(self, span_id: int, depth: int, parent: _Open | None, is_run: bool) -> None:
        self.span_id = span_id
        self.is_run = is_run
        self.run_id = format(span_id, "016x")
        self.depth = depth
        self.parent = parent
        self.agent: str | None = parent.agent if parent is not None else None
        self.conversation_id: str | None = parent.conversation_id if parent is not None else None
        # Span ids of the spans inside it that hookwire does not report (HTTP, a framework's
        # own steps): their GenAI children hang under this one.
        self.aliases: list[int] = []
        self.usage: Usage | None = None
        self.cost: Decimal | None = None
        self.model: str | None = None


def _hex_parent(span: ReadableSpan) -> int | None:
    parent = span.parent
    return parent.span_id if parent is not None else None


class HookwireSpanProcessor(SpanProcessor):
    """Feed hookwire handlers from the GenAI spans an OpenTelemetry instrumentation makes.

    Add it to the app's ``TracerProvider`` (``provider.add_span_processor(
    HookwireSpanProcessor([handlers...], user_id=...))``); every span that follows the GenAI
    semantic conventions (``gen_ai.operation.name``) or OpenInference's
    (``openinference.span.kind``) becomes hookwire events:

    - ``invoke_agent`` / ``invoke_workflow`` spans, OpenInference ``AGENT`` / ``CHAIN``: a run
      (``on_run_start`` when the span starts, ``on_run_end`` when it ends, with the usage and
      cost of the calls inside it; ``kind`` ``"agent"`` or ``"workflow"``);
    - ``chat`` / ``text_completion`` / ``generate_content``, ``LLM``: an LLM call
      (``on_llm_start`` and ``on_llm_end`` with an ``LLMResponse``: usage with cached and
      reasoning tokens, the cost from hookwire's prices, the content when the span has it; or
      ``on_llm_error``), reported when the span ends;
    - ``embeddings``, ``EMBEDDING``: an embedding call (``on_embedding_start`` / ``_end``);
    - ``execute_tool``, ``TOOL``: a tool call (``on_tool_start`` when the span starts,
      ``on_tool_end`` / ``on_tool_error`` when it ends);
    - ``retrieval``, ``RETRIEVER``: ``on_memory_recall(query, results)``.

    Ids come from the spans: ``run_id`` is the span id, ``trace_id`` the trace id (in hex),
    ``parent_run_id`` the parent span's id, skipping the spans in between that hookwire does
    not report (an HTTP client's span inside an agent), and ``depth`` counts the reported
    ancestors. ``conversation_id`` comes from ``gen_ai.conversation.id`` (OpenInference's
    ``session.id``), ``agent`` from the enclosing ``invoke_agent`` span, ``user_id`` from
    OpenInference's ``user.id``; ``**context`` adds request context to every event, and the
    context of ``hookwire.trace`` around the span's end applies as it does to any event.
    ``on_error`` is sent once, for the outermost failed span.

    Limits: the spans hookwire's own ``OpenTelemetryCallback`` makes (its tracer is named
    ``"hookwire"``) are never read back. A span is reported when it ends, after the call was
    made: a budget's ``CallbackAbort`` cannot refuse it here (the call is still reported and
    accounted); to refuse a call before it is sent, use a direct bridge (``instrument`` for the
    openai SDK, the LangChain handler, ...). Nothing is streamed token by token.

    The processor never raises into the tracer: a handler's failure is the
    ``CallbackManager``'s to report, a failure to read a span is logged through the
    ``hookwire`` logger. A span that is not GenAI costs one or two attribute lookups.
    ``max_open`` bounds the runs and tools open at once (beyond it the oldest is forgotten,
    without an end event), so spans that never end cannot grow memory.
    """

    def __init__(
        self, callbacks: Callbacks = None, *, max_open: int = 10_000, **context: Any
    ) -> None:
        if max_open <= 0:
            raise ConfigurationError(
                f"max_open must be a positive number of spans, not {max_open!r}"
            )
        self.manager = CallbackManager.ensure(callbacks)
        self.context = check_request_context(context)
        self.max_open = max_open
        # span id -> the open run or tool it is, or sits inside (the aliases).
        self._open: dict[int, _Open] = {}
        self._lock = threading.Lock()

    # -- the tracer's calls -----------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Open a run or tool whose span starts (others are only remembered, if inside one)."""
        attrs = _attributes(span)
        if attrs is None or (attrs.get(OPERATION) is None and attrs.get(SPAN_KIND) is None):
            if self._open:
                try:
                    self._alias(span)
                except Exception as exc:
                    failures("on_start", exc)
            return
        try:
            attrs = dict(attrs)  # a live span: another thread may be setting attributes
            kind = t.category(attrs)
            if kind not in (t.RUN, t.TOOL) or _ours(span):
                return
            self._send(self._opened(span, kind, attrs))
        except Exception as exc:
            failures("on_start", exc)

    def on_end(self, span: ReadableSpan) -> None:
        """Report a finished GenAI span."""
        attrs = _attributes(span)
        if attrs is None or (attrs.get(OPERATION) is None and attrs.get(SPAN_KIND) is None):
            return
        try:
            kind = t.category(attrs)
            if kind is None or _ours(span):
                return
            self._send(self._ended(span, kind, attrs))
        except Exception as exc:
            failures("on_end", exc)

    def shutdown(self) -> None:
        """Flush hookwire's handlers (the tracer provider is shutting down)."""
        self.force_flush()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush hookwire's handlers (their background queues), within the timeout."""
        try:
            return self.manager.flush(timeout_millis / 1000.0)
        except Exception as exc:
            failures("force_flush", exc)
            return False

    @property
    def open_spans(self) -> int:
        """How many runs and tools are open now."""
        return len({id(entry) for entry in self._open.values()})

    # -- bookkeeping ------------------------------------------------------------------------

    def _alias(self, span: Span) -> None:
        """Remember a span that hookwire does not report but that sits inside an open run."""
        parent_id = _hex_parent(span)
        entry = self._open.get(parent_id) if parent_id is not None else None
        if entry is not None and len(self._open) < self.max_open:
            span_id = span.context.span_id
            entry.aliases.append(span_id)
            self._open[span_id] = entry

    def _remember(self, entry: _Open) -> None:
        if len(self._open) >= self.max_open:
            self._forget_oldest()
        self._open[entry.span_id] = entry

    def _forget_oldest(self) -> None:
        try:
            oldest = self._open[next(iter(self._open))]
        except (StopIteration, RuntimeError, KeyError):
            return
        self._close(oldest)
        failures("max_open", RuntimeError(f"more than {self.max_open} runs and tools open"))

    def _close(self, entry: _Open) -> None:
        with self._lock:
            for span_id in (entry.span_id, *entry.aliases):
                if self._open.get(span_id) is entry:
                    del self._open[span_id]

    def _base(self, span: ReadableSpan, attrs: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
        """The keywords every event of ``span`` carries, and its enclosing open entry."""
        ctx = span.context
        parent_id = _hex_parent(span)
        parent = self._open.get(parent_id) if parent_id is not None else None
        kw: dict[str, Any] = {
            **self.context,
            "run_id": format(ctx.span_id, "016x"),
            "trace_id": format(ctx.trace_id, "032x"),
            "depth": parent.depth + 1 if parent is not None else 0,
        }
        if parent is not None:
            kw["parent_run_id"] = parent.run_id
        elif parent_id is not None:
            kw["parent_run_id"] = format(parent_id, "016x")
        conversation = t.conversation_id(attrs) or (parent.conversation_id if parent else None)
        if conversation is not None:
            kw.setdefault("conversation_id", conversation)
        agent = parent.agent if parent is not None else None
        if agent is not None:
            kw.setdefault("agent", agent)
        user = attrs.get(USER_ID)
        if type(user) is str:
            kw.setdefault("user_id", user)
        return kw, parent

    def _opened(self, span: ReadableSpan, kind: str, attrs: Mapping[str, Any]) -> list[Emit]:
        """The start of a run or tool: remember it, and its start event."""
        kw, parent = self._base(span, attrs)
        if span.start_time is not None:
            kw["timestamp"] = span.start_time / 1e9
        entry = _Open(span.context.span_id, kw["depth"], parent, kind == t.RUN)
        entry.conversation_id = kw.get("conversation_id")
        self._remember(entry)
        if kind == t.TOOL:
            name, tool_input, _, call_id = t.tool(attrs, span.name)
            if call_id is not None:
                kw["tool_call_id"] = call_id
            return [("on_tool_start", (name, tool_input), kw)]
        return [("on_run_start", (t.run_input(attrs),), self._run_kw(entry, span, attrs, kw))]

    def _run_kw(
        self, entry: _Open, span: ReadableSpan, attrs: Mapping[str, Any], kw: dict[str, Any]
    ) -> dict[str, Any]:
        agent = t.is_agent(attrs)
        name = attrs.get(AGENT_NAME) if agent else None
        if type(name) is not str or not name:
            name = span.name.removeprefix("invoke_agent ").removeprefix("invoke_workflow ")
        if agent:
            entry.agent = name
            kw["agent"] = name
        kw["name"] = name
        kw["kind"] = "agent" if agent else "workflow"
        return kw

    def _ended(self, span: ReadableSpan, kind: str, attrs: Mapping[str, Any]) -> list[Emit]:
        """A GenAI span's end: its events (a start too when its start was not seen)."""
        entry = self._open.get(span.context.span_id)
        if entry is not None and entry.span_id != span.context.span_id:
            entry = None  # an alias: the span turned out GenAI after it started
        emits: list[Emit] = []
        if kind in (t.RUN, t.TOOL) and entry is None:
            emits = self._opened(span, kind, attrs)
            entry = self._open.get(span.context.span_id)
        kw, parent = self._base(span, attrs)
        if entry is not None:
            self._close(entry)
        start = span.start_time or 0
        end = span.end_time or start
        kw["latency_ms"] = (end - start) / 1e6
        failed = span.status.status_code is StatusCode.ERROR
        requested, answered = t.model(attrs)
        provider = t.provider(attrs)
        error = (
            t.error(
                kind,
                attrs,
                span.status.description,
                span.events,
                provider_name=provider,
                model_name=answered,
            )
            if failed
            else None
        )
        start_kw = {**kw, "timestamp": start / 1e9}
        del start_kw["latency_ms"]
        kw["timestamp"] = end / 1e9
        if kind == t.RUN:
            emits.append(self._run_end(entry, span, attrs, kw, error))
        elif kind == t.TOOL:
            name, _, output, _ = t.tool(attrs, span.name)
            if error is not None:
                emits.append(("on_tool_error", (name, error), kw))
            else:
                emits.append(("on_tool_end", (name, output), kw))
        elif kind == t.RETRIEVAL:
            query, results = t.retrieval(attrs)
            kw["memory"] = span.name
            emits.append(("on_memory_recall", (query, results), kw))
        else:
            if requested is not None:
                start_kw["model"] = kw["model"] = requested
            if provider is not None:
                start_kw["provider"] = kw["provider"] = provider
            call_usage = t.usage(attrs)
            if kind == t.LLM:
                start_kw["invocation_params"] = t.invocation_params(attrs)
                if attrs.get(REQUEST_STREAM) is True or attrs.get(OPERATION) in _STREAMED:
                    start_kw["stream"] = kw["stream"] = True
                emits.append(("on_llm_start", (t.prompt(attrs, span.events),), start_kw))
                if error is not None:
                    emits.append(("on_llm_error", (error,), kw))
                else:
                    response = t.llm_response(attrs, call_usage, span.end_time, span.events)
                    emits.append(("on_llm_end", (response,), kw))
                    self._roll_up(parent, response.usage, response.cost, response.model)
            else:
                texts, embedded = t.embedding(attrs, call_usage)
                emits.append(("on_embedding_start", (texts,), start_kw))
                if error is not None:
                    emits.append(("on_embedding_error", (error,), kw))
                else:
                    emits.append(("on_embedding_end", (embedded,), kw))
                    self._roll_up(parent, embedded.usage, embedded.cost, None)
        if error is not None and parent is None:
            emits.append(("on_error", (error,), {**kw, "stage": _STAGES[kind]}))
        return emits

    def _run_end(
        self,
        entry: _Open | None,
        span: ReadableSpan,
        attrs: Mapping[str, Any],
        kw: dict[str, Any],
        error: Any,
    ) -> Emit:
        """``on_run_end``, with the usage and cost of the calls reported inside the run (or
        the run's own usage attributes when none were)."""
        kw = dict(kw)  # on_error gets the span's keywords, not the run's totals
        if entry is not None:
            self._run_kw(entry, span, attrs, kw)
            usage = entry.usage
            if usage is None:
                usage = t.run_usage(attrs)
            if usage is not None:
                kw["usage"] = usage
            if entry.cost is not None:
                kw["cost"] = entry.cost
            if entry.model is not None:
                kw["model"] = entry.model
        if error is not None:
            kw["error"] = error
            return ("on_run_end", (None,), kw)
        return ("on_run_end", (t.run_output(attrs),), kw)

    def _roll_up(
        self, entry: _Open | None, usage: Usage, cost: Decimal | None, model: str | None
    ) -> None:
        """Add a call's usage and cost to every run it is inside (a run's end then has its
        whole total, calls in nested runs and tools included)."""
        with self._lock:
            while entry is not None:
                if entry.is_run:
                    entry.usage = usage if entry.usage is None else entry.usage + usage
                    if cost is not None:
                        entry.cost = cost if entry.cost is None else entry.cost + cost
                    if model is not None:
                        entry.model = model
                entry = entry.parent

    def _send(self, emits: list[Emit]) -> None:
        manager = self.manager
        for hook, args, kw in emits:
            try:
                getattr(manager, hook)(*args, **kw)
            except CallbackAbort as abort:
                # A budget refusing a call that has already been made: it is still reported.
                failures(f"{hook} (a budget cannot refuse a call seen through its span)", abort)
            except Exception as exc:
                failures(hook, exc)


def _attributes(span: ReadableSpan) -> Mapping[str, Any] | None:
    """The span's attributes, as the plain dict the SDK keeps them in when it can be reached.

    Measured (bench/bridges.py): through the public ``span.attributes`` (a mapping proxy over
    ``BoundedAttributes``, whose ``get`` is ``collections.abc.Mapping``'s, raising and catching a
    ``KeyError`` for a missing key) the two lookups that turn a span away cost 1.4 µs per
    ``on_end``, and a GenAI span's reading about 30 µs; on the dict, 0.2 µs and a fraction.
    Any other SDK shape falls back to the public view."""
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    if type(inner) is dict:
        return inner
    return span.attributes


def _ours(span: ReadableSpan) -> bool:
    """Whether hookwire's ``OpenTelemetryCallback`` made the span (never read back)."""
    scope = span.instrumentation_scope
    return scope is not None and scope.name == TRACER_NAME

"""The translation of the OpenAI Agents SDK's traces and spans into hookwire hook calls,
without I/O.

A trace (one ``Runner.run``, or an app's ``agents.trace(...)`` block) is a workflow run; an
agent span is an agent run inside it; a response or generation span is an LLM call; a function
span is a tool call, and so is a handoff span (``"handoff"``). Other spans (the SDK's task and
turn spans, guardrails, custom spans) are no runs of their own: what happens inside them hangs
under the nearest run.

The SDK fills an LLM call's and a tool's span (input, output, usage) only as the span ends, so
their start and end hooks are sent together then, with ``latency_ms`` from the span's times;
a trace's and an agent's ``on_run_start`` wait for the first LLM call, whose input (the user's
last message) is theirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import orjson
from agents.tracing import Span, Trace
from agents.tracing.span_data import (
    AgentSpanData,
    FunctionSpanData,
    GenerationSpanData,
    HandoffSpanData,
    ResponseSpanData,
)
from openai.types.responses import Response, ResponseUsage

from ...dispatch import CallbackManager, Callbacks
from ...errors import LLMError
from ...events import REQUEST_CONTEXT_KEYS, LLMResponse, ToolCall, Usage
from ...llms.estimate import estimate_usage, prompt_bound
from ...llms.protocol import content_text
from .._common import Emit, FailureLog, child_base, field, price

__all__ = ["Bridge"]

_REQUEST_KEYS: Final = frozenset(REQUEST_CONTEXT_KEYS)


class _Run:
    """An open trace or span: the nearest shown run (itself, if it is one) and its sums."""

    __slots__ = (
        "base",
        "child",
        "cost",
        "deferred",
        "kind",
        "model",
        "output",
        "parent",
        "pending",
        "shown",
        "usage",
    )

    def __init__(self, parent: str | None, shown: _Run | None) -> None:
        self.parent = parent
        self.shown = shown
        self.kind = "hidden"
        self.base: dict[str, Any] = {}
        #: What the runs inside it inherit from ``base`` (made on the first one's start).
        self.child: dict[str, Any] | None = None
        self.usage: Usage | None = None
        self.cost: Decimal | None = None
        self.model: str | None = None
        self.output = ""  # the run's answer: the text of the last LLM call inside it
        # A run's start waits for its input, which the SDK says first in its first LLM call.
        self.deferred = False
        # A failure inside it: (the error, the stage where it began, told already).
        self.pending: tuple[BaseException, str, bool] | None = None


def _latency(span: Span[Any]) -> float | None:
    try:
        start, end = span.started_at, span.ended_at
        if not start or not end:
            return None
        delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    except (TypeError, ValueError):
        return None
    return delta.total_seconds() * 1000.0


_get = field


def _fields(obj: Any, keys: tuple[str, ...]) -> list[Any]:
    """``_get(obj, key)`` for each of ``keys``, the object's kind told once."""
    if type(obj) is dict or isinstance(obj, Mapping):
        get = obj.get
        return [get(k) for k in keys]
    return [getattr(obj, k, None) for k in keys]


_RESPONSE_FIELDS = ("model", "usage", "output_text", "output", "id", "status")
_CALL_FIELDS = ("type", "call_id", "name", "arguments")
_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "input_tokens_details",
    "output_tokens_details",
)


#: A span's data class -> its kind ("agent", "llm", "function", "handoff" or "other"); the
#: SpanData classes are ABCs, whose isinstance checks cost more than a dict lookup.
_KINDS: dict[type, str] = {}


def _kind(data: Any) -> str:
    cls = type(data)
    kind = _KINDS.get(cls)
    if kind is None:
        if isinstance(data, AgentSpanData):
            kind = "agent"
        elif isinstance(data, (ResponseSpanData, GenerationSpanData)):
            kind = "llm"
        elif isinstance(data, FunctionSpanData):
            kind = "function"
        elif isinstance(data, HandoffSpanData):
            kind = "handoff"
        else:
            kind = "other"
        if len(_KINDS) < 256:
            _KINDS[cls] = kind
    return kind


def _base(span_id: str, shown: _Run | None, context: Mapping[str, Any]) -> dict[str, Any]:
    """``child_base`` for a span under ``shown``, with what it inherits made once per run."""
    if shown is None:
        return child_base(span_id, None, context)
    child = shown.child
    if child is None:
        child = shown.child = child_base("", shown.base, context)
        del child["run_id"]
    base = {"run_id": span_id}
    base.update(child)
    return base


def _usage(u: Any) -> Usage | None:
    """A usage in the Responses API's shape (or the SDK's dict of it)."""
    if u is None:
        return None
    if type(u) is ResponseUsage:
        # The SDK's own type (the usual case): its fields read directly, with none of the
        # general path's checks and lookups below (about a third of this function's cost).
        inputs, outputs = u.input_tokens_details, u.output_tokens_details
        return Usage(
            int(u.input_tokens or 0),
            int(u.output_tokens or 0),
            int(u.total_tokens or -1),
            cached_tokens=inputs.cached_tokens if inputs is not None else None,
            reasoning_tokens=outputs.reasoning_tokens if outputs is not None else None,
        )
    prompt, completion, total, inputs, outputs = _fields(u, _USAGE_FIELDS)
    # Chat Completions' names only when the Responses API's are missing: asking a pydantic
    # model for a field it lacks raises (and catches) an AttributeError, tens of µs.
    if not prompt:
        prompt = _get(u, "prompt_tokens")
    if not completion:
        completion = _get(u, "completion_tokens")
    return Usage(
        int(prompt or 0),
        int(completion or 0),
        int(total or -1),
        cached_tokens=_get(inputs, "cached_tokens"),
        reasoning_tokens=_get(outputs, "reasoning_tokens"),
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


def _error(span: Span[Any], what: str) -> LLMError:
    err: Mapping[str, Any] = span.error or {}
    message = str(err.get("message") or f"the {what} failed")
    data = err.get("data")
    if data:
        message = f"{message}: {_text(data)}"
    return LLMError(message)


class Bridge:
    """Turns the SDK's traces and spans into hookwire hook calls; each method returns the calls
    to make, in order."""

    max_runs = 10_000

    def __init__(self, callbacks: Callbacks, context: Mapping[str, Any]) -> None:
        self.manager = CallbackManager.ensure(callbacks)
        self.context = dict(context)
        self.runs: dict[str, _Run] = {}
        #: How many runs may still hold back their start (at least as many as do): at 0, an
        #: LLM or tool call need not walk up its runs to look (most calls of a run).
        self.held = 0
        #: Logs failures of the bridge itself (the event is skipped).
        self.failed = FailureLog("the OpenAI Agents SDK bridge", "the event is skipped")

    def _remember(self, key: str, run: _Run) -> None:
        if len(self.runs) >= self.max_runs:  # an end that never came: forget the oldest
            self.runs.pop(next(iter(self.runs)), None)
        self.runs[key] = run

    # -- traces -----------------------------------------------------------------------------

    def trace_start(self, trace: Trace) -> None:
        """A workflow run named after the trace, its ``on_run_start`` held back for its
        input."""
        run = _Run(None, None)
        run.kind, run.shown = "workflow", run
        context = dict(self.context)
        meta = getattr(trace, "metadata", None) or {}
        for key in _REQUEST_KEYS & meta.keys():
            context[key] = meta[key]
        group = getattr(trace, "group_id", None)
        if group and "conversation_id" not in context:
            context["conversation_id"] = str(group)
        run.base = child_base(trace.trace_id, None, context)
        run.base["name"] = trace.name
        run.base["kind"] = "workflow"
        run.deferred = True
        self.held += 1
        self._remember(trace.trace_id, run)

    def trace_end(self, trace: Trace) -> list[Emit]:
        """``on_run_end`` with the usage and cost of the calls inside it."""
        run = self.runs.pop(trace.trace_id, None)
        if run is None:
            return []
        return self._end(run)

    # -- spans ------------------------------------------------------------------------------

    def span_start(self, span: Span[Any]) -> None:
        """An agent span is an agent run (its ``on_run_start`` held back for its input); the
        other spans are only remembered, for what is inside them, except an LLM call's."""
        data = span.span_data
        kind = _kind(data)
        if kind == "llm":
            # No span is opened inside an LLM call's, and the SDK fills it in as it ends: its
            # run is found then (a record per call less).
            return
        parent = self.runs.get(span.parent_id or span.trace_id)
        shown = parent.shown if parent is not None else None
        run = _Run(span.parent_id or span.trace_id, shown)
        self._remember(span.span_id, run)
        if kind != "agent":
            return
        run.kind, run.shown = "agent", run
        run.base = _base(span.span_id, shown, self.context)
        run.base["name"] = data.name
        run.base["kind"] = "agent"
        run.base["agent"] = data.name
        run.deferred = True
        self.held += 1

    def span_end(self, span: Span[Any]) -> list[Emit]:
        """The hooks of an ended span: an LLM call, a tool call, a handoff, an agent run."""
        data = span.span_data
        kind = _kind(data)
        if kind == "llm":
            parent = self.runs.get(span.parent_id or span.trace_id)
            return self._llm(span, parent.shown if parent is not None else None)
        run = self.runs.pop(span.span_id, None)
        if run is None:
            return []
        if kind == "agent":
            # The SDK's errors are messages, not chained exceptions: a failure inside the run
            # (already pending) is the one that ended it.
            if span.error and run.pending is None:
                run.pending = (_error(span, "agent"), "run", False)
            return self._end(run)
        if kind == "function" or kind == "handoff":
            if not span.error:
                listens = self.manager.listens
                if not (listens("on_tool_start") or listens("on_tool_end")):
                    # Nobody hears a tool call that went well: its arguments, output and
                    # keywords are not built, only the held-back run starts are due.
                    emits: list[Emit] = []
                    self._flush(run.shown, None, emits)
                    return emits
            if kind == "function":
                return self._tool(span, run, data.name, _parse(data.input), data.output)
            args = {"from_agent": data.from_agent, "to_agent": data.to_agent}
            return self._tool(span, run, "handoff", args, data.to_agent)
        if span.error and run.shown is not None and run.shown.pending is None:
            run.shown.pending = (_error(span, "step"), "run", False)
        return []

    def _flush(self, run: _Run | None, prompt: Any, emits: list[Emit]) -> None:
        """Send the held-back starts of ``run`` and the runs around it, outermost first, with
        the input that just became known: the user's text in ``prompt`` (an LLM call's input;
        ``None`` for none). Only the first call of a run has held-back starts, so the text is
        found only then."""
        if not self.held:
            return
        held: list[_Run] = []
        while run is not None:
            if run.deferred:
                held.append(run)
                run.deferred = False
                self.held -= 1
            above = self.runs.get(run.parent) if run.parent is not None else None
            run = above.shown if above is not None else None
        if not held:
            return
        text = _user_text(prompt)
        for r in reversed(held):
            emits.append(("on_run_start", (text,), r.base))

    def _end(self, run: _Run) -> list[Emit]:
        """A run's end, its sums added to the run around it, and a failure told once."""
        emits: list[Emit] = []
        self._flush(run, None, emits)
        kw = run.base
        if run.usage is not None or run.model is not None:
            kw = {**kw, "model": run.model}
            if run.usage is not None:
                kw["usage"] = run.usage
            if run.cost is not None:
                kw["cost"] = run.cost
        above = self.runs.get(run.parent) if run.parent is not None else None
        shown = above.shown if above is not None else None
        if shown is not None:
            _add(shown, run.usage, run.cost, run.model, run.output)
        pending = run.pending
        if pending is None:
            emits.append(("on_run_end", (run.output,), kw))
            return emits
        emits.append(("on_run_end", (None,), {**kw, "error": pending[0]}))
        if shown is not None:
            if shown.pending is None:
                shown.pending = pending
        elif not pending[2]:
            emits.append(("on_error", (pending[0],), {**run.base, "stage": pending[1]}))
        return emits

    def _llm(self, span: Span[Any], shown: _Run | None) -> list[Emit]:
        """An LLM call's hooks, under ``shown`` (the run it is in)."""
        data = span.span_data
        base = _base(span.span_id, shown, self.context)
        provider = "openai"
        content = ""
        calls: tuple[ToolCall, ...] = ()
        finish = rid = None
        model: Any
        if type(data) is ResponseSpanData or isinstance(data, ResponseSpanData):
            response = data.response
            prompt = data.input
            if type(response) is Response:
                # The SDK's own type (the usual case): fields read directly, and the text and
                # tool calls found in one pass (``output_text`` is a property walking
                # ``output`` again).
                model, raw_usage, rid, status = (
                    response.model,
                    response.usage,
                    response.id,
                    response.status,
                )
                content, calls = _answer(response.output)
            else:
                model, raw_usage, text, output, rid, status = _fields(response, _RESPONSE_FIELDS)
                content = str(text or "") if response is not None else ""
                calls = tuple(
                    ToolCall(id=str(call_id or ""), name=str(name or ""), arguments=str(args or ""))
                    for kind, call_id, name, args in (
                        _fields(i, _CALL_FIELDS) for i in output or ()
                    )
                    if kind == "function_call"
                )
            usage = _usage(data.usage or raw_usage)
            finish = "tool_calls" if calls else status
        else:
            prompt = data.input
            model = data.model
            usage = _usage(data.usage)
            outputs = list(data.output or ())
            last = outputs[-1] if outputs else None
            content = _text(_get(last, "content")) if last is not None else ""
        model = str(model) if model else None
        if model:
            base["model"] = model
        base["provider"] = provider
        if usage is None:
            # No usage on the span: unknown, estimated from the prompt and answer, never 0.
            usage = estimate_usage(prompt_bound(prompt), content, calls)
        cost = price(model, usage, provider)
        emits: list[Emit] = []
        self._flush(shown, prompt, emits)
        listens = self.manager.listens
        # The keyword dicts and the LLMResponse only for hooks some handler hears: each would
        # be built per LLM call for a no-op.
        if listens("on_llm_start"):
            emits.append(
                ("on_llm_start", (prompt,), {**base, "invocation_params": {"model": model}})
            )
        if span.error:
            error = _error(span, "LLM call")
            emits.append(("on_llm_error", (error,), _end_keywords(span, base)))
            self._fail(shown, error, "llm", emits, base)
            return emits
        _add(shown, usage, cost, model, content)
        if listens("on_llm_end"):
            result = LLMResponse(
                content=content,
                usage=usage,
                model=model,
                finish_reason=str(finish) if finish else None,
                tool_calls=calls,
                provider=provider,
                id=str(rid) if rid else None,
                cost=cost,
            )
            emits.append(("on_llm_end", (result,), _end_keywords(span, base)))
        return emits

    def _tool(
        self, span: Span[Any], run: _Run, name: str, args: dict[str, Any], output: Any
    ) -> list[Emit]:
        shown = run.shown
        base = _base(span.span_id, shown, self.context)
        emits: list[Emit] = []
        self._flush(shown, None, emits)
        emits.append(("on_tool_start", (name, args), base))
        kw = dict(base)
        latency = _latency(span)
        if latency is not None:
            kw["latency_ms"] = latency
        if span.error:
            error = _error(span, f"tool {name}")
            emits.append(("on_tool_error", (name, error), kw))
            # Told at once, as hookwire's runners tell a tool's failure.
            emits.append(("on_error", (error,), {**base, "stage": "tool"}))
            if shown is not None and shown.pending is None:
                shown.pending = (error, "tool", True)
            return emits
        emits.append(("on_tool_end", (name, _text(output)), kw))
        return emits

    def _fail(
        self,
        shown: _Run | None,
        error: BaseException,
        stage: str,
        emits: list[Emit],
        base: Mapping[str, Any],
    ) -> None:
        if shown is not None:
            if shown.pending is None:
                shown.pending = (error, stage, False)
        else:
            emits.append(("on_error", (error,), {**base, "stage": stage}))


def _add(
    shown: _Run | None, usage: Usage | None, cost: Decimal | None, model: str | None, text: str
) -> None:
    if shown is None:
        return
    if usage is not None:
        shown.usage = usage if shown.usage is None else shown.usage + usage
    if cost is not None:
        shown.cost = cost if shown.cost is None else shown.cost + cost
    shown.model = model or shown.model
    if text:
        shown.output = text


def _user_text(prompt: Any) -> str | None:
    """The last user message of an LLM call's input (the Responses API's items or chat
    messages), or the input itself when it is text."""
    if isinstance(prompt, str):
        return prompt
    for item in reversed(prompt or ()):
        if _get(item, "role") == "user":
            return content_text(_get(item, "content"), " ")
    return None


def _parse(value: Any) -> dict[str, Any]:
    """A tool's arguments (JSON text) as a dict."""
    if isinstance(value, Mapping):
        return dict(value)
    try:
        parsed = orjson.loads(value) if value else {}
    except (orjson.JSONDecodeError, TypeError):
        parsed = None
    return parsed if isinstance(parsed, dict) else {"input": value}


def _end_keywords(span: Span[Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords of an LLM call's end: ``base``, one attempt and the span's latency."""
    kw = {**base, "attempts": 1}
    latency = _latency(span)
    if latency is not None:
        kw["latency_ms"] = latency
    return kw


def _answer(output: Any) -> tuple[str, tuple[ToolCall, ...]]:
    """The text and the tool calls of a Responses API ``Response.output``, as
    ``Response.output_text`` and its ``function_call`` items say them."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    for item in output or ():
        kind = item.type
        if kind == "message":
            for part in item.content:
                if part.type == "output_text" and part.text is not None:
                    texts.append(part.text)
        elif kind == "function_call":
            calls.append(
                ToolCall(
                    id=str(item.call_id or ""),
                    name=str(item.name or ""),
                    arguments=str(item.arguments or ""),
                )
            )
    return "".join(texts), tuple(calls)

"""``HookwireTracingProcessor``: an OpenAI Agents SDK tracing processor feeding hookwire."""

from __future__ import annotations

from typing import Any

from agents.tracing import Span, Trace, TracingProcessor

from ...context import check_request_context
from ...dispatch import CallbackManager, Callbacks
from .._common import send
from .bridge import Bridge

__all__ = ["HookwireTracingProcessor"]


class HookwireTracingProcessor(TracingProcessor):
    """A ``TracingProcessor`` that sends the SDK's traces and spans to hookwire handlers.

    ``callbacks``: hookwire handlers (or a ``CallbackManager``); ``**context``: request context
    for every event (``user_id``, ``org_id``, ...; a trace's ``metadata`` may set them too, and
    its ``group_id`` is the ``conversation_id`` unless one is set). Add it with
    ``agents.add_trace_processor(processor)`` (the SDK's own export to OpenAI stays) or
    ``agents.set_trace_processors([processor])`` (hookwire only).
    """

    def __init__(self, callbacks: Callbacks = None, **context: Any) -> None:
        self._bridge = Bridge(callbacks, check_request_context(context))

    @property
    def manager(self) -> CallbackManager:
        """The hookwire ``CallbackManager`` the events go to."""
        return self._bridge.manager

    # Each hook written out (no shared helper taking the bridge's method): the SDK calls them
    # at every trace's and span's start and end, and a frame and a bound method per call are a
    # fair share of the bridge's cost. A failure to translate is logged, never raised into the
    # SDK. A trace's and a span's start send nothing (their ``on_run_start`` waits for the
    # input), so they only tell the bridge.
    def on_trace_start(self, trace: Trace) -> None:
        """A trace began: a workflow run (its ``on_run_start`` waits for its input)."""
        bridge = self._bridge
        try:
            bridge.trace_start(trace)
        except Exception as exc:
            bridge.failed("on_trace_start", exc)

    def on_trace_end(self, trace: Trace) -> None:
        """A trace ended: ``on_run_end``."""
        bridge = self._bridge
        try:
            emits = bridge.trace_end(trace)
        except Exception as exc:
            bridge.failed("on_trace_end", exc)
            return
        if emits:
            send(bridge.manager, emits, bridge.failed, "on_trace_end")

    def on_span_start(self, span: Span[Any]) -> None:
        """A span began: an agent run (its ``on_run_start`` waits for its input)."""
        bridge = self._bridge
        try:
            bridge.span_start(span)
        except Exception as exc:
            bridge.failed("on_span_start", exc)

    def on_span_end(self, span: Span[Any]) -> None:
        """A span ended: an LLM call, a tool call, a handoff or an agent's end."""
        bridge = self._bridge
        try:
            emits = bridge.span_end(span)
        except Exception as exc:
            bridge.failed("on_span_end", exc)
            return
        if emits:
            send(bridge.manager, emits, bridge.failed, "on_span_end")

    def shutdown(self) -> None:
        """Flush the hookwire handlers (the SDK calls it at exit)."""
        self.force_flush()

    def force_flush(self) -> None:
        """Flush the hookwire handlers that work in the background."""
        try:
            self._bridge.manager.flush()
        except Exception as exc:  # at exit: logged, never raised into the SDK
            self._bridge.failed("force_flush", exc)

"""OpenAI Agents SDK bridge: a tracing processor that feeds hookwire handlers.

::

    import agents
    from hookwire.callbacks import MetricsCallback
    from hookwire.integrations.openai_agents import HookwireTracingProcessor

    agents.add_trace_processor(HookwireTracingProcessor([MetricsCallback()], user_id="u42"))
    agents.Runner.run_sync(agent, "...")   # now reported

The SDK's traces and spans become hookwire events, with the SDK's trace and span ids:

=================================  ==========================================================
Agents SDK                         hookwire
=================================  ==========================================================
a trace (one ``Runner.run``)       ``on_run_start`` / ``on_run_end`` (``kind="workflow"``,
                                   the trace's name; usage and cost summed; the output is the
                                   last answer)
an agent span                      ``on_run_start`` / ``on_run_end`` (``kind="agent"``,
                                   ``agent`` the agent's name)
a response or generation span      ``on_llm_start`` and ``on_llm_end`` (an ``LLMResponse``:
                                   text, ``function_call`` items as tool calls, usage with
                                   cached and reasoning tokens, cost) or ``on_llm_error``
a function span                    ``on_tool_start`` and ``on_tool_end`` / ``on_tool_error``
a handoff span                     a tool call ``"handoff"`` (``from_agent``, ``to_agent``)
=================================  ==========================================================

The SDK fills an LLM call's and a tool's span only as it ends, so their start and end hooks
are sent together then (``latency_ms`` from the span's times), and a run's start waits for
its first LLM call, whose input is the run's; no streamed tokens are seen.
Inside a ``hookwire.trace`` the SDK's trace is a child of the hookwire run. The SDK swallows
what a processor raises, so a budget cannot refuse a call here (its refusal is told as
``on_budget_exceeded``). Needs the ``hookwire[agents]`` extra.
"""

from __future__ import annotations

from ..._lazy import missing_extra

try:
    import agents.tracing  # noqa: F401  (the extra's presence, checked once, with a clear error)
except ModuleNotFoundError as exc:  # pragma: no cover - exercised only without the extra
    needs = "hookwire.integrations.openai_agents needs the OpenAI Agents SDK"
    raise missing_extra(exc, needs, "agents") from exc

from .processor import HookwireTracingProcessor

__all__ = ["HookwireTracingProcessor"]

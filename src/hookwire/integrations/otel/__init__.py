"""hookwire events from any OpenTelemetry-instrumented framework.

::

    from opentelemetry.sdk.trace import TracerProvider
    from hookwire.callbacks import MetricsCallback
    from hookwire.integrations.otel import HookwireSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(HookwireSpanProcessor([MetricsCallback()]))

Every span that follows the OpenTelemetry GenAI semantic conventions or OpenInference's
(pydantic-ai, Google ADK, Strands, Semantic Kernel, opentelemetry-instrumentation-openai-v2,
openinference-instrumentation-*, ...) becomes hookwire runs, LLM calls with usage and cost,
embedding calls, tool calls and memory recalls. Needs the ``hookwire[otel]`` extra.
"""

from __future__ import annotations

from ..._lazy import missing_extra

try:
    from .processor import HookwireSpanProcessor
except ModuleNotFoundError as exc:  # pragma: no cover - exercised only without the extra
    if not (exc.name or "").startswith("opentelemetry"):
        raise
    raise missing_extra(exc, "HookwireSpanProcessor needs the OpenTelemetry SDK", "otel") from exc

__all__ = ["HookwireSpanProcessor"]

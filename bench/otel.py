"""What OpenTelemetryCallback adds per LLM call, next to the OpenTelemetry SDK's own span.

Run from the repository root::

    PYTHONPATH=src .venv/bin/python bench/otel.py            # full run
    PYTHONPATH=src .venv/bin/python bench/otel.py --quick    # fewer iterations

Every case produces the same telemetry for one LLM call, through the same SDK tracer provider
(a ``BatchSpanProcessor`` in front of an exporter that drops everything, so export costs the
same in every case and does not block):

- ``bare span``: the SDK used by hand: ``start_span("chat gpt-4o", kind=CLIENT, attributes=...)``
  with the request attributes, ``set_attributes`` with the response attributes, ``end()``;
- ``bare span + metrics``: the same, plus the three histogram records the GenAI conventions
  ask for (input tokens, output tokens, duration);
- ``hookwire``: ``manager.on_llm_start(...)`` and ``manager.on_llm_end(...)`` with an
  ``OpenTelemetryCallback`` (``metrics=False``, then with metrics): dispatch, attribute mapping,
  the run-id -> span map and the span itself.

The cases take turns, round after round, and each figure is a case's best round, in
microseconds per LLM call. The target (issue 7)
is hookwire <= 1.5x the SDK doing the same by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from _timing import best_of, print_ratios, quick_flag
from hookwire import CallbackManager, LLMResponse, Usage
from hookwire.callbacks.otel import DURATION_BUCKETS, TOKEN_BUCKETS, OpenTelemetryCallback

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the capital of France?"},
]
PARAMS = {"model": "gpt-4o", "temperature": 0.2, "max_tokens": 256, "top_p": 0.9}
RESPONSE = LLMResponse(
    content="Paris.",
    usage=Usage(prompt_tokens=24, completion_tokens=3),
    model="gpt-4o-2024-08-06",
    finish_reason="stop",
    id="chatcmpl-1",
    provider="openai",
    cost=Decimal("0.00009"),
)


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def providers() -> tuple[TracerProvider, MeterProvider]:
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(DropExporter(), max_queue_size=1_000_000))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return tp, mp


def bare_case(tp: TracerProvider, mp: MeterProvider | None) -> Callable[[], None]:
    tracer = tp.get_tracer("bench")
    tokens = duration = None
    if mp is not None:
        meter = mp.get_meter("bench")
        tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
    kind = SpanKind.CLIENT
    r = RESPONSE

    def call() -> None:
        span = tracer.start_span(
            "chat gpt-4o",
            kind=kind,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.request.temperature": 0.2,
                "gen_ai.request.max_tokens": 256,
                "gen_ai.request.top_p": 0.9,
                "openai.api.type": "chat_completions",
            },
        )
        span.set_attributes(
            {
                "gen_ai.response.model": r.model,
                "gen_ai.response.id": r.id,
                "gen_ai.response.finish_reasons": (r.finish_reason,),
                "gen_ai.usage.input_tokens": r.usage.prompt_tokens,
                "gen_ai.usage.output_tokens": r.usage.completion_tokens,
                "hookwire.cost": float(r.cost),  # type: ignore[arg-type]
                "hookwire.cost.currency": r.currency,
            }
        )
        span.end()
        if tokens is not None and duration is not None:
            attrs = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": r.model,
            }
            duration.record(0.25, attrs)
            tokens.record(r.usage.prompt_tokens, {**attrs, "gen_ai.token.type": "input"})
            tokens.record(r.usage.completion_tokens, {**attrs, "gen_ai.token.type": "output"})

    return call


def hookwire_case(tp: TracerProvider, mp: MeterProvider | None) -> Callable[[], None]:
    handler = OpenTelemetryCallback(tracer_provider=tp, meter_provider=mp, metrics=mp is not None)
    manager = CallbackManager([handler])
    start, end = manager.on_llm_start, manager.on_llm_end
    r = RESPONSE

    def call() -> None:
        rid = start(
            MESSAGES, model="gpt-4o", provider="openai", invocation_params=PARAMS, stream=False
        )
        end(r, run_id=rid, model="gpt-4o", provider="openai", latency_ms=250.0)

    return call


def main() -> None:
    number, repeat = (100, 20) if quick_flag(__doc__) else (100, 600)

    rows = []
    for label, with_metrics in (("span only", False), ("span + metrics", True)):
        tp, mp = providers()
        metrics = mp if with_metrics else None
        t = best_of(
            {"bare": bare_case(tp, metrics), "hookwire": hookwire_case(tp, metrics)},
            number,
            repeat,
        )
        rows.append((label, t["bare"], t["hookwire"]))
        tp.shutdown()
        mp.shutdown()

    title = f"OpenTelemetry per LLM call, best of {repeat} rounds of {number} (µs per call)"
    print_ratios(title, ("telemetry", "SDK by hand", "hookwire"), rows, "<= 1.5x")


if __name__ == "__main__":
    main()

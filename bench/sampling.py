"""What sampling costs a handler per event: CPU instructions counted by callgrind.

Each case emits ``--traces`` traces (a run, an LLM call, a tool call: six events) to one
built-in handler; run it under callgrind with two trace counts and take the difference, so
start-up and the interpreter's own cost cancel out::

    for n in 1000 2000; do
        PYTHONPATH=src valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \\
            python bench/sampling.py --case filelog --traces $n
    done
    # instructions per event = (I(2000) - I(1000)) / (1000 * 6)

``--rate`` gives the handler a ``sample_rate`` (left out: the handler does not sample, which
is the case to compare with a checkout that has no sampling at all). The counts include the
handler's worker thread (FileLog's writer, the outbox's and trace store's database writes).
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path
from typing import Any

from hookwire import CallbackManager, trace
from hookwire.events import LLMResponse, Usage


def handler(case: str, rate: float | None, tmp: Path) -> Any:
    """The handler of ``case``, sampling at ``rate`` when one is given."""
    kw: dict[str, Any] = {} if rate is None else {"sample_rate": rate}
    if case == "filelog":
        from hookwire.callbacks.filelog import FileLogCallback

        return FileLogCallback(tmp / "log.jsonl", **kw)
    if case == "console":
        from hookwire.callbacks.console import ConsoleCallback

        return ConsoleCallback(stream=io.StringIO(), **kw)
    if case == "otel":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        from hookwire.callbacks.otel import OpenTelemetryCallback

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        return OpenTelemetryCallback(tracer_provider=provider, metrics=False, **kw)
    if case == "outbox":
        from hookwire.export.outbox import OutboxCallback

        return OutboxCallback(["s"], f"sqlite+aiosqlite:///{tmp}/o.db", **kw)
    if case == "trace_store":
        from hookwire.callbacks.trace_store import TraceStoreCallback

        return TraceStoreCallback(f"sqlite+aiosqlite:///{tmp}/t.db", **kw)
    raise SystemExit(f"unknown case {case}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="filelog")
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        h = handler(args.case, args.rate, Path(tmp))
        manager = CallbackManager([h])
        response = LLMResponse("fine, thanks", Usage(12, 3), model="gpt-4o-mini")
        for _ in range(args.traces):
            with trace("turn", callbacks=manager):
                rid = manager.on_llm_start(["how are you?"], model="gpt-4o-mini")
                manager.on_llm_end(response, run_id=rid, model="gpt-4o-mini")
                tid = manager.on_tool_start("search", {"q": "x"})
                manager.on_tool_end("search", "found", run_id=tid)
        manager.flush()
        manager.close()


if __name__ == "__main__":
    main()

"""Sampling: one decision per trace from its id (alike everywhere), 0.0 keeps none; a trace
with an error, a retry, a budget refusal or a slow or costly call kept whole; and the same
behaviour in every built-in handler that lets events out, compared with an unsampled twin."""

from __future__ import annotations

import io
import random
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookwire import CallbackManager, trace
from hookwire.callbacks import BaseCallback, ConsoleCallback, FileLogCallback, TraceStoreCallback
from hookwire.callbacks.base import AsyncBaseCallback
from hookwire.errors import BudgetExceeded, ConfigurationError
from hookwire.events import LLMResponse, Usage
from hookwire.export import OutboxCallback
from hookwire.sampling import (
    TraceSampler,
    always_kept,
    check_rate,
    end_trace_rate,
    over_threshold,
    sample,
    set_trace_rate,
    trace_kept,
    trace_rate,
)
from hookwire.stores import runner

# -- the decision ------------------------------------------------------------------------------


def test_the_rate_is_the_share_of_traces_kept() -> None:
    ids = [f"trace-{i}" for i in range(20_000)]
    kept = sum(trace_kept(t, 0.25) for t in ids)
    assert 4_500 < kept < 5_500
    assert not any(trace_kept(t, 0.0) for t in ids[:1000])
    assert all(trace_kept(t, 1.0) for t in ids[:1000])


@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 1.0), st.integers(0, 2**32))
def test_the_rate_is_respected_for_any_rate_and_ids(rate: float, seed: int) -> None:
    rng = random.Random(seed)
    n = 4000
    ids = [f"{rng.getrandbits(64):016x}-{i}" for i in range(n)]
    kept = sum(trace_kept(t, rate) for t in ids)
    # Five standard deviations of a binomial count, plus one for the edges.
    tolerance = 5 * (n * rate * (1 - rate)) ** 0.5 + 1
    assert abs(kept - n * rate) <= tolerance


@given(st.text(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_the_decision_is_fixed_per_trace_and_grows_with_the_rate(
    trace_id: str, a: float, b: float
) -> None:
    low, high = sorted((a, b))
    assert trace_kept(trace_id, low) == trace_kept(trace_id, low)
    assert trace_kept(trace_id, low) == trace_kept(str(trace_id), low)
    if trace_kept(trace_id, low):
        assert trace_kept(trace_id, high)


def test_the_decision_is_the_same_in_another_process() -> None:
    import subprocess
    import sys

    ids = [f"t{i}" for i in range(200)]
    code = (
        "import sys; from hookwire.sampling import trace_kept; "
        "print(''.join('1' if trace_kept(t, 0.3) else '0' for t in sys.argv[1:]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *ids], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "".join("1" if trace_kept(t, 0.3) else "0" for t in ids)


def test_errors_retries_and_refusals_are_always_kept() -> None:
    for hook in ("on_llm_error", "on_tool_error", "on_error", "on_retry", "on_budget_exceeded"):
        assert always_kept(hook)
    assert not always_kept("on_llm_end") and not always_kept("on_nothing")
    assert over_threshold({"latency_ms": 900.0}, 500.0, None)
    assert not over_threshold({"latency_ms": 10.0}, 500.0, None)
    assert over_threshold({"cost": 2}, None, 1)
    from decimal import Decimal

    response = LLMResponse("x", Usage(1, 1), cost=Decimal("0.5"))
    assert over_threshold({}, None, 0.1, response) and not over_threshold({}, None, 1, response)


def test_bad_rates_are_refused() -> None:
    for rate in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ConfigurationError, match="sample_rate"):
            check_rate(rate)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="sample_rate"):
            trace("t", sample_rate=rate)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="sample_rate"):
            FileLogCallback("/dev/null", sample_rate=rate)  # type: ignore[arg-type]


# -- the gate ------------------------------------------------------------------------------------


def _dropped_ids(rate: float, n: int) -> list[str]:
    return [t for t in (f"id-{i}" for i in range(n * 20)) if not trace_kept(t, rate)][:n]


def test_a_trace_left_out_is_held_until_an_error_keeps_it_or_its_end_drops_it() -> None:
    seen: list[tuple[str, str]] = []
    sampler = TraceSampler(0.5, lambda item: seen.append((item[0], item[2]["trace_id"])))
    a, b = _dropped_ids(0.5, 2)
    for tid in (a, b):
        assert not sampler.admit("on_run_start", (None,), {"trace_id": tid, "run_id": tid})
        assert not sampler.admit("on_llm_start", ("hi",), {"trace_id": tid, "run_id": "x"})
    assert sampler.held == 4
    # The error of trace a: its held events first, in order, then the error goes through.
    assert sampler.admit("on_retry", (1, 3, RuntimeError()), {"trace_id": a, "run_id": "x"})
    assert seen == [("on_run_start", a), ("on_llm_start", a)]
    assert sampler.admit("on_llm_end", (None,), {"trace_id": a, "run_id": "x"})
    assert sampler.admit("on_run_end", (None,), {"trace_id": a, "run_id": a})
    # Trace b ends without one: dropped, nothing handed over.
    assert not sampler.admit("on_run_end", (None,), {"trace_id": b, "run_id": b})
    assert sampler.held == 0 and len(seen) == 2
    # A run that ends with an error is kept too.
    (c,) = _dropped_ids(0.5, 1)
    assert not sampler.admit("on_run_start", (None,), {"trace_id": c, "run_id": c})
    assert sampler.admit("on_run_end", (None,), {"trace_id": c, "run_id": c, "error": "x"})
    assert seen[-1] == ("on_run_start", c)


def test_the_hold_is_bounded() -> None:
    sampler = TraceSampler(0.0, lambda item: None, max_held=10)
    for i in range(25):
        sampler.admit("on_llm_start", ("x",), {"trace_id": f"t{i}", "run_id": f"r{i}"})
    assert sampler.held <= 10 and sampler.evicted == 15
    none = TraceSampler(0.0, lambda item: None, max_held=0)
    assert not none.admit("on_llm_start", ("x",), {"run_id": "r"}) and none.held == 0


def test_a_trace_rate_lowers_the_handlers_for_that_trace_only() -> None:
    kept, dropped = "id-kept", _dropped_ids(0.5, 1)[0]
    while not trace_kept(kept, 0.5):
        kept += "x"
    sampler = TraceSampler(1.0, lambda item: None)
    set_trace_rate(dropped, 0.5)
    set_trace_rate(kept, 0.5)
    try:
        assert trace_rate(dropped) == 0.5
        assert not sampler.admit("on_llm_start", ("x",), {"trace_id": dropped, "run_id": "r"})
        assert sampler.admit("on_llm_start", ("x",), {"trace_id": kept, "run_id": "r"})
        assert sampler.admit("on_llm_start", ("x",), {"trace_id": "other", "run_id": "r"})
    finally:
        end_trace_rate(dropped)
        end_trace_rate(kept)
    assert trace_rate(dropped) is None


def test_sample_gates_a_users_handler_and_leaves_others_untouched() -> None:
    class Mine(BaseCallback):
        def __init__(self) -> None:
            self.got: list[str] = []

        def on_llm_start(self, prompt: Any) -> None:  # no **kwargs: given none
            self.got.append(prompt)

    plain = Mine()
    assert sample(plain, None) is None and "on_llm_start" not in vars(plain)
    mine = Mine()
    assert isinstance(sample(mine, 0.0), TraceSampler)
    manager = CallbackManager([mine])
    rid = manager.on_llm_start("dropped")
    manager.on_llm_end(LLMResponse("x", Usage(1, 1)), run_id=rid)
    rid = manager.on_llm_start("kept")
    manager.on_llm_error(RuntimeError("boom"), run_id=rid)
    assert mine.got == ["kept"]

    class Async(AsyncBaseCallback):
        async def on_llm_start(self, prompt: Any, **kw: Any) -> None:
            return None

    with pytest.raises(ConfigurationError, match="coroutine"):
        sample(Async(), 0.5)


def test_trace_sample_rate_is_set_for_the_run_and_forgotten_after() -> None:
    with trace("outer", sample_rate=0.2) as run:
        assert trace_rate(run.trace_id) == 0.2
        with trace("inner", sample_rate=0.9) as inner:
            assert inner.trace_id == run.trace_id and trace_rate(run.trace_id) == 0.2
    assert trace_rate(run.trace_id) is None


# -- every built-in handler ---------------------------------------------------------------------
# Each handler is run next to an unsampled twin on the same events: a trace the sample keeps
# must come out exactly as the twin wrote it (whole), a trace it drops not at all.


class _Case:
    """A built-in handler (sampled and not) and how to read back what it let out, per trace."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        self.tmp = tmp
        self.exporters: list[Any] = []

    def make(self, label: str, **kw: Any) -> Any:
        tmp = self.tmp
        if self.name == "filelog":
            return FileLogCallback(tmp / f"{label}.jsonl", **kw)
        if self.name == "console":
            return ConsoleCallback(stream=io.StringIO(), color=False, **kw)
        if self.name == "outbox":
            return OutboxCallback([label], f"sqlite+aiosqlite:///{tmp}/o.db", **kw)
        if self.name == "trace_store":
            return TraceStoreCallback(f"sqlite+aiosqlite:///{tmp}/{label}.db", **kw)
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from hookwire.callbacks.otel import OpenTelemetryCallback

        provider = TracerProvider()
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        handler = OpenTelemetryCallback(
            tracer_provider=provider, metrics=False, current_spans=False, **kw
        )
        handler._exporter = exporter  # type: ignore[attr-defined]
        return handler

    def read(self, handler: Any, names: dict[str, str]) -> Counter[str]:
        """How many records (events, lines, spans) each trace (by run name) left behind."""
        handler.flush()
        out: Counter[str] = Counter()
        if self.name == "filelog":
            for line in handler.log_path.read_bytes().splitlines():
                out[names[orjson.loads(line)["trace_id"]]] += 1
        elif self.name == "console":
            text = handler.console.file.getvalue()
            # Every trace prints the same lines; its runs' lines carry its name.
            for name in set(names.values()):
                if name in text:
                    out[name] = sum(1 for line in text.splitlines() if name in line)
            out["lines"] = len(text.splitlines())
        elif self.name == "outbox":
            rows = runner.run_sync(handler.store.rows(sink=handler.sinks[0], limit=100_000))
            for r in rows:
                out[names[orjson.loads(r["body"])["trace_id"]]] += 1
        elif self.name == "trace_store":
            store = handler.store
            for run in runner.run_sync(store.runs(limit=500)).items:
                kids = runner.run_sync(store.children(run["trace_id"], run["span_id"])).items
                out[run["name"]] += 1 + len(kids)
        else:
            spans = handler._exporter.get_finished_spans()
            roots = {s.context.trace_id: s.name.split()[-1] for s in spans if s.parent is None}
            for s in spans:
                out[roots[s.context.trace_id]] += 1 + len(s.events)
        return out


_CASES = ("filelog", "console", "outbox", "trace_store", "otel")


@pytest.fixture(params=_CASES)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> _Case:
    return _Case(request.param, tmp_path)


def _turn(manager: CallbackManager, name: str, kind: str = "plain", **trace_kw: Any) -> str:
    """One trace: a run around an LLM call and a tool call; ``kind`` adds what keeps it."""
    with trace(name, callbacks=manager, **trace_kw) as run:
        rid = manager.on_llm_start(["hello"], model="m")
        if kind == "retry":
            manager.on_retry(1, 3, RuntimeError("rate limited"), run_id=rid)
        latency = 900.0 if kind == "slow" else 20.0
        manager.on_llm_end(LLMResponse("hi", Usage(1, 1)), run_id=rid, latency_ms=latency)
        tid = manager.on_tool_start("search", {"q": "x"})
        if kind == "tool_error":
            manager.on_tool_error("search", ValueError("no index"), run_id=tid)
        elif kind == "refused":
            manager.on_budget_exceeded(BudgetExceeded("over"), run_id=tid)
        else:
            manager.on_tool_end("search", "found", run_id=tid)
    return run.trace_id


def test_every_handler_keeps_or_drops_whole_traces(case: _Case) -> None:
    twin, sampled = case.make("twin"), case.make("sampled", sample_rate=0.5)
    manager = CallbackManager([twin, sampled])
    names = {_turn(manager, f"turn-{i:03d}"): f"turn-{i:03d}" for i in range(24)}
    want, got = case.read(twin, names), case.read(sampled, names)
    kept = {n for t, n in names.items() if trace_kept(t, 0.5)}
    assert 0 < len(kept) < len(names)
    if case.name == "console":
        assert got["lines"] == want["lines"] * len(kept) // len(names)
        del want["lines"], got["lines"]
    assert got == Counter({n: c for n, c in want.items() if n in kept})
    manager.close()


def test_every_handler_keeps_errors_retries_refusals_and_slow_calls_whole(case: _Case) -> None:
    twin = case.make("twin")
    none = case.make("none", sample_rate=0.0, keep_over_ms=500.0)
    manager = CallbackManager([twin, none])
    kinds = ("plain", "retry", "tool_error", "refused", "slow", "plain")
    names = {_turn(manager, f"turn-{i:03d}", kind): f"turn-{i:03d}" for i, kind in enumerate(kinds)}
    want, got = case.read(twin, names), case.read(none, names)
    if case.name == "console":
        del want["lines"], got["lines"]
    assert got == Counter({n: c for n, c in want.items() if n not in ("turn-000", "turn-005")})
    manager.close()


def test_a_traces_rate_applies_to_handlers_that_sample(case: _Case) -> None:
    plain, follows = case.make("plain"), case.make("follows", sample_rate=1.0)
    manager = CallbackManager([plain, follows])
    names = {
        _turn(manager, "turn-000", sample_rate=0.0): "turn-000",
        _turn(manager, "turn-001", "retry", sample_rate=0.0): "turn-001",
        _turn(manager, "turn-002", sample_rate=1.0): "turn-002",
    }
    want, got = case.read(plain, names), case.read(follows, names)
    if case.name == "console":
        del want["lines"], got["lines"]
    assert set(want) == {"turn-000", "turn-001", "turn-002"}
    assert got == Counter({n: c for n, c in want.items() if n != "turn-000"})
    manager.close()


def test_accounting_metrics_and_history_have_no_sample_rate() -> None:
    import inspect

    from hookwire.callbacks import (
        AccountingCallbackHandler,
        ChatHistoryCallbackHandler,
        MetricsCallback,
    )

    for cls in (AccountingCallbackHandler, ChatHistoryCallbackHandler, MetricsCallback):
        assert "sample_rate" not in inspect.signature(cls).parameters


def test_the_managers_stats_show_what_a_sampling_handler_holds(tmp_path: Path) -> None:
    log = FileLogCallback(tmp_path / "log.jsonl", sample_rate=0.0)
    manager = CallbackManager([log, BaseCallback()])
    assert manager.stats()["sampling"] == {"FileLogCallback": {"held": 0, "evicted": 0}}
    with trace("request", callbacks=manager):
        manager.on_llm_start("hi")
        assert manager.stats()["sampling"]["FileLogCallback"]["held"] >= 2
    assert manager.stats()["sampling"]["FileLogCallback"] == {"held": 0, "evicted": 0}
    log.close()

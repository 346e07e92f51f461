"""MetricsCallback: figures, quantiles, breakdowns, thread safety, constant memory, Prometheus."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from decimal import Decimal

import pytest

from hookwire import CallbackManager, LLMResponse, Usage, request_context
from hookwire.callbacks import MetricsCallback
from hookwire.errors import ConfigurationError, RateLimitError


def _call(
    m: CallbackManager,
    model: str = "gpt-4o",
    latency: float | None = 100.0,
    ttft: float | None = None,
    tokens: tuple[int, int] = (10, 5),
    cost: Decimal | None = Decimal("0.001"),
) -> None:
    rid = m.on_llm_start("hi", model=model)
    kw: dict[str, object] = {"run_id": rid, "model": model}
    if latency is not None:
        kw["latency_ms"] = latency
    if ttft is not None:
        kw["ttft_ms"] = ttft
    m.on_llm_end(LLMResponse("x", Usage(*tokens), model=model, cost=cost), **kw)


def test_seed_keys_and_totals() -> None:
    cb = MetricsCallback()
    m = CallbackManager([cb])
    _call(m, latency=100.0)
    _call(m, latency=300.0, tokens=(20, 10))
    metrics = cb.get_metrics()
    assert metrics["total_calls"] == 2
    assert metrics["total_tokens"] == 45
    assert metrics["prompt_tokens"] == 30
    assert metrics["completion_tokens"] == 15
    assert metrics["avg_latency_ms"] == 200.0
    assert metrics["total_cost"] == pytest.approx(0.002)
    assert metrics["unpriced_calls"] == 0
    for key in ("p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "tokens_per_second"):
        assert metrics[key] is not None


def test_quantiles_are_within_one_percent() -> None:
    cb = MetricsCallback()
    m = CallbackManager([cb])
    for i in range(1, 1001):
        _call(m, latency=float(i))
    metrics = cb.get_metrics()
    assert metrics["p50_latency_ms"] == pytest.approx(500, rel=0.02)
    assert metrics["p95_latency_ms"] == pytest.approx(950, rel=0.02)
    assert metrics["p99_latency_ms"] == pytest.approx(990, rel=0.02)


def test_streamed_calls_time_to_first_token_and_speed() -> None:
    cb = MetricsCallback()
    m = CallbackManager([cb])
    _call(m, latency=1100.0, ttft=100.0, tokens=(5, 50))  # 50 tokens in 1 s after the first
    _call(m, latency=500.0)  # not streamed
    metrics = cb.get_metrics()
    assert metrics["streamed_calls"] == 1
    assert metrics["avg_ttft_ms"] == 100.0
    assert metrics["p95_ttft_ms"] == pytest.approx(100, rel=0.02)
    assert metrics["tokens_per_second"] == pytest.approx(55 / 1.5, abs=0.001)


def test_unknown_cost_is_none_not_zero() -> None:
    cb = MetricsCallback()
    m = CallbackManager([cb])
    _call(m, cost=None)
    assert cb.get_metrics()["total_cost"] is None
    assert cb.get_metrics()["unpriced_calls"] == 1
    _call(m, cost=Decimal("0.5"))
    assert cb.get_metrics()["total_cost"] == 0.5
    assert cb.get_metrics()["unpriced_calls"] == 1


def test_latency_from_timestamps_when_not_given() -> None:
    cb = MetricsCallback()
    m = CallbackManager([cb])
    m.on_llm_start("hi", run_id="r1", timestamp=10.0, model="m")
    m.on_llm_end(LLMResponse("x"), run_id="r1", timestamp=10.25, model="m")
    assert cb.get_metrics()["avg_latency_ms"] == pytest.approx(250.0)


def test_errors_retries_tools_and_stages() -> None:
    cb = MetricsCallback()
    m = CallbackManager([cb])
    rid = m.on_llm_start("hi", model="gpt-4o")
    err = RateLimitError("slow")
    m.on_retry(1, 3, err, run_id=rid, model="gpt-4o")
    m.on_retry(2, 3, err, run_id=rid, model="gpt-4o")
    m.on_llm_error(err, run_id=rid, model="gpt-4o")
    m.on_error(err, stage="llm")
    tid = m.on_tool_start("search", {})
    m.on_tool_error("search", ValueError("bad"), run_id=tid)
    m.on_error(ValueError("bad"), stage="tool")
    metrics = cb.get_metrics()
    assert metrics["errors"] == 1
    assert metrics["retries"] == 2
    assert metrics["tool_calls"] == 1
    assert metrics["tool_errors"] == 1
    assert metrics["errors_by_stage"] == {"llm": 1, "tool": 1}
    assert metrics["by_model"]["gpt-4o"]["retries"] == 2
    assert metrics["by_model"]["gpt-4o"]["errors"] == 1


def test_breakdown_per_model_and_agent() -> None:
    cb = MetricsCallback()
    m = CallbackManager([cb])
    with request_context(agent="support"):
        _call(m, model="gpt-4o")
        _call(m, model="gpt-4o-mini", tokens=(1, 1))
    with request_context(agent="sales"):
        _call(m, model="gpt-4o")
    metrics = cb.get_metrics()
    assert metrics["by_model"]["gpt-4o"]["total_calls"] == 2
    assert metrics["by_model"]["gpt-4o-mini"]["total_tokens"] == 2
    assert metrics["by_agent"]["support"]["total_calls"] == 2
    assert metrics["by_agent"]["sales"]["total_calls"] == 1


def test_group_count_is_bounded() -> None:
    cb = MetricsCallback(max_groups=3)
    m = CallbackManager([cb])
    for i in range(10):
        _call(m, model=f"model-{i}")
    by_model = cb.get_metrics()["by_model"]
    assert len(by_model) == 4
    assert by_model["(other)"]["total_calls"] == 7
    with pytest.raises(ConfigurationError, match="max_groups"):
        MetricsCallback(max_groups=0)


def test_reset() -> None:
    cb = MetricsCallback()
    m = CallbackManager([cb])
    _call(m)
    cb.reset()
    metrics = cb.get_metrics()
    assert metrics["total_calls"] == 0
    assert metrics["avg_latency_ms"] == 0.0
    assert metrics["p50_latency_ms"] is None
    assert metrics["by_model"] == {}


def test_thread_safe() -> None:
    cb = MetricsCallback()
    m = CallbackManager([cb])

    def work() -> None:
        for _ in range(500):
            _call(m)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    metrics = cb.get_metrics()
    assert metrics["total_calls"] == 4000
    assert metrics["total_tokens"] == 4000 * 15
    assert metrics["by_model"]["gpt-4o"]["total_calls"] == 4000


async def test_asyncio_safe() -> None:
    cb = MetricsCallback()
    m = CallbackManager([cb])

    async def one(i: int) -> None:
        rid = await m.aon_llm_start("hi", model="m")
        await asyncio.sleep(0)
        await m.aon_llm_end(LLMResponse("x", Usage(1, 1)), run_id=rid, model="m", latency_ms=1.0)

    await asyncio.gather(*(one(i) for i in range(300)))
    assert cb.get_metrics()["total_calls"] == 300


def test_memory_stays_constant() -> None:
    cb = MetricsCallback()
    m = CallbackManager([cb])
    for i in range(2_000):  # warm up: sketch bins for the whole latency range exist
        _call(m, latency=float(1 + i % 2000), ttft=float(1 + i % 500))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(20_000):
        _call(m, latency=float(1 + i % 2000), ttft=float(1 + i % 500))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert after - before < 64 * 1024
    assert cb.get_metrics()["total_calls"] == 22_000


def test_in_flight_starts_are_bounded() -> None:
    cb = MetricsCallback()
    m = CallbackManager([cb])
    for i in range(20_000):
        m.on_llm_start("never ends", run_id=f"r{i}", model="m")
    assert len(cb._started) <= 10_000


def test_prometheus_text_and_collector() -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    cb = MetricsCallback()
    m = CallbackManager([cb])
    _call(m, latency=100.0, ttft=10.0)
    _call(m, model="local", cost=None)
    text = cb.prometheus_text()
    assert 'hookwire_llm_calls_total{model="gpt-4o"} 1.0' in text
    assert 'hookwire_llm_tokens_total{kind="prompt",model="gpt-4o"} 10.0' in text
    assert 'hookwire_llm_latency_ms{model="gpt-4o",quantile="0.95"}' in text
    assert 'hookwire_llm_cost_total{model="local"}' not in text  # unknown is not 0
    registry = prometheus_client.CollectorRegistry()
    registry.register(cb.prometheus_collector(prefix="app"))
    assert registry.get_sample_value("app_llm_calls_total", {"model": "local"}) == 1.0

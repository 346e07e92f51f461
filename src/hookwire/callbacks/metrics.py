"""``MetricsCallback``: counts, tokens, latency quantiles, cost; per model and per agent.

Memory stays constant however many calls it sees: latencies go into DDSketch quantile
sketches (relative accuracy 1%), not lists, and calls in flight are only remembered until
they end. All updates happen under one lock, so it is safe from threads and from asyncio.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from ddsketch import DDSketch

from ..errors import ConfigurationError
from .base import BaseCallback

__all__ = ["MetricsCallback"]

_RELATIVE_ACCURACY = 0.01
# Start times of LLM calls that did not say their latency, kept only until the call ends; the
# bound keeps memory constant even if some calls never end.
_MAX_IN_FLIGHT = 10_000


def _quantile(sketch: DDSketch, q: float) -> float | None:
    if sketch.count == 0:
        return None
    value = sketch.get_quantile_value(q)
    return None if value is None else round(float(value), 3)


class _Stats:
    """The figures of one group (everything, one model, one agent)."""

    __slots__ = (
        "calls",
        "completion_tokens",
        "cost",
        "errors",
        "estimated_cost",
        "estimated_tokens",
        "gen_seconds",
        "latency",
        "latency_sum",
        "priced_calls",
        "prompt_tokens",
        "retries",
        "streamed",
        "tool_calls",
        "total_tokens",
        "ttft",
        "ttft_sum",
        "unknown_usage",
    )

    def __init__(self) -> None:
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.total_tokens = 0
        self.latency = DDSketch(_RELATIVE_ACCURACY)
        self.latency_sum = 0.0
        self.ttft = DDSketch(_RELATIVE_ACCURACY)
        self.ttft_sum = 0.0
        self.streamed = 0
        self.gen_seconds = 0.0
        self.errors = 0
        self.retries = 0
        self.tool_calls = 0
        self.cost = Decimal(0)
        self.priced_calls = 0
        self.unknown_usage = 0
        self.estimated_tokens = 0
        self.estimated_cost: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        timed = self.latency.count
        return {
            "total_calls": self.calls,
            "total_tokens": self.total_tokens,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "avg_latency_ms": round(self.latency_sum / timed, 3) if timed else 0.0,
            "p50_latency_ms": _quantile(self.latency, 0.50),
            "p95_latency_ms": _quantile(self.latency, 0.95),
            "p99_latency_ms": _quantile(self.latency, 0.99),
            "streamed_calls": self.streamed,
            "avg_ttft_ms": round(self.ttft_sum / self.ttft.count, 3) if self.ttft.count else None,
            "p95_ttft_ms": _quantile(self.ttft, 0.95),
            "tokens_per_second": (
                round(self.completion_tokens / self.gen_seconds, 3) if self.gen_seconds else None
            ),
            "errors": self.errors,
            "retries": self.retries,
            "tool_calls": self.tool_calls,
            # Unknown prices are not zero: None when no call had a known price.
            "total_cost": float(self.cost) if self.priced_calls else None,
            "unpriced_calls": self.calls - self.priced_calls,
            # Calls whose provider sent no usage: apart, with their upper-bound estimate.
            "usage_unknown_calls": self.unknown_usage,
            "estimated_tokens": self.estimated_tokens,
            "estimated_cost": None if self.estimated_cost is None else float(self.estimated_cost),
        }


class MetricsCallback(BaseCallback):
    """Aggregates LLM calls into figures: ``get_metrics()`` returns them as a plain dict.

    The dict has ``total_calls``, ``total_tokens``, ``prompt_tokens``, ``completion_tokens``,
    ``avg_latency_ms``, ``p50_latency_ms``/``p95_latency_ms``/``p99_latency_ms``,
    ``streamed_calls``, ``avg_ttft_ms``/``p95_ttft_ms`` (time to first token of streamed
    calls), ``tokens_per_second`` (completion tokens over the time spent in calls),
    ``errors`` (failed LLM calls), ``retries``, ``tool_calls``, ``tool_errors``,
    ``total_cost`` (``None`` when no call had a known price; never 0 for unknown) and
    ``unpriced_calls`` (calls without a known cost), ``usage_unknown_calls`` (calls whose
    provider sent no usage, ``Usage.estimated``: their tokens are not in the token counts nor
    their cost in ``total_cost``; ``estimated_tokens`` and ``estimated_cost`` hold their upper
    bound), then ``errors_by_stage`` (``on_error`` events by stage) and the same
    figures broken down in ``by_model`` (the model asked for) and ``by_agent``.

    ``prometheus_collector()`` and ``prometheus_text()`` expose them for Prometheus.
    """

    name = "MetricsCallback"

    def __init__(self, *, max_groups: int = 1000) -> None:
        if not isinstance(max_groups, int) or max_groups < 1:
            raise ConfigurationError(
                f"max_groups must be a positive number of models/agents, not {max_groups!r}"
            )
        self.max_groups = max_groups
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._total = _Stats()
        self._models: dict[str, _Stats] = {}
        self._agents: dict[str, _Stats] = {}
        self._stages: dict[str, int] = {}
        self._tool_errors = 0
        self._started: OrderedDict[str, float] = OrderedDict()

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            self._reset()

    def _group(self, table: dict[str, _Stats], key: str) -> _Stats:
        stats = table.get(key)
        if stats is None:
            if len(table) >= self.max_groups:
                # A bound on distinct models/agents keeps memory constant under bad input.
                key = "(other)"
                stats = table.get(key)
                if stats is not None:
                    return stats
            stats = table[key] = _Stats()
        return stats

    def _groups(self, kwargs: dict[str, Any], model: str | None = None) -> Iterator[_Stats]:
        yield self._total
        model = kwargs.get("model") or model
        if model is not None:
            yield self._group(self._models, str(model))
        agent = kwargs.get("agent")
        if agent is not None:
            yield self._group(self._agents, str(agent))

    # -- hooks ------------------------------------------------------------------------------

    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        """Remember when the call started (used if its end does not carry ``latency_ms``)."""
        run_id = kwargs.get("run_id")
        ts = kwargs.get("timestamp")
        if run_id is None or ts is None:
            return
        with self._lock:
            started = self._started
            started[run_id] = ts
            if len(started) > _MAX_IN_FLIGHT:
                started.popitem(last=False)

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        """Count a finished call: tokens, latency, time to first token, cost."""
        latency = kwargs.get("latency_ms")
        ttft = kwargs.get("ttft_ms")
        usage = getattr(response, "usage", None)
        estimated = bool(getattr(usage, "estimated", False))
        prompt_t = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_t = int(getattr(usage, "completion_tokens", 0) or 0)
        total_t = int(getattr(usage, "total_tokens", prompt_t + completion_t) or 0)
        cost = getattr(response, "cost", None)
        run_id = kwargs.get("run_id")
        with self._lock:
            started = self._started.pop(run_id, None) if run_id is not None else None
            if latency is None and started is not None and "timestamp" in kwargs:
                latency = (kwargs["timestamp"] - started) * 1000.0
            for s in self._groups(kwargs, getattr(response, "model", None)):
                s.calls += 1
                if estimated:
                    s.unknown_usage += 1
                    s.estimated_tokens += total_t
                    if cost is not None:
                        s.estimated_cost = cost + (s.estimated_cost or 0)
                else:
                    s.prompt_tokens += prompt_t
                    s.completion_tokens += completion_t
                    s.total_tokens += total_t
                if latency is not None and latency >= 0:
                    s.latency.add(latency)
                    s.latency_sum += latency
                    if not estimated:  # tokens_per_second is of the calls with known counts
                        gen = latency - ttft if ttft is not None and ttft <= latency else latency
                        s.gen_seconds += gen / 1000.0
                if ttft is not None and ttft >= 0:
                    s.streamed += 1
                    s.ttft.add(ttft)
                    s.ttft_sum += ttft
                if cost is not None and not estimated:
                    s.cost += cost
                    s.priced_calls += 1

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        """Count a failed call."""
        run_id = kwargs.get("run_id")
        with self._lock:
            if run_id is not None:
                self._started.pop(run_id, None)
            for s in self._groups(kwargs, getattr(error, "model", None)):
                s.errors += 1

    def on_retry(
        self, attempt: int, max_attempts: int, error: BaseException, **kwargs: Any
    ) -> None:
        """Count a retry."""
        with self._lock:
            for s in self._groups(kwargs, getattr(error, "model", None)):
                s.retries += 1

    def on_tool_start(self, tool_name: str, tool_input: Any, **kwargs: Any) -> None:
        """Count a tool call."""
        with self._lock:
            for s in self._groups(kwargs):
                s.tool_calls += 1

    def on_tool_error(self, tool_name: str, error: BaseException, **kwargs: Any) -> None:
        """Count a tool failure."""
        with self._lock:
            self._tool_errors += 1

    def on_error(self, error: BaseException, **kwargs: Any) -> None:
        """Count a reported failure by its stage."""
        stage = str(kwargs.get("stage", "unknown"))
        with self._lock:
            self._stages[stage] = self._stages.get(stage, 0) + 1

    # -- reading ----------------------------------------------------------------------------

    def get_metrics(self) -> dict[str, Any]:
        """The figures as a plain dict (see the class docstring)."""
        with self._lock:
            out = self._total.as_dict()
            out["tool_errors"] = self._tool_errors
            out["errors_by_stage"] = dict(self._stages)
            out["by_model"] = {k: v.as_dict() for k, v in self._models.items()}
            out["by_agent"] = {k: v.as_dict() for k, v in self._agents.items()}
        return out

    def prometheus_collector(self, prefix: str = "hookwire") -> Any:
        """A ``prometheus_client`` collector of these figures.

        Register it with ``prometheus_client.REGISTRY.register(cb.prometheus_collector())``.
        Needs ``prometheus-client`` (``pip install 'hookwire[prometheus]'``).
        """
        try:
            from prometheus_client.core import Metric
        except ImportError as exc:
            raise ConfigurationError(
                "MetricsCallback.prometheus_collector() needs prometheus-client: "
                "pip install 'hookwire[prometheus]'"
            ) from exc
        return _PrometheusCollector(self, prefix, Metric)

    def prometheus_text(self, prefix: str = "hookwire") -> str:
        """The figures in Prometheus' text exposition format."""
        try:
            from prometheus_client import CollectorRegistry, generate_latest
        except ImportError as exc:
            raise ConfigurationError(
                "MetricsCallback.prometheus_text() needs prometheus-client: "
                "pip install 'hookwire[prometheus]'"
            ) from exc
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.prometheus_collector(prefix))
        return str(generate_latest(registry).decode("utf-8"))


class _PrometheusCollector:
    """Yields the figures per model as Prometheus metric families (labels ``model``)."""

    def __init__(self, callback: MetricsCallback, prefix: str, metric: Any) -> None:
        self._cb = callback
        self._prefix = prefix
        self._metric = metric

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        m = self._cb.get_metrics()
        p = self._prefix
        groups: dict[str, dict[str, Any]] = dict(m["by_model"]) or {"": m}
        metric = self._metric

        def family(name: str, doc: str, kind: str) -> Any:
            return metric(f"{p}_{name}", doc, kind)

        calls = family("llm_calls", "LLM calls that returned", "counter")
        errors = family("llm_errors", "LLM calls that failed", "counter")
        retries = family("llm_retries", "LLM call retries", "counter")
        tokens = family("llm_tokens", "Tokens used, by kind", "counter")
        cost = family("llm_cost", "Cost of the LLM calls with a known price", "counter")
        unknown = family(
            "llm_usage_unknown_calls", "LLM calls whose provider sent no usage", "counter"
        )
        latency = family("llm_latency_ms", "LLM call latency in milliseconds", "summary")
        ttft = family("llm_ttft_ms", "Time to first token of streamed calls (ms)", "summary")
        for model, g in groups.items():
            labels = {"model": model}
            calls.add_sample(f"{p}_llm_calls_total", labels, g["total_calls"])
            errors.add_sample(f"{p}_llm_errors_total", labels, g["errors"])
            retries.add_sample(f"{p}_llm_retries_total", labels, g["retries"])
            for kind in ("prompt", "completion"):
                tokens.add_sample(
                    f"{p}_llm_tokens_total", {**labels, "kind": kind}, g[f"{kind}_tokens"]
                )
            if g["total_cost"] is not None:
                cost.add_sample(f"{p}_llm_cost_total", labels, g["total_cost"])
            unknown.add_sample(
                f"{p}_llm_usage_unknown_calls_total", labels, g["usage_unknown_calls"]
            )
            for q, key in (
                ("0.5", "p50_latency_ms"),
                ("0.95", "p95_latency_ms"),
                ("0.99", "p99_latency_ms"),
            ):
                if g[key] is not None:
                    latency.add_sample(f"{p}_llm_latency_ms", {**labels, "quantile": q}, g[key])
            latency.add_sample(f"{p}_llm_latency_ms_count", labels, g["total_calls"])
            latency.add_sample(
                f"{p}_llm_latency_ms_sum", labels, g["avg_latency_ms"] * g["total_calls"]
            )
            if g["p95_ttft_ms"] is not None:
                ttft.add_sample(
                    f"{p}_llm_ttft_ms", {**labels, "quantile": "0.95"}, g["p95_ttft_ms"]
                )
            ttft.add_sample(f"{p}_llm_ttft_ms_count", labels, g["streamed_calls"])
            ttft.add_sample(
                f"{p}_llm_ttft_ms_sum", labels, (g["avg_ttft_ms"] or 0.0) * g["streamed_calls"]
            )
        tools = family("tool_calls", "Tool calls", "counter")
        tools.add_sample(f"{p}_tool_calls_total", {}, m["tool_calls"])
        yield from (calls, errors, retries, tokens, cost, unknown, latency, ttft, tools)

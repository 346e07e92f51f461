"""Sampling: one decision per trace from its id (alike everywhere), 0.0 keeps none, errors,
retries and budget refusals always kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookwire.errors import ConfigurationError
from hookwire.sampling import always_kept, check_rate, over_threshold, trace_kept


def test_the_rate_is_the_share_of_traces_kept() -> None:
    ids = [f"trace-{i}" for i in range(20_000)]
    kept = sum(trace_kept(t, 0.25) for t in ids)
    assert 4_500 < kept < 5_500
    assert not any(trace_kept(t, 0.0) for t in ids[:1000])
    assert all(trace_kept(t, 1.0) for t in ids[:1000])


@given(st.text(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_a_trace_kept_at_a_rate_is_kept_at_any_higher_rate(trace: str, a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert trace_kept(trace, low) == trace_kept(trace, low)
    if trace_kept(trace, low):
        assert trace_kept(trace, high)


def test_errors_retries_and_refusals_are_always_kept() -> None:
    for hook in ("on_llm_error", "on_tool_error", "on_error", "on_retry", "on_budget_exceeded"):
        assert always_kept(hook)
    assert not always_kept("on_llm_end") and not always_kept("on_nothing")
    assert over_threshold({"latency_ms": 900.0}, 500.0, None)
    assert not over_threshold({"latency_ms": 10.0}, 500.0, None)
    assert over_threshold({"cost": 2}, None, 1)


def test_bad_rates_are_refused() -> None:
    for rate in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ConfigurationError, match="sample_rate"):
            check_rate(rate)  # type: ignore[arg-type]

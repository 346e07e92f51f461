"""Event records, Usage and LLMResponse."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookwire.callbacks.base import AsyncBaseCallback, BaseCallback
from hookwire.events import (
    CONTEXT_KEYS,
    HOOKS,
    LLMResponse,
    RetryEvent,
    ToolCall,
    Usage,
    event_from_call,
)


def test_usage_total_defaults_to_prompt_plus_completion() -> None:
    u = Usage(prompt_tokens=10, completion_tokens=5)
    assert u.total_tokens == 15
    assert Usage(1, 2, total_tokens=9).total_tokens == 9
    assert u.cached_tokens is None and u.to_dict() == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
    }


@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.integers(0, 10**6),
            st.none() | st.integers(0, 10**6),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_usage_sums_are_fieldwise(parts: list[tuple[int, int, int | None]]) -> None:
    usages = [Usage(p, c, cached_tokens=k) for p, c, k in parts]
    total = usages[0]
    for u in usages[1:]:
        total = total + u
    assert total.prompt_tokens == sum(p for p, _, _ in parts)
    assert total.completion_tokens == sum(c for _, c, _ in parts)
    assert total.total_tokens == total.prompt_tokens + total.completion_tokens
    known = [k for _, _, k in parts if k is not None]
    assert total.cached_tokens == (sum(known) if known else None)


def test_llm_response_as_the_seeds_use_it() -> None:
    r = LLMResponse("Paris", usage=Usage(100, 150), model="gpt-4", tool_calls=(ToolCall("1", "f"),))
    assert r.content == "Paris" and str(r) == "Paris"
    assert r.usage.total_tokens == 250
    assert r.usage.prompt_tokens == 100 and r.usage.completion_tokens == 150
    assert isinstance(r.created_at, datetime) and r.created_at.tzinfo is not None
    assert r.cost is None, "unknown cost is None, never 0"
    d = LLMResponse("x", cost=Decimal("0.001")).to_dict()
    assert d["cost"] == "0.001" and d["usage"]["total_tokens"] == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.content = "Lyon"  # type: ignore[misc]


def test_every_hook_has_a_record_and_a_base_method() -> None:
    for hook, spec in HOOKS.items():
        assert spec.event.hook == hook
        assert hasattr(BaseCallback, hook) and hasattr(AsyncBaseCallback, hook)
        fields = {f.name for f in dataclasses.fields(spec.event)}
        assert set(spec.args) <= fields
        assert set(CONTEXT_KEYS) <= fields


def test_event_from_call_splits_payload_context_and_extra() -> None:
    err = TimeoutError("slow")
    ev = event_from_call(
        "on_retry",
        (2, 5, err),
        {"run_id": "r", "timestamp": 1.0, "user_id": "u", "delay": 0.5, "tags": ["a"]},
    )
    assert isinstance(ev, RetryEvent)
    assert ev.payload() == {"attempt": 2, "max_attempts": 5, "error": err}
    assert ev.context() == {"run_id": "r", "timestamp": 1.0, "tags": ("a",), "user_id": "u"}
    assert ev.extra == {"delay": 0.5}
    assert ev.kwargs()["delay"] == 0.5

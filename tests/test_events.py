"""Event records, Usage and LLMResponse."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookwire.callbacks.base import AsyncBaseCallback, BaseCallback
from hookwire.events import (
    CONTEXT_KEYS,
    HOOKS,
    Event,
    HookSpec,
    LLMResponse,
    RetryEvent,
    ToolCall,
    Usage,
    declare_hook,
    event_from_call,
    hook_methods,
)
from hookwire.llms.base import LLMRequest, StreamEnd


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


@pytest.mark.parametrize("cls", [Usage, LLMResponse, LLMRequest, StreamEnd, ToolCall])
def test_hand_written_inits_match_the_fields(cls: type) -> None:
    # These records write their __init__ out (it is on every LLM call's path); it must take
    # exactly the dataclass's fields, in order, with the same defaults.
    assert cls.__init__.__qualname__ == f"{cls.__name__}.__init__"
    params = list(inspect.signature(cls).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        assert p.kind is p.POSITIONAL_OR_KEYWORD
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default, f.name
        elif f.default_factory is not dataclasses.MISSING:
            assert repr(p.default) == "<factory>", f.name
        else:
            assert p.default is p.empty, f.name


def test_records_built_by_the_hand_written_inits() -> None:
    u = Usage(3, 4, -1, 1, 2)
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (3, 4, 7)
    assert (u.cached_tokens, u.reasoning_tokens) == (1, 2)
    assert Usage(completion_tokens=2) == Usage(0, 2, 2, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        u.total_tokens = 1  # type: ignore[misc]
    a, b = LLMResponse("a"), LLMResponse("b")
    # Factory defaults are made per instance.
    assert a.usage == Usage() and a.created_at.tzinfo is not None
    assert (a.model, a.finish_reason, a.tool_calls, a.provider, a.id, a.cost, a.currency) == (
        None,
        None,
        (),
        None,
        None,
        None,
        "USD",
    )
    assert b.created_at >= a.created_at
    when = datetime(2026, 1, 1)
    r = LLMResponse("x", u, "m", when, "stop", (), "p", "id", Decimal("0.1"), "EUR")
    assert r == LLMResponse(
        content="x",
        usage=u,
        model="m",
        created_at=when,
        finish_reason="stop",
        tool_calls=(),
        provider="p",
        id="id",
        cost=Decimal("0.1"),
        currency="EUR",
    )
    assert dataclasses.replace(r, content="y").content == "y"
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.content = "z"  # type: ignore[misc]
    req = LLMRequest([], "m", {})
    assert (req.messages, req.model, req.params, req.tools) == ([], "m", {}, None)
    end = StreamEnd("stop")
    assert (end.finish_reason, end.usage, end.model, end.id, end.tool_calls) == (
        "stop",
        None,
        None,
        None,
        (),
    )


def test_a_dataclass_subclass_of_usage_still_defaults_its_total() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Counted(Usage):
        calls: int = 1

    assert Counted(2, 3).total_tokens == 5
    assert Counted(2, 3).calls == 1


def test_hooks_is_a_read_only_view() -> None:
    with pytest.raises(TypeError):
        HOOKS["on_x"] = HOOKS["on_error"]  # type: ignore[index]


def test_a_hooks_description_is_its_doc_or_its_records_docstring() -> None:
    spec = HOOKS["on_llm_end"]
    assert spec.description.startswith("An LLM call returned ``response``")
    assert dataclasses.replace(spec, doc="Mine.").description == "Mine."
    assert HOOKS["on_memory_recall"].content == ("query", "results")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _PingEvent(Event):
    """A ping."""

    name: ClassVar[str] = "ping"
    hook: ClassVar[str] = "on_ping"
    n: int = 0


def test_hook_methods_follows_the_table_and_keeps_a_classs_own_methods() -> None:
    class Table:
        def on_error(self) -> str:
            return "mine"

    hook_methods(Table, lambda spec: lambda self: spec.name)
    t: Any = Table()
    assert t.on_error() == "mine"
    assert t.on_llm_end() == "on_llm_end"
    assert Table.on_llm_end.__qualname__.endswith("Table.on_llm_end")
    assert Table.on_llm_end.__doc__ == HOOKS["on_llm_end"].description
    remove = declare_hook(HookSpec("on_ping", _PingEvent, ("n",)))
    try:
        assert t.on_ping() == "on_ping"
    finally:
        remove()
    assert not hasattr(Table, "on_ping")
    assert "on_ping" not in HOOKS


def test_a_failing_listener_leaves_nothing_half_declared() -> None:
    from hookwire import events

    def refuse(spec: HookSpec) -> None:
        if spec.name in HOOKS:
            raise RuntimeError("no pings here")

    events.on_hook_declared(refuse)
    try:
        with pytest.raises(RuntimeError, match="no pings"):
            declare_hook(HookSpec("on_ping", _PingEvent, ("n",)))
    finally:
        events._LISTENERS.remove(refuse)
    assert "on_ping" not in HOOKS


def test_a_class_that_is_gone_stops_listening() -> None:
    import gc

    from hookwire import events

    class Gone:
        pass

    hook_methods(Gone, lambda spec: lambda self: None)
    listener = events._LISTENERS[-1]
    del Gone
    gc.collect()
    declare_hook(HookSpec("on_ping", _PingEvent, ("n",)))()
    assert listener not in events._LISTENERS

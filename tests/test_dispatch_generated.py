"""Property tests for the generated dispatch functions.

Whatever the mix of run context, explicit keywords and optional LLM keywords, every kind of
handler (inline sync, async, background, catch-all ``on_event``) must receive the same
payload and exactly the expected keywords, from sync and async dispatch alike.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hookwire import AsyncBaseCallback, BaseCallback, CallbackManager, request_context
from hookwire.callbacks.forwarding import forwards
from hookwire.events import HOOKS

CTX = st.dictionaries(
    st.sampled_from(["user_id", "org_id", "correlation_id", "agent"]),
    st.text(min_size=1, max_size=5),
    max_size=4,
)
EXTRA = st.dictionaries(
    st.sampled_from(["latency_ms", "attempt", "name", "user_id", "stream"]),
    st.integers(0, 9),
    max_size=3,
)
OPTIONAL = st.fixed_dictionaries(
    {}, optional={"model": st.sampled_from(["m1", "m2"]), "provider": st.just("openai")}
)


class Inline(BaseCallback):
    def __init__(self) -> None:
        self.got: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def on_llm_end(self, *args: Any, **kw: Any) -> None:
        self.got.append((args, kw))

    def on_tool_end(self, *args: Any, **kw: Any) -> None:
        self.got.append((args, kw))


class Async(AsyncBaseCallback):
    def __init__(self) -> None:
        self.got: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    async def on_llm_end(self, *args: Any, **kw: Any) -> None:
        self.got.append((args, kw))

    async def on_tool_end(self, *args: Any, **kw: Any) -> None:
        self.got.append((args, kw))


class Background(Inline):
    run_in_background = True


class CatchAll(BaseCallback):
    def __init__(self) -> None:
        self.got: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def on_event(self, event: Any) -> None:
        self.got.append((tuple(event.payload().values()), event.kwargs()))


class Raw(BaseCallback):
    """A handler with the dispatcher's raw entry point (as FileLogCallback has)."""

    def __init__(self) -> None:
        self.got: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.hook_calls = 0

    def _hookwire_raw(self, hook: str, args: tuple[Any, ...], *parts: Any) -> None:
        run_id, timestamp, ctx, kw, model, provider = parts
        full = {"run_id": run_id, "timestamp": timestamp, **ctx, **kw}
        if model is not None:
            full["model"] = model
        if provider is not None:
            full["provider"] = provider
        self.got.append((args, full))

    @forwards
    def on_llm_end(self, *args: Any, **kw: Any) -> None:
        self.hook_calls += 1

    @forwards
    def on_tool_end(self, *args: Any, **kw: Any) -> None:
        self.hook_calls += 1


def _expected(ctx: dict[str, Any], extra: dict[str, Any], opt: dict[str, Any]) -> dict[str, Any]:
    return {**ctx, **extra, **opt, "run_id": "r1", "timestamp": 5.0}


@settings(max_examples=60, deadline=None)
@given(
    ctx=CTX,
    extra=EXTRA,
    opt=OPTIONAL,
    use_async=st.booleans(),
    hook=st.sampled_from(["on_llm_end", "on_tool_end"]),
)
def test_all_handler_kinds_receive_the_same_keywords(
    ctx: dict[str, Any], extra: dict[str, Any], opt: dict[str, Any], use_async: bool, hook: str
) -> None:
    raw = Raw()
    handlers = [Inline(), raw, Async(), Background(), CatchAll(), Raw()]
    m = CallbackManager(handlers)
    payload: tuple[Any, ...] = ("resp",) if hook == "on_llm_end" else ("tool", "out")
    kwargs = {**extra, **opt, "run_id": "r1", "timestamp": 5.0}
    with request_context(**ctx):
        if use_async:
            asyncio.run(getattr(m, "a" + hook)(*payload, **kwargs))
        else:
            getattr(m, hook)(*payload, **kwargs)
    assert m.flush(timeout=5)
    want = _expected(ctx, extra, opt)
    for h in handlers:
        assert len(h.got) == 1, type(h).__name__
        args, kw = h.got[0]
        assert args == payload, type(h).__name__
        assert kw == want, type(h).__name__
    assert raw.hook_calls == 0  # the raw entry point replaced the hook
    assert m.stats()["errors_total"] == 0
    m.close()


def test_a_hook_overridden_without_the_raw_mark_is_called_normally() -> None:
    class Overriding(Raw):
        def on_llm_end(self, *args: Any, **kw: Any) -> None:
            self.hook_calls += 1

    h = Overriding()
    m = CallbackManager([h])
    m.on_llm_end("resp", run_id="r1", timestamp=5.0)
    m.on_tool_end("tool", "out", run_id="r1", timestamp=5.0)
    assert h.hook_calls == 1
    assert h.got == [(("tool", "out"), {"run_id": "r1", "timestamp": 5.0})]


def test_raw_handlers_share_the_keywords_but_never_see_other_handlers_changes() -> None:
    class Mutating(BaseCallback):
        def on_tool_end(self, *args: Any, **kw: Any) -> None:
            kw["latency_ms"] = -1
            kw["added"] = True

    raw = Raw()
    m = CallbackManager([Mutating(), raw])
    m.on_tool_end("tool", "out", run_id="r1", timestamp=5.0, latency_ms=3.0)
    assert raw.got == [(("tool", "out"), {"run_id": "r1", "timestamp": 5.0, "latency_ms": 3.0})]


def test_every_hook_dispatches_with_its_payload_by_position_and_by_name() -> None:
    class All(BaseCallback):
        def __init__(self) -> None:
            self.got: list[tuple[str, tuple[Any, ...]]] = []

        def on_event(self, event: Any) -> None:
            self.got.append((event.hook, tuple(event.payload().values())))

    h = All()
    m = CallbackManager([h])
    for hook, spec in HOOKS.items():
        values = tuple(f"{hook}-{a}" for a in spec.args)
        getattr(m, hook)(*values)
        getattr(m, hook)(**dict(zip(spec.args, values, strict=True)))
    assert [g[0] for g in h.got] == [hk for hk in HOOKS for _ in range(2)]
    for hook, payload in h.got:
        assert payload == tuple(f"{hook}-{a}" for a in HOOKS[hook].args)

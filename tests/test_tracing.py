"""trace() and request_context(): nesting, and propagation across threads and tasks."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hookwire import (
    BaseCallback,
    CallbackManager,
    current_context,
    current_run,
    request_context,
    trace,
)
from hookwire.errors import ConfigurationError
from hookwire.testing import RecordingCallback


def test_nested_traces_link_parent_and_trace_ids() -> None:
    rec = RecordingCallback()
    m = CallbackManager([rec])
    with trace("outer", callbacks=m, user_id="u1", correlation_id="c1") as outer:
        llm_id = m.on_llm_start("p")
        with trace("inner", callbacks=m, agent="helper") as inner:
            m.on_tool_start("search", {"q": 1})
        m.on_llm_end("done", run_id=llm_id)
    calls = rec.calls
    hooks = [c.hook for c in calls]
    assert hooks == [
        "on_run_start",
        "on_llm_start",
        "on_run_start",
        "on_tool_start",
        "on_run_end",
        "on_llm_end",
        "on_run_end",
    ]
    outer_start, llm_start, inner_start, tool, inner_end, llm_end, outer_end = calls
    assert outer_start["run_id"] == outer.run_id == outer.trace_id
    assert "parent_run_id" not in outer_start.kwargs
    assert llm_start["parent_run_id"] == outer.run_id and llm_start["depth"] == 1
    assert inner_start["parent_run_id"] == outer.run_id and inner_start["run_id"] == inner.run_id
    assert tool["parent_run_id"] == inner.run_id and tool["depth"] == 2
    assert tool["agent"] == "helper" and tool["user_id"] == "u1"
    assert {c["trace_id"] for c in calls} == {outer.run_id}
    assert llm_end["run_id"] == llm_id
    assert inner_end["name"] == "inner" and outer_end["name"] == "outer"
    assert "agent" not in outer_end.kwargs, "inner context does not leak out"


def test_trace_reports_errors_in_run_end_and_reraises() -> None:
    rec = RecordingCallback()
    with pytest.raises(KeyError), trace("t", callbacks=[rec]):
        raise KeyError("k")
    end = rec.of("run_end")[0]
    assert isinstance(end["error"], KeyError)
    assert current_run() is None and current_context() == {}


def test_trace_output_and_tags_and_metadata_accumulate() -> None:
    rec = RecordingCallback()
    with trace("a", callbacks=[rec], tags=["x"], metadata={"k": 1}) as run:
        with trace("b", callbacks=[rec], tags=["y"], metadata={"j": 2}):
            pass
        run.output = 42
    inner_start = rec.of("run_start")[1]
    assert inner_start["tags"] == ("x", "y")
    assert inner_start["metadata"] == {"k": 1, "j": 2}
    assert rec.of("run_end")[-1]["output"] == 42


def test_trace_as_decorator_sync_and_async() -> None:
    rec = RecordingCallback()

    @trace("add", callbacks=[rec])
    def add(a: int, b: int = 2) -> int:
        assert current_run() is not None
        return a + b

    @trace("aadd", callbacks=[rec])
    async def aadd(a: int) -> int:
        await asyncio.sleep(0)
        return a + 1

    assert add(1) == 3
    assert asyncio.run(aadd(1)) == 2
    starts, ends = rec.of("run_start"), rec.of("run_end")
    assert starts[0]["input"] == {"a": 1} and ends[0]["output"] == 3
    assert starts[1]["input"] == {"a": 1} and ends[1]["output"] == 2
    assert starts[0]["run_id"] != starts[1]["run_id"]


def test_unknown_context_keys_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="user_id"):
        trace("x", usr="typo")
    with pytest.raises(ConfigurationError):
        request_context(tenant="t")
    with pytest.raises(ConfigurationError):
        trace("")


def test_request_context_without_a_run() -> None:
    rec = RecordingCallback()
    m = CallbackManager([rec])
    with request_context(user_id="u9", request_id="r1"):
        m.on_error(ValueError("x"))
    m.on_error(ValueError("y"))
    assert rec.calls[0]["user_id"] == "u9" and rec.calls[0]["request_id"] == "r1"
    assert "user_id" not in rec.calls[1].kwargs


def test_explicit_keywords_override_context() -> None:
    rec = RecordingCallback()
    m = CallbackManager([rec])
    with request_context(user_id="ctx"):
        m.on_error(ValueError("x"), user_id="explicit")
    assert rec.calls[0]["user_id"] == "explicit"


async def test_context_crosses_await_and_create_task() -> None:
    rec = RecordingCallback()
    m = CallbackManager([rec])

    async def child(n: int) -> None:
        await asyncio.sleep(0.001 * n)
        await m.aon_llm_start(f"p{n}")

    async with trace("root", callbacks=m, user_id="u") as root:
        await asyncio.gather(*(asyncio.create_task(child(i)) for i in range(5)))
    llm = rec.of("llm_start")
    assert len(llm) == 5
    assert all(c["parent_run_id"] == root.run_id and c["user_id"] == "u" for c in llm)


async def test_concurrent_tasks_keep_separate_traces() -> None:
    rec = RecordingCallback()
    m = CallbackManager([rec])

    async def request(uid: str) -> str:
        async with trace("req", callbacks=m, user_id=uid) as run:
            await asyncio.sleep(0.001)
            await m.aon_llm_start(uid)
            return run.run_id

    ids = await asyncio.gather(*(request(f"u{i}") for i in range(10)))
    for call in rec.of("llm_start"):
        uid = call["prompt"]
        assert call["user_id"] == uid
        assert call["parent_run_id"] == ids[int(uid[1:])]


def test_context_crosses_threads_with_copy_context() -> None:
    rec = RecordingCallback()
    m = CallbackManager([rec])
    with trace("root", callbacks=m, org_id="o1") as root:
        ctx = contextvars.copy_context()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda i: ctx.copy().run(m.on_llm_start, i), range(4)))
        # A bare thread starts with an empty context, as contextvars do.
        t = threading.Thread(target=m.on_llm_start, args=("bare",))
        t.start()
        t.join()
    llm = rec.of("llm_start")
    carried = [c for c in llm if c["prompt"] != "bare"]
    assert len(carried) == 4
    assert all(c["parent_run_id"] == root.run_id and c["org_id"] == "o1" for c in carried)
    bare = next(c for c in llm if c["prompt"] == "bare")
    assert "parent_run_id" not in bare.kwargs


def test_trace_without_callbacks_only_sets_context() -> None:
    rec = RecordingCallback()
    m = CallbackManager([rec])
    with trace("quiet", conversation_id="c") as run:
        m.on_memory_store("x")
    assert rec.hooks() == ["on_memory_store"]
    assert rec.calls[0]["parent_run_id"] == run.run_id
    assert rec.calls[0]["conversation_id"] == "c"


def test_a_handler_abort_in_run_start_leaves_no_context_behind() -> None:
    from hookwire import BaseCallback
    from hookwire.errors import CallbackAbort

    class No(BaseCallback):
        def on_run_start(self, input: Any, **kw: Any) -> None:
            raise CallbackAbort("stop")

    with pytest.raises(CallbackAbort), trace("x", callbacks=[No()], user_id="u"):
        pass
    assert current_context() == {} and current_run() is None


def test_an_edit_to_the_metadata_a_handler_gets_carries_into_no_later_run() -> None:
    seen: list[Any] = []

    class Editor(BaseCallback):
        def on_run_start(self, input: Any, **kw: Any) -> None:
            seen.append(dict(kw["metadata"]))
            for edit in (
                lambda: kw["metadata"].__setitem__("user", "mallory"),
                lambda: kw["metadata"]["limits"].append(0),
                lambda: kw["metadata"]["limits"][0].update(calls=10**6),
            ):
                with pytest.raises(TypeError, match="read-only"):
                    edit()

    given = {"user": "alice", "limits": [{"calls": 3}]}
    traced = trace("job", callbacks=[Editor()], metadata=given)

    @traced
    def job() -> None:
        with trace("inner", callbacks=[Editor()], metadata={"step": 1}):
            pass

    job()
    job()
    assert given == {"user": "alice", "limits": [{"calls": 3}]}
    assert seen[0] == seen[2] == given
    assert seen[1] == seen[3] == {**given, "step": 1}

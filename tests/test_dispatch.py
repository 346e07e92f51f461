"""CallbackManager: order, sync/async handlers, error isolation, background lanes, stats."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

import pytest

from hookwire import AsyncBaseCallback, BaseCallback, CallbackManager, LLMResponse, Usage, dispatch
from hookwire.errors import BudgetExceeded, CallbackAbort, ConfigurationError, HandlerError
from hookwire.events import LLMEndEvent, LLMStartEvent
from hookwire.testing import RecordingCallback, capture_events


class Order(BaseCallback):
    def __init__(self, name: str, log: list[str]) -> None:
        self.label = name
        self.log = log

    def on_llm_start(self, prompt: Any, **kw: Any) -> None:
        self.log.append(f"{self.label}:start:{prompt}")

    def on_llm_end(self, response: Any, **kw: Any) -> None:
        self.log.append(f"{self.label}:end")


class AsyncOrder(AsyncBaseCallback):
    def __init__(self, name: str, log: list[str]) -> None:
        self.label = name
        self.log = log

    async def on_llm_start(self, prompt: Any, **kw: Any) -> None:
        await asyncio.sleep(0)
        self.log.append(f"{self.label}:start:{prompt}")


class Boom(BaseCallback):
    def on_llm_start(self, prompt: Any, **kw: Any) -> None:
        raise RuntimeError("handler bug")


def test_handlers_are_called_in_the_order_given_sync_and_async_mixed() -> None:
    log: list[str] = []
    m = CallbackManager([Order("a", log), AsyncOrder("b", log), Order("c", log)])
    m.on_llm_start("p")
    assert log == ["a:start:p", "b:start:p", "c:start:p"]


async def test_async_dispatch_awaits_async_handlers_in_order() -> None:
    log: list[str] = []
    m = CallbackManager([AsyncOrder("a", log), Order("b", log), AsyncOrder("c", log)])
    await m.aon_llm_start("q")
    assert log == ["a:start:q", "b:start:q", "c:start:q"]


async def test_sync_dispatch_from_inside_a_running_loop_still_runs_async_handlers() -> None:
    log: list[str] = []
    m = CallbackManager([AsyncOrder("a", log)])
    m.on_llm_start("x")  # runs on hookwire's background loop, not this one
    assert log == ["a:start:x"]


def test_every_hook_gets_run_id_and_timestamp_and_only_context_that_has_a_value() -> None:
    rec = RecordingCallback()
    m = CallbackManager([rec])
    run_id = m.on_llm_start("hi", model="gpt-4o")
    m.on_llm_new_token("t", run_id=run_id)
    m.on_llm_end(LLMResponse("ok"), run_id=run_id)
    start, token, end = rec.calls
    assert start.kwargs["run_id"] == run_id == token.kwargs["run_id"] == end.kwargs["run_id"]
    assert isinstance(start.kwargs["timestamp"], float)
    assert start.kwargs["model"] == "gpt-4o"
    assert "parent_run_id" not in start.kwargs and "trace_id" not in start.kwargs
    assert "user_id" not in start.kwargs
    assert abs(start.kwargs["timestamp"] - time.time()) < 5


def test_start_hooks_return_a_run_id_even_without_handlers() -> None:
    m = CallbackManager()
    rid = m.on_llm_start("x")
    assert isinstance(rid, str) and len(rid) == 36
    assert m.on_llm_start("x", run_id="given") == "given"
    assert m.on_tool_start("t", {}) != m.on_tool_start("t", {})
    assert m.on_llm_new_token("t") is None


async def test_hooks_nobody_listens_to_are_the_class_no_ops() -> None:
    # Every hook of a manager without listeners takes any keyword (even "self"), does nothing,
    # and start hooks still give a run id; sync and async.
    import inspect

    from hookwire.events import HOOKS

    m = CallbackManager()
    for hook, spec in HOOKS.items():
        args = ["x"] * len(spec.args)
        result = getattr(m, hook)(*args, run_id="r1", anything=1, self=2)
        aresult = await getattr(m, "a" + hook)(*args, run_id="r1", anything=1)
        if hook in ("on_run_start", "on_llm_start", "on_tool_start"):
            assert result == aresult == "r1"
            assert len(getattr(m, hook)(*args)) == 36
        else:
            assert result is None and aresult is None
        assert getattr(type(m), hook) is getattr(CallbackManager, hook)  # inherited
        assert getattr(CallbackManager, hook).__doc__
        assert inspect.iscoroutinefunction(getattr(CallbackManager, "a" + hook))
    assert not hasattr(m, "__dict__")  # no hook can be shadowed on the instance


def test_the_declarations_for_type_checkers_are_the_hook_table() -> None:
    # CallbackManager declares its hooks under TYPE_CHECKING for mypy and readers; at run time
    # they come from events.HOOKS. The two must name the same hooks with the same arguments.
    import ast
    import inspect

    from hookwire.events import HOOKS

    tree = ast.parse(inspect.getsource(dispatch))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CallbackManager")
    block = next(n for n in cls.body if isinstance(n, ast.If))
    declared = {
        f.name: [a.arg for a in f.args.args[1:]]
        for f in block.body
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    wanted = {h: list(spec.args) for h, spec in HOOKS.items()}
    wanted |= {"a" + h: args for h, args in wanted.items()}
    assert declared == wanted


def test_managers_of_one_shape_share_a_class_and_add_remove_move_between_shapes() -> None:
    # Dispatchers are methods of a class per shape of handler set (see dispatch): managers
    # built from handlers of the same classes share one, adding and removing handlers moves
    # a manager to its new shape's class without touching the others, and a subclass of
    # yours stays in the picture.
    a, b = CallbackManager(), CallbackManager()
    assert type(a) is type(b) is CallbackManager
    assert type(CallbackManager([RecordingCallback()])) is type(
        CallbackManager([RecordingCallback()])
    )
    rec = a.add(RecordingCallback())
    assert isinstance(a, CallbackManager) and type(a).__name__ == "CallbackManager"
    assert "on_llm_new_token" in type(a).__dict__ and type(a) is not CallbackManager
    assert type(b) is CallbackManager
    a.on_llm_new_token("a", run_id="r")
    b.on_llm_new_token("not seen")
    a.remove(rec)
    assert type(a) is CallbackManager
    assert a.on_llm_new_token("b") is None
    assert [c["token"] for c in rec.calls] == ["a"]
    # A caller's keyword named like the manager's own parameter reaches the handler.
    rec2 = a.add(RecordingCallback())
    a.on_llm_end("resp", _manager="given")
    assert rec2.calls[-1]["_manager"] == "given"

    class Mine(CallbackManager):
        pass

    mine = Mine([RecordingCallback()])
    assert isinstance(mine, Mine) and type(mine).__name__ == "Mine"

    class Configured(CallbackManager):
        def __init__(self, label: str, *, handlers: Any = ()) -> None:
            super().__init__(handlers)
            self.label = label

    made = Configured("x", handlers=[RecordingCallback()])
    assert made.label == "x" and made.listens("on_llm_end")
    again = type(made)("y")
    assert isinstance(again, Configured) and again.label == "y" and not len(again)
    import copy as copying

    clone = copying.copy(made)
    assert isinstance(clone, Configured) and clone.label == "x" and clone.listens("on_llm_end")
    assert clone is not made and clone.handlers == made.handlers
    clone.on_llm_end("to the clone")
    assert made.handlers[0].calls[-1]["response"] == "to the clone"

    class Ends(BaseCallback):
        def __init__(self) -> None:
            self.seen: list[Any] = []

        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            self.seen.append(response)

    original = Configured("z", handlers=[Ends()])
    deep = copying.deepcopy(original)
    assert deep.label == "z" and deep.handlers[0] is not original.handlers[0]
    deep.on_llm_end("deep")
    assert deep.handlers[0].seen == ["deep"] and original.handlers[0].seen == []
    assert type(type(mine)([])) is Mine
    import copy

    twin = copy.copy(a)
    assert twin is not a and type(twin) is type(a)
    assert twin.handlers == a.handlers and twin.listens("on_llm_end")
    twin.on_llm_end("via the copy")
    assert rec2.calls[-1]["response"] == "via the copy"


def test_managers_of_the_same_shape_share_dispatchers_not_handlers() -> None:
    # The dispatchers read the handlers from the manager: a second manager with handlers of
    # the same classes reuses the first one's methods, and still calls its own handlers.
    a, b = RecordingCallback(), RecordingCallback()
    ma, mb = CallbackManager([a]), CallbackManager([b])
    assert ma.on_llm_end.__func__ is mb.on_llm_end.__func__
    ma.on_llm_end("for a")
    mb.on_llm_end("for b")
    assert [c["response"] for c in a.calls] == ["for a"]
    assert [c["response"] for c in b.calls] == ["for b"]


def test_a_failing_handler_never_reaches_the_caller_and_the_next_one_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    m = CallbackManager([Boom(), Order("after", log)])
    with caplog.at_level(logging.DEBUG, logger="hookwire"):
        for _ in range(3):
            m.on_llm_start("p")
    assert log == ["after:start:p"] * 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, "logged once per handler and hook"
    assert "Boom" in errors[0].getMessage() and "on_llm_start" in errors[0].getMessage()
    stats = m.stats()
    assert stats["errors"] == {"Boom.on_llm_start": 3}
    assert stats["errors_total"] == 3


async def test_a_failing_async_handler_is_isolated_too() -> None:
    class ABoom(AsyncBaseCallback):
        async def on_llm_end(self, response: Any, **kw: Any) -> None:
            raise ValueError("nope")

    rec = RecordingCallback()
    m = CallbackManager([ABoom(), rec])
    await m.aon_llm_end(LLMResponse("x"))
    m.on_llm_end(LLMResponse("y"))
    assert [c["response"].content for c in rec.calls] == ["x", "y"]
    assert m.stats()["errors"] == {"ABoom.on_llm_end": 2}


def test_raise_error_handlers_raise_handler_error_from_their_own() -> None:
    class Strict(Boom):
        raise_error = True

    strict = Strict()
    m = CallbackManager([strict])
    for dispatch_it in (lambda: m.on_llm_start("p"), lambda: asyncio.run(m.aon_llm_start("p"))):
        with pytest.raises(HandlerError, match=r"Strict\.on_llm_start raised RuntimeError") as info:
            dispatch_it()
        assert isinstance(info.value.__cause__, RuntimeError)
        assert info.value.handler is strict and info.value.hook == "on_llm_start"
        assert info.value.error is info.value.__cause__
    assert m.stats()["errors"] == {"Strict.on_llm_start": 2}


def test_callback_abort_always_reaches_the_caller() -> None:
    class Gate(BaseCallback):
        def on_llm_start(self, prompt: Any, **kw: Any) -> None:
            raise BudgetExceeded("over budget", scope="user", key="u1")

    log: list[str] = []
    m = CallbackManager([Gate(), Order("later", log)])
    with pytest.raises(BudgetExceeded):
        m.on_llm_start("p")
    assert log == [], "nothing after the gate runs"
    assert m.stats()["errors_total"] == 0


async def test_callback_abort_from_an_async_handler_reaches_async_caller() -> None:
    class AGate(AsyncBaseCallback):
        async def on_llm_start(self, prompt: Any, **kw: Any) -> None:
            raise BudgetExceeded("over")

    m = CallbackManager([AGate()])
    with pytest.raises(BudgetExceeded):
        await m.aon_llm_start("p")
    with pytest.raises(BudgetExceeded):
        m.on_llm_start("p")


def test_handlers_without_kwargs_get_only_what_they_declare() -> None:
    got: list[Any] = []

    class Minimal(BaseCallback):
        def on_llm_end(self, response):  # type: ignore[no-untyped-def,override]
            got.append(response.content)

    m = CallbackManager([Minimal()])
    m.on_llm_end(LLMResponse("fine"), model="m")
    assert got == ["fine"]
    assert m.stats()["errors_total"] == 0


def test_on_event_receives_typed_records_for_every_hook() -> None:
    events: list[Any] = []

    class All(BaseCallback):
        def on_event(self, event: Any) -> None:
            events.append(event)

    m = CallbackManager([All()])
    rid = m.on_llm_start("hello", model="m1", user_id="u")
    m.on_llm_end(LLMResponse("bye", usage=Usage(3, 4)), run_id=rid, latency_ms=12.5)
    start, end = events
    assert isinstance(start, LLMStartEvent) and start.prompt == "hello"
    assert start.model == "m1" and start.user_id == "u" and start.run_id == rid
    assert isinstance(end, LLMEndEvent) and end.response is not None
    assert end.response.usage.total_tokens == 7
    assert end.extra == {"latency_ms": 12.5}
    with pytest.raises(AttributeError):
        end.run_id = "x"  # type: ignore[misc]


def test_add_and_remove_rebuild_dispatch() -> None:
    m = CallbackManager()
    assert not m.listens("on_llm_new_token")
    rec = m.add(RecordingCallback())
    assert m.listens("on_llm_new_token")
    m.on_llm_new_token("a")
    m.remove(rec)
    m.on_llm_new_token("b")
    assert [c["token"] for c in rec.calls] == ["a"]
    with pytest.raises(ConfigurationError):
        m.remove(rec)


def test_capture_events_helper() -> None:
    m = CallbackManager()
    with capture_events(m) as rec:
        m.on_error(ValueError("x"))
    m.on_error(ValueError("y"))
    assert rec.hooks() == ["on_error"]
    assert len(m) == 0


def test_bad_handlers_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="pass an instance"):
        CallbackManager([RecordingCallback])
    with pytest.raises(ConfigurationError, match="no hook methods"):
        CallbackManager([object()])
    with pytest.raises(ConfigurationError, match="list"):
        CallbackManager.ensure(RecordingCallback())  # type: ignore[arg-type]


def test_ensure_and_merged() -> None:
    a, b = RecordingCallback(), RecordingCallback()
    m = CallbackManager.ensure([a])
    assert CallbackManager.ensure(m) is m
    assert CallbackManager.ensure(None).handlers == ()
    assert m.merged([a, b]).handlers == (a, b)


# -- background lanes ---------------------------------------------------------------------------


class Slow(BaseCallback):
    run_in_background = True

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen: list[str] = []
        self.threads: set[str] = set()

    def on_llm_new_token(self, token: str, **kw: Any) -> None:
        if self.delay:
            time.sleep(self.delay)
        self.threads.add(threading.current_thread().name)
        self.seen.append(token)


def test_background_handlers_run_off_thread_in_order_and_flush_drains() -> None:
    h = Slow()
    m = CallbackManager([h])
    tokens = [str(i) for i in range(2000)]
    for t in tokens:
        m.on_llm_new_token(t)
    assert m.flush(timeout=10)
    assert h.seen == tokens
    assert threading.current_thread().name not in h.threads
    assert m.stats()["queued"] == {"Slow": 0}


def test_a_full_queue_blocks_by_default_and_loses_nothing() -> None:
    class Tiny(Slow):
        queue_size = 2

    h = Tiny(delay=0.002)
    m = CallbackManager([h])
    for i in range(30):
        m.on_llm_new_token(str(i))
    assert m.flush(timeout=10)
    assert h.seen == [str(i) for i in range(30)]
    assert m.stats()["dropped"] == {"Tiny": 0}


def test_a_full_queue_wakes_the_worker_and_the_producer_waits_only_for_room() -> None:
    class One(Slow):
        queue_size = 1

    h = One()
    m = CallbackManager([h])
    done = threading.Event()

    def produce() -> None:
        for i in range(5):
            m.on_llm_new_token(str(i))
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    assert done.wait(10), "the producer waits for the worker, not for its linger"
    assert m.close(timeout=5)
    assert h.seen == [str(i) for i in range(5)]


def test_a_full_queue_drops_and_counts_when_asked() -> None:
    class Lossy(Slow):
        queue_size = 1
        drop_when_full = True

    h = Lossy(delay=0.02)
    m = CallbackManager([h])
    for i in range(20):
        m.on_llm_new_token(str(i))
    m.flush(timeout=10)
    dropped = m.stats()["dropped"]["Lossy"]
    assert dropped > 0
    assert len(h.seen) + dropped == 20
    assert h.seen == sorted(h.seen, key=int), "what is kept stays in order"


def test_flush_times_out_on_a_stuck_handler() -> None:
    release = threading.Event()

    class Stuck(BaseCallback):
        run_in_background = True

        def on_error(self, error: BaseException, **kw: Any) -> None:
            release.wait(5)

    m = CallbackManager([Stuck()])
    m.on_error(ValueError("x"))
    assert m.flush(timeout=0.1) is False
    release.set()
    assert m.flush(timeout=5) is True


def test_background_handler_errors_are_counted_not_raised() -> None:
    class BadBg(BaseCallback):
        run_in_background = True

        def on_llm_end(self, response: Any, **kw: Any) -> None:
            raise OSError("disk full")

    m = CallbackManager([BadBg()])
    m.on_llm_end(LLMResponse("x"))
    m.on_llm_end(LLMResponse("y"))
    assert m.flush(timeout=5)
    assert m.stats()["errors"] == {"BadBg.on_llm_end": 2}


def test_a_raise_error_background_failure_is_raised_by_the_next_flush_or_close() -> None:
    class StrictBg(BaseCallback):
        run_in_background = True
        raise_error = True  # no caller on the worker: the app gets it at flush() / close()

        def on_llm_end(self, response: Any, **kw: Any) -> None:
            raise OSError(f"disk full: {response}")

    strict = StrictBg()
    m = CallbackManager([strict])
    m.on_llm_end("x")  # the caller goes on: the failure happens on the worker
    m.on_llm_end("y")
    with pytest.raises(HandlerError, match="disk full: x") as info:
        m.flush(timeout=5)
    assert isinstance(info.value.__cause__, OSError) and info.value.handler is strict
    assert m.flush(timeout=5)  # raised once: the next flush has nothing to tell
    asyncio.run(m.aon_llm_end("z"))
    with pytest.raises(HandlerError, match="disk full: z"):
        m.close(timeout=5)
    assert m.stats()["errors"] == {"StrictBg.on_llm_end": 3}


async def test_async_background_handlers_run_on_their_worker() -> None:
    seen: list[str] = []

    class ABg(AsyncBaseCallback):
        run_in_background = True

        async def on_llm_new_token(self, token: str, **kw: Any) -> None:
            await asyncio.sleep(0)
            seen.append(token)

    m = CallbackManager([ABg()])
    for t in "abcdef":
        await m.aon_llm_new_token(t)
    m.on_llm_new_token("g")
    assert m.flush(timeout=5)
    assert seen == list("abcdefg")


def test_close_drains_and_calls_handler_close_and_manager_stays_usable() -> None:
    closed: list[bool] = []

    class Closing(Slow):
        def close(self) -> None:
            closed.append(True)

    h = Closing()
    m = CallbackManager([h])
    for t in "xyz":
        m.on_llm_new_token(t)
    assert m.close(timeout=5)
    assert h.seen == ["x", "y", "z"] and closed == [True]
    m.on_llm_new_token("again")
    assert m.flush(timeout=5)
    assert h.seen[-1] == "again"


def test_pending_events_are_drained_at_interpreter_exit(tmp_path: Any) -> None:
    import subprocess
    import sys

    out = tmp_path / "out.txt"
    code = f"""
import time
from hookwire import BaseCallback, CallbackManager
class W(BaseCallback):
    run_in_background = True
    def on_llm_new_token(self, token, **kw):
        time.sleep(0.001)
        with open({str(out)!r}, "a") as f:
            f.write(token)
m = CallbackManager([W()])
for i in range(200):
    m.on_llm_new_token("x")
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert out.read_text() == "x" * 200


def test_many_producer_threads_lose_nothing_and_flush_waits_for_all() -> None:
    h = Slow()
    m = CallbackManager([h])

    def produce(k: int) -> None:
        for i in range(500):
            m.on_llm_new_token(f"{k}-{i}")

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.flush(timeout=10)
    assert len(h.seen) == 4000
    for k in range(8):
        mine = [int(s.split("-")[1]) for s in h.seen if s.startswith(f"{k}-")]
        assert mine == list(range(500)), "each producer's events stay in order"


class Twin(BaseCallback):
    """Offers both a sync and an async implementation of the same hooks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        self.calls.append(("sync", threading.current_thread().name))

    async def aon_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        self.calls.append(("async", threading.current_thread().name))

    def on_event(self, event: Any) -> None:
        self.calls.append(("sync-event", event.hook))

    async def aon_event(self, event: Any) -> None:
        self.calls.append(("async-event", event.hook))


def test_sync_dispatch_calls_the_sync_twin_in_the_callers_thread() -> None:
    h = Twin()
    CallbackManager([h]).on_llm_start("p")
    me = threading.current_thread().name
    assert h.calls == [("sync", me), ("sync-event", "on_llm_start")]


async def test_async_dispatch_awaits_the_async_twin_on_the_callers_loop() -> None:
    h = Twin()
    await CallbackManager([h]).aon_llm_start("p")
    me = threading.current_thread().name
    assert h.calls == [("async", me), ("async-event", "on_llm_start")]


async def test_a_handler_with_only_an_async_twin_serves_both_dispatches() -> None:
    class OnlyAsync(BaseCallback):
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def aon_llm_end(self, response: Any, **kwargs: Any) -> None:
            self.seen.append(threading.current_thread().name)

    h = OnlyAsync()
    m = CallbackManager([h])
    assert m.listens("on_llm_end")
    await m.aon_llm_end("r")
    await asyncio.to_thread(m.on_llm_end, "r")  # sync dispatch: on the background loop
    assert h.seen == [threading.current_thread().name, "hookwire-async-handlers"]


def test_a_sync_async_twin_is_refused_with_a_named_error() -> None:
    class Wrong(BaseCallback):
        def on_llm_start(self, prompt: Any, **kwargs: Any) -> None: ...

        def aon_llm_start(self, prompt: Any, **kwargs: Any) -> None: ...

    with pytest.raises(ConfigurationError, match=r"aon_llm_start must be a coroutine function"):
        CallbackManager([Wrong()])


async def test_callback_abort_from_an_async_twin_reaches_the_async_caller() -> None:
    class Gate(BaseCallback):
        def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
            raise CallbackAbort("sync stop")

        async def aon_llm_start(self, prompt: Any, **kwargs: Any) -> None:
            raise CallbackAbort("async stop")

    m = CallbackManager([Gate()])
    with pytest.raises(CallbackAbort, match="async stop"):
        await m.aon_llm_start("p")
    with pytest.raises(CallbackAbort, match="sync stop"):
        m.on_llm_start("p")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_forked_child_handles_its_own_background_events_not_its_parents() -> None:
    gate = threading.Event()
    seen: list[str] = []

    class Slow(BaseCallback):
        run_in_background = True

        def on_llm_start(self, prompt: Any, **kw: Any) -> None:
            gate.wait(5)
            seen.append(prompt)

    m = CallbackManager([Slow()])
    m.on_llm_start("parent-1")
    m.on_llm_start("parent-2")  # queued behind parent-1, which the worker is holding
    time.sleep(0.1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            gate.set()
            m.on_llm_start("child")
            ok = m.flush(5)
            os.write(write, f"{ok} {','.join(seen)}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        report = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == "True child"
    gate.set()
    assert m.flush(5)
    assert seen == ["parent-1", "parent-2"]


@pytest.mark.parametrize("in_run", [False, True])
def test_token_keywords_reach_plain_and_raw_handlers(in_run: bool, tmp_path: Any) -> None:
    # A client passes model, provider, attempt and index with each token: plain handlers get
    # them as keywords, a raw handler (FileLogCallback) in its ``kw``, in the order the client
    # passes them, and a keyword left out stays out.
    import json

    import hookwire
    from hookwire.callbacks import FileLogCallback

    path = tmp_path / "log.jsonl"
    log = FileLogCallback(path, include_tokens=True)
    rec = RecordingCallback()
    m = CallbackManager([log, rec])

    def emit() -> None:
        token = m.on_llm_new_token
        token("a", run_id="r1", model="m", provider="p", attempt=1, index=0)
        token("b", run_id="r1", attempt=2)

    if in_run:
        with hookwire.trace("outer", callbacks=m):
            emit()
    else:
        emit()
    log.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    tokens = [x for x in lines if x["event"] == "llm_new_token"]
    expected = [
        {"model": "m", "provider": "p", "attempt": 1, "index": 0},
        {"attempt": 2},
    ]
    for line, want in zip(tokens, expected, strict=True):
        assert {k: line[k] for k in line if k in ("model", "provider", "attempt", "index")} == want
        assert [k for k in line if k in want] == list(want)
    for call, want in zip(rec.of("llm_new_token"), expected, strict=True):
        extra = {
            k: v for k, v in call.kwargs.items() if k in ("model", "provider", "attempt", "index")
        }
        assert extra == want and list(extra) == list(want)
        assert call.kwargs["run_id"] == "r1"
        assert ("trace_id" in call.kwargs) is in_run


# -- shapes: what is resolved once per handler set, and what each manager keeps ---------------


def test_a_hook_set_on_the_instance_is_called_and_does_not_leak_into_its_class() -> None:
    got: list[str] = []

    class Quiet(BaseCallback):
        def on_llm_end(self, response: Any, **kw: Any) -> None:
            got.append("class")

    loud = Quiet()
    loud.on_llm_end = lambda response, **kw: got.append("instance")  # type: ignore[method-assign]
    CallbackManager([loud]).on_llm_end("r")
    CallbackManager([Quiet()]).on_llm_end("r")
    assert got == ["instance", "class"]


def test_static_methods_callable_objects_and_narrow_async_hooks_are_called() -> None:
    got: list[Any] = []

    class Static(BaseCallback):
        @staticmethod
        def on_llm_end(response: Any, **kw: Any) -> None:
            got.append(("static", response))

    class Narrow(AsyncBaseCallback):
        async def on_llm_end(self, response: Any) -> None:  # type: ignore[override]
            got.append(("narrow", response))

    m = CallbackManager([Static(), Narrow()])
    m.on_llm_end("a", user_id="u")
    asyncio.run(m.aon_llm_end("b", model="m"))
    assert got == [("static", "a"), ("narrow", "a"), ("static", "b"), ("narrow", "b")]


def test_a_manager_of_a_known_shape_compiles_nothing_and_is_small() -> None:
    import sys

    from hookwire import callpath

    class Mine(BaseCallback):
        def on_llm_end(self, response: Any, **kw: Any) -> None:
            pass

    CallbackManager([Mine(), RecordingCallback()])
    before = callpath._code.cache_info()
    managers = [CallbackManager([Mine(), RecordingCallback()]) for _ in range(100)]
    assert callpath._code.cache_info() == before
    assert len({type(m) for m in managers}) == 1
    assert sys.getsizeof(managers[0]) < 200 and not hasattr(managers[0], "__dict__")


def test_managers_built_and_dropped_leave_no_garbage_for_the_cyclic_gc() -> None:
    import gc

    CallbackManager([RecordingCallback()])
    gc.collect()
    gc.disable()
    try:
        for _ in range(1_000):
            m = CallbackManager([RecordingCallback(), RecordingCallback()])
            m.on_llm_end("r", user_id="u")
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_a_traceback_through_a_dispatcher_shows_its_source() -> None:
    import traceback

    class Strict(BaseCallback):
        raise_error = True

        def on_llm_end(self, response: Any, **kw: Any) -> None:
            raise ValueError("boom")

    m = CallbackManager([Strict()])
    with pytest.raises(HandlerError) as info:
        m.on_llm_end("r")
    text = "".join(traceback.format_exception(info.value))
    assert "<hookwire dispatch on_llm_end" in text
    assert "fn0(hs[0], response, run_id=run_id, timestamp=timestamp" in text
    assert "hs = _manager._handlers" in m.on_llm_end.__hookwire_source__


def test_run_in_background_may_name_the_hooks_to_queue() -> None:
    threads: dict[str, str] = {}

    class Split(BaseCallback):
        run_in_background = frozenset({"on_llm_end"})

        def on_llm_start(self, prompt: Any, **kw: Any) -> None:
            threads["start"] = threading.current_thread().name

        def on_llm_end(self, response: Any, **kw: Any) -> None:
            threads["end"] = threading.current_thread().name

    m = CallbackManager([Split()])
    rid = m.on_llm_start("p")
    m.on_llm_end("r", run_id=rid)
    assert m.flush(timeout=5)
    assert threads["start"] == threading.current_thread().name
    assert threads["end"] != threading.current_thread().name


# -- background handlers: the faults they must survive ------------------------------------------


@pytest.mark.parametrize("fatal", [SystemExit, KeyboardInterrupt])
def test_a_background_handler_raising_systemexit_or_interrupt_stops_nothing(
    fatal: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    class Dies(Slow):
        def on_llm_new_token(self, token: str, **kw: Any) -> None:
            if token == "bad":
                raise fatal("from the handler")
            super().on_llm_new_token(token, **kw)

    h = Dies()
    m = CallbackManager([h])
    for t in ("a", "bad", "b", "bad", "c"):
        m.on_llm_new_token(t)
    assert m.flush(timeout=5), "flush() returns: the worker went on"
    assert h.seen == ["a", "b", "c"]
    assert m.stats()["errors"] == {"Dies.on_llm_new_token": 2}


def test_an_async_handler_raising_systemexit_under_sync_dispatch_is_a_handler_failure() -> None:
    calls: list[str] = []

    class Exits(AsyncBaseCallback):
        async def on_llm_end(self, response: Any, **kw: Any) -> None:
            calls.append(response)
            if response == "exit":
                raise SystemExit(3)

    m = CallbackManager([Exits()])
    m.on_llm_end("exit")  # neither raised here nor left waiting
    m.on_llm_end("after")  # the shared loop still serves
    assert calls == ["exit", "after"]
    assert m.stats()["errors"] == {"Exits.on_llm_end": 1}


def test_managers_built_per_request_with_background_handlers_start_no_thread_each() -> None:
    class Record(BaseCallback):
        run_in_background = True

        def __init__(self, user: str) -> None:
            self.user = user

        def on_llm_end(self, response: Any, **kw: Any) -> None:
            pass

    def request(i: int) -> None:
        m = CallbackManager([Record(f"user-{i}")])
        m.on_llm_end("r")

    request(0)
    before = threading.active_count()
    for i in range(2_000):
        request(i)
    assert threading.active_count() <= before + 1


def test_flush_honours_its_timeout_over_queues_and_handlers_own_flush() -> None:
    release = threading.Event()

    class Stuck(BaseCallback):
        run_in_background = True

        def on_llm_end(self, response: Any, **kw: Any) -> None:
            release.wait(10)  # a handler blocked on a dead database

        def flush(self, timeout: float | None = None) -> bool:
            release.wait(timeout)
            return release.is_set()

    m = CallbackManager([Stuck(), Stuck()])
    m.on_llm_end("r")
    started = time.monotonic()
    assert m.flush(timeout=0.5) is False
    assert time.monotonic() - started < 2.0
    release.set()
    assert m.flush(timeout=5)


async def test_a_full_queue_under_async_dispatch_does_not_freeze_the_event_loop() -> None:
    gate = threading.Event()

    class Tiny(BaseCallback):
        run_in_background = True
        queue_size = 1

        def on_llm_new_token(self, token: str, **kw: Any) -> None:
            gate.wait(5)

    m = CallbackManager([Tiny()])
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    producer = asyncio.create_task(m.aon_llm_new_token("a"))
    await m.aon_llm_new_token("b")  # the queue is full behind the held first event
    third = asyncio.create_task(m.aon_llm_new_token("c"))
    await asyncio.sleep(0.3)
    assert ticks >= 10, "the loop kept running while a producer waited for room"
    gate.set()
    await asyncio.wait_for(asyncio.gather(producer, third), 5)
    ticker.cancel()
    assert m.flush(timeout=5)


def test_exit_waits_once_for_all_stuck_managers_not_once_each(tmp_path: Any) -> None:
    import subprocess
    import sys

    code = """
import threading, time
from hookwire import BaseCallback, CallbackManager, _workers
_workers.EXIT_TIMEOUT = 1.0
class Stuck(BaseCallback):
    run_in_background = True
    def on_llm_end(self, response, **kw):
        threading.Event().wait(30)
managers = [CallbackManager([Stuck()]) for _ in range(3)]
for m in managers:
    m.on_llm_end("r")
    m.on_llm_end("r")
time.sleep(0.1)
"""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert time.monotonic() - started < 5.0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs the fork start method")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_multiprocessing_fork_child_drains_its_background_events(tmp_path: Any) -> None:
    import multiprocessing

    out = tmp_path / "child.txt"
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_child_emits, args=(str(out),))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert out.read_text() == "x" * 50


class _FileWriter(BaseCallback):
    run_in_background = True

    def __init__(self, path: str) -> None:
        self.path = path

    def on_llm_new_token(self, token: str, **kw: Any) -> None:
        time.sleep(0.001)
        with open(self.path, "a") as f:
            f.write(token)


def _child_emits(path: str) -> None:
    m = CallbackManager([_FileWriter(path)])
    for _ in range(50):
        m.on_llm_new_token("x")


def test_a_background_handler_runs_on_the_worker_it_names() -> None:
    threads: list[str] = []

    class Slow(BaseCallback):
        run_in_background = True
        background_worker = "hookwire-test-own-worker"

        def on_memory_store(self, content: Any, **kwargs: Any) -> None:
            threads.append(threading.current_thread().name)

    class Shared(BaseCallback):
        run_in_background = True

        def on_memory_store(self, content: Any, **kwargs: Any) -> None:
            threads.append(threading.current_thread().name)

    manager = CallbackManager([Slow(), Shared()])
    manager.on_memory_store("x")
    assert manager.flush(10)
    assert sorted(threads) == ["hookwire-test-own-worker", "hookwire-worker"]


def test_a_background_worker_that_is_not_a_name_is_a_configuration_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Bad(BaseCallback):
        run_in_background = True
        background_worker = 3  # type: ignore[assignment]

        def on_memory_store(self, content: Any, **kwargs: Any) -> None:
            pass

    manager = CallbackManager([Bad()])
    with caplog.at_level(logging.ERROR, logger="hookwire"):
        manager.on_memory_store("x")  # reported as the handler's failure, never raised
    assert manager.stats()["errors_total"] == 1
    assert "background_worker must be the name of a worker thread" in caplog.text


class _SlowWriter(BaseCallback):
    run_in_background = True

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.seen: list[str] = []

    def on_llm_end(self, response: Any, **kw: Any) -> None:
        self.gate.wait(10)
        self.seen.append(response)


def test_flush_handler_waits_for_what_one_handler_queued_on_every_manager() -> None:
    h = _SlowWriter()
    first, second = CallbackManager([h]), CallbackManager([h])
    first.on_llm_end("a")
    second.on_llm_end("b")
    assert not dispatch.flush_handler(h, timeout=0.05)  # held at the gate
    h.gate.set()
    assert dispatch.flush_handler(h, timeout=10)
    assert sorted(h.seen) == ["a", "b"]
    assert dispatch.flush_handler(object())  # a handler with no queue: nothing to wait for


async def test_aflush_handler_waits_without_blocking_the_event_loop() -> None:
    h = _SlowWriter()
    manager = CallbackManager([h])
    await manager.aon_llm_end("a")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        for _ in range(3):
            ticks += 1
            await asyncio.sleep(0.001)
        h.gate.set()

    ticker = asyncio.create_task(tick())
    assert await dispatch.aflush_handler(h, timeout=10)
    await ticker
    assert ticks == 3 and h.seen == ["a"]

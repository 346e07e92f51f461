"""RLM: runs, ids, tools, memory, sub-queries, streaming, errors; on LocalLLM and the SDK."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

import hookwire
import hookwire.llms.prices as llm_prices
from hookwire import RLM, LocalLLM, Usage
from hookwire.callbacks import BaseCallback
from hookwire.errors import (
    AuthenticationError,
    BudgetExceeded,
    ConfigurationError,
    MaxStepsExceeded,
    StoreError,
)
from hookwire.llms import RetryPolicy
from hookwire.memory import InMemoryMemory
from hookwire.rlm import RunResult
from hookwire.testing import RecordingCallback
from hookwire.testing.openai_server import Drop, ErrorReply, OpenAIServer, ToolCallReply
from seed_examples import LoggingCallback

FAST = RetryPolicy(max_attempts=3, initial=0.0, jitter=0.0)


@hookwire.tool
def order_status(order_id: str) -> str:
    """Look up an order."""
    return f"{order_id}: shipped"


@hookwire.tool
def flaky_lookup(order_id: str) -> str:
    """A tool that fails."""
    raise ConnectionError("backend down")


class Tokens(BaseCallback):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


@pytest.fixture
async def rlm_on_server(openai_server: OpenAIServer) -> AsyncIterator[Any]:
    made: list[RLM] = []

    def build(*handlers: Any, **kw: Any) -> RLM:
        rlm = RLM.from_openai(
            "gpt-4o", callbacks=list(handlers), base_url=openai_server.base_url, api_key="k", **kw
        )
        rlm.llm.retry = FAST  # type: ignore[attr-defined]
        made.append(rlm)
        return rlm

    yield build
    for r in made:
        await r.llm.aclose()  # type: ignore[attr-defined]


def test_run_result_and_run_events() -> None:
    rec = RecordingCallback()
    rlm = RLM.from_local(callbacks=[rec])
    result = rlm.run("the sky is blue")
    assert isinstance(result, RunResult)
    assert str(result) == result.content == "You said: the sky is blue"
    assert result.usage == Usage(4, 6)
    assert result.cost is None
    assert result.model == "local-echo"
    assert result.messages[-1] == {"role": "assistant", "content": "You said: the sky is blue"}
    assert result.steps == 1
    hooks = rec.hooks()
    assert hooks[0] == "on_run_start"
    assert hooks[-1] == "on_run_end"
    start, end = rec.calls[0], rec.calls[-1]
    assert start["input"] == "the sky is blue"
    assert start["name"] == "rlm"
    assert start["run_id"] == result.run_id == result.trace_id
    assert "parent_run_id" not in start.kwargs
    assert end["output"] == result.content
    assert end["usage"] == result.usage
    assert end["model"] == "local-echo"
    assert "cost" not in end.kwargs
    for inner in rec.calls[1:-1]:
        assert inner["parent_run_id"] == result.run_id
        assert inner["trace_id"] == result.run_id
        assert inner["depth"] == 1


def test_streams_only_when_someone_listens_and_result_is_the_same() -> None:
    rec = RecordingCallback()
    quiet = RLM.from_local(callbacks=[])
    loud = RLM.from_local(callbacks=[rec])
    assert quiet.run("hello friend").content == loud.run("hello friend").content
    assert rec.of("llm_start")[0]["stream"] is True
    assert len(rec.of("llm_new_token")) == 7


def test_stream_method_and_last_result() -> None:
    rlm = RLM.from_local()
    tokens = list(rlm.stream("one two"))
    assert "".join(tokens) == "You said: one two"
    assert rlm.last_result is not None
    assert rlm.last_result.content == "You said: one two"


async def test_arun_and_astream() -> None:
    rec = RecordingCallback()
    rlm = RLM.from_local(callbacks=[rec], tools=[order_status])
    result = await rlm.arun("order status of ORD-9", user_id="u1")
    assert result.content == "order_status says: ORD-9: shipped"
    assert result.steps == 2
    assert {c.get("user_id") for c in rec.calls} == {"u1"}
    tokens = [t async for t in rlm.astream("say hi")]
    assert "".join(tokens) == "You said: say hi"


def test_tool_loop_and_tool_errors_are_fed_back() -> None:
    rec = RecordingCallback()
    rlm = RLM.from_local(callbacks=[rec], tools=[order_status, flaky_lookup])
    result = rlm.run("please do a flaky lookup for ORD-5")
    assert result.content == "flaky_lookup says: Error: ConnectionError: backend down"
    assert rec.hooks().count("on_tool_error") == 1
    error = rec.of("error")[0]
    assert error["stage"] == "tool"
    assert error["parent_run_id"] == result.run_id
    tool_msg = next(m for m in result.messages if m["role"] == "tool")
    assert tool_msg["content"].startswith("Error:")
    assert rec.calls[-1]["output"] == result.content  # the run went on


def test_tool_calls_through_the_sdk(openai_server: OpenAIServer, rlm_on_server: Any) -> None:
    rec = RecordingCallback()
    openai_server.script(ToolCallReply("order_status", {"order_id": "A-1"}, id="call_1"))
    rlm = rlm_on_server(rec, tools=[order_status])
    result = rlm.run("where is A-1?")
    assert result.content == "The tool returned: A-1: shipped"
    second = openai_server.requests[1]["messages"]
    assert second[-2]["tool_calls"][0]["id"] == "call_1"
    assert second[-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "name": "order_status",
        "content": "A-1: shipped",
    }
    assert openai_server.requests[0]["tools"][0]["function"]["name"] == "order_status"
    assert rec.of("tool_start")[0]["tool_call_id"] == "call_1"
    assert result.usage.total_tokens == sum(r.usage.total_tokens for r in result.responses)


def test_max_steps(openai_server: OpenAIServer, rlm_on_server: Any) -> None:
    rec = RecordingCallback()
    openai_server.script(*(ToolCallReply("order_status", {"order_id": "X"}) for _ in range(3)))
    rlm = rlm_on_server(rec, tools=[order_status], max_steps=3)
    with pytest.raises(MaxStepsExceeded, match="max_steps=3"):
        rlm.run("loop forever")
    assert rec.of("error")[-1]["stage"] == "run"
    end = rec.calls[-1]
    assert end.hook == "on_run_end"
    assert end["output"] is None
    assert isinstance(end["error"], MaxStepsExceeded)
    assert end["usage"].total_tokens > 0  # what was spent is still reported


def test_llm_failure_ends_the_run_with_one_error(
    openai_server: OpenAIServer, rlm_on_server: Any
) -> None:
    rec = RecordingCallback()
    openai_server.script(ErrorReply(401))
    with pytest.raises(AuthenticationError):
        rlm_on_server(rec).run("hi")
    assert rec.hooks().count("on_error") == 1
    assert rec.of("error")[0]["stage"] == "llm"
    assert isinstance(rec.calls[-1]["error"], AuthenticationError)


def test_mid_stream_drop_in_a_run(openai_server: OpenAIServer, rlm_on_server: Any) -> None:
    sink = Tokens()
    openai_server.script(Drop(after=2), "full answer here")
    result = rlm_on_server(sink).run("hi")
    assert result.content == "full answer here"
    assert sink.tokens == ["This ", "answer ", "full ", "answer ", "here"]


def test_budget_abort_in_a_run(openai_server: OpenAIServer, rlm_on_server: Any) -> None:
    class Budget(BaseCallback):
        def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
            raise BudgetExceeded("org budget spent", scope="org")

    rec = RecordingCallback()
    with pytest.raises(BudgetExceeded):
        rlm_on_server(Budget(), rec).run("hi")
    assert openai_server.requests == []
    assert rec.hooks() == [
        "on_run_start",
        "on_llm_error",
        "on_budget_exceeded",
        "on_error",
        "on_run_end",
    ]
    assert rec.of("error")[0]["stage"] == "budget"


def test_memory_recall_before_and_store_after() -> None:
    rec = RecordingCallback()
    memory = InMemoryMemory(["User: my cat is called Tom\nAssistant: Nice!"])
    rlm = RLM.from_local(callbacks=[rec], memory=memory, rules=[("cat", "{memory}")])
    result = rlm.run("what is my cat called?")
    assert result.content == "my cat is called Tom"
    hooks = rec.hooks()
    assert hooks.index("on_memory_recall") < hooks.index("on_llm_start")
    assert hooks.index("on_memory_store") > hooks.index("on_llm_end")
    recall = rec.of("memory_recall")[0]
    assert recall["query"] == "what is my cat called?"
    assert recall["results"] == ["User: my cat is called Tom\nAssistant: Nice!"]
    assert recall["memory"] == "InMemoryMemory"
    assert (
        rec.of("memory_store")[0]["content"]
        == "User: what is my cat called?\nAssistant: my cat is called Tom"
    )
    assert any(
        m["content"].startswith("Relevant memory:")
        for m in result.messages
        if m["role"] == "system"
    )
    assert len(memory) == 2


def test_broken_memory_is_reported_and_the_run_goes_on() -> None:
    class Broken(InMemoryMemory):
        def search(self, query: str, k: int = 3) -> list[str]:
            raise StoreError("disk gone")

        def add(self, content: str) -> None:
            raise StoreError("disk gone")

    rec = RecordingCallback()
    result = RLM.from_local(callbacks=[rec], memory=Broken()).run("hello?")
    assert result.content.startswith("Hello")
    stages = [c["stage"] for c in rec.of("error")]
    assert stages == ["memory", "memory"]


async def test_async_memory() -> None:
    rec = RecordingCallback()
    rlm = RLM.from_local(callbacks=[rec], memory=InMemoryMemory())
    await rlm.arun("remember the blue door")
    result = await rlm.arun("which door?")
    assert "blue door" in result.content
    assert rec.of("memory_recall")[1]["results"]


def test_sub_query_is_a_nested_run_with_depth_2() -> None:
    rec = RecordingCallback()
    rlm = RLM.from_local(callbacks=[rec], sub_queries=True)
    result = rlm.run("use llm_query on cats")
    assert result.content == "llm_query says: You said: use llm_query on cats"
    runs = rec.of("run_start")
    assert [r["name"] for r in runs] == ["rlm", "rlm.sub_query"]
    outer, inner = runs
    assert inner["parent_run_id"] == outer["run_id"]
    assert inner["depth"] == 1
    inner_llm = [c for c in rec.of("llm_start") if c["parent_run_id"] == inner["run_id"]]
    assert len(inner_llm) == 1
    assert inner_llm[0]["depth"] == 2
    assert inner_llm[0]["trace_id"] == outer["run_id"]
    sub_end = next(c for c in rec.of("run_end") if c["name"] == "rlm.sub_query")
    assert sub_end["usage"].total_tokens > 0


async def test_sub_query_from_a_tool_async() -> None:
    rec = RecordingCallback()
    holder: dict[str, RLM] = {}

    @hookwire.tool
    async def research_topic(topic: str) -> str:
        """Research a topic with a sub-question."""
        return await holder["rlm"].asub_query(f"tell me about {topic}")

    rlm = RLM.from_local(callbacks=[rec], tools=[research_topic])
    holder["rlm"] = rlm
    result = await rlm.arun('research topic "owls"')
    assert result.content == "research_topic says: You said: tell me about owls"
    tool_run = rec.of("tool_start")[0]["run_id"]
    sub = next(r for r in rec.of("run_start") if r["name"] == "rlm.sub_query")
    assert sub["parent_run_id"] == tool_run
    assert sub["depth"] == 2


def test_cost_summed_on_run_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        llm_prices, "_pricing", [lambda model, usage, provider=None: Decimal("0.5")]
    )
    rec = RecordingCallback()
    result = RLM.from_local(callbacks=[rec], tools=[order_status]).run("order status of Z-1")
    assert result.cost == Decimal("1.0")
    assert rec.calls[-1]["cost"] == Decimal("1.0")


def test_seed_quick_start_on_the_server(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    rlm = RLM.from_openai("gpt-4o", callbacks=[LoggingCallback()])
    result = rlm.run("Привет!")
    out = capsys.readouterr().out
    assert "📤 Отправка:" in out
    assert "📥 Получено: You said: Привет!..." in out
    assert str(result) == "You said: Привет!"
    assert openai_server.requests[0]["model"] == "gpt-4o"
    rlm.llm.close()  # type: ignore[attr-defined]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="LLM client"):
        RLM("not an llm")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_steps"):
        RLM(LocalLLM(), max_steps=0)
    with pytest.raises(ConfigurationError, match="text"):
        RLM(LocalLLM()).run(["a list"])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="callbacks"):
        RLM(LocalLLM(), callbacks="nope")  # type: ignore[arg-type]


def test_max_retries_override() -> None:
    rec = RecordingCallback()
    rlm = RLM(LocalLLM(fail_times=1, retry=FAST), callbacks=[rec], max_retries=0)
    with pytest.raises(hookwire.errors.RateLimitError):
        rlm.run("x")
    assert "on_retry" not in rec.hooks()


def test_nested_in_a_user_trace() -> None:
    rec = RecordingCallback()
    rlm = RLM.from_local(callbacks=[rec])
    with hookwire.trace("request", callbacks=[rec], user_id="u9", tags=["web"]) as outer:
        result = rlm.run("hi")
    assert result.trace_id == outer.run_id
    llm_start = rec.of("llm_start")[0]
    assert llm_start["trace_id"] == outer.run_id
    assert llm_start["depth"] == 2
    assert llm_start["user_id"] == "u9"
    assert llm_start["tags"] == ("web",)


def test_stream_can_be_abandoned() -> None:
    rlm = RLM.from_local()
    stream: Iterator[str] = rlm.stream("one two three four")
    assert next(stream) == "You "
    stream.close()  # type: ignore[attr-defined]
    assert hookwire.current_run() is None


async def test_async_handlers_and_concurrent_runs_keep_their_ids() -> None:
    from hookwire.callbacks import AsyncBaseCallback

    class AsyncTokens(AsyncBaseCallback):
        def __init__(self) -> None:
            self.by_parent: dict[str, list[str]] = {}

        async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            await asyncio.sleep(0)  # let the other run interleave
            self.by_parent.setdefault(kwargs["parent_run_id"], []).append(token)

    handler = AsyncTokens()
    rlm = RLM.from_local(callbacks=[handler])
    first, second = await asyncio.gather(rlm.arun("alpha beta"), rlm.arun("gamma delta"))
    assert "".join(handler.by_parent[first.run_id]) == first.content == "You said: alpha beta"
    assert "".join(handler.by_parent[second.run_id]) == second.content
    assert first.trace_id != second.trace_id


def test_runs_from_threads_keep_their_ids() -> None:
    rec = RecordingCallback()
    rlm = RLM.from_local(callbacks=[rec])
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: rlm.run(f"message {i}"), range(8)))
    for result in results:
        mine = [
            c
            for c in rec.calls
            if c.get("trace_id") == result.run_id or c.get("run_id") == result.run_id
        ]
        ends = [c for c in mine if c.hook == "on_llm_end"]
        assert len(ends) == 1
        assert ends[0]["response"].content == result.content


def test_max_steps_does_not_run_tools_it_cannot_report(
    openai_server: OpenAIServer, rlm_on_server: Any
) -> None:
    rec = RecordingCallback()
    openai_server.script(ToolCallReply("order_status", {"order_id": "X"}))
    with pytest.raises(MaxStepsExceeded):
        rlm_on_server(rec, tools=[order_status], max_steps=1).run("go")
    assert rec.of("tool_start") == []


def test_two_tool_calls_in_one_streamed_answer(
    openai_server: OpenAIServer, rlm_on_server: Any
) -> None:
    sink = Tokens()
    openai_server.script(
        ToolCallReply(
            "order_status", {"order_id": "A-1"}, more=[("order_status", {"order_id": "B-2"})]
        )
    )
    result = rlm_on_server(sink, tools=[order_status]).run("both orders")
    tool_messages = [m for m in result.messages if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ["A-1: shipped", "B-2: shipped"]
    assert result.content == "The tool returned: B-2: shipped"
    assert openai_server.requests[0]["stream"] is True


# -- one run loop, two drivers: run (sync) and arun (async) send the same events ---------------


def _shape(calls: list[Any]) -> list[tuple[str, dict[str, Any], list[tuple[str, Any]]]]:
    """The calls with ids numbered by first appearance and times left out."""
    ids: dict[str, str] = {}

    def norm(key: str, value: Any) -> Any:
        if key in ("run_id", "parent_run_id", "trace_id"):
            return ids.setdefault(value, f"id{len(ids)}")
        if isinstance(value, hookwire.LLMResponse):
            return dataclasses.replace(value, created_at=None, id=None)
        if isinstance(value, BaseException):
            return type(value), str(value)
        return value

    timed = {"timestamp", "latency_ms", "ttft_ms"}
    return [
        (
            c.hook,
            {k: norm(k, v) for k, v in c.args.items()},
            # As a list: the keywords' order is what a handler iterating them sees.
            [(k, norm(k, v)) for k, v in c.kwargs.items() if k not in timed],
        )
        for c in calls
    ]


async def _arun_and_close(rlm: RLM, prompt: str) -> Any:
    try:
        return await rlm.arun(prompt)
    finally:
        aclose = getattr(rlm.llm, "aclose", None)
        if aclose is not None:
            await aclose()  # its connections belong to this loop


def _both_paths(make: Any, prompt: str = "hi") -> tuple[list[Any], list[Any]]:
    """The events and results of ``prompt`` run by ``run`` (sync) and by ``arun`` (async)."""
    shapes = []
    results: list[Any] = []
    for is_async in (False, True):
        rec = RecordingCallback()
        rlm = make(rec)
        outcome: Any
        try:
            outcome = asyncio.run(_arun_and_close(rlm, prompt)) if is_async else rlm.run(prompt)
        except Exception as exc:
            outcome = type(exc)
        assert hookwire.current_run() is None
        assert hookwire.current_context() == {}
        if not isinstance(outcome, type):
            assert outcome is rlm.last_result
            assert outcome.run_id == outcome.trace_id == rec.calls[0]["run_id"]
            # The result's own fields, besides the content compared below.
            results.append(
                (
                    outcome.usage,
                    outcome.cost,
                    outcome.model,
                    outcome.steps,
                    outcome.messages,
                    [dataclasses.replace(r, created_at=None, id=None) for r in outcome.responses],
                )
            )
        shapes.append(
            [outcome if isinstance(outcome, type) else outcome.content, *_shape(rec.calls)]
        )
    if results:
        assert len(results) == 2 and results[0] == results[1]
    return shapes[0], shapes[1]


def test_run_and_arun_send_the_same_events() -> None:
    sync, asyn = _both_paths(lambda rec: RLM.from_local(callbacks=[rec], tools=[order_status]))
    assert sync == asyn
    hooks = [c[0] for c in sync[1:]]
    assert hooks[:2] == ["on_run_start", "on_llm_start"]
    assert hooks[-2:] == ["on_llm_end", "on_run_end"]
    sync, asyn = _both_paths(
        lambda rec: RLM.from_local(
            callbacks=[rec, Tokens()], system_prompt="Be brief.", rules=[("hi", "Hello there")]
        )
    )
    assert sync == asyn
    assert sync[2][1]["prompt"][0] == {"role": "system", "content": "Be brief."}


def test_run_and_arun_failures_match() -> None:
    # The model fails: on_run_end carries the error, usage so far, and no output.
    sync, asyn = _both_paths(
        lambda rec: RLM(LocalLLM(fail_times=5, retry=FAST), callbacks=[rec], max_retries=0)
    )
    assert sync == asyn
    assert sync[0] is hookwire.errors.RateLimitError
    assert sync[-1][0] == "on_run_end" and "error" in dict(sync[-1][2])

    # A handler aborts the run at its start: no run end, and the context is left clean.
    class Refuse(BaseCallback):
        raise_error = True

        def on_run_start(self, input: Any, **kwargs: Any) -> None:
            raise BudgetExceeded("no", scope="user")

    sync, asyn = _both_paths(lambda rec: RLM.from_local(callbacks=[rec, Refuse()]))
    assert sync == asyn
    assert sync[0] is BudgetExceeded
    assert [c[0] for c in sync[1:]] == ["on_run_start"]


def test_run_and_arun_with_tools_and_max_steps() -> None:
    sync, asyn = _both_paths(
        lambda rec: RLM.from_local(callbacks=[rec], tools=[order_status]), "order status of A1?"
    )
    assert sync == asyn
    assert "on_tool_end" in [c[0] for c in sync[1:]]
    assert sync[0].startswith("order_status says:")
    sync, asyn = _both_paths(
        lambda rec: RLM.from_local(callbacks=[rec], tools=[order_status], max_steps=1),
        "order status of A1?",
    )
    assert sync == asyn
    assert sync[0] is MaxStepsExceeded


def test_run_and_arun_with_a_priced_model(openai_server: OpenAIServer, rlm_on_server: Any) -> None:
    # A known price: on_run_end carries usage, cost and model (the keywords sent by name).
    sync, asyn = _both_paths(lambda rec: rlm_on_server(rec))
    assert sync == asyn
    end = dict(sync[-1][2])
    assert end["cost"] > 0 and end["model"] == "gpt-4o" and end["usage"].total_tokens > 0
    assert list(end) == ["run_id", "trace_id", "name", "usage", "cost", "model"]


def test_run_and_arun_sum_priced_tool_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        llm_prices, "_pricing", [lambda model, usage, provider=None: Decimal("0.5")]
    )
    for prompt in ("order status of Z-1", "hello"):
        sync, asyn = _both_paths(
            lambda rec: RLM.from_local(callbacks=[rec], tools=[order_status]), prompt
        )
        assert sync == asyn
        end = dict(sync[-1][2])
        assert end["cost"] == (Decimal("1.0") if "order" in prompt else Decimal("0.5"))
        assert end["model"] == "local-echo"


def test_history_goes_between_the_system_prompt_and_the_prompt() -> None:
    history = [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "Hello Ada"},
    ]
    rlm = RLM.from_local(system_prompt="Be brief.")
    for result in (rlm.run("hi", history=history), asyncio.run(rlm.arun("hi", history=history))):
        assert result.messages[:4] == [
            {"role": "system", "content": "Be brief."},
            *history,
            {"role": "user", "content": "hi"},
        ]
        assert result.messages[4]["role"] == "assistant"

"""The LangChain bridge in real apps: langchain-openai's ``ChatOpenAI`` and LangGraph's prebuilt
ReAct agent, talking to the local OpenAI-compatible server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool

from hookwire import BaseCallback
from hookwire.callbacks import ChatHistoryCallbackHandler, MetricsCallback
from hookwire.errors import BudgetExceeded, RateLimitError
from hookwire.integrations.langchain import AsyncHookwireCallbackHandler, HookwireCallbackHandler
from hookwire.testing import OpenAIServer, RecordingCallback
from hookwire.testing.openai_server import ErrorReply, Reply, ToolCallReply

langchain_openai = pytest.importorskip("langchain_openai")
prebuilt = pytest.importorskip("langgraph.prebuilt")

# The prebuilt ReAct agent is what apps built on LangGraph run today; LangGraph 1.x deprecates
# it in favour of the ``langchain`` package's ``create_agent``, which is not a dependency here.
pytestmark = pytest.mark.filterwarnings("ignore:create_react_agent has been moved")


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


@tool
def broken(city: str) -> str:
    """A tool that fails."""
    raise ValueError(f"no station in {city}")


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as s:
        yield s


@pytest.fixture
def rec(server: OpenAIServer) -> RecordingCallback:
    server.reset()
    return RecordingCallback()


def chat(server: OpenAIServer, **kw: Any) -> Any:
    return langchain_openai.ChatOpenAI(
        model="gpt-4o", base_url=server.base_url, api_key="test", max_retries=0, **kw
    )


def drive(agent: Any, question: str, handler: Any, streamed: bool = False) -> Any:
    """One turn of ``agent``, invoked or streamed token by token (``stream_mode="messages"``)."""
    turn = {"messages": [("user", question)]}
    config: Any = {"callbacks": [handler]}
    if not streamed:
        return agent.invoke(turn, config=config)
    return list(agent.stream(turn, config=config, stream_mode="messages"))


def react_turn(
    server: OpenAIServer, handler: Any, tools: list[Any] | None = None, streamed: bool = False
) -> Any:
    agent = prebuilt.create_react_agent(chat(server), tools or [weather])
    return drive(agent, "Weather in Paris?", handler, streamed)


def runs(rec: RecordingCallback) -> list[tuple[str, str]]:
    return [(c["name"], c["kind"]) for c in rec.of("on_run_start")]


def test_a_react_turn_is_one_agent_run_with_workflow_steps_under_it(
    server: OpenAIServer, rec: RecordingCallback
) -> None:
    server.script(ToolCallReply("weather", {"city": "Paris"}), Reply("It is sunny in Paris."))
    react_turn(server, HookwireCallbackHandler([rec]))
    assert [n for n, k in runs(rec) if k == "agent"] == ["LangGraph"]
    assert {k for _, k in runs(rec)} == {"agent", "workflow"}
    assert "Prompt" not in [n for n, _ in runs(rec)]  # the prompt is no run of its own
    assert len(runs(rec)) == 10  # the graph, then agent/call_model/sequence/route twice, tools
    top = rec.of("on_run_start")[0]
    assert top["name"] == "LangGraph" and "depth" not in top.kwargs
    # everything hangs under a run that was announced before it, in the same trace
    started = {top["run_id"]}
    for c in rec.calls[1:]:
        assert c["trace_id"] == top["run_id"]
        if c.hook in ("on_run_start", "on_llm_start", "on_tool_start"):
            assert c["parent_run_id"] in started
            started.add(c["run_id"])
    assert len(rec.of("on_llm_end")) == 2
    (tool_end,) = rec.of("on_tool_end")
    assert tool_end["tool_output"] == "Sunny in Paris"
    end = rec.of("on_run_end")[-1]
    assert end["run_id"] == top["run_id"]
    assert end["usage"].total_tokens == sum(
        e["response"].usage.total_tokens for e in rec.of("on_llm_end")
    )


def test_a_react_turn_gives_history_text_not_reprs(
    server: OpenAIServer, rec: RecordingCallback
) -> None:
    server.script(ToolCallReply("weather", {"city": "Paris"}), Reply("It is sunny in Paris."))
    react_turn(server, HookwireCallbackHandler([rec]))
    top = rec.of("on_run_start")[0]
    assert top["input"] == "Weather in Paris?"
    assert rec.of("on_run_end")[-1]["output"] == "It is sunny in Paris."
    for c in rec.of("on_run_start") + rec.of("on_run_end"):
        text = c.get("input", c.get("output"))
        assert isinstance(text, str)
        assert "Message(" not in text


def test_prompts_and_parsers_are_runs_when_asked(
    server: OpenAIServer, rec: RecordingCallback
) -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | chat(server) | StrOutputParser()
    chain.invoke({"q": "Capital?"}, config={"callbacks": [HookwireCallbackHandler([rec])]})
    assert runs(rec) == [("RunnableSequence", "workflow")]
    rec.clear()
    handler = HookwireCallbackHandler([rec], prompts_and_parsers=True)
    chain.invoke({"q": "Capital?"}, config={"callbacks": [handler]})
    assert runs(rec) == [
        ("RunnableSequence", "workflow"),
        ("ChatPromptTemplate", "workflow"),
        ("StrOutputParser", "workflow"),
    ]


@pytest.mark.parametrize("streamed", [False, True])
def test_an_lcel_chain_records_the_real_input_streamed_or_not(
    server: OpenAIServer, rec: RecordingCallback, streamed: bool
) -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | chat(server) | StrOutputParser()
    config: Any = {"callbacks": [HookwireCallbackHandler([rec])]}
    if streamed:
        out = "".join(chain.stream({"q": "Capital of France?"}, config=config))
    else:
        out = chain.invoke({"q": "Capital of France?"}, config=config)
    assert out == "You said: Capital of France?"
    assert rec.hooks()[0] == "on_run_start"
    (start,) = rec.of("on_run_start")
    assert start["input"] == "Capital of France?"
    (llm,) = rec.of("on_llm_start")
    assert llm["parent_run_id"] == start["run_id"]
    assert llm["stream"] is streamed
    (end,) = rec.of("on_llm_end")
    assert end["stream"] is streamed
    assert ("ttft_ms" in end.kwargs) is streamed
    assert rec.of("on_run_end")[0]["output"] == out


def test_a_streamed_tool_call_answer_has_its_ttft(
    server: OpenAIServer, rec: RecordingCallback
) -> None:
    server.script(ToolCallReply("weather", {"city": "Paris"}))
    model = chat(server).bind_tools([weather])
    list(model.stream("Weather?", config={"callbacks": [HookwireCallbackHandler([rec])]}))
    (start,) = rec.of("on_llm_start")
    assert start["stream"] is True
    (end,) = rec.of("on_llm_end")
    assert end["response"].tool_calls[0].name == "weather"
    assert end["stream"] is True
    assert 0 <= end["ttft_ms"] <= end["latency_ms"]


def test_the_response_id_is_kept(server: OpenAIServer, rec: RecordingCallback) -> None:
    chat(server).invoke("hi", config={"callbacks": [HookwireCallbackHandler([rec])]})
    (end,) = rec.of("on_llm_end")
    assert str(end["response"].id).startswith("chatcmpl-")


@pytest.mark.parametrize("streamed", [False, True])
def test_how_the_answer_was_served_reaches_on_llm_end(
    server: OpenAIServer, rec: RecordingCallback, streamed: bool
) -> None:
    # langchain-openai keeps no provider id for a streamed answer (its chunks carry LangChain's
    # run id), but it keeps the fingerprint and the service tier, which the spans show.
    config: Any = {"callbacks": [HookwireCallbackHandler([rec])]}
    if streamed:
        list(chat(server).stream("hi", config=config))
    else:
        chat(server).invoke("hi", config=config)
    (end,) = rec.of("on_llm_end")
    assert (end["system_fingerprint"], end["service_tier"]) == ("fp_hookwire_test", "default")


@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
def test_a_429_in_a_react_turn_is_one_on_error_at_stage_llm(
    server: OpenAIServer, rec: RecordingCallback, streamed: bool
) -> None:
    server.script(ErrorReply(429, "slow down"))
    with pytest.raises(Exception, match="429"):
        react_turn(server, HookwireCallbackHandler([rec]), streamed=streamed)
    (llm_error,) = rec.of("on_llm_error")
    assert isinstance(llm_error["error"], RateLimitError)
    (on_error,) = rec.of("on_error")
    assert on_error["stage"] == "llm"
    assert on_error["error"] is llm_error["error"]
    assert on_error["run_id"] == rec.of("on_run_start")[0]["run_id"]


@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
def test_a_failing_tool_in_a_react_turn_is_one_on_error(
    server: OpenAIServer, rec: RecordingCallback, streamed: bool
) -> None:
    server.script(ToolCallReply("broken", {"city": "Paris"}), Reply("Sorry."))
    agent = prebuilt.create_react_agent(
        chat(server), prebuilt.ToolNode([broken], handle_tool_errors=False)
    )
    with pytest.raises(ValueError, match="no station"):
        drive(agent, "Weather?", HookwireCallbackHandler([rec]), streamed)
    (on_error,) = rec.of("on_error")
    assert on_error["stage"] == "tool"
    (tool_error,) = rec.of("on_tool_error")
    assert on_error["error"] is tool_error["error"]


class _Refuse(BaseCallback):
    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        raise BudgetExceeded("user u1 is over 1 USD", scope="user", key="u1")


@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
def test_a_budget_refusal_in_a_react_turn_is_one_on_error_and_no_langchain_warning(
    server: OpenAIServer,
    rec: RecordingCallback,
    caplog: pytest.LogCaptureFixture,
    streamed: bool,
) -> None:
    caplog.set_level(logging.WARNING)
    with pytest.raises(BudgetExceeded):
        react_turn(server, HookwireCallbackHandler([_Refuse(), rec]), streamed=streamed)
    (on_error,) = rec.of("on_error")
    assert on_error["stage"] == "budget"
    assert len(rec.of("on_budget_exceeded")) == 1
    assert server.requests == []
    assert not [r for r in caplog.records if "callback" in r.getMessage()]


def test_a_react_turn_streamed_as_messages_says_its_calls_stream(
    server: OpenAIServer, rec: RecordingCallback
) -> None:
    server.script(ToolCallReply("weather", {"city": "Paris"}), Reply("It is sunny in Paris."))
    agent = prebuilt.create_react_agent(chat(server), [weather])
    config: Any = {"callbacks": [HookwireCallbackHandler([rec])]}
    for _ in agent.stream(
        {"messages": [("user", "Weather in Paris?")]}, config=config, stream_mode="messages"
    ):
        pass
    assert [c["stream"] for c in rec.of("on_llm_start")] == [True, True]
    ends = rec.of("on_llm_end")
    assert [e["stream"] for e in ends] == [True, True]
    assert all("ttft_ms" in e.kwargs for e in ends)  # the first answer only calls the tool
    assert rec.of("on_run_start")[0]["input"] == "Weather in Paris?"
    assert rec.of("on_run_end")[-1]["output"] == "It is sunny in Paris."


def test_a_react_turn_feeds_metrics(server: OpenAIServer) -> None:
    server.reset()
    server.script(ToolCallReply("weather", {"city": "Paris"}), Reply("It is sunny in Paris."))
    metrics = MetricsCallback()
    react_turn(server, HookwireCallbackHandler([metrics]))
    got = metrics.get_metrics()
    assert got["total_calls"] == 2
    assert got["total_tokens"] > 0


@pytest.mark.parametrize("handler_class", [HookwireCallbackHandler, AsyncHookwireCallbackHandler])
async def test_an_lcel_chain_streamed_in_asyncio_records_input_and_stream(
    server: OpenAIServer, rec: RecordingCallback, handler_class: Any
) -> None:
    # langchain-openai shares one default async HTTP client per base URL across event loops;
    # each test has its own loop, so its own client.
    async with httpx.AsyncClient() as http:
        model = chat(server, http_async_client=http)
        chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model | StrOutputParser()
        config: Any = {"callbacks": [handler_class([rec])]}
        out = [piece async for piece in chain.astream({"q": "Capital?"}, config=config)]
    assert "".join(out) == "You said: Capital?"
    (start,) = rec.of("on_run_start")
    assert start["input"] == "Capital?"
    (llm,) = rec.of("on_llm_start")
    assert llm["stream"] is True
    assert "ttft_ms" in rec.of("on_llm_end")[0].kwargs


@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("app", ["react", "lcel"])
def test_history_stores_what_the_user_typed_and_the_final_answer(
    server: OpenAIServer, tmp_path: Path, app: str, streamed: bool
) -> None:
    server.reset()
    chat_history = ChatHistoryCallbackHandler(
        user_data={"user_id": "u1"}, database_url=f"sqlite:///{tmp_path}/chat.db"
    )
    config: Any = {"callbacks": [HookwireCallbackHandler([chat_history])]}
    if app == "react":
        server.script(ToolCallReply("weather", {"city": "Paris"}), Reply("It is sunny in Paris."))
        agent = prebuilt.create_react_agent(chat(server), [weather])
        question: Any = {"messages": [("user", "Weather in Paris?")]}
        if streamed:
            for _ in agent.stream(question, config=config, stream_mode="messages"):
                pass
        else:
            agent.invoke(question, config=config)
        expected = [("end_user", "Weather in Paris?"), ("assistant", "It is sunny in Paris.")]
    else:
        chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | chat(server)
        chain = chain | StrOutputParser()
        if streamed:
            "".join(chain.stream({"q": "Capital of France?"}, config=config))
        else:
            chain.invoke({"q": "Capital of France?"}, config=config)
        expected = [
            ("end_user", "Capital of France?"),
            ("assistant", "You said: Capital of France?"),
        ]
    (conversation,) = chat_history.list_conversations_sync()
    messages = chat_history.get_messages_sync(conversation["id"])
    assert [(m["sender"], m["text"]) for m in messages] == expected

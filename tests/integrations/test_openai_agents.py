"""The OpenAI Agents SDK bridge with the real SDK, on its default Responses model, against the
local OpenAI-compatible server (the SDK's own trace export is replaced: no network)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("agents")

from agents import Agent, Runner, function_tool, set_default_openai_client, set_trace_processors
from agents.tracing import set_tracing_disabled
from openai import AsyncOpenAI
from turns import TOOL_TURN

import hookwire
from hookwire.callbacks import BaseCallback
from hookwire.errors import BudgetExceeded, LLMError
from hookwire.integrations.openai_agents import HookwireTracingProcessor
from hookwire.testing import OpenAIServer, RecordingCallback
from hookwire.testing.openai_server import ErrorReply, ToolCallReply


@pytest.fixture
def recorder(openai_server: OpenAIServer) -> Iterator[RecordingCallback]:
    rec = RecordingCallback()
    # Only hookwire's processor: the SDK's default one would export traces to OpenAI.
    set_trace_processors([HookwireTracingProcessor([rec], user_id="u42")])
    set_tracing_disabled(False)
    set_default_openai_client(
        AsyncOpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0),
        use_for_tracing=False,
    )
    yield rec
    set_trace_processors([])


@function_tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@function_tool
def broken(x: int) -> int:
    """Always fails."""
    raise ValueError("no luck")


def _agent(**kw: object) -> Agent:
    return Agent(name="calc", instructions="Compute.", model="gpt-4o-mini", **kw)  # type: ignore[arg-type]


#: The Runner's run around the agent's.
TURN_WITH_TOOL = ["on_run_start", *TOOL_TURN, "on_run_end"]


async def test_an_agent_with_a_tool_is_a_run_with_its_llm_calls_and_tool(
    openai_server: OpenAIServer, recorder: RecordingCallback
) -> None:
    openai_server.script(ToolCallReply("multiply", {"a": 6, "b": 7}), "It is 42.")

    result = await Runner.run(_agent(tools=[multiply]), "What is 6 times 7?")

    assert result.final_output == "It is 42."
    assert all(r.get("input") is not None for r in openai_server.requests)  # /v1/responses
    assert recorder.hooks() == TURN_WITH_TOOL
    workflow, agent = recorder.of("on_run_start")
    assert workflow["kind"] == "workflow" and workflow["name"] == "Agent workflow"
    assert agent["kind"] == "agent" and agent["name"] == "calc" and agent["agent"] == "calc"
    assert agent["parent_run_id"] == workflow["run_id"]
    # Held back until the first LLM call says the input (ChatHistoryCallbackHandler stores it).
    assert workflow["input"] == agent["input"] == "What is 6 times 7?"
    assert agent["trace_id"] == workflow["trace_id"] == workflow["run_id"]
    for hook in ("on_llm_start", "on_llm_end", "on_tool_start", "on_tool_end"):
        for call in recorder.of(hook):
            assert call["parent_run_id"] == agent["run_id"], hook
            assert call["trace_id"] == workflow["run_id"] and call["depth"] == 2, hook
            assert call["user_id"] == "u42", hook
    first, second = (c["response"] for c in recorder.of("on_llm_end"))
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("multiply", '{"a": 6, "b": 7}')]
    assert first.finish_reason == "tool_calls" and first.id
    assert second.content == "It is 42." and second.model == "gpt-4o-mini"
    assert second.usage.completion_tokens == 3 and second.cost is not None
    assert recorder.of("on_llm_start")[0]["prompt"][0]["content"] == "What is 6 times 7?"
    assert recorder.of("on_llm_end")[0]["latency_ms"] >= 0
    assert recorder.of("on_tool_start")[0]["tool_input"] == {"a": 6, "b": 7}
    assert recorder.of("on_tool_end")[0]["tool_output"] == "42"
    agent_end, workflow_end = recorder.of("on_run_end")
    total = first.usage.total_tokens + second.usage.total_tokens
    assert agent_end["output"] == workflow_end["output"] == "It is 42."
    assert agent_end["usage"].total_tokens == workflow_end["usage"].total_tokens == total
    assert workflow_end["cost"] == first.cost + second.cost


def test_run_sync_inside_a_hookwire_trace_is_its_child(
    openai_server: OpenAIServer, recorder: RecordingCallback
) -> None:
    with hookwire.trace("app", callbacks=[recorder]) as run:
        result = Runner.run_sync(_agent(), "Hello")
    assert result.final_output == "You said: Hello"
    sdk_trace = recorder.of("on_run_start")[1]
    assert sdk_trace["name"] == "Agent workflow"
    assert sdk_trace["parent_run_id"] == run.run_id
    assert sdk_trace["trace_id"] == run.trace_id
    assert recorder.of("on_llm_end")[0]["trace_id"] == run.trace_id


async def test_a_streamed_run_reports_the_same_calls_with_usage(
    openai_server: OpenAIServer, recorder: RecordingCallback
) -> None:
    openai_server.script(ToolCallReply("multiply", {"a": 2, "b": 3}), "Six.")
    streamed = Runner.run_streamed(_agent(tools=[multiply]), "2 times 3?")
    async for _ in streamed.stream_events():
        pass
    assert streamed.final_output == "Six."
    assert openai_server.requests[0]["stream"] is True
    assert recorder.hooks() == TURN_WITH_TOOL
    assert recorder.of("on_llm_end")[1]["response"].usage.completion_tokens == 1
    assert recorder.of("on_run_end")[1]["usage"].total_tokens > 0


async def test_a_failing_call_is_reported_once(
    openai_server: OpenAIServer, recorder: RecordingCallback
) -> None:
    openai_server.script(ErrorReply(400, "bad request"))
    with pytest.raises(Exception, match="bad request"):
        await Runner.run(_agent(), "Hi")
    assert recorder.hooks() == [
        "on_run_start",
        "on_run_start",
        "on_llm_start",
        "on_llm_error",
        "on_run_end",
        "on_run_end",
        "on_error",
    ]
    error = recorder.of("on_llm_error")[0]["error"]
    assert isinstance(error, LLMError) and "bad request" in str(error)
    (told,) = recorder.of("on_error")
    assert told["stage"] == "llm" and told["error"] is error
    assert all(end["output"] is None for end in recorder.of("on_run_end"))


async def test_a_failing_tool_is_a_tool_error_and_the_agent_goes_on(
    openai_server: OpenAIServer, recorder: RecordingCallback
) -> None:
    openai_server.script(ToolCallReply("broken", {"x": 1}), "Sorry.")
    result = await Runner.run(_agent(tools=[broken]), "Try it")
    assert result.final_output == "Sorry."
    assert "on_tool_error" in recorder.hooks()
    (told,) = recorder.of("on_error")
    assert told["stage"] == "tool"
    assert recorder.of("on_tool_error")[0]["tool_name"] == "broken"


async def test_a_handoff_is_a_tool_call_between_two_agent_runs(
    openai_server: OpenAIServer, recorder: RecordingCallback
) -> None:
    helper = Agent(name="helper", instructions="Help.", model="gpt-4o-mini")
    triage = Agent(name="triage", instructions="Route.", model="gpt-4o-mini", handoffs=[helper])
    openai_server.script(ToolCallReply("transfer_to_helper", {}), "Helped.")
    result = await Runner.run(triage, "Please help")
    assert result.final_output == "Helped."
    agents_seen = [r["name"] for r in recorder.of("on_run_start")[1:]]
    assert agents_seen == ["triage", "helper"]
    (handoff,) = recorder.of("on_tool_start")
    assert handoff["tool_name"] == "handoff"
    assert handoff["tool_input"] == {"from_agent": "triage", "to_agent": "helper"}


async def test_a_budget_refusal_is_told_but_cannot_stop_the_sdk(
    openai_server: OpenAIServer, recorder: RecordingCallback
) -> None:
    class Refuse(BaseCallback):
        def on_llm_start(self, prompt: object, **kwargs: object) -> None:
            raise BudgetExceeded("over budget", scope="user", key="u42")

    set_trace_processors([HookwireTracingProcessor([recorder, Refuse()])])
    result = await Runner.run(_agent(), "Hi")
    assert result.final_output == "You said: Hi"  # the SDK swallows what processors raise
    (refusal,) = recorder.of("on_budget_exceeded")
    assert isinstance(refusal["error"], BudgetExceeded)
    assert recorder.of("on_error")[0]["stage"] == "budget"
    assert "on_llm_end" in recorder.hooks()

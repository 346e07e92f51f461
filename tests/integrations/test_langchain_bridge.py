"""The LangChain bridge's translation on its own: LangChain events in, hook calls out, no I/O."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from hookwire import LLMResponse, Usage
from hookwire.errors import BudgetExceeded, RateLimitError
from hookwire.integrations.langchain.bridge import Bridge, Emit
from hookwire.testing import RecordingCallback


def bridge(**context: Any) -> Bridge:
    return Bridge([RecordingCallback()], context)


def hooks(emits: list[Emit]) -> list[str]:
    return [hook for hook, _, _ in emits]


def chain(b: Bridge, run_id: UUID, parent: UUID | None = None, **kwargs: Any) -> list[Emit]:
    return b.chain_start(
        {"name": "qa"}, {"question": "Capital?"}, (run_id, parent, None, None), kwargs
    )


def chat(b: Bridge, run_id: UUID, parent: UUID) -> list[Emit]:
    metadata = {"ls_model_name": "gpt-4o", "ls_provider": "openai"}
    return b.chat_model_start(
        {"name": "ChatOpenAI"}, [[HumanMessage("Capital?")]], (run_id, parent, None, metadata), {}
    )


def answer() -> LLMResult:
    message = AIMessage(
        "Paris",
        usage_metadata={"input_tokens": 10, "output_tokens": 2, "total_tokens": 12},
        response_metadata={"model_name": "gpt-4o", "finish_reason": "stop"},
    )
    return LLMResult(generations=[[ChatGeneration(message=message)]])


def test_a_chain_with_a_call_gives_runs_and_usage_rolled_up() -> None:
    b = bridge(user_id="u1")
    outer, call = uuid4(), uuid4()
    [(hook, (payload,), kw)] = chain(b, outer)
    assert (hook, payload, kw["name"], kw["user_id"]) == ("on_run_start", "Capital?", "qa", "u1")
    [(hook, (prompt,), kw)] = chat(b, call, outer)
    assert hook == "on_llm_start"
    assert prompt == [{"role": "user", "content": "Capital?"}]
    assert kw["parent_run_id"] == str(outer)
    assert kw["depth"] == 1
    assert kw["invocation_params"] == {"model": "gpt-4o"}
    assert b.token("Par", call) is not None
    [(hook, (response,), kw)] = b.llm_end(answer(), call)
    assert hook == "on_llm_end"
    assert isinstance(response, LLMResponse)
    assert (response.content, response.usage.total_tokens) == ("Paris", 12)
    assert kw["stream"] is True
    [(hook, (output,), kw)] = b.chain_end("Paris", outer)
    assert (hook, output, kw["model"]) == ("on_run_end", "Paris", "gpt-4o")
    assert kw["usage"] == Usage(prompt_tokens=10, completion_tokens=2, total_tokens=12)
    assert b.runs == {}


def test_a_failure_is_reported_once_by_the_outermost_run_with_its_stage() -> None:
    b = bridge()
    outer, call = uuid4(), uuid4()
    chain(b, outer)
    chat(b, call, outer)
    error = RuntimeError("429 Too Many Requests")
    assert hooks(b.llm_error(error, call)) == ["on_llm_error"]
    emits = b.chain_error(error, outer)
    assert hooks(emits) == ["on_run_end", "on_error"]
    assert emits[1][2]["stage"] == "llm"


def test_a_tool_failure_is_reported_by_the_tool_not_again_by_its_chain() -> None:
    b = bridge()
    outer, tool = uuid4(), uuid4()
    chain(b, outer)
    [(hook, (name, inputs), _)] = b.tool_start(
        {"name": "add"}, '{"a": 1}', (tool, outer, None, None), {}
    )
    assert (hook, name, inputs) == ("on_tool_start", "add", {"a": 1})
    error = ValueError("bad")
    assert hooks(b.tool_error(error, tool)) == ["on_tool_error", "on_error"]
    assert hooks(b.chain_error(error, outer)) == ["on_run_end"]


def test_a_refused_call_is_forgotten_and_told_as_runners_tell_it() -> None:
    b = bridge()
    call = uuid4()
    [(_, _, kw)] = b.llm_start({"name": "llm"}, ["Hi"], (call, None, None, None), {})
    refusal = BudgetExceeded("over", scope="user", key="u1", limit=1)
    emits = b.aborted(refusal, kw)
    assert hooks(emits) == ["on_llm_error", "on_budget_exceeded", "on_error"]
    assert emits[0][2]["attempts"] == 0
    assert emits[2][2]["stage"] == "budget"
    assert "invocation_params" not in emits[2][2]
    assert b.runs == {}


def test_events_of_unknown_runs_send_nothing() -> None:
    b = bridge()
    unknown = uuid4()
    assert b.chain_end("x", unknown) == []
    assert b.llm_end(answer(), unknown) == []
    assert b.tool_end("x", unknown) == []
    assert b.retriever_end([], unknown) == []
    assert b.token("x", unknown) is None


def test_errors_are_mapped_and_open_runs_are_bounded() -> None:
    b = bridge()
    call = uuid4()
    b.llm_start({}, ["Hi"], (call, None, None, None), {})

    class RateLimited(Exception):
        status_code = 429

    [(hook, (mapped,), _), _] = b.llm_error(RateLimited("slow down"), call)
    assert hook == "on_llm_error"
    assert isinstance(mapped, RateLimitError)
    b.max_runs = 3
    for _ in range(5):
        chain(b, uuid4())
    assert len(b.runs) == 3


def test_an_agent_executor_is_an_agent_run_and_a_chain_a_workflow_step() -> None:
    b = bridge()
    executor = {"id": ["langchain", "agents", "agent", "AgentExecutor"]}
    [(_, _, kw)] = b.chain_start(executor, {"input": "hi"}, (uuid4(), None, None, None), {})
    assert (kw["name"], kw["kind"]) == ("AgentExecutor", "agent")
    [(_, _, kw)] = chain(b, uuid4())
    assert kw["kind"] == "workflow"


def test_what_runs_inside_a_hidden_prompt_hangs_under_its_parent() -> None:
    b = bridge()
    outer, prompt, call = uuid4(), uuid4(), uuid4()
    chain(b, outer)
    assert (
        b.chain_start(None, {"q": "x"}, (prompt, outer, None, None), {"run_type": "prompt"}) == []
    )
    [(_, _, kw)] = chat(b, call, prompt)
    assert kw["parent_run_id"] == str(outer)
    assert kw["depth"] == 1
    b.llm_end(answer(), call)
    assert b.chain_end("text", prompt) == []
    [(_, _, kw)] = b.chain_end("Paris", outer)
    assert kw["usage"].total_tokens == 12  # rolled up past the hidden run
    assert b.runs == {}


def test_a_streamed_chain_starts_when_its_real_input_is_known() -> None:
    b = bridge()
    outer, inner = uuid4(), uuid4()
    assert b.chain_start(None, {"input": ""}, (outer, None, None, None), {"name": "seq"}) == []
    emits = b.chain_start(None, {"q": "Capital?"}, (inner, outer, None, None), {"name": "step"})
    assert [(h, args[0], kw["name"]) for h, args, kw in emits] == [
        ("on_run_start", "Capital?", "seq"),
        ("on_run_start", "Capital?", "step"),
    ]
    b.chain_end("Paris", inner)
    lone = uuid4()
    assert b.chain_start(None, {"input": ""}, (lone, None, None, None), {}) == []
    emits = b.chain_end("out", lone, inputs={"q": "at the end"})
    assert [(h, args[0]) for h, args, _ in emits] == [
        ("on_run_start", "at the end"),
        ("on_run_end", "out"),
    ]

"""The LiteLLM bridge, with the real ``litellm`` package calling the local OpenAI-compatible
server (``hookwire.testing.OpenAIServer``): no mock of LiteLLM. tests/conftest.py sets
``LITELLM_LOCAL_MODEL_COST_MAP=True`` so importing LiteLLM never reaches the internet."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

litellm = pytest.importorskip("litellm")

import hookwire  # noqa: E402
from hookwire import BaseCallback, LLMResponse, Usage, pricing  # noqa: E402
from hookwire.callbacks import AccountingCallbackHandler, Budget  # noqa: E402
from hookwire.errors import AuthenticationError, BudgetExceeded, RateLimitError  # noqa: E402
from hookwire.integrations.litellm import HookwireLogger  # noqa: E402
from hookwire.testing import RecordingCallback  # noqa: E402
from hookwire.testing.openai_server import ErrorReply, OpenAIServer, Reply, ToolCallReply  # noqa: E402
from request_editor import RequestEditor  # noqa: E402

MODEL = "openai/gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Capital of France?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


class Ends(RecordingCallback):
    """Records, and lets a test wait for a call's end (LiteLLM reports it from a background
    thread or task just after the call returned)."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = threading.Semaphore(0)

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        super().on_llm_end(response, **kwargs)
        self.ended.release()

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        super().on_llm_error(error, **kwargs)
        self.ended.release()

    def wait(self, n: int = 1) -> None:
        for _ in range(n):
            assert self.ended.acquire(timeout=60), f"no end reported after {self.hooks()}"

    async def await_(self, n: int = 1) -> None:
        # In a thread: LiteLLM reports an async call's end from a task of this loop.
        await asyncio.to_thread(self.wait, n)


def use(*callbacks: Any) -> None:
    """Make a ``HookwireLogger`` of ``callbacks`` LiteLLM's only logger. LiteLLM copies
    ``litellm.callbacks`` into its success and failure lists at a call; all are reset."""
    for name in (
        "input_callback",
        "success_callback",
        "failure_callback",
        "_async_success_callback",
        "_async_failure_callback",
    ):
        setattr(litellm, name, [])
    litellm.callbacks = [HookwireLogger(callbacks=list(callbacks))] if callbacks else []


@pytest.fixture(autouse=True)
def _no_loggers_left() -> Iterator[None]:
    yield
    use()


@pytest.fixture
def rec() -> Ends:
    rec = Ends()
    use(rec)
    return rec


def args(server: OpenAIServer, **more: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": MESSAGES,
        "api_base": server.base_url,
        "api_key": "test",
        "max_retries": 0,
        **more,
    }


def test_completion_is_reported_with_usage_and_cost(openai_server: OpenAIServer, rec: Ends) -> None:
    usage = {"prompt_tokens": 200, "completion_tokens": 10, "cached_tokens": 120}
    openai_server.script(Reply("Paris.", usage=usage))
    out = litellm.completion(**args(openai_server, max_tokens=50, temperature=0.1))
    assert out.choices[0].message.content == "Paris."
    rec.wait()
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]
    start, end = rec.calls
    assert start["prompt"] == MESSAGES
    assert start["model"] == "gpt-4o-mini" and start["provider"] == "openai"
    assert start["invocation_params"] == {
        "model": "gpt-4o-mini",
        "max_tokens": 50,
        "temperature": 0.1,
    }
    assert start["stream"] is False
    response: LLMResponse = end["response"]
    assert end["run_id"] == start["run_id"]
    assert response.content == "Paris."
    assert response.usage == Usage(200, 10, cached_tokens=120, reasoning_tokens=0)
    assert response.cost == pricing.cost("gpt-4o-mini", response.usage, "openai")
    assert (
        response.cost
        == (Decimal(80) * Decimal("0.15") + 120 * Decimal("0.075") + 10 * Decimal("0.6"))
        / 1_000_000
    )
    assert response.id == out.id
    assert response.finish_reason == "stop"
    assert end["latency_ms"] > 0


def test_streamed_completion(openai_server: OpenAIServer, rec: Ends) -> None:
    openai_server.script(
        Reply("One two three.", usage={"prompt_tokens": 7, "completion_tokens": 3})
    )
    stream = litellm.completion(
        **args(openai_server, stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "One two three."
    rec.wait()
    start, end = rec.calls
    assert start["stream"] is True and end["stream"] is True
    assert end["response"].content == text
    assert end["response"].usage.prompt_tokens == 7
    assert end["response"].usage.completion_tokens == 3
    assert end["response"].cost is not None


def test_tool_calls(openai_server: OpenAIServer, rec: Ends) -> None:
    openai_server.script(ToolCallReply("get_weather", {"city": "Paris"}, id="call_1"))
    out = litellm.completion(**args(openai_server, tools=TOOLS))
    assert out.choices[0].message.tool_calls[0].function.name == "get_weather"
    rec.wait()
    assert rec.calls[0]["invocation_params"]["tools"] == ["get_weather"]
    response = rec.of("on_llm_end")[0]["response"]
    assert response.finish_reason == "tool_calls"
    (call,) = response.tool_calls
    assert (call.id, call.name) == ("call_1", "get_weather")
    assert call.arguments.replace(" ", "") == '{"city":"Paris"}'


def test_errors_are_hookwire_errors(openai_server: OpenAIServer, rec: Ends) -> None:
    openai_server.script(ErrorReply(401))
    with pytest.raises(litellm.AuthenticationError):
        litellm.completion(**args(openai_server))
    rec.wait()
    assert rec.hooks() == ["on_llm_start", "on_llm_error", "on_error"]
    error = rec.of("on_llm_error")[0]["error"]
    assert isinstance(error, AuthenticationError)
    assert error.provider == "openai" and error.model == "gpt-4o-mini"
    assert isinstance(error.__cause__, litellm.AuthenticationError)
    assert rec.of("on_error")[0]["stage"] == "llm"


def test_nested_under_a_hookwire_run(openai_server: OpenAIServer, rec: Ends) -> None:
    with hookwire.trace("agent", user_id="u1") as run:
        litellm.completion(**args(openai_server))
    rec.wait()
    for c in rec.calls:
        assert c["parent_run_id"] == run.run_id
        assert c["trace_id"] == run.run_id
        assert c["user_id"] == "u1"


async def test_acompletion_streamed_or_not_and_errors(
    openai_server: OpenAIServer, rec: Ends
) -> None:
    openai_server.script(
        Reply("hi there", usage={"prompt_tokens": 4, "completion_tokens": 2}),
        Reply("x y", usage={"prompt_tokens": 4, "completion_tokens": 2}),
        ErrorReply(429),
    )
    with hookwire.trace("agent") as run:
        out = await litellm.acompletion(**args(openai_server))
        assert out.choices[0].message.content == "hi there"
        stream = await litellm.acompletion(
            **args(openai_server, stream=True, stream_options={"include_usage": True})
        )
        assert [c.choices[0].delta.content async for c in stream if c.choices][1:3] == ["x ", "y"]
        with pytest.raises(litellm.RateLimitError):
            await litellm.acompletion(**args(openai_server))
    await rec.await_(3)
    assert rec.hooks().count("on_llm_start") == 3
    ends = rec.of("on_llm_end")
    # An async call is reported once, though LiteLLM calls both of its success hooks.
    assert sorted(e["response"].content for e in ends) == ["hi there", "x y"]
    assert all(e["response"].usage.total_tokens == 6 for e in ends)
    assert isinstance(rec.of("on_llm_error")[0]["error"], RateLimitError)
    assert {c["parent_run_id"] for c in rec.calls} == {run.run_id}


class Refuse(BaseCallback):
    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        raise BudgetExceeded("org o1 spent its 5 USD", scope="org", key="o1")


async def test_a_refusal_stops_acompletion_before_it_is_sent(openai_server: OpenAIServer) -> None:
    rec = RecordingCallback()
    use(Refuse(), rec)
    with pytest.raises(BudgetExceeded):
        await litellm.acompletion(**args(openai_server))
    assert openai_server.requests == []
    assert rec.hooks() == ["on_llm_error", "on_budget_exceeded", "on_error"]
    assert rec.of("on_error")[0]["stage"] == "budget"


async def test_an_accounting_budget_refuses_once_spent(
    openai_server: OpenAIServer, tmp_path: Path
) -> None:
    accounting = AccountingCallbackHandler(
        database_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        user_id="u1",
        budgets=Budget("0.00005", period=None),
        budget_lease=0,
    )
    rec = Ends()
    use(accounting, rec)
    try:
        # 10 + 100 tokens of gpt-4o-mini: 0.0000615 USD, booked; the budget is spent.
        openai_server.script(Reply("ok", usage={"prompt_tokens": 10, "completion_tokens": 100}))
        await litellm.acompletion(**args(openai_server, max_tokens=100))
        await rec.await_()
        assert rec.of("on_llm_end")[0]["response"].cost == Decimal("0.0000615")
        assert accounting.flush(30)
        with pytest.raises(BudgetExceeded) as refused:
            await litellm.acompletion(**args(openai_server, max_tokens=100))
    finally:
        accounting.close()
    assert refused.value.key == "u1"
    assert len(openai_server.requests) == 1  # the refused call was never sent
    assert rec.hooks()[-3:] == ["on_llm_error", "on_budget_exceeded", "on_error"]


def test_a_sync_refusal_is_reported_and_the_call_still_sent(
    openai_server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Ends()
    use(Refuse(), rec)
    litellm.completion(**args(openai_server))
    rec.wait()
    assert len(openai_server.requests) == 1
    assert "use litellm.acompletion()" in caplog.text
    assert rec.hooks() == ["on_budget_exceeded", "on_llm_end"]


async def test_a_handler_cannot_change_the_request_litellm_sends(
    openai_server: OpenAIServer,
) -> None:
    editor = RequestEditor(lambda params: params.__setitem__("temperature", 2))
    use(editor)
    messages = [{"role": "user", "content": "hello"}]
    litellm.completion(**{**args(openai_server, temperature=0.5), "messages": messages})
    await litellm.acompletion(**{**args(openai_server, temperature=0.5), "messages": messages})
    assert editor.refused == ["content", "message", "params"] * 2
    for body in openai_server.requests:
        assert body["messages"] == [{"role": "user", "content": "hello"}]
        assert body["temperature"] == 0.5

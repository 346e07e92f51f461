"""LocalLLM: deterministic answers, tools, usage, streaming and simulated failures."""

from __future__ import annotations

import json
from typing import Any

import pytest

import hookwire
from hookwire import LLMResponse
from hookwire.errors import ConfigurationError, RateLimitError, ServerError, StreamInterrupted
from hookwire.llms import LLM, LocalLLM, RetryPolicy
from hookwire.testing import RecordingCallback

FAST = RetryPolicy(max_attempts=3, initial=0.0, jitter=0.0)


@hookwire.tool
def order_status(order_id: str) -> str:
    """Look up an order."""
    return f"{order_id}: shipped"


def test_is_an_llm() -> None:
    assert isinstance(LocalLLM(), LLM)
    assert LocalLLM().provider == "local"


def test_echo_and_greeting() -> None:
    llm = LocalLLM()
    assert llm.generate("hi there").content == "Hello! How can I help you today?"
    response = llm.generate("the sky is blue")
    assert response.content == "You said: the sky is blue"
    assert response.usage.prompt_tokens == 4
    assert response.usage.completion_tokens == 6
    assert response.model == "local-echo"
    assert response.provider == "local"
    assert response.finish_reason == "stop"


def test_rules_with_groups_and_memory() -> None:
    llm = LocalLLM(
        rules=[(r"capital of (\w+)", "I do not know the capital of {0}."), ("remember", "{memory}")]
    )
    assert (
        llm.generate("What is the capital of Peru?").content == "I do not know the capital of Peru."
    )
    messages = [
        {
            "role": "system",
            "content": "Relevant memory: User: my cat is Tom\nAssistant: ok | other",
        },
        {"role": "user", "content": "do you remember?"},
    ]
    assert llm.generate(messages).content == "my cat is Tom"


def test_tool_call_when_the_prompt_names_the_tool() -> None:
    llm = LocalLLM()
    response = llm.generate("What is the order status of ORD-77?", tools=[order_status])
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls[0].name == "order_status"
    assert json.loads(response.tool_calls[0].arguments) == {"order_id": "ORD-77"}
    # Not every word of the name: no tool call.
    assert not llm.generate("my order is late", tools=[order_status]).tool_calls
    # After the tool's result it answers from it.
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "status of order ORD-77"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "order_status", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ORD-77: shipped"},
    ]
    assert (
        llm.generate(messages, tools=[order_status]).content == "order_status says: ORD-77: shipped"
    )


def test_tool_arguments_by_type() -> None:
    schema = {
        "parameters": {
            "properties": {
                "n": {"type": "integer"},
                "x": {"type": "number"},
                "flag": {"type": "boolean"},
                "tags": {"type": "array"},
                "opts": {"type": "object"},
                "q": {"type": "string"},
            },
            "required": ["n", "x", "flag", "tags", "opts", "q"],
        }
    }
    args = LocalLLM.tool_arguments(schema, 'find "red shoes" 3 pairs')
    assert args == {"n": 3, "x": 3.0, "flag": False, "tags": [], "opts": {}, "q": "red shoes"}


def test_stream_yields_words_then_response() -> None:
    items = list(LocalLLM().stream("one two"))
    assert items[:-1] == ["You ", "said: ", "one ", "two"]
    assert isinstance(items[-1], LLMResponse)


def test_transient_failures_are_retried_with_events() -> None:
    rec = RecordingCallback()
    llm = LocalLLM(fail_times=2, failure="server", retry=FAST, callbacks=[rec])
    assert llm.generate("x", stream=False).content == "You said: x"
    assert [type(c["error"]) for c in rec.of("retry")] == [ServerError, ServerError]
    assert llm.calls == 3


def test_stream_failure_mid_way_is_retried() -> None:
    rec = RecordingCallback()
    llm = LocalLLM(retry=FAST, callbacks=[rec]).fail(1, "stream")
    assert llm.generate("a b c").content == "You said: a b c"
    tokens = [(t["attempt"], t["index"]) for t in rec.of("llm_new_token")]
    assert tokens[:2] == [(1, 0), (1, 1)]
    assert tokens[2] == (2, 0)
    assert isinstance(rec.of("retry")[0]["error"], StreamInterrupted)


def test_failures_beyond_attempts_raise() -> None:
    llm = LocalLLM(retry=RetryPolicy(max_attempts=2, initial=0), fail_times=5)
    with pytest.raises(RateLimitError):
        llm.generate("x")


@pytest.mark.parametrize("kind", ["timeout", "connection", "rate_limit"])
async def test_async_failures(kind: str) -> None:
    llm = LocalLLM(retry=FAST).fail(1, kind)
    assert (await llm.agenerate("x")).content == "You said: x"
    items = [i async for i in LocalLLM(token_delay=0.001).astream("y")]
    assert "".join(i for i in items if isinstance(i, str)) == "You said: y"


def test_bad_failure_settings() -> None:
    with pytest.raises(ConfigurationError, match="unknown failure"):
        LocalLLM().fail(1, "meteor")
    with pytest.raises(ConfigurationError):
        LocalLLM().fail(-1)


def test_a_buggy_client_becomes_an_llm_error() -> None:
    from hookwire.errors import LLMError

    class Buggy(LocalLLM):
        def _complete(self, request: Any) -> Any:
            raise ZeroDivisionError("oops")

        def _stream(self, request: Any) -> Any:
            yield "partial "
            raise ZeroDivisionError("oops")

    rec = RecordingCallback()
    with pytest.raises(LLMError, match="failed unexpectedly") as info:
        Buggy(callbacks=[rec]).generate("x", stream=False)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert rec.hooks() == ["on_llm_start", "on_llm_error", "on_error"]
    with pytest.raises(LLMError, match="ZeroDivisionError"):
        Buggy().generate("x", stream=True)


async def test_a_buggy_async_client_becomes_an_llm_error() -> None:
    from hookwire.errors import LLMError

    class Buggy(LocalLLM):
        async def _acomplete(self, request: Any) -> Any:
            raise ZeroDivisionError("oops")

    with pytest.raises(LLMError, match="ZeroDivisionError"):
        await Buggy().agenerate("x")

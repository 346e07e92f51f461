"""Anthropic SDK instrumentation, through the real ``anthropic`` package against the local
server's Messages API (``hookwire.testing.openai_server``, route ``/v1/messages``)."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

anthropic = pytest.importorskip("anthropic")

import hookwire  # noqa: E402
from hookwire import AsyncBaseCallback, BaseCallback, LLMResponse, Usage, pricing  # noqa: E402
from hookwire.errors import (  # noqa: E402
    BudgetExceeded,
    ConfigurationError,
    RateLimitError,
    ServerError,
)
from hookwire.integrations.anthropic import (  # noqa: E402
    instrument,
    is_instrumented,
    uninstrument,
)
from hookwire.testing import RecordingCallback  # noqa: E402
from hookwire.testing.openai_server import (  # noqa: E402
    Drop,
    ErrorReply,
    OpenAIServer,
    Raw,
    Reply,
    ToolCallReply,
)
from request_editor import RequestEditor  # noqa: E402

MODEL = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "Capital of France?"}]
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather in a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]

_clients: list[Any] = []


def client_for(server: OpenAIServer, retries: int = 0) -> Any:
    client = anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=retries)
    _clients.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


@pytest.fixture
def rec() -> RecordingCallback:
    return RecordingCallback()


@pytest.fixture
def client(openai_server: OpenAIServer, rec: RecordingCallback) -> Any:
    return instrument(client_for(openai_server), callbacks=[rec])


def test_message_is_reported_with_cache_usage_and_cost(
    openai_server: OpenAIServer, rec: RecordingCallback, client: Any
) -> None:
    usage = {"prompt_tokens": 1000, "cached_tokens": 600, "cache_creation_tokens": 300}
    openai_server.script(Reply("Paris.", usage=usage))
    out = client.messages.create(
        model=MODEL, max_tokens=50, system="Be brief.", messages=MESSAGES, stop_sequences=["END"]
    )
    assert isinstance(out, anthropic.types.Message)
    assert out.content[0].text == "Paris."
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]
    start, end = rec.calls
    assert start["prompt"] == [{"role": "system", "content": "Be brief."}, *MESSAGES]
    assert start["invocation_params"] == {"model": MODEL, "max_tokens": 50, "stop": ["END"]}
    assert start["provider"] == "anthropic"
    assert start["stream"] is False
    assert start["server_address"] == "127.0.0.1"
    response: LLMResponse = end["response"]
    assert response.content == "Paris."
    assert response.finish_reason == "end_turn"
    assert response.id == out.id
    # Anthropic counts the input apart from the cache; hookwire counts every prompt token.
    assert out.usage.input_tokens == 100
    assert response.usage == Usage(
        1000, out.usage.output_tokens, cached_tokens=600, cache_creation_tokens=300
    )
    # Each kind at its own rate (claude-haiku-4-5: 1 USD input, 0.1 cache read, 1.25 cache
    # write, 5 output, per million tokens).
    expected = (
        Decimal(100) * 1 + Decimal(600) * Decimal("0.1") + Decimal(300) * Decimal("1.25")
    ) / 1_000_000 + Decimal(out.usage.output_tokens) * 5 / 1_000_000
    assert response.cost == expected
    assert response.cost == pricing.cost(MODEL, response.usage, "anthropic")
    assert end["attempts"] == 1


def test_streamed_create_reports_tokens_and_usage(
    openai_server: OpenAIServer, rec: RecordingCallback, client: Any
) -> None:
    openai_server.script(Reply("One two three."))
    events = list(
        client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES, stream=True)
    )
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    tokens = [c["token"] for c in rec.of("on_llm_new_token")]
    assert tokens == ["One ", "two ", "three."]
    (end,) = rec.of("on_llm_end")
    response = end["response"]
    assert response.content == "One two three."
    assert response.usage.completion_tokens == events[6].usage.output_tokens == 3
    assert response.usage.prompt_tokens == events[0].message.usage.input_tokens
    assert response.cost is not None
    assert end["stream"] is True
    assert "cancelled" not in end.kwargs
    assert end["ttft_ms"] > 0


def test_messages_stream_helper(
    openai_server: OpenAIServer, rec: RecordingCallback, client: Any
) -> None:
    openai_server.script(Reply("Streaming is fun."))
    with client.messages.stream(model=MODEL, max_tokens=50, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Streaming is fun."
    assert rec.hooks()[0] == "on_llm_start" and rec.hooks()[-1] == "on_llm_end"
    (end,) = rec.of("on_llm_end")
    assert end["response"].content == text
    assert end["response"].usage.completion_tokens == final.usage.output_tokens
    assert end["response"].id == final.id


def test_stream_left_early_is_cancelled_with_an_estimate(
    openai_server: OpenAIServer, rec: RecordingCallback, client: Any
) -> None:
    openai_server.script(Reply("one two three four five six"))
    with client.messages.stream(model=MODEL, max_tokens=50, messages=MESSAGES) as stream:
        for _ in zip(range(2), stream.text_stream, strict=False):
            pass
    (end,) = rec.of("on_llm_end")
    assert end["cancelled"] is True
    assert end["response"].content == "one two "
    assert end["response"].usage.estimated is True


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use(
    openai_server: OpenAIServer, rec: RecordingCallback, client: Any, stream: bool
) -> None:
    openai_server.script(ToolCallReply("get_weather", {"city": "Paris"}, id="call_1"))
    if stream:
        with client.messages.stream(
            model=MODEL, max_tokens=50, messages=MESSAGES, tools=TOOLS
        ) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES, tools=TOOLS)
    block = message.content[0]
    assert block.type == "tool_use" and block.input == {"city": "Paris"}
    assert rec.of("on_llm_start")[0]["invocation_params"]["tools"] == ["get_weather"]
    response = rec.of("on_llm_end")[0]["response"]
    assert response.finish_reason == "tool_use"
    (call,) = response.tool_calls
    assert (call.id, call.name) == (block.id, "get_weather")
    assert call.arguments.replace(" ", "") == '{"city":"Paris"}'
    # The tool's result goes back; the server answers from it.
    follow = client.messages.create(
        model=MODEL,
        max_tokens=50,
        tools=TOOLS,
        messages=[
            *MESSAGES,
            {"role": "assistant", "content": [block.model_dump()]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "Sunny"}],
            },
        ],
    )
    assert follow.content[0].text == "The tool returned: Sunny"


def test_retries_are_on_retry_events_of_the_same_call(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    client = instrument(client_for(openai_server, retries=2), callbacks=[rec])
    openai_server.script(ErrorReply(529, retry_after=0), ErrorReply(429, retry_after=0), "Yes.")
    out = client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    assert out.content[0].text == "Yes."
    assert len(openai_server.requests) == 3
    assert rec.hooks() == ["on_llm_start", "on_retry", "on_retry", "on_llm_end"]
    first, second = rec.of("on_retry")
    assert (first["attempt"], first["max_attempts"]) == (1, 3)
    assert isinstance(first["error"], ServerError) and first["error"].status_code == 529
    assert isinstance(second["error"], RateLimitError)
    assert first["delay"] >= 0
    assert rec.of("on_llm_end")[0]["attempts"] == 3
    assert {c["run_id"] for c in rec.calls} == {rec.calls[0]["run_id"]}


def test_errors_reach_the_app_unchanged_and_handlers_get_hookwire_errors(
    openai_server: OpenAIServer, rec: RecordingCallback, client: Any
) -> None:
    openai_server.script(ErrorReply(429, retry_after=7))
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    # The server answers in Anthropic's shape: the SDK reads its error type and message.
    assert raised.value.type == "rate_limit_error"
    assert raised.value.body["error"]["message"] == (
        "Number of requests has exceeded your rate limit."
    )
    assert rec.hooks() == ["on_llm_start", "on_llm_error", "on_error"]
    error = rec.of("on_llm_error")[0]["error"]
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 7
    assert error.provider == "anthropic" and error.model == MODEL
    assert error.__cause__ is raised.value
    assert rec.of("on_error")[0]["stage"] == "llm"


def test_an_error_event_in_a_stream(
    openai_server: OpenAIServer, rec: RecordingCallback, client: Any
) -> None:
    overloaded = '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    start = (
        '{"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": '
        '"assistant", "model": "claude-haiku-4-5", "content": [], "stop_reason": null, '
        '"stop_sequence": null, "usage": {"input_tokens": 5, "output_tokens": 1}}}'
    )
    openai_server.script(
        Raw(f"event: message_start\ndata: {start}\n\nevent: error\ndata: {overloaded}\n\n")
    )
    with pytest.raises(anthropic.APIStatusError):
        list(client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES, stream=True))
    assert rec.hooks() == ["on_llm_start", "on_llm_error", "on_error"]
    error = rec.of("on_llm_error")[0]["error"]
    assert isinstance(error, ServerError) and error.status_code == 529


def test_streamed_events_reach_the_app_as_from_a_plain_client(
    openai_server: OpenAIServer, rec: RecordingCallback, client: Any
) -> None:
    # The instrumentation reads the SDK's own decoding of each event's data, and skips the
    # events it has no use for by name: what the app gets must be what a plain client gets.
    def event(kind: str, **fields: Any) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n"

    usage = {"input_tokens": 5, "output_tokens": 1}
    start = {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL}
    start |= {"content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
    tool = {"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {}}
    body = "".join(
        [
            event("message_start", message=start),
            event("ping"),
            event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
            event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hm"}),
            event("content_block_stop", index=0),
            event("content_block_start", index=1, content_block=tool),
            event(
                "content_block_delta",
                index=1,
                delta={"type": "input_json_delta", "partial_json": '{"city": "Paris"}'},
            ),
            event("content_block_stop", index=1),
            # An integer no 64-bit decoder keeps: the SDK's own decoding gives it exactly.
            event(
                "message_delta",
                delta={"stop_reason": "tool_use"},
                usage={"output_tokens": 7, "x": 2**70},
            ),
            event("message_stop"),
        ]
    )
    seen = []
    for app in (client, client_for(openai_server)):
        openai_server.script(Raw(body))
        stream = app.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES, stream=True)
        seen.append([e.model_dump() for e in stream])
    assert seen[0] == seen[1]
    assert seen[0][-2]["usage"]["x"] == 2**70
    assert [c["token"] for c in rec.of("on_llm_new_token")] == ["Hm"]
    (end,) = rec.of("on_llm_end")
    response = end["response"]
    assert (response.content, response.finish_reason) == ("Hm", "tool_use")
    assert response.tool_calls[0].arguments == '{"city": "Paris"}'
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (5, 7)
    assert "cancelled" not in end.kwargs


def test_a_dropped_stream_is_an_error(
    openai_server: OpenAIServer, rec: RecordingCallback, client: Any
) -> None:
    openai_server.script(Drop(after=2))
    with pytest.raises(anthropic.APIError):
        list(client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES, stream=True))
    assert rec.hooks()[-2:] == ["on_llm_error", "on_error"]
    assert len(rec.of("on_llm_new_token")) == 2


def test_nested_under_a_hookwire_run(openai_server: OpenAIServer, rec: RecordingCallback) -> None:
    client = instrument(client_for(openai_server), callbacks=[rec], org_id="o1")
    with hookwire.trace("agent", user_id="u1") as run:
        client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
        with hookwire.trace("step") as step:
            list(client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES, stream=True))
    first, second = rec.of("on_llm_end")
    assert first["parent_run_id"] == run.run_id
    assert second["parent_run_id"] == step.run_id
    for c in rec.calls:
        assert c["trace_id"] == run.run_id
        assert c["user_id"] == "u1"
        assert c["org_id"] == "o1"


class Refuse(BaseCallback):
    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        raise BudgetExceeded("org o1 spent its 5 USD", scope="org", key="o1")


def test_budget_refuses_before_the_request(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    client = instrument(client_for(openai_server), callbacks=[Refuse(), rec])
    with pytest.raises(BudgetExceeded):
        client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    assert openai_server.requests == []
    assert rec.hooks() == ["on_llm_error", "on_budget_exceeded", "on_error"]


def test_uninstrument_restores_the_client(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    client = client_for(openai_server)
    before = dict(client.__dict__)
    instrument(client, callbacks=[rec])
    assert is_instrumented(client)
    derived = client.with_options(timeout=5)
    derived.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]
    uninstrument(client)
    assert not is_instrumented(client)
    assert client.__dict__ == before
    client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    assert len(rec.calls) == 2
    derived.close()


def test_not_an_anthropic_client() -> None:
    import openai

    with pytest.raises(ConfigurationError, match=r"hookwire\.integrations\.openai"):
        instrument(openai.OpenAI(api_key="x"))  # type: ignore[type-var]


class AsyncRec(AsyncBaseCallback):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        self.events.append(("start", kwargs["stream"]))

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.events.append(("token", token))

    async def on_retry(self, attempt: int, max_attempts: int, error: Any, **kwargs: Any) -> None:
        self.events.append(("retry", type(error).__name__))

    async def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.events.append(("end", (response.content, response.usage.total_tokens)))

    async def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self.events.append(("error", type(error).__name__))


async def test_async_client(openai_server: OpenAIServer) -> None:
    openai_server.script(
        Reply("hi there", usage={"prompt_tokens": 4, "completion_tokens": 2}),
        ErrorReply(500),
        Reply("x y", usage={"prompt_tokens": 4, "completion_tokens": 2}),
        ErrorReply(401),
    )
    handler = AsyncRec()
    client = instrument(
        anthropic.AsyncAnthropic(base_url=openai_server.url, api_key="t", max_retries=1),
        callbacks=[handler],
    )
    out = await client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    assert out.content[0].text == "hi there"
    async with client.messages.stream(model=MODEL, max_tokens=50, messages=MESSAGES) as stream:
        assert [t async for t in stream.text_stream] == ["x ", "y"]
    with pytest.raises(anthropic.AuthenticationError):
        await client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    assert handler.events == [
        ("start", False),
        ("end", ("hi there", 6)),
        ("start", True),
        ("retry", "ServerError"),
        ("token", "x "),
        ("token", "y"),
        ("end", ("x y", 6)),
        ("start", False),
        ("error", "AuthenticationError"),
    ]
    await client.close()


async def test_async_stream_left_early(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply("a b c d e"))
    rec = RecordingCallback()
    client = instrument(
        anthropic.AsyncAnthropic(base_url=openai_server.url, api_key="t", max_retries=0),
        callbacks=[rec],
    )
    stream = await client.messages.create(
        model=MODEL, max_tokens=50, messages=MESSAGES, stream=True
    )
    async with stream:
        async for event in stream:
            if event.type == "content_block_delta":
                break
    assert stream.response.is_closed
    (end,) = rec.of("on_llm_end")
    assert end["cancelled"] is True
    assert end["response"].content == "a "
    await client.close()
    gc.collect()


@pytest.mark.parametrize("system", [None, "Be brief."])
def test_a_handler_cannot_change_the_request_the_sdk_sends(
    openai_server: OpenAIServer, system: str | None
) -> None:
    editor = RequestEditor()
    client = instrument(client_for(openai_server), callbacks=[editor])
    extra = {"system": system} if system else {}
    client.messages.create(
        model=MODEL, max_tokens=50, messages=MESSAGES, stop_sequences=["END"], **extra
    )
    assert editor.refused == ["content", "message", "params"]
    (body,) = openai_server.requests
    assert body["messages"] == MESSAGES
    assert body["stop_sequences"] == ["END"]

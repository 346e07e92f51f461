"""openai SDK instrumentation, through the real SDK against the local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

import hookwire
from hookwire import AsyncBaseCallback, BaseCallback, LLMResponse
from hookwire.errors import (
    BudgetExceeded,
    ConfigurationError,
    LLMError,
    RateLimitError,
    ServerError,
)
from hookwire.integrations.openai import instrument, is_instrumented, uninstrument
from hookwire.testing import RecordingCallback
from hookwire.testing.openai_server import Drop, ErrorReply, OpenAIServer, Reply, ToolCallReply
from request_editor import RequestEditor

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Capital of France?"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


_sync_clients: list[openai.OpenAI] = []


def client_for(server: OpenAIServer) -> openai.OpenAI:
    client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    _sync_clients.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    # Close every client a test made, so no socket is left for the garbage collector.
    yield
    while _sync_clients:
        _sync_clients.pop().close()


def aclient_for(server: OpenAIServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)


@pytest.fixture
def rec() -> RecordingCallback:
    return RecordingCallback()


@pytest.fixture
def client(openai_server: OpenAIServer, rec: RecordingCallback) -> openai.OpenAI:
    """A client of ``openai_server``, instrumented to send its events to ``rec``."""
    return instrument(client_for(openai_server), callbacks=[rec])


def test_chat_completion_is_reported(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script(Reply("Paris is the capital of France."))
    out = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, temperature=0.1, max_tokens=50
    )
    assert isinstance(out, openai.types.chat.ChatCompletion)
    assert out.choices[0].message.content == "Paris is the capital of France."
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]
    start, end = rec.calls
    assert start["prompt"] == MESSAGES
    assert start["invocation_params"] == {"model": "gpt-4o", "temperature": 0.1, "max_tokens": 50}
    assert start["stream"] is False
    assert start["model"] == "gpt-4o"
    assert start["provider"] == "openai"
    assert end["run_id"] == start["run_id"]
    response: LLMResponse = end["response"]
    assert response.content == "Paris is the capital of France."
    assert response.usage.prompt_tokens == out.usage.prompt_tokens  # type: ignore[union-attr]
    assert response.usage.completion_tokens == out.usage.completion_tokens  # type: ignore[union-attr]
    assert response.usage.total_tokens == out.usage.total_tokens  # type: ignore[union-attr]
    assert response.usage.cached_tokens == 0
    assert response.model == out.model
    assert response.id == out.id
    assert response.finish_reason == "stop"
    assert response.provider == "openai"
    assert end["latency_ms"] > 0
    assert end["attempts"] == 1
    assert end["stream"] is False
    # the request itself is the app's, unchanged
    assert openai_server.requests[0]["messages"] == MESSAGES
    assert "stream_options" not in openai_server.requests[0]


def test_streamed_call_reports_tokens_and_usage(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script(Reply("One two three."), Reply("One two three."))
    plain = client_for(openai_server)
    expected = [
        c.model_dump()
        for c in plain.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    ]

    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    # the app sees the chunks it would have seen without hookwire (no extra usage chunk)
    assert len(chunks) == len(expected)
    assert [c.choices[0].delta.content for c in chunks] == [
        c["choices"][0]["delta"]["content"] for c in expected
    ]
    assert openai_server.requests[1]["stream_options"] == {"include_usage": True}
    tokens = rec.of("on_llm_new_token")
    assert "".join(t["token"] for t in tokens) == "One two three."
    assert [t["index"] for t in tokens] == list(range(len(tokens)))
    assert {t["attempt"] for t in tokens} == {1}
    (end,) = rec.of("on_llm_end")
    assert end["response"].content == "One two three."
    assert end["response"].usage.completion_tokens == 3
    assert end["response"].usage.prompt_tokens > 0
    assert end["response"].finish_reason == "stop"
    assert end["stream"] is True
    assert 0 <= end["ttft_ms"] <= end["latency_ms"]
    assert "cancelled" not in end.kwargs
    assert rec.of("on_llm_start")[0]["stream"] is True


def test_usage_chunk_kept_when_the_app_asked_for_it(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script(Reply("a b"))
    chunks = list(
        client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert rec.of("on_llm_end")[0]["response"].usage.completion_tokens == 2


def test_tool_calls(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script(
        ToolCallReply("get_weather", {"city": "Paris"}, id="call_w1"),
        ToolCallReply("get_weather", {"city": "Oslo"}, id="call_w2"),
    )
    out = client.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS)
    assert out.choices[0].message.tool_calls
    (start,) = rec.of("on_llm_start")
    assert start["invocation_params"]["tools"] == ["get_weather"]
    (end,) = rec.of("on_llm_end")
    (call,) = end["response"].tool_calls
    assert call.id == "call_w1"
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert end["response"].finish_reason == "tool_calls"

    rec.clear()
    list(client.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS, stream=True))
    (end,) = rec.of("on_llm_end")
    (call,) = end["response"].tool_calls
    assert (call.id, call.name) == ("call_w2", "get_weather")
    assert json.loads(call.arguments) == {"city": "Oslo"}
    assert end["response"].finish_reason == "tool_calls"


def test_error_reaches_the_app_unchanged_and_handlers_get_hookwire_errors(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script(ErrorReply(429, retry_after=3), ErrorReply(503))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert rec.hooks() == ["on_llm_start", "on_llm_error", "on_error"]
    err = rec.of("on_llm_error")[0]["error"]
    assert isinstance(err, RateLimitError)
    assert err.retry_after == 3
    assert err.status_code == 429
    assert isinstance(err.__cause__, openai.RateLimitError)
    assert rec.of("on_error")[0]["stage"] == "llm"
    rec.clear()
    with pytest.raises(openai.InternalServerError):
        list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert isinstance(rec.of("on_llm_error")[0]["error"], ServerError)


def test_a_dropped_stream_is_an_error(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script(Drop(after=2))
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(Exception):  # noqa: B017 - whatever the SDK raises for a cut
        for _ in stream:
            pass
    assert rec.hooks()[-2:] == ["on_llm_error", "on_error"]
    assert isinstance(rec.of("on_llm_error")[0]["error"], LLMError)
    assert len(rec.of("on_llm_new_token")) == 2
    assert rec.of("on_llm_end") == []


def test_stopping_early_closes_the_stream(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script(Reply("one two three four five six"))
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    seen = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            seen.append(chunk.choices[0].delta.content)
        if len(seen) == 2:
            break
    assert stream.response.is_closed
    (end,) = rec.of("on_llm_end")
    assert end["cancelled"] is True
    assert end["response"].content == "one two "
    assert end["response"].finish_reason is None
    assert end["response"].cost is None
    stream.close()  # closing again reports nothing more
    assert len(rec.of("on_llm_end")) == 1


def test_with_block_and_next(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script(Reply("alpha beta gamma"))
    with client.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        first = next(stream)
        assert first.choices[0].delta.role == "assistant"
        next(stream)
    assert stream.response.is_closed
    assert rec.of("on_llm_end")[0]["cancelled"] is True


def test_a_dropped_half_read_stream_is_closed(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script(Reply("alpha beta gamma"))
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    next(stream)
    response = stream.response
    del stream
    gc.collect()
    assert response.is_closed
    assert rec.of("on_llm_end")[0]["cancelled"] is True


def test_request_context_and_trace(openai_server: OpenAIServer, rec: RecordingCallback) -> None:
    client = instrument(client_for(openai_server), callbacks=[rec], org_id="o1", provider="vllm")
    with hookwire.trace("agent", user_id="u1") as run:
        client.chat.completions.create(model="m", messages=MESSAGES)
    for c in rec.calls:
        assert c["parent_run_id"] == run.run_id
        assert c["trace_id"] == run.run_id
        assert c["user_id"] == "u1"
        assert c["org_id"] == "o1"
        assert c["provider"] == "vllm"


class Budget(BaseCallback):
    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        raise BudgetExceeded("org o1 spent its 5 USD", scope="org", key="o1")


def test_budget_refuses_before_the_request(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    client = instrument(client_for(openai_server), callbacks=[Budget(), rec])
    with pytest.raises(BudgetExceeded):
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert openai_server.requests == []
    assert rec.hooks() == ["on_llm_error", "on_budget_exceeded", "on_error"]
    assert rec.of("on_error")[0]["stage"] == "budget"


class Broken(BaseCallback):
    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        raise RuntimeError("bug")

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug")


def test_a_failing_handler_never_reaches_the_app(openai_server: OpenAIServer) -> None:
    client = instrument(client_for(openai_server), callbacks=[Broken()])
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert chunks


def test_uninstrument_and_reinstrument(openai_server: OpenAIServer, rec: RecordingCallback) -> None:
    client = client_for(openai_server)
    assert not is_instrumented(client)
    instrument(client, callbacks=[rec])
    other = RecordingCallback()
    instrument(client, callbacks=[other])  # replaces, never wraps twice
    client.chat.completions.create(model="m", messages=MESSAGES)
    assert rec.calls == []
    assert other.hooks() == ["on_llm_start", "on_llm_end"]
    uninstrument(client)
    assert not is_instrumented(client)
    client.chat.completions.create(model="m", messages=MESSAGES)
    assert len(other.calls) == 2
    uninstrument(client)  # harmless


def test_raw_response_calls_are_reported(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert raw.headers.get("content-type", "").startswith("application/json")
    completion = raw.parse()
    assert rec.of("on_llm_end")[0]["response"].content == completion.choices[0].message.content


def test_one_shot_iterables_of_messages_still_reach_the_server(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    client.chat.completions.create(model="m", messages=(m for m in MESSAGES))
    assert openai_server.requests[0]["messages"] == MESSAGES
    assert rec.calls[0]["prompt"] == MESSAGES


def test_not_a_client() -> None:
    with pytest.raises(ConfigurationError, match=r"openai\.OpenAI"):
        instrument(object(), callbacks=[])  # type: ignore[type-var]


class AsyncRec(AsyncBaseCallback):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        self.events.append(("start", kwargs["stream"]))

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.events.append(("token", token))

    async def on_llm_end(self, response: LLMResponse, **kwargs: Any) -> None:
        self.events.append(("end", (response.content, kwargs.get("cancelled", False))))

    async def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self.events.append(("error", type(error).__name__))


async def test_async_client(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply("hi there"), Reply("x y"), ErrorReply(401))
    handler = AsyncRec()
    client = instrument(aclient_for(openai_server), callbacks=[handler])
    out = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert out.choices[0].message.content == "hi there"
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    chunks = [c async for c in stream]
    assert all(c.choices for c in chunks)
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(model="m", messages=MESSAGES)
    assert handler.events == [
        ("start", False),
        ("end", ("hi there", False)),
        ("start", True),
        ("token", "x "),
        ("token", "y"),
        ("end", ("x y", False)),
        ("start", False),
        ("error", "AuthenticationError"),
    ]
    await client.close()


async def test_async_stream_stopped_early(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply("a b c d e"))
    rec = RecordingCallback()
    client = instrument(aclient_for(openai_server), callbacks=[rec])
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    async with stream:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
    assert stream.response.is_closed
    (end,) = rec.of("on_llm_end")
    assert end["cancelled"] is True
    assert end["response"].content == "a "
    await client.close()


def test_feeds_the_opentelemetry_handler(openai_server: OpenAIServer) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hookwire.callbacks import OpenTelemetryCallback

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel = OpenTelemetryCallback(tracer_provider=provider, metrics=False)
    client = instrument(client_for(openai_server), callbacks=[otel])
    list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    (span,) = exporter.get_finished_spans()
    assert span.name == "chat gpt-4o"
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["gen_ai.request.stream"] is True
    provider.shutdown()


def test_cost_is_filled_when_prices_are_known(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    pytest.importorskip(
        "hookwire.pricing", reason="hookwire.pricing comes with the accounting work"
    )
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    for end in rec.of("on_llm_end"):
        assert end["response"].cost is not None
        assert end["response"].cost > 0


async def test_async_for_broken_out_of_is_closed(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply("a b c d e"))
    rec = RecordingCallback()
    client = instrument(aclient_for(openai_server), callbacks=[rec])
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    # The loop's async generator is finalised by the event loop (asyncio's asyncgen hooks).
    for _ in range(50):
        if rec.of("on_llm_end"):
            break
        await asyncio.sleep(0.01)
    assert stream.response.is_closed
    assert rec.of("on_llm_end")[0]["cancelled"] is True
    await client.close()


def test_an_instrumentation_failure_never_reaches_the_app(
    openai_server: OpenAIServer,
    rec: RecordingCallback,
    client: openai.OpenAI,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from hookwire.integrations.openai import calls, endpoints

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("instrumentation bug")

    chat = type(endpoints.ENDPOINTS["/chat/completions"].reader(None, "openai", False))
    monkeypatch.setattr(chat, "body", broken)
    monkeypatch.setattr(chat, "event", broken)
    monkeypatch.setattr(calls.failures, "seen", set())
    out = client.chat.completions.create(model="m", messages=MESSAGES)
    assert out.choices[0].message.content
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    monkeypatch.setattr(endpoints.Endpoint, "start", broken)
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices
    assert "openai instrumentation failed in chat" in caplog.text
    assert "openai instrumentation failed in a stream event" in caplog.text
    assert "openai instrumentation failed in a request" in caplog.text
    # what could be told was: the calls started, and the stream's end came with what it had
    assert rec.hooks().count("on_llm_start") == 2
    assert rec.hooks().count("on_llm_end") == 1


async def test_a_handler_cannot_change_the_request_the_sdk_sends(
    openai_server: OpenAIServer,
) -> None:
    editor = RequestEditor()
    messages = [{"role": "user", "content": "hello"}]
    client = instrument(client_for(openai_server), callbacks=[editor])
    client.chat.completions.create(model="gpt-4o-mini", messages=messages, stop=["\n\n"])
    async with instrument(aclient_for(openai_server), callbacks=[editor]) as aclient:
        await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stop=["\n\n"], stream=False
        )
    assert editor.refused == ["content", "message", "params"] * 2
    for body in openai_server.requests:
        assert body["messages"] == [{"role": "user", "content": "hello"}]
        assert body["stop"] == ["\n\n"]

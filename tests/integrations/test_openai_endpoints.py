"""What ``instrument`` reports for each endpoint of the API: chat completions' helpers, the
Responses API, legacy completions and embeddings, sync, async and streamed, with usage and
cost. Through the real ``openai`` SDK against the local server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from hookwire import BaseCallback, EmbeddingResponse, LLMResponse
from hookwire.callbacks import FileLogCallback
from hookwire.errors import BadRequestError, BudgetExceeded, CallbackAbort
from hookwire.integrations.openai import instrument
from hookwire.testing import RecordingCallback
from hookwire.testing.openai_server import (
    Drop,
    ErrorReply,
    OpenAIServer,
    Reply,
    ToolCallReply,
    Truncated,
)

MESSAGES = [{"role": "user", "content": "Capital of France?"}]
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


class City(BaseModel):
    city: str


@pytest.fixture
def rec() -> RecordingCallback:
    return RecordingCallback()


@pytest.fixture
def client(openai_server: OpenAIServer, rec: RecordingCallback) -> Iterator[openai.OpenAI]:
    sdk = openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0)
    yield instrument(sdk, callbacks=[rec])
    sdk.close()


@pytest.fixture
async def aclient(openai_server: OpenAIServer, rec: RecordingCallback) -> Any:
    sdk = openai.AsyncOpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0)
    yield instrument(sdk, callbacks=[rec])
    await sdk.close()


def only_end(rec: RecordingCallback, hook: str = "on_llm_end") -> Any:
    (end,) = rec.of(hook)
    return end


# -- chat completions' helpers ------------------------------------------------------------------


def test_chat_parse_and_beta_parse(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script('{"city": "Paris"}', '{"city": "Rome"}')
    parsed = client.chat.completions.parse(model="gpt-4o", messages=MESSAGES, response_format=City)
    assert parsed.choices[0].message.parsed == City(city="Paris")
    start = rec.of("on_llm_start")[0]
    assert start["invocation_params"]["response_format"] == "json_schema"
    assert only_end(rec)["response"].content == '{"city": "Paris"}'
    rec.clear()
    beta = getattr(client.beta, "chat", None)
    if beta is None:
        pytest.skip("this SDK has no beta.chat")
    assert beta.completions.parse(model="gpt-4o", messages=MESSAGES, response_format=City).choices[
        0
    ].message.parsed == City(city="Rome")
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]


def test_chat_stream_helper(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script("alpha beta gamma", "one two three")
    with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "alpha beta gamma"
    end = only_end(rec)
    assert end["response"].content == "alpha beta gamma"
    assert end["response"].usage.completion_tokens == 3
    assert end["response"].cost is not None
    assert len(rec.of("on_llm_new_token")) == 3
    rec.clear()
    with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as stream:
        next(iter(stream))
    assert only_end(rec)["cancelled"] is True


# -- the Responses API --------------------------------------------------------------------------


def test_responses_create(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script(
        Reply(
            "Paris.",
            usage={
                "prompt_tokens": 1000,
                "completion_tokens": 200,
                "cached_tokens": 400,
                "reasoning_tokens": 150,
            },
        )
    )
    out = client.responses.create(
        model="o4-mini",
        input="Capital of France?",
        reasoning={"effort": "low"},
        max_output_tokens=500,
    )
    assert out.output_text == "Paris."
    start = only_end(rec, "on_llm_start")
    assert start["prompt"] == "Capital of France?"
    assert start["invocation_params"] == {
        "model": "o4-mini",
        "max_output_tokens": 500,
        "reasoning_effort": "low",
    }
    assert start["stream"] is False
    end = only_end(rec)
    response: LLMResponse = end["response"]
    assert response.content == "Paris."
    assert response.id == out.id
    assert response.finish_reason == "stop"
    assert response.usage.prompt_tokens == 1000
    assert response.usage.completion_tokens == 200
    assert response.usage.cached_tokens == 400
    assert response.usage.reasoning_tokens == 150
    assert response.cost is not None
    # cached input is cheaper: the same call without a cache costs more
    openai_server.script(Reply("Paris.", usage={"prompt_tokens": 1000, "completion_tokens": 200}))
    client.responses.create(model="o4-mini", input="Capital of France?")
    uncached = rec.of("on_llm_end")[1]["response"]
    assert uncached.cost > response.cost


def test_responses_tool_calls_json_and_streamed(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    paris, oslo = {"city": "Paris"}, {"city": "Oslo"}
    openai_server.script(ToolCallReply("get_weather", paris, id="call_1"))
    openai_server.script(ToolCallReply("get_weather", oslo, id="call_2"))
    client.responses.create(model="gpt-4o", input="Weather?", tools=TOOLS)  # type: ignore[arg-type]
    assert rec.of("on_llm_start")[0]["invocation_params"]["tools"] == ["get_weather"]
    response = only_end(rec)["response"]
    (call,) = response.tool_calls
    assert (call.id, call.name, json.loads(call.arguments)) == (
        "call_1",
        "get_weather",
        {"city": "Paris"},
    )
    assert response.finish_reason == "tool_calls"
    rec.clear()
    events = list(
        client.responses.create(model="gpt-4o", input="Weather?", tools=TOOLS, stream=True)
    )  # type: ignore[arg-type]
    assert events[-1].type == "response.completed"
    (call,) = only_end(rec)["response"].tool_calls
    assert (call.id, json.loads(call.arguments)) == ("call_2", {"city": "Oslo"})
    assert rec.of("on_llm_new_token") == []


def test_responses_streamed(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script("one two three")
    events = list(client.responses.create(model="gpt-4o", input="hi", stream=True))
    # the app gets every event the server sent
    assert [e.type for e in events].count("response.output_text.delta") == 3
    assert "stream_options" not in openai_server.requests[0]
    assert [t["token"] for t in rec.of("on_llm_new_token")] == ["one ", "two ", "three"]
    end = only_end(rec)
    assert end["stream"] is True
    assert end["response"].content == "one two three"
    assert end["response"].usage.completion_tokens == 3
    assert end["response"].cost is not None
    assert 0 <= end["ttft_ms"] <= end["latency_ms"]


def test_responses_stream_helper_and_parse(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script("Hello there", '{"city": "Paris"}', '{"city": "Oslo"}')
    with client.responses.stream(model="gpt-4o", input="hi") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == "Hello there"
    assert only_end(rec)["response"].content == "Hello there"
    rec.clear()
    parsed = client.responses.parse(model="gpt-4o", input="city?", text_format=City)
    assert parsed.output_parsed == City(city="Paris")
    assert only_end(rec)["response"].content == '{"city": "Paris"}'
    assert rec.of("on_llm_start")[0]["invocation_params"]["response_format"] == "json_schema"
    rec.clear()
    with client.responses.stream(model="gpt-4o", input="city?", text_format=City) as stream:
        assert stream.get_final_response().output_parsed == City(city="Oslo")
    assert only_end(rec)["response"].content == '{"city": "Oslo"}'


def test_a_responses_stream_cut_short(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script(Truncated(after=2), Drop(after=1))
    list(client.responses.create(model="gpt-4o", input="hi", stream=True))
    end = only_end(rec)
    assert end["cancelled"] is True
    assert end["response"].content == "This answer "
    assert end["response"].usage.estimated  # no usage came: an estimate, never 0
    rec.clear()
    with pytest.raises(openai.APIConnectionError):
        list(client.responses.create(model="gpt-4o", input="hi", stream=True))
    assert rec.hooks()[-2:] == ["on_llm_error", "on_error"]


def test_an_incomplete_response(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script(Truncated())
    out = client.responses.create(model="gpt-4o", input="hi")
    assert out.status == "incomplete"
    assert only_end(rec)["response"].finish_reason == "max_output_tokens"


async def test_async_responses(
    openai_server: OpenAIServer, rec: RecordingCallback, aclient: openai.AsyncOpenAI
) -> None:
    openai_server.script("a b", "c d", ErrorReply(400))
    out = await aclient.responses.create(model="gpt-4o", input="hi")
    assert out.output_text == "a b"
    stream = await aclient.responses.create(model="gpt-4o", input="hi", stream=True)
    async for _ in stream:
        pass
    with pytest.raises(openai.BadRequestError):
        await aclient.responses.create(model="gpt-4o", input="hi")
    assert rec.hooks() == [
        "on_llm_start",
        "on_llm_end",
        "on_llm_start",
        "on_llm_new_token",
        "on_llm_new_token",
        "on_llm_end",
        "on_llm_start",
        "on_llm_error",
        "on_error",
    ]
    assert [e["response"].content for e in rec.of("on_llm_end")] == ["a b", "c d"]
    assert isinstance(rec.of("on_llm_error")[0]["error"], BadRequestError)


# -- legacy completions -------------------------------------------------------------------------


def test_legacy_completions(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    openai_server.script("Hi there", "x y z")
    out = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=5)
    assert out.choices[0].text == "Hi there"
    start = rec.of("on_llm_start")[0]
    assert start["prompt"] == "Say hi"
    assert start["invocation_params"] == {"model": "gpt-3.5-turbo-instruct", "max_tokens": 5}
    response = only_end(rec)["response"]
    assert response.content == "Hi there"
    assert response.finish_reason == "stop"
    assert response.usage.completion_tokens == 2
    assert response.cost is not None and response.cost > 0
    rec.clear()
    chunks = list(
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True)
    )
    assert all(c.choices for c in chunks)  # the usage chunk asked for is kept from the app
    assert openai_server.requests[1]["stream_options"] == {"include_usage": True}
    assert [t["token"] for t in rec.of("on_llm_new_token")] == ["x ", "y ", "z"]
    response = only_end(rec)["response"]
    assert response.content == "x y z"
    assert response.usage.completion_tokens == 3


# -- embeddings ---------------------------------------------------------------------------------


def test_embeddings(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    out = client.embeddings.create(
        model="text-embedding-3-small", input=["one two", "three"], dimensions=16
    )
    assert len(out.data) == 2 and len(out.data[0].embedding) == 16
    assert rec.hooks() == ["on_embedding_start", "on_embedding_end"]
    start, end = rec.calls
    assert start["input"] == ["one two", "three"]
    assert start["invocation_params"]["dimensions"] == 16
    assert start["model"] == "text-embedding-3-small"
    assert end["run_id"] == start["run_id"]
    assert end["attempts"] == 1 and end["latency_ms"] > 0
    response: EmbeddingResponse = end["response"]
    assert (response.count, response.dimensions) == (2, 16)
    assert response.usage.prompt_tokens == out.usage.prompt_tokens == 3
    assert response.model == "text-embedding-3-small"
    assert response.cost == Decimal("0.00000006")  # 3 tokens at 0.02 USD per million
    rec.clear()
    client.embeddings.create(model="text-embedding-3-small", input="x", encoding_format="float")
    assert only_end(rec, "on_embedding_end")["response"].dimensions == 8


def test_an_embedding_answer_without_usage_is_an_estimate_never_zero(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    from hookwire.testing.openai_server import Raw

    vector = {"object": "embedding", "index": 0, "embedding": [0.5] * 8}
    answer = {"object": "list", "data": [vector], "model": "text-embedding-3-small"}
    openai_server.script(Raw(json.dumps(answer)))
    client.embeddings.create(model="text-embedding-3-small", input="one two three")
    response: EmbeddingResponse = only_end(rec, "on_embedding_end")["response"]
    assert response.usage.estimated
    assert response.usage.prompt_tokens >= 3  # an upper bound of the input's tokens
    assert response.cost is not None and response.cost > 0


async def test_async_embeddings_and_errors(
    openai_server: OpenAIServer, rec: RecordingCallback, aclient: openai.AsyncOpenAI
) -> None:
    openai_server.script(Reply("", usage={"prompt_tokens": 1_000_000}), ErrorReply(429))
    await aclient.embeddings.create(model="text-embedding-3-small", input="x")
    assert only_end(rec, "on_embedding_end")["response"].cost == Decimal("0.02")
    with pytest.raises(openai.RateLimitError):
        await aclient.embeddings.create(model="text-embedding-3-small", input="x")
    assert rec.hooks()[-2:] == ["on_embedding_error", "on_error"]


class Refuse(BaseCallback):
    def on_embedding_start(self, input: Any, **kwargs: Any) -> None:
        raise BudgetExceeded("over budget", scope="user", key="u1")


def test_a_budget_refuses_an_embedding_before_it_is_sent(openai_server: OpenAIServer) -> None:
    rec = RecordingCallback()
    sdk = openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0)
    client = instrument(sdk, callbacks=[Refuse(), rec])
    with pytest.raises(CallbackAbort):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert openai_server.requests == []
    assert rec.hooks() == ["on_embedding_error", "on_budget_exceeded", "on_error"]
    sdk.close()


def test_embeddings_reach_the_file_log(openai_server: OpenAIServer, tmp_path: Any) -> None:
    path = tmp_path / "events.jsonl"
    log = FileLogCallback(str(path))
    sdk = openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0)
    instrument(sdk, callbacks=[log]).embeddings.create(model="text-embedding-3-small", input="a b")
    log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["embedding_start", "embedding_end"]
    assert lines[1]["data"]["response"]["usage"]["prompt_tokens"] == 2
    assert lines[1]["data"]["response"]["count"] == 1
    sdk.close()


def test_accounting_prices_embedding_calls(openai_server: OpenAIServer, tmp_path: Any) -> None:
    from hookwire.callbacks import AccountingCallbackHandler

    accounting = AccountingCallbackHandler(
        database_url=f"sqlite:///{tmp_path}/ledger.db", user_id="u1"
    )
    sdk = openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0)
    client = instrument(sdk, callbacks=[accounting])
    openai_server.script(Reply("", usage={"prompt_tokens": 500_000}))
    client.embeddings.create(model="text-embedding-3-small", input="x")
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert accounting.flush(timeout=30)
    rows = {row["model"]: row for row in accounting.summary(by="model")}
    assert rows["text-embedding-3-small"]["calls"] == 1
    assert Decimal(str(rows["text-embedding-3-small"]["cost"])) == Decimal("0.01")
    assert rows["gpt-4o"]["calls"] == 1
    assert accounting.model_name == "gpt-4o"  # the chat model, not the embedding one
    accounting.close()
    sdk.close()


def test_error_events_in_a_stream_are_call_errors(
    openai_server: OpenAIServer, rec: RecordingCallback, client: openai.OpenAI
) -> None:
    from hookwire.errors import LLMError
    from hookwire.testing.openai_server import Raw

    error = {"type": "error", "code": "server_error", "message": "boom", "sequence_number": 0}
    failed = {
        "type": "response.failed",
        "sequence_number": 1,
        "response": {
            "id": "resp_1",
            "status": "failed",
            "output": [],
            "model": "gpt-4o",
            "error": {"code": "server_error", "message": "it failed"},
        },
    }
    openai_server.script(
        Raw(f"event: error\ndata: {json.dumps(error)}\n\n"),
        Raw(f"event: response.failed\ndata: {json.dumps(failed)}\n\n"),
        Raw('data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'),
    )
    list(client.responses.create(model="gpt-4o", input="q", stream=True))
    list(client.responses.create(model="gpt-4o", input="q", stream=True))
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    errors = [e["error"] for e in rec.of("on_llm_error")]
    assert len(errors) == 3 and all(isinstance(e, LLMError) for e in errors)
    assert ["boom" in str(errors[0]), "it failed" in str(errors[1])] == [True, True]
    assert "overloaded" in str(errors[2])
    assert rec.of("on_llm_end") == []


@pytest.mark.parametrize("stream", [False, True], ids=["json", "streamed"])
@pytest.mark.parametrize("api", ["chat", "responses"])
def test_how_the_answer_was_served_reaches_on_llm_end_and_the_span(
    openai_server: OpenAIServer, stream: bool, api: str
) -> None:
    # OpenTelemetry's openai.response.system_fingerprint / service_tier come from the answer.
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hookwire.callbacks import OpenTelemetryCallback

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel = OpenTelemetryCallback(tracer_provider=provider, metrics=False)
    rec = RecordingCallback()
    sdk = openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0)
    instrument(sdk, callbacks=[rec, otel])
    try:
        if api == "chat":
            answer = sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=stream)
        else:
            answer = sdk.responses.create(model="gpt-4o", input="Capital of France?", stream=stream)
        if stream:
            for _ in answer:
                pass
    finally:
        sdk.close()
        otel.close()
    (end,) = rec.of("llm_end")
    assert end["service_tier"] == "default"
    if api == "chat":  # the Responses API has no fingerprint
        assert end["system_fingerprint"] == "fp_hookwire_test"
    (span,) = exporter.get_finished_spans()
    attrs = span.attributes or {}
    assert attrs["openai.response.service_tier"] == "default"
    assert attrs.get("openai.response.system_fingerprint") == (
        "fp_hookwire_test" if api == "chat" else None
    )
    provider.shutdown()

"""``instrument`` on the ways a client is used: derived clients, raw and streaming responses,
the SDK's own retries, Azure, and patches already on the client. Through the real ``openai``
SDK against the local server."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

import hookwire
from hookwire.errors import RateLimitError, ServerError
from hookwire.integrations.openai import instrument, is_instrumented, uninstrument
from hookwire.testing import RecordingCallback
from hookwire.testing.openai_server import Drop, ErrorReply, OpenAIServer, Reply

MESSAGES = [{"role": "user", "content": "Capital of France?"}]

_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def client_for(server: OpenAIServer, **kw: Any) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    client = openai.OpenAI(base_url=server.base_url, api_key="test", **kw)
    _clients.append(client)
    return client


@pytest.fixture
def rec() -> RecordingCallback:
    return RecordingCallback()


# -- derived clients ----------------------------------------------------------------------------


def test_with_options_and_copy_report_to_the_same_handlers(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    client = instrument(client_for(openai_server), callbacks=[rec], org_id="o1")
    timed = client.with_options(timeout=5.0)
    copied = client.copy(max_retries=1)
    assert is_instrumented(timed) and is_instrumented(copied)
    timed.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    copied.responses.create(model="gpt-4o", input="hi")
    client.with_options(timeout=3.0).with_options(max_retries=0).embeddings.create(
        model="text-embedding-3-small", input="hi"
    )
    assert rec.hooks() == [
        "on_llm_start",
        "on_llm_end",
        "on_llm_start",
        "on_llm_end",
        "on_embedding_start",
        "on_embedding_end",
    ]
    assert {c["org_id"] for c in rec.calls} == {"o1"}
    # the derived clients are real clients of their own, with the options asked for
    assert timed.timeout == 5.0 and copied.max_retries == 1
    uninstrument(client)
    assert is_instrumented(timed)  # derived clients keep reporting


def test_reinstrumenting_reaches_the_derived_clients(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    client = instrument(client_for(openai_server), callbacks=[RecordingCallback()])
    derived = client.with_options(timeout=5.0)
    instrument(client, callbacks=[rec])
    derived.chat.completions.create(model="m", messages=MESSAGES)
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]


# -- raw and streaming responses ----------------------------------------------------------------


def test_a_streamed_raw_response_is_reported_as_the_app_parses_it(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    client = instrument(client_for(openai_server), callbacks=[rec])
    openai_server.script(Reply("one two three"))
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    )
    assert rec.hooks() == ["on_llm_start"]
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "one two three"
    )
    assert "stream_options" not in openai_server.requests[0]  # a raw stream is the app's
    tokens = [t["token"] for t in rec.of("on_llm_new_token")]
    assert "".join(tokens) == "one two three"
    (end,) = rec.of("on_llm_end")
    assert end["response"].content == "one two three"
    assert end["response"].finish_reason == "stop"
    assert "cancelled" not in end.kwargs


def test_with_streaming_response_is_reported_when_its_body_is_read(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    client = instrument(client_for(openai_server), callbacks=[rec])
    openai_server.script(Reply("Paris."), Reply("a b c"))
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES
    ) as response:
        assert rec.hooks() == ["on_llm_start"]
        body = json.loads(response.read())
    assert body["choices"][0]["message"]["content"] == "Paris."
    (end,) = rec.of("on_llm_end")
    assert end["response"].content == "Paris."
    assert end["response"].usage.total_tokens == body["usage"]["total_tokens"]

    rec.clear()
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    assert len(lines) == 5  # role, three words, finish: no usage chunk added
    assert [t["token"] for t in rec.of("on_llm_new_token")] == ["a ", "b ", "c"]
    (end,) = rec.of("on_llm_end")
    assert end["response"].content == "a b c"
    assert end["response"].finish_reason == "stop"


def test_a_streaming_response_closed_unread_is_reported_cancelled(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    client = instrument(client_for(openai_server), callbacks=[rec])
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    ):
        pass
    (end,) = rec.of("on_llm_end")
    assert end["cancelled"] is True
    assert end["response"].content == ""


async def test_async_streaming_response_is_reported(openai_server: OpenAIServer) -> None:
    rec = RecordingCallback()
    client = instrument(
        openai.AsyncOpenAI(base_url=openai_server.base_url, api_key="t", max_retries=0),
        callbacks=[rec],
    )
    openai_server.script(Reply("x y"), Reply("z"))
    async with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    ) as response:
        async for _ in response.iter_lines():
            pass
    raw = await client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="q"
    )
    assert raw.parse().data
    assert rec.hooks() == [
        "on_llm_start",
        "on_llm_new_token",
        "on_llm_new_token",
        "on_llm_end",
        "on_embedding_start",
        "on_embedding_end",
    ]
    assert rec.of("on_llm_end")[0]["response"].content == "x y"
    await client.close()


# -- the SDK's own retries ----------------------------------------------------------------------


def test_sdk_retries_are_retry_events_of_the_same_call(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    client = instrument(client_for(openai_server, max_retries=3), callbacks=[rec])
    openai_server.script(ErrorReply(429, retry_after=0), ErrorReply(503, retry_after=0), "Paris.")
    out = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert out.choices[0].message.content == "Paris."
    assert len(openai_server.requests) == 3
    assert rec.hooks() == ["on_llm_start", "on_retry", "on_retry", "on_llm_end"]
    start = rec.of("on_llm_start")[0]
    first, second = rec.of("on_retry")
    assert (first["attempt"], first["max_attempts"]) == (1, 4)
    assert (second["attempt"], second["max_attempts"]) == (2, 4)
    assert isinstance(first["error"], RateLimitError) and first["error"].status_code == 429
    assert isinstance(second["error"], ServerError) and second["error"].status_code == 503
    assert first["delay"] >= 0
    assert {c["run_id"] for c in rec.calls} == {start["run_id"]}
    (end,) = rec.of("on_llm_end")
    assert end["attempts"] == 3
    # what the server saw: the SDK's own retry count header, one call
    assert [h["x-stainless-retry-count"] for h in openai_server.headers] == ["0", "1", "2"]


def test_a_connection_failure_retried_then_given_up(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    client = instrument(client_for(openai_server, max_retries=1), callbacks=[rec])
    openai_server.script(Drop(), ErrorReply(500, retry_after=0))
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert rec.hooks() == ["on_embedding_start", "on_retry", "on_embedding_error", "on_error"]
    (retry,) = rec.of("on_retry")
    assert type(retry["error"]).__name__ == "LLMConnectionError"
    (error,) = rec.of("on_embedding_error")
    assert isinstance(error["error"], ServerError)
    assert error["attempts"] == 2
    assert rec.of("on_error")[0]["stage"] == "embedding"


async def test_async_sdk_retries_on_a_stream(openai_server: OpenAIServer) -> None:
    rec = RecordingCallback()
    client = instrument(
        openai.AsyncOpenAI(base_url=openai_server.base_url, api_key="t", max_retries=2),
        callbacks=[rec],
    )
    openai_server.script(ErrorReply(500, retry_after=0), Reply("a b"))
    stream = await client.responses.create(model="gpt-4o", input="hi", stream=True)
    events = [e.type async for e in stream]
    assert events[-1] == "response.completed"
    assert rec.hooks() == [
        "on_llm_start",
        "on_retry",
        "on_llm_new_token",
        "on_llm_new_token",
        "on_llm_end",
    ]
    assert {t["attempt"] for t in rec.of("on_llm_new_token")} == {2}
    assert rec.of("on_llm_end")[0]["attempts"] == 2
    await client.close()


# -- Azure --------------------------------------------------------------------------------------


def test_azure_clients_are_reported_as_azure(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    azure = openai.AzureOpenAI(
        api_key="test",
        api_version="2024-10-21",
        base_url=openai_server.base_url,
        max_retries=0,
    )
    _clients.append(azure)  # type: ignore[arg-type]
    instrument(azure, callbacks=[rec])
    azure.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    start, end = rec.calls
    assert start["provider"] == end["provider"] == "azure.ai.openai"
    assert end["response"].provider == "azure.ai.openai"
    assert end["response"].cost is not None and end["response"].cost > 0


# -- patches already on the client -------------------------------------------------------------


def structured(create: Any) -> Any:
    """A patch as instructor's ``patch`` makes: it takes ``response_model`` itself, then calls
    the SDK's ``create`` without it and validates the answer."""

    @functools.wraps(create)
    def patched(*args: Any, response_model: type | None = None, **kwargs: Any) -> Any:
        out = create(*args, **kwargs)
        if response_model is None:
            return out
        return response_model(**json.loads(out.choices[0].message.content))

    return patched


class City(dict[str, Any]):
    def __init__(self, **fields: Any) -> None:
        super().__init__(fields)


def test_instrument_keeps_an_instance_patch_and_uninstrument_restores_it(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    client = client_for(openai_server)
    completions = client.chat.completions
    completions.create = structured(completions.create)  # type: ignore[method-assign]
    patched = completions.create
    before = dict(vars(client))
    instrument(client, callbacks=[rec])
    openai_server.script('{"city": "Paris"}', '{"city": "Rome"}')
    city = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        response_model=City,  # type: ignore[call-arg]
    )
    assert city == {"city": "Paris"}
    assert "response_model" not in openai_server.requests[0]
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]
    assert rec.of("on_llm_end")[0]["response"].content == '{"city": "Paris"}'
    uninstrument(client)
    assert client.chat.completions.create is patched
    assert vars(client) == before
    assert client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        response_model=City,  # type: ignore[call-arg]
    ) == {"city": "Rome"}
    assert len(rec.calls) == 2


def test_uninstrument_puts_back_a_patch_on_the_client_itself(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    client = client_for(openai_server)
    seen: list[str] = []
    request = client.request

    def logged(cast_to: Any, options: Any, **kw: Any) -> Any:
        seen.append(options.url)
        return request(cast_to, options, **kw)

    client.request = logged  # type: ignore[assignment]
    instrument(client, callbacks=[rec])
    client.chat.completions.create(model="m", messages=MESSAGES)
    assert seen == ["/chat/completions"]
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]
    uninstrument(client)
    assert client.request is logged
    client.models.list()
    assert seen == ["/chat/completions", "/models"]


# -- nesting ------------------------------------------------------------------------------------


def test_every_endpoint_nests_under_the_trace(
    openai_server: OpenAIServer, rec: RecordingCallback
) -> None:
    client = instrument(client_for(openai_server), callbacks=[rec])
    with hookwire.trace("agent", user_id="u1") as run:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        client.responses.create(model="gpt-4o", input="hi")
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi")
        client.embeddings.create(model="text-embedding-3-small", input="hi")
        client.models.list()  # not a reported endpoint
    assert len(rec.calls) == 8
    for call in rec.calls:
        assert call["parent_run_id"] == run.run_id
        assert call["trace_id"] == run.run_id
        assert call["user_id"] == "u1"
    assert len({c["run_id"] for c in rec.calls}) == 4


async def test_async_calls_nest_under_the_trace(openai_server: OpenAIServer) -> None:
    rec = RecordingCallback()
    client = instrument(
        openai.AsyncOpenAI(base_url=openai_server.base_url, api_key="t", max_retries=0),
        callbacks=[rec],
    )
    async with hookwire.trace("agent", org_id="o1") as run:
        await client.embeddings.create(model="text-embedding-3-small", input="x")
        stream = await client.responses.create(model="gpt-4o", input="hi", stream=True)
        async for _ in stream:
            pass
    assert rec.hooks()[:2] == ["on_embedding_start", "on_embedding_end"]
    assert rec.hooks()[-1] == "on_llm_end"
    for call in rec.calls:
        assert (call["parent_run_id"], call["trace_id"], call["org_id"]) == (
            run.run_id,
            run.run_id,
            "o1",
        )
    await client.close()


def test_a_body_the_instrumentation_cannot_read_still_reaches_the_app(
    openai_server: OpenAIServer,
    rec: RecordingCallback,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from hookwire.integrations.openai import calls, streams

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(streams._SSESplitter, "feed", broken)
    monkeypatch.setattr(calls.failures, "seen", set())
    client = instrument(client_for(openai_server), callbacks=[rec])
    openai_server.script(Reply("a b c"))
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    assert len(lines) == 5
    assert "openai instrumentation failed in a body" in caplog.text
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]  # the end, with what could be read

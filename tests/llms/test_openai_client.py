"""OpenAIClient through the real openai SDK against the local test server, sync and async."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

import hookwire.llms.prices as llm_prices
from hookwire import CallbackManager, LLMResponse, Usage, errors
from hookwire.callbacks import BaseCallback
from hookwire.llms import OpenAIClient, RetryPolicy
from hookwire.testing import RecordingCallback
from hookwire.testing.openai_server import (
    Drop,
    ErrorReply,
    Malformed,
    OpenAIServer,
    Raw,
    Reply,
    ToolCallReply,
    Truncated,
)

FAST = RetryPolicy(max_attempts=3, initial=0.0, jitter=0.0)
MSGS = [{"role": "user", "content": "What is the capital of France?"}]


Make = Callable[..., OpenAIClient]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """Builds clients on the test server, and closes their connections afterwards."""
    made: list[OpenAIClient] = []

    def build(server: OpenAIServer, *handlers: Any, **kw: Any) -> OpenAIClient:
        kw.setdefault("retry", FAST)
        client = OpenAIClient(
            api_key="sk-test", base_url=server.base_url, callbacks=list(handlers), **kw
        )
        made.append(client)
        return client

    yield build
    for client in made:
        await client.aclose()


class TokenSink(BaseCallback):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


# -- plain calls ----------------------------------------------------------------------------------


def test_generate_json_emits_start_and_end(openai_server: OpenAIServer, make: Make) -> None:
    rec = RecordingCallback()
    openai_server.script(Reply("Paris.", usage={"prompt_tokens": 11, "completion_tokens": 2}))
    response = make(openai_server, rec, temperature=0.2).generate(
        MSGS, model="gpt-4", max_tokens=50, stream=False
    )
    assert isinstance(response, LLMResponse)
    assert response.content == "Paris."
    assert response.usage == Usage(11, 2, 13, cached_tokens=0, reasoning_tokens=0)
    assert response.model == "gpt-4"
    assert response.provider == "openai"
    assert response.finish_reason == "stop"
    assert response.created_at.tzinfo is not None
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]
    start, end = rec.calls
    params = {"model": "gpt-4", "temperature": 0.2, "max_tokens": 50}
    assert (start["prompt"], start["invocation_params"]) == (MSGS, params)
    assert (start["stream"], start["model"], start["provider"]) == (False, "gpt-4", "openai")
    assert end["response"] is response
    assert end["run_id"] == start["run_id"]
    assert end["attempts"] == 1
    assert end["stream"] is False
    assert end["latency_ms"] > 0
    assert "ttft_ms" not in end.kwargs
    sent = openai_server.requests[0]
    assert sent["temperature"] == 0.2
    assert sent["max_tokens"] == 50
    assert "stream" not in sent


def test_text_prompt_becomes_a_user_message(openai_server: OpenAIServer, make: Make) -> None:
    response = make(openai_server).generate("hello there")
    assert response.content == "You said: hello there"
    assert openai_server.requests[0]["messages"] == [{"role": "user", "content": "hello there"}]
    assert openai_server.requests[0]["model"] == "gpt-4o-mini"
    # A call without parameters or tools sends the model and the messages, nothing else.
    assert set(openai_server.requests[0]) == {"model", "messages"}


def test_streams_when_a_handler_listens_for_tokens(openai_server: OpenAIServer, make: Make) -> None:
    rec = RecordingCallback()
    openai_server.script("Paris is the capital.")
    response = make(openai_server, rec).generate(MSGS)
    assert response.content == "Paris is the capital."
    assert response.usage.completion_tokens == 4
    sent = openai_server.requests[0]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert set(sent) == {"model", "messages", "stream", "stream_options"}
    tokens = rec.of("llm_new_token")
    assert [t["token"] for t in tokens] == ["Paris ", "is ", "the ", "capital."]
    assert [t["index"] for t in tokens] == [0, 1, 2, 3]
    assert {t["attempt"] for t in tokens} == {1}
    assert {t["run_id"] for t in rec.calls} == {rec.calls[0]["run_id"]}
    end = rec.of("llm_end")[0]
    assert end["stream"] is True
    assert 0 <= end["ttft_ms"] <= end["latency_ms"]


def test_same_answer_streamed_or_not(openai_server: OpenAIServer, make: Make) -> None:
    plain = make(openai_server).generate(MSGS, stream=False)
    streamed = make(openai_server, TokenSink()).generate(MSGS)
    assert plain.content == streamed.content
    assert plain.usage.total_tokens == streamed.usage.total_tokens


def test_stream_method_yields_tokens_then_response(openai_server: OpenAIServer, make: Make) -> None:
    openai_server.script("one two three")
    items = list(make(openai_server).stream(MSGS))
    assert items[:-1] == ["one ", "two ", "three"]
    assert isinstance(items[-1], LLMResponse)
    assert items[-1].content == "one two three"


def test_stream_usage_can_be_switched_off(openai_server: OpenAIServer, make: Make) -> None:
    response = make(openai_server, TokenSink(), stream_usage=False).generate("a b c")
    assert "stream_options" not in openai_server.requests[0]
    # Without a usage chunk the usage is unknown: an upper bound of what was seen, marked.
    assert response.usage.estimated
    assert response.usage.completion_tokens >= len(response.content.split())


def test_seed_openai_client_example(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    llm = OpenAIClient(api_key="your-api-key", organization="your-org-id")
    response = llm.generate(
        messages=[{"role": "user", "content": "What is the capital of France?"}], model="gpt-4"
    )
    assert response.content == "You said: What is the capital of France?"
    assert response.usage.completion_tokens > 0
    assert response.usage.prompt_tokens > 0
    assert response.created_at is not None
    headers = openai_server.headers[0]
    assert headers["authorization"] == "Bearer your-api-key"
    assert headers["openai-organization"] == "your-org-id"
    assert "your-api-key" not in repr(llm)
    llm.close()


def test_tool_calls_json_and_streamed(openai_server: OpenAIServer, make: Make) -> None:
    tools = [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    ]
    openai_server.script(
        ToolCallReply("weather", {"city": "Paris"}, id="c1"),
        ToolCallReply("weather", {"city": "Lyon, a long name"}, id="c2"),
    )
    rec = RecordingCallback()
    first = make(openai_server).generate(MSGS, tools=tools)
    second = make(openai_server, TokenSink(), rec).generate(MSGS, tools=tools)
    for response, city, cid in ((first, "Paris", "c1"), (second, "Lyon, a long name", "c2")):
        assert response.finish_reason == "tool_calls"
        assert response.content == ""
        assert len(response.tool_calls) == 1
        assert response.tool_calls[0].id == cid
        assert response.tool_calls[0].name == "weather"
        assert json.loads(response.tool_calls[0].arguments) == {"city": city}
    assert rec.of("llm_start")[0]["invocation_params"]["tools"] == ["weather"]
    assert openai_server.requests[1]["tools"] == tools


def test_bad_arguments_are_configuration_errors(openai_server: OpenAIServer, make: Make) -> None:
    llm = make(openai_server)
    with pytest.raises(errors.ConfigurationError, match="role"):
        llm.generate([{"content": "no role"}])
    with pytest.raises(errors.ConfigurationError, match="empty"):
        llm.generate([])
    with pytest.raises(errors.ConfigurationError, match="list"):
        llm.generate({"role": "user", "content": "x"})  # type: ignore[arg-type]
    with pytest.raises(errors.ConfigurationError, match="tools"):
        llm.generate(MSGS, tools=["not a tool"])
    with pytest.raises(errors.ConfigurationError, match="model"):
        OpenAIClient(api_key="k", base_url=openai_server.base_url, model=None).generate(MSGS)
    assert openai_server.requests == []


def test_missing_api_key_says_what_to_do() -> None:
    with pytest.raises(errors.ConfigurationError, match="OPENAI_API_KEY"):
        OpenAIClient()


# -- retries --------------------------------------------------------------------------------------


def test_rate_limit_is_retried_honouring_retry_after(
    openai_server: OpenAIServer, make: Make
) -> None:
    rec = RecordingCallback()
    openai_server.script(ErrorReply(429, retry_after=0.05), "done")
    response = make(openai_server, rec).generate(MSGS, stream=False)
    assert response.content == "done"
    assert rec.hooks() == ["on_llm_start", "on_retry", "on_llm_end"]
    retry = rec.of("retry")[0]
    assert retry["attempt"] == 1
    assert retry["max_attempts"] == 3
    assert isinstance(retry["error"], errors.RateLimitError)
    assert retry["error"].retry_after == 0.05
    assert retry["delay"] == 0.05
    assert retry["run_id"] == rec.calls[0]["run_id"]
    assert rec.of("llm_end")[0]["attempts"] == 2
    assert len(openai_server.requests) == 2


def test_retry_after_is_capped(openai_server: OpenAIServer, make: Make) -> None:
    rec = RecordingCallback()
    openai_server.script(ErrorReply(503, retry_after=3600), "ok")
    policy = RetryPolicy(max_attempts=2, initial=0, jitter=0, max_retry_after=0.01)
    assert make(openai_server, rec, retry=policy).generate(MSGS).content == "ok"
    assert rec.of("retry")[0]["delay"] == 0.01


def test_server_errors_exhaust_attempts(openai_server: OpenAIServer, make: Make) -> None:
    rec = RecordingCallback()
    openai_server.script(*(ErrorReply(500, "boom") for _ in range(3)))
    with pytest.raises(errors.ServerError) as info:
        make(openai_server, rec).generate(MSGS)
    assert info.value.status_code == 500
    assert "boom" in str(info.value)
    assert info.value.__cause__ is not None
    assert rec.hooks() == ["on_llm_start", "on_retry", "on_retry", "on_llm_error", "on_error"]
    assert rec.of("llm_error")[0]["attempts"] == 3
    assert rec.of("error")[0]["stage"] == "llm"
    assert len(openai_server.requests) == 3


# The mapping of every status is tested in test_openai_wire.py; here, that a client error
# reaches the caller through the SDK and the client at once.
@pytest.mark.parametrize(
    ("status", "error"), [(401, errors.AuthenticationError), (404, errors.BadRequestError)]
)
def test_client_errors_are_not_retried(
    openai_server: OpenAIServer, status: int, error: type[Exception], make: Make
) -> None:
    rec = RecordingCallback()
    openai_server.script(ErrorReply(status))
    with pytest.raises(error) as info:
        make(openai_server, rec).generate(MSGS)
    assert len(openai_server.requests) == 1
    assert "on_retry" not in rec.hooks()
    assert rec.hooks()[-2:] == ["on_llm_error", "on_error"]
    assert "sk-test" not in str(info.value)


def test_authentication_message_says_check_the_key(openai_server: OpenAIServer, make: Make) -> None:
    openai_server.script(ErrorReply(401))
    with pytest.raises(errors.AuthenticationError, match="check the API key"):
        make(openai_server).generate(MSGS)


def test_malformed_json_is_not_retried(openai_server: OpenAIServer, make: Make) -> None:
    openai_server.script(Malformed())
    with pytest.raises(errors.MalformedResponseError):
        make(openai_server).generate(MSGS)
    assert len(openai_server.requests) == 1


def test_malformed_stream_line(openai_server: OpenAIServer, make: Make) -> None:
    openai_server.script(Malformed())
    with pytest.raises(errors.MalformedResponseError):
        make(openai_server, TokenSink()).generate(MSGS)


def test_mid_stream_drop_is_retried_from_the_start(openai_server: OpenAIServer, make: Make) -> None:
    rec = RecordingCallback()
    openai_server.script(Drop(after=3), "Paris is the capital.")
    response = make(openai_server, rec).generate(MSGS)
    assert response.content == "Paris is the capital."
    tokens = rec.of("llm_new_token")
    assert [(t["attempt"], t["index"]) for t in tokens[:3]] == [(1, 0), (1, 1), (1, 2)]
    assert [(t["attempt"], t["index"]) for t in tokens[3:]] == [(2, 0), (2, 1), (2, 2), (2, 3)]
    retry = rec.of("retry")[0]
    assert isinstance(retry["error"], errors.StreamInterrupted)
    assert retry["error"].partial == "This answer will "
    assert rec.of("llm_end")[0]["attempts"] == 2
    # The stream method does not yield the restarted text twice.
    openai_server.script(Drop(after=2, text="same words here"), "same words here")
    items = list(make(openai_server).stream(MSGS))
    assert "".join(i for i in items if isinstance(i, str)) == "same words here"


def test_truncated_stream_is_never_a_success(openai_server: OpenAIServer, make: Make) -> None:
    rec = RecordingCallback()
    openai_server.script(Truncated(), Truncated(), Truncated())
    with pytest.raises(errors.StreamInterrupted) as info:
        make(openai_server, rec).generate(MSGS)
    assert info.value.partial == "This answer "
    assert "on_llm_end" not in rec.hooks()
    assert rec.hooks().count("on_llm_error") == 1
    assert rec.hooks().count("on_error") == 1


def test_timeout_is_mapped_and_retried(openai_server: OpenAIServer, make: Make) -> None:
    openai_server.script(Reply("late", delay=1.0), "in time")
    rec = RecordingCallback()
    llm = make(openai_server, rec, timeout=0.2)
    assert llm.generate(MSGS).content == "in time"
    assert isinstance(rec.of("retry")[0]["error"], errors.LLMTimeoutError)


def test_connection_refused_is_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAIClient(base_url=f"http://127.0.0.1:{port}/v1", retry=RetryPolicy(max_attempts=1))
    with pytest.raises(errors.LLMConnectionError, match="base_url"):
        llm.generate(MSGS)
    llm.close()


# -- budgets and handlers -------------------------------------------------------------------------


@dataclass
class Budget(BaseCallback):
    """Refuses every call, as a budget does."""

    refusal: errors.CallbackAbort

    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        raise self.refusal


def test_budget_abort_stops_the_call_before_it_is_sent(
    openai_server: OpenAIServer, make: Make
) -> None:
    rec = RecordingCallback()
    error = errors.BudgetExceeded("user u1 spent $5 of $5 today", scope="user", key="u1")
    with pytest.raises(errors.BudgetExceeded) as info:
        make(openai_server, Budget(error), rec).generate(MSGS)
    assert info.value is error
    assert openai_server.requests == []
    assert rec.hooks() == ["on_llm_error", "on_budget_exceeded", "on_error"]
    assert rec.of("error")[0]["stage"] == "budget"
    assert rec.of("budget_exceeded")[0]["error"] is error


def test_plain_callback_abort_has_no_budget_event(openai_server: OpenAIServer, make: Make) -> None:
    rec = RecordingCallback()
    with pytest.raises(errors.CallbackAbort):
        make(openai_server, rec, Budget(errors.CallbackAbort("stop"))).generate(MSGS)
    assert "on_budget_exceeded" not in rec.hooks()
    assert rec.of("error")[0]["stage"] == "budget"


def test_failing_handler_never_breaks_the_call(openai_server: OpenAIServer, make: Make) -> None:
    class Broken(BaseCallback):
        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            raise RuntimeError("handler bug")

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            raise RuntimeError("handler bug")

    assert make(openai_server, Broken()).generate(MSGS).content.startswith("You said")


def test_handler_in_client_and_call_gets_each_event_once(
    openai_server: OpenAIServer, make: Make
) -> None:
    shared = RecordingCallback()
    own_only = RecordingCallback()
    runner = CallbackManager([shared])
    llm = make(openai_server, shared, own_only)
    llm.generate(MSGS, callbacks=runner, stream=False)
    assert shared.hooks() == ["on_llm_start", "on_llm_end"]
    assert own_only.hooks() == ["on_llm_start", "on_llm_end"]
    call_only = RecordingCallback()
    llm.generate(MSGS, callbacks=[call_only], stream=False)
    assert call_only.hooks() == ["on_llm_start", "on_llm_end"]
    assert own_only.hooks().count("on_llm_end") == 2


def test_cost_is_filled_through_pricing(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch, make: Make
) -> None:
    def fake_cost(model: str, usage: Usage, provider: str | None = None) -> Decimal | None:
        return Decimal("0.001") * usage.total_tokens if model == "priced" else None

    monkeypatch.setattr(llm_prices, "_pricing", [fake_cost])
    openai_server.script(Reply("x", usage={"prompt_tokens": 3, "completion_tokens": 1}))
    assert make(openai_server).generate(MSGS, model="priced").cost == Decimal("0.004")
    assert make(openai_server).generate(MSGS, model="unpriced").cost is None


# -- async ----------------------------------------------------------------------------------------


async def test_async_generate_and_stream(openai_server: OpenAIServer, make: Make) -> None:
    rec = RecordingCallback()
    openai_server.script("async json", "async streamed answer")
    llm = make(openai_server)
    assert (await llm.agenerate(MSGS, callbacks=[rec], stream=False)).content == "async json"
    items = [i async for i in llm.astream(MSGS, callbacks=[rec])]
    assert items[:-1] == ["async ", "streamed ", "answer"]
    assert isinstance(items[-1], LLMResponse)
    assert rec.hooks().count("on_llm_end") == 2
    await llm.aclose()


async def test_async_retries_and_drop(openai_server: OpenAIServer, make: Make) -> None:
    rec = RecordingCallback()
    openai_server.script(ErrorReply(429, retry_after=0), Drop(after=1), "finally")
    response = await make(openai_server, rec).agenerate(MSGS)
    assert response.content == "finally"
    assert [type(r["error"]) for r in rec.of("retry")] == [
        errors.RateLimitError,
        errors.StreamInterrupted,
    ]
    assert rec.of("llm_end")[0]["attempts"] == 3


async def test_async_budget_and_auth(openai_server: OpenAIServer, make: Make) -> None:
    rec = RecordingCallback()
    with pytest.raises(errors.BudgetExceeded):
        await make(openai_server, Budget(errors.BudgetExceeded("spent")), rec).agenerate(MSGS)
    assert rec.hooks() == ["on_llm_error", "on_budget_exceeded", "on_error"]
    openai_server.script(ErrorReply(401))
    with pytest.raises(errors.AuthenticationError):
        await make(openai_server).agenerate(MSGS)
    assert len(openai_server.requests) == 1


async def test_async_truncated_stream_fails(openai_server: OpenAIServer, make: Make) -> None:
    openai_server.script(Truncated(), Truncated())
    with pytest.raises(errors.StreamInterrupted):
        await make(
            openai_server, TokenSink(), retry=RetryPolicy(max_attempts=2, initial=0)
        ).agenerate(MSGS)


def test_async_calls_from_two_event_loops(openai_server: OpenAIServer) -> None:
    llm = OpenAIClient(api_key="k", base_url=openai_server.base_url, retry=FAST)

    async def once() -> str:
        try:
            return (await llm.agenerate(MSGS)).content
        finally:
            await llm.aclose()

    assert asyncio.run(once()) == asyncio.run(once())


def test_async_connections_are_closed_on_their_loop_when_asyncio_run_ends(
    openai_server: OpenAIServer,
) -> None:
    # No aclose() by the app, as most apps do; the client stays alive past the loop.
    llm = OpenAIClient(api_key="k", base_url=openai_server.base_url, retry=FAST)
    assert asyncio.run(llm.agenerate(MSGS)).content
    http = llm.async_client._client
    assert http.is_closed


def test_async_connections_of_a_dropped_client_are_closed_on_their_own_loop(
    openai_server: OpenAIServer,
) -> None:
    # An OpenAIClient made per request and dropped while its loop goes on: its connections are
    # closed on that loop, not left to whichever thread the garbage collector runs on.
    seen: list[Any] = []

    async def request() -> None:
        llm = OpenAIClient(api_key="k", base_url=openai_server.base_url, retry=FAST)
        await llm.agenerate(MSGS)
        seen.append(llm.async_client._client)

    async def serve() -> None:
        await request()
        gc.collect()  # the client may sit in a reference cycle
        for _ in range(50):
            if seen[0].is_closed:
                break
            await asyncio.sleep(0.01)
        assert seen[0].is_closed

    asyncio.run(serve())


def test_sdk_retries_are_off(openai_server: OpenAIServer, make: Make) -> None:
    openai_server.script(ErrorReply(500), "unused")
    with pytest.raises(errors.ServerError):
        make(openai_server, retry=RetryPolicy(max_attempts=1)).generate(MSGS)
    assert len(openai_server.requests) == 1


def test_handler_that_asks_to_raise_is_not_rewrapped(
    openai_server: OpenAIServer, make: Make
) -> None:

    class Strict(BaseCallback):
        raise_error = True

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            raise KeyError("strict handler")

    with pytest.raises(errors.HandlerError, match="strict handler") as info:
        make(openai_server, Strict()).generate(MSGS)
    assert isinstance(info.value.__cause__, KeyError)


def test_provider_name_in_events(openai_server: OpenAIServer, make: Make) -> None:
    rec = RecordingCallback()
    response = make(openai_server, rec, provider="vllm").generate(MSGS, stream=False)
    assert response.provider == "vllm"
    assert {c["provider"] for c in rec.calls} == {"vllm"}


def test_timeout_reaches_the_sdk_as_one_timeout(openai_server: OpenAIServer, make: Make) -> None:
    import openai

    llm = make(openai_server, timeout=7.5)
    timeout = llm.client.timeout
    # Given as the SDK's own type, so it is not converted again on every request.
    assert isinstance(timeout, openai.Timeout)
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (7.5, 7.5, 7.5, 7.5)
    llm.generate(MSGS, stream=False)
    assert openai_server.headers[0]["x-stainless-read-timeout"] == "7.5"
    assert make(openai_server, timeout=None).client.timeout is None
    given = openai.Timeout(3.0, connect=1.0)
    assert make(openai_server, timeout=given).client.timeout is given


def _spy_streams(llm: OpenAIClient) -> list[Any]:
    """The HTTP responses of the SDK requests ``llm`` makes, in order."""
    streams: list[Any] = []
    raw = llm.client.chat.completions.with_raw_response
    create = raw.create

    def spy(**kw: Any) -> Any:
        result = create(**kw)
        streams.append(result.http_response)
        return result

    raw.create = spy  # type: ignore[method-assign]
    return streams


def test_stream_read_to_its_end_is_closed(openai_server: OpenAIServer, make: Make) -> None:
    llm = make(openai_server, TokenSink())
    streams = _spy_streams(llm)
    assert llm.generate("a b c").content == "You said: a b c"
    assert len(streams) == 1
    assert streams[0].is_closed


def test_stream_left_early_is_closed(openai_server: OpenAIServer, make: Make) -> None:
    openai_server.script("one two three four")
    llm = make(openai_server)
    streams = _spy_streams(llm)
    items = llm.stream(MSGS)
    assert next(items) == "one "
    assert not streams[0].is_closed
    items.close()  # the caller stops reading
    assert streams[0].is_closed


async def test_async_stream_left_early_is_closed(openai_server: OpenAIServer, make: Make) -> None:
    openai_server.script("one two three four")
    llm = make(openai_server)
    streams: list[Any] = []
    raw = llm.async_client.chat.completions.with_raw_response
    create = raw.create

    async def spy(**kw: Any) -> Any:
        result = await create(**kw)
        streams.append(result.http_response)
        return result

    raw.create = spy  # type: ignore[method-assign]
    items = llm.astream(MSGS)
    assert await items.__anext__() == "one "
    await items.aclose()
    # The inner async generators are closed by the event loop's finalizer, a few steps later.
    for _ in range(10):
        if streams[0].is_closed:
            break
        await asyncio.sleep(0.01)
    assert streams[0].is_closed


@dataclass
class RaisesOnToken(BaseCallback):
    error: BaseException
    raise_error = True

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        raise self.error


def test_a_handlers_error_passes_the_sdk_error_mapping_unchanged(
    openai_server: OpenAIServer, make: Make
) -> None:
    # _stream_into runs handlers inside the loop over the SDK's stream, under the except
    # clause that maps the SDK's errors (ValueError among them): a handler's ValueError must
    # still reach the caller (as HandlerError, caused by it, not remapped as the SDK's), and
    # the stream left early be closed.
    error = ValueError("from the handler")
    rec = RecordingCallback()
    llm = make(openai_server, rec, RaisesOnToken(error))
    streams = _spy_streams(llm)
    with pytest.raises(errors.HandlerError) as info:
        llm.generate(MSGS)
    assert info.value.error is error and info.value.__cause__ is error
    assert error.__context__ is None
    assert streams[0].is_closed
    assert rec.hooks() == ["on_llm_start", "on_llm_new_token"]


def test_a_subclass_changing_stream_is_read_through_it(
    openai_server: OpenAIServer, make: Make
) -> None:
    # The plain streamed path (generate with a token listener) must not bypass a subclass's
    # own _stream.
    class Shouting(OpenAIClient):
        def _stream(self, request: Any) -> Any:
            for piece in super()._stream(request):
                yield piece.upper() if isinstance(piece, str) else piece

    sink = TokenSink()
    llm = Shouting(api_key="sk-test", base_url=openai_server.base_url, callbacks=[sink])
    try:
        assert llm.generate("a b").content == "YOU SAID: A B"
        assert "".join(sink.tokens) == "YOU SAID: A B"
    finally:
        llm.close()


# -- the answer read from the SDK's raw response ------------------------------------------------


def _sse(*events: str) -> str:
    return "".join(f"data: {e}\n\n" for e in events)


def _chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> str:
    delta = {} if content is None else {"content": content}
    frame: dict[str, Any] = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    frame.update(extra)
    return json.dumps(frame)


def test_sse_comments_fields_crlf_and_multiline_data(
    openai_server: OpenAIServer, make: Make
) -> None:
    # What the SSE format allows besides one "data:" line per event: comments (keep-alives),
    # event/id/retry fields, CRLF line ends, an event's data over several lines, "data:"
    # without the space. Usage with the details the SDK's model has.
    first = _chunk("Par").replace(", ", ",\r\ndata: ", 1)
    usage: dict[str, Any] = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    usage["prompt_tokens_details"] = {"cached_tokens": 4}
    usage["completion_tokens_details"] = {"reasoning_tokens": 1}
    body = (
        ": keep-alive\r\n\r\n"
        f"event: message\r\nid: 7\r\nretry: 100\r\ndata: {first}\r\n\r\n"
        f"data:{_chunk('is')}\n\n"
        "\n\n"
        + _sse(
            _chunk(None, "stop"),
            json.dumps({"id": "chatcmpl-raw", "choices": [], "usage": usage}),
            "[DONE]",
        )
    )
    openai_server.script(Raw(body))
    sink = TokenSink()
    response = make(openai_server, sink).generate(MSGS)
    assert sink.tokens == ["Par", "is"]
    assert response.content == "Paris"
    assert response.finish_reason == "stop"
    assert response.id == "chatcmpl-raw"
    assert response.usage == Usage(9, 2, 11, cached_tokens=4, reasoning_tokens=1)


def test_json_answer_fields(openai_server: OpenAIServer, make: Make) -> None:
    body = {
        "id": "chatcmpl-j",
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "add", "arguments": '{"a": 1}'},
                        },
                        {"type": "function", "function": {"name": "noargs"}},
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 3,
            "total_tokens": 8,
            "prompt_tokens_details": None,
        },
    }
    openai_server.script(Raw(json.dumps(body)))
    response = make(openai_server).generate(MSGS)
    assert response.content == ""
    assert response.model == "gpt-4o-2024-08-06"
    assert response.id == "chatcmpl-j"
    assert response.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("call_a", "add", '{"a": 1}'),
        ("call_1", "noargs", "{}"),
    ]
    assert response.usage == Usage(5, 3, 8)


def test_an_error_event_in_a_stream_is_an_error_not_an_answer(
    openai_server: OpenAIServer, make: Make
) -> None:
    rec = RecordingCallback()
    error = json.dumps({"error": {"message": "the model is overloaded", "type": "server_error"}})
    openai_server.script(Raw(_sse(_chunk("Hal"), error)))
    with pytest.raises(errors.LLMError, match="the model is overloaded"):
        make(openai_server, rec, TokenSink()).generate(MSGS)
    assert "on_llm_end" not in rec.hooks()
    assert rec.hooks().count("on_llm_error") == 1
    assert len(openai_server.requests) == 1  # as the SDK's stream raises it: not retried


@pytest.mark.parametrize(
    "event",
    [
        "[1, 2]",
        '"text"',
        json.dumps({"choices": "abc"}),
        json.dumps({"choices": [7]}),
        json.dumps({"choices": [{"index": 0, "delta": {"content": 5}}]}),
        json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": "x"}]}}]}),
        json.dumps({"choices": [], "usage": {"prompt_tokens": "many"}}),
        json.dumps({"choices": [], "usage": [1]}),
    ],
)
def test_a_stream_event_of_the_wrong_shape_is_malformed(
    openai_server: OpenAIServer, make: Make, event: str
) -> None:
    openai_server.script(Raw(_sse(_chunk("a"), event, "[DONE]")))
    with pytest.raises(errors.MalformedResponseError, match="not the OpenAI protocol"):
        make(openai_server, TokenSink()).generate(MSGS)
    assert len(openai_server.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        "[1]",
        "null",
        json.dumps({"choices": [1]}),
        json.dumps({"choices": [{"message": {"content": 5}}]}),
        json.dumps({"choices": [{"message": {"content": "x"}}], "usage": {"total_tokens": {}}}),
        json.dumps({"choices": [{"message": {"tool_calls": 3}}]}),
    ],
)
def test_a_json_answer_of_the_wrong_shape_is_malformed(
    openai_server: OpenAIServer, make: Make, body: str
) -> None:
    openai_server.script(Raw(body))
    with pytest.raises(errors.MalformedResponseError):
        make(openai_server).generate(MSGS)
    assert len(openai_server.requests) == 1


def test_streamed_calls_keep_their_connection(openai_server: OpenAIServer, make: Make) -> None:
    # The body is read to its end after [DONE], so the connection goes back to the pool (the
    # SDK's own sync stream closes it after [DONE], and connects again for the next call).
    llm = make(openai_server, TokenSink())
    for _ in range(4):
        assert llm.generate(MSGS).content == "You said: What is the capital of France?"
    assert len(set(openai_server.peers)) == 1
    for _ in range(2):
        items = list(llm.stream(MSGS))
        assert isinstance(items[-1], LLMResponse)
    assert len(set(openai_server.peers)) == 1


async def test_async_streamed_calls_keep_their_connection(
    openai_server: OpenAIServer, make: Make
) -> None:
    llm = make(openai_server, TokenSink())
    for _ in range(3):
        assert (await llm.agenerate(MSGS)).content.startswith("You said:")
    assert len(set(openai_server.peers)) == 1


def test_data_after_done_is_not_read_as_an_answer(openai_server: OpenAIServer, make: Make) -> None:
    openai_server.script(Raw(_sse(_chunk("ok"), _chunk(None, "stop"), "[DONE]", _chunk("late"))))
    sink = TokenSink()
    assert make(openai_server, sink).generate(MSGS).content == "ok"
    assert sink.tokens == ["ok"]
    assert make(openai_server).generate(MSGS).content.startswith("You said:")


def test_a_stall_mid_stream_is_a_timeout_and_retried(
    openai_server: OpenAIServer, make: Make
) -> None:
    rec = RecordingCallback()
    openai_server.chunk_delay = 0.5
    llm = make(openai_server, rec, TokenSink(), timeout=0.15, retry=RetryPolicy(2, initial=0.0))
    with pytest.raises(errors.LLMTimeoutError):
        llm.generate(MSGS)
    assert [type(r["error"]) for r in rec.of("retry")] == [errors.LLMTimeoutError]
    assert len(openai_server.requests) == 2


async def test_async_stream_errors_are_mapped(openai_server: OpenAIServer, make: Make) -> None:
    openai_server.script(
        Raw(_sse(_chunk("a"), "[1]")),
        Raw(_sse(_chunk("a"), json.dumps({"error": {"message": "gone"}}))),
    )
    llm = make(openai_server)
    with pytest.raises(errors.MalformedResponseError):
        [t async for t in llm.astream(MSGS)]
    with pytest.raises(errors.LLMError, match="gone"):
        [t async for t in llm.astream(MSGS)]
    openai_server.script(Raw("[1]"))
    with pytest.raises(errors.MalformedResponseError):
        await llm.agenerate(MSGS, stream=False)


async def test_a_body_held_open_after_done_delays_an_async_call_briefly(
    openai_server: OpenAIServer, make: Make
) -> None:
    # After [DONE] the rest of an async body is read for at most 0.1 s (as the SDK's own
    # async stream does), then the connection is closed: the answer is not held up.
    import time as _time

    body = _sse(_chunk("ok"), _chunk(None, "stop"), "[DONE]")
    openai_server.script(Raw(body, hold=3.0))
    llm = make(openai_server, TokenSink())
    t0 = _time.perf_counter()
    response = await llm.agenerate(MSGS)
    assert response.content == "ok"
    assert _time.perf_counter() - t0 < 2.0
    assert (await llm.agenerate(MSGS)).content.startswith("You said:")


def test_a_body_held_open_after_done_still_gives_the_answer(
    openai_server: OpenAIServer, make: Make
) -> None:
    # The sync reader reads the rest to its end (documented: a server holding the body open
    # holds the call up to the read timeout); the answer is the same.
    openai_server.script(Raw(_sse(_chunk("ok"), _chunk(None, "stop"), "[DONE]"), hold=0.3))
    assert make(openai_server, TokenSink()).generate(MSGS).content == "ok"


def test_an_infinite_token_count_is_malformed(openai_server: OpenAIServer, make: Make) -> None:
    body = json.dumps(
        {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": 1e400}}
    )
    openai_server.script(Raw(body.replace("Infinity", "1e400")))
    with pytest.raises(errors.MalformedResponseError):
        make(openai_server).generate(MSGS)


# -- how the answer was served (response_metadata) -------------------------------------------

SERVED = {"system_fingerprint": "fp_hookwire_test", "service_tier": "default"}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "streamed"])
def test_how_the_answer_was_served_is_on_the_response_and_on_llm_end(
    openai_server: OpenAIServer, make: Make, stream: bool
) -> None:
    rec = RecordingCallback()
    openai_server.script("Paris.")
    if stream:
        items = list(make(openai_server, rec).stream(MSGS))
        response = items[-1]
        assert isinstance(response, LLMResponse) and items[:-1] == ["Paris."]
    else:
        response = make(openai_server, rec).generate(MSGS, stream=False)
    assert dict(response.response_metadata) == SERVED
    assert response.to_dict()["response_metadata"] == SERVED
    (end,) = rec.of("llm_end")
    assert {k: end[k] for k in SERVED} == SERVED
    assert end["response"] is response


def test_a_stream_the_caller_stops_keeps_its_id_and_how_it_was_served(
    openai_server: OpenAIServer, make: Make
) -> None:
    rec = RecordingCallback()
    openai_server.script("one two three four")
    items = make(openai_server, rec).stream(MSGS)
    assert next(items) == "one "
    items.close()  # type: ignore[attr-defined]
    (end,) = rec.of("llm_end")
    assert end["cancelled"] is True
    partial = end["response"]
    assert partial.id is not None and partial.id.startswith("chatcmpl-")
    assert partial.finish_reason is None and partial.usage.estimated
    assert dict(partial.response_metadata) == SERVED
    assert {k: end[k] for k in SERVED} == SERVED


async def test_async_calls_keep_how_the_answer_was_served(
    openai_server: OpenAIServer, make: Make
) -> None:
    rec = RecordingCallback()
    openai_server.script("Paris.", "Paris.", "one two three four")
    llm = make(openai_server, rec)
    whole = await llm.agenerate(MSGS, stream=False)
    items = [item async for item in llm.astream(MSGS)]
    streamed = items[-1]
    assert isinstance(streamed, LLMResponse)
    stopped = llm.astream(MSGS)
    assert await stopped.__anext__() == "one "
    await stopped.aclose()  # type: ignore[attr-defined]
    ends = rec.of("llm_end")
    assert [e.get("cancelled", False) for e in ends] == [False, False, True]
    for response, end in zip((whole, streamed, ends[2]["response"]), ends, strict=True):
        assert dict(response.response_metadata) == SERVED
        assert {k: end[k] for k in SERVED} == SERVED
    assert ends[2]["response"].id is not None


def test_a_stream_that_breaks_after_its_head_is_still_retried(
    openai_server: OpenAIServer, make: Make
) -> None:
    # The early StreamEnd a stream gives (its head, without a finish) is never an answer.
    openai_server.script(Drop(after=2, text="one two three four"), "one two three four")
    rec = RecordingCallback()
    items = list(make(openai_server, rec).stream(MSGS))
    response = items[-1]
    assert isinstance(response, LLMResponse)
    assert "".join(items[:-1]) == response.content == "one two three four"
    assert dict(response.response_metadata) == SERVED
    assert len(rec.of("retry")) == 1

"""The test server, driven through the real ``openai`` SDK (sync and async)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookwire.testing import OpenAIServer as LazyOpenAIServer
from hookwire.testing import openai_server as srv
from hookwire.testing.openai_server import OpenAIServer, split_words

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def client(server: OpenAIServer, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, **kw)  # type: ignore[arg-type]


def aclient(server: OpenAIServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


def test_lazy_export_is_the_same_class() -> None:
    assert LazyOpenAIServer is OpenAIServer


def test_base_url_and_models(openai_server: OpenAIServer) -> None:
    assert openai_server.base_url.startswith("http://127.0.0.1:")
    assert openai_server.base_url.endswith("/v1")
    models = client(openai_server).models.list()
    assert [m.id for m in models.data] == ["gpt-4o-mini"]


def test_default_answer_echoes_last_user_message(openai_server: OpenAIServer) -> None:
    answer = client(openai_server).chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "You said: What is the capital of France?"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == "gpt-4o"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == 6
    assert answer.usage.completion_tokens == len(split_words(answer.choices[0].message.content))
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert openai_server.requests == [{"model": "gpt-4o", "messages": MESSAGES}]
    assert openai_server.headers[0]["authorization"] == "Bearer sk-test"


def test_script_is_consumed_in_order(openai_server: OpenAIServer) -> None:
    openai_server.script(
        "one", srv.Reply("two", usage={"prompt_tokens": 7, "completion_tokens": 3})
    )
    c = client(openai_server)
    first = c.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    second = c.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    third = c.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert first.choices[0].message.content == "one"
    assert second.choices[0].message.content == "two"
    assert second.usage is not None
    assert second.usage.total_tokens == 10
    assert third.choices[0].message.content.startswith("You said:")  # type: ignore[union-attr]
    assert openai_server.pending == 0


def test_stream_with_usage_chunk(openai_server: OpenAIServer) -> None:
    openai_server.script("Paris is the capital.")
    chunks = list(
        client(openai_server).chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Paris is the capital."
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_usage(openai_server: OpenAIServer) -> None:
    chunks = list(
        client(openai_server).chat.completions.create(
            model="m",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
        )
    )
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_tool_call_json(openai_server: OpenAIServer) -> None:
    openai_server.script(srv.ToolCallReply("get_weather", {"city": "Paris"}, id="call_1"))
    answer = client(openai_server).chat.completions.create(
        model="m",
        messages=MESSAGES,  # type: ignore[arg-type]
        tools=[
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object"}},
            }
        ],
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id == "call_1"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert openai_server.requests[0]["tools"][0]["function"]["name"] == "get_weather"


def test_tool_calls_streamed_as_deltas(openai_server: OpenAIServer) -> None:
    openai_server.script(
        srv.ToolCallReply("search", {"query": "a long enough query"}, more=[("clock", "{}")])
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client(openai_server).chat.completions.create(
        model="m",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    ):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for d in choice.delta.tool_calls or []:
                slot = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] += d.id or ""
                if d.function is not None:
                    slot["name"] += d.function.name or ""
                    slot["arguments"] += d.function.arguments or ""
    assert finish == "tool_calls"
    assert calls[0]["name"] == "search"
    assert json.loads(calls[0]["arguments"]) == {"query": "a long enough query"}
    assert calls[1]["name"] == "clock"
    assert calls[1]["arguments"] == "{}"
    assert calls[0]["id"]
    assert calls[1]["id"]
    assert calls[0]["id"] != calls[1]["id"]


def test_tool_result_gets_default_answer(openai_server: OpenAIServer) -> None:
    messages = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "22C"},
    ]
    answer = client(openai_server).chat.completions.create(model="m", messages=messages)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "The tool returned: 22C"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (404, openai.NotFoundError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_scripted_http_errors(
    openai_server: OpenAIServer, status: int, error: type[openai.APIStatusError]
) -> None:
    openai_server.script(srv.ErrorReply(status, "scripted failure"))
    with pytest.raises(error) as info:
        client(openai_server).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert info.value.status_code == status
    assert "scripted failure" in str(info.value)


def test_rate_limit_with_retry_after(openai_server: OpenAIServer) -> None:
    openai_server.script(srv.ErrorReply(429, retry_after=3))
    with pytest.raises(openai.RateLimitError) as info:
        client(openai_server).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert info.value.response.headers["retry-after"] == "3"
    assert info.value.code == "rate_limit_exceeded"


def test_sdk_retries_honour_retry_after_zero(openai_server: OpenAIServer) -> None:
    openai_server.script(srv.ErrorReply(429, retry_after=0), "after the retry")
    c = openai.OpenAI(base_url=openai_server.base_url, api_key="k", max_retries=1)
    answer = c.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "after the retry"
    assert len(openai_server.requests) == 2


def test_api_key_is_checked_when_set() -> None:
    with OpenAIServer(api_key="right") as server:
        with pytest.raises(openai.AuthenticationError):
            client(server).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        good = openai.OpenAI(base_url=server.base_url, api_key="right", max_retries=0)
        assert good.chat.completions.create(model="m", messages=MESSAGES).choices  # type: ignore[arg-type]


def test_malformed_json_body(openai_server: OpenAIServer) -> None:
    openai_server.script(srv.Malformed())
    with pytest.raises((openai.APIResponseValidationError, json.JSONDecodeError, ValueError)):
        client(openai_server).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]


def test_malformed_stream_line(openai_server: OpenAIServer) -> None:
    openai_server.script(srv.Malformed())
    with pytest.raises(ValueError):  # json.JSONDecodeError is a ValueError
        list(
            client(openai_server).chat.completions.create(
                model="m",
                messages=MESSAGES,  # type: ignore[arg-type]
                stream=True,
            )
        )


def test_drop_mid_stream_breaks_the_connection(openai_server: OpenAIServer) -> None:
    openai_server.script(srv.Drop(after=3))
    received: list[str] = []
    stream = client(openai_server).chat.completions.create(
        model="m",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    )

    def consume() -> None:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIConnectionError):
        consume()
    assert "".join(received) == "This answer will "


def test_drop_without_stream_is_a_connection_error(openai_server: OpenAIServer) -> None:
    openai_server.script(srv.Drop())
    with pytest.raises(openai.APIConnectionError):
        client(openai_server).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    # The server keeps serving after a dropped connection.
    assert client(openai_server).chat.completions.create(model="m", messages=MESSAGES).choices  # type: ignore[arg-type]


def test_truncated_stream_has_no_finish_reason(openai_server: OpenAIServer) -> None:
    openai_server.script(srv.Truncated(after=2))
    chunks = list(
        client(openai_server).chat.completions.create(
            model="m",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
        )
    )
    assert all(c.choices[0].finish_reason is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "This answer "


def test_timeout_with_delay(openai_server: OpenAIServer) -> None:
    openai_server.script(srv.Reply("late", delay=1.0))
    with pytest.raises(openai.APITimeoutError):
        client(openai_server, timeout=0.2).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]


def test_bad_script_item_is_refused(openai_server: OpenAIServer) -> None:
    with pytest.raises(TypeError, match="script item"):
        openai_server.script(42)  # type: ignore[arg-type]


def test_raw_sends_the_body_as_given(openai_server: OpenAIServer) -> None:
    event = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
    }
    answer = {
        "id": "j",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "raw"},
            }
        ],
    }
    openai_server.script(
        srv.Raw(f": ping\n\ndata: {json.dumps(event)}\n\ndata: [DONE]\n\n"),
        srv.Raw(json.dumps(answer)),
    )
    c = client(openai_server)
    chunks = list(c.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert [ch.choices[0].delta.content for ch in chunks] == ["hi"]
    assert (
        c.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "raw"
    )


def test_peers_tell_connections_apart(openai_server: OpenAIServer) -> None:
    c = client(openai_server)
    for _ in range(3):
        c.chat.completions.create(model="m", messages=MESSAGES)
    other = client(openai_server)
    other.chat.completions.create(model="m", messages=MESSAGES)
    peers = openai_server.peers
    assert len(peers) == 4 and peers[0] == peers[1] == peers[2] != peers[3]
    assert peers[0][0] == "127.0.0.1"
    openai_server.reset()
    assert openai_server.peers == []


def test_reset_forgets_requests_and_script(openai_server: OpenAIServer) -> None:
    openai_server.script("a", "b")
    client(openai_server).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    openai_server.reset()
    assert openai_server.requests == []
    assert openai_server.pending == 0


def test_not_json_request_is_400(openai_server: OpenAIServer) -> None:
    def post(url: str, data: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(url, data=data, method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request)
        with info.value as error:
            return error.code, error.read()

    status, body = post(openai_server.base_url + "/chat/completions", b"nope")
    assert status == 400
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert post(openai_server.url + "/elsewhere", b"{}")[0] == 404


def test_close_is_idempotent() -> None:
    server = OpenAIServer().start()
    assert "requests" in repr(server)
    server.close()
    server.close()
    assert repr(server).startswith("OpenAIServer(stopped")


async def test_async_client_json_and_stream(openai_server: OpenAIServer) -> None:
    openai_server.script("async answer", "streamed async answer")
    c = aclient(openai_server)
    answer = await c.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "async answer"
    stream = await c.chat.completions.create(
        model="m",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    usage = None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert text == "streamed async answer"
    assert usage is not None
    assert usage.completion_tokens == 3
    await c.close()


async def test_async_drop_mid_stream(openai_server: OpenAIServer) -> None:
    openai_server.script(srv.Drop(after=1))
    c = aclient(openai_server)
    stream = await c.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    with pytest.raises(openai.APIConnectionError):
        async for _ in stream:
            pass
    await c.close()


@given(st.text(max_size=200))
def test_split_words_is_lossless(text: str) -> None:
    assert "".join(split_words(text)) == text

"""The test server's Anthropic Messages route (``/v1/messages``), read off the wire: its SSE
events and error bodies are Anthropic's, byte for byte where it matters."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from hookwire.testing.openai_server import ErrorReply, OpenAIServer, Reply, ToolCallReply, Truncated

BODY = {
    "model": "claude-haiku-4-5",
    "max_tokens": 50,
    "system": "Be brief.",
    "messages": [{"role": "user", "content": "Hello there"}],
}


def post(server: OpenAIServer, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        server.url + "/v1/messages",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "x-api-key": "k"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def events(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in data.decode().strip().split("\n\n"):
        name, payload = block.split("\n", 1)
        assert name.startswith("event: ") and payload.startswith("data: ")
        event = json.loads(payload[len("data: ") :])
        assert event["type"] == name[len("event: ") :]  # the event line names the data's type
        out.append((event["type"], event))
    return out


def test_a_json_message(openai_server: OpenAIServer) -> None:
    status, _, data = post(openai_server, BODY)
    message = json.loads(data)
    assert status == 200
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": "You said: Hello there"}]
    assert message["stop_reason"] == "end_turn"
    # The system prompt and the messages: 4 words, none cached.
    assert message["usage"] == {
        "input_tokens": 4,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 4,
    }


def test_a_streamed_message(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply("One two", usage={"prompt_tokens": 10, "cached_tokens": 4}))
    status, headers, data = post(openai_server, {**BODY, "stream": True})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    seen = events(data)
    assert [name for name, _ in seen] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = seen[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 6 and start["usage"]["cache_read_input_tokens"] == 4
    assert [e["delta"] for n, e in seen if n == "content_block_delta"] == [
        {"type": "text_delta", "text": "One "},
        {"type": "text_delta", "text": "two"},
    ]
    delta = seen[6][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == 2


def test_a_streamed_tool_use(openai_server: OpenAIServer) -> None:
    openai_server.script(ToolCallReply("get_weather", {"city": "Paris"}, id="call_1"))
    _, _, data = post(openai_server, {**BODY, "stream": True})
    seen = events(data)
    block = seen[1][1]["content_block"]
    assert block == {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    pieces = [e["delta"]["partial_json"] for n, e in seen if n == "content_block_delta"]
    assert json.loads("".join(pieces)) == {"city": "Paris"}
    assert seen[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_a_truncated_stream_has_no_end(openai_server: OpenAIServer) -> None:
    openai_server.script(Truncated(after=1))
    _, _, data = post(openai_server, {**BODY, "stream": True})
    names = [name for name, _ in events(data)]
    assert "message_delta" not in names and "message_stop" not in names


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (429, "rate_limit_error"), (529, "overloaded_error")],
)
def test_errors_in_anthropics_shape(openai_server: OpenAIServer, status: int, kind: str) -> None:
    openai_server.script(ErrorReply(status, retry_after=2))
    got, headers, data = post(openai_server, BODY)
    body = json.loads(data)
    assert got == status
    assert body["type"] == "error"
    assert body["error"]["type"] == kind and body["error"]["message"]
    assert headers["Retry-After"] == "2"

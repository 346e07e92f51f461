"""The test server's ``/v1/responses``, ``/v1/embeddings`` and ``/v1/completions``, through
the real ``openai`` SDK and on the wire, with the script's faults."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookwire.testing import openai_server as srv
from hookwire.testing.openai_server import OpenAIServer


@pytest.fixture
def client(openai_server: OpenAIServer) -> Iterator[openai.OpenAI]:
    sdk = openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test", max_retries=0)
    yield sdk
    sdk.close()


def post(server: OpenAIServer, path: str, body: dict[str, Any]) -> tuple[str, bytes]:
    request = urllib.request.Request(
        server.base_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Content-Type"], response.read()


def sse(body: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    events = []
    for block in body.decode().split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and line != "data: [DONE]":
                data = json.loads(line[6:])
        if data is not None:
            events.append((name, data))
    return events


# -- /v1/responses ------------------------------------------------------------------------------


def test_responses_json(openai_server: OpenAIServer, client: openai.OpenAI) -> None:
    out = client.responses.create(
        model="gpt-4o", input=[{"role": "user", "content": "Capital of France?"}]
    )
    assert out.output_text == "You said: Capital of France?"
    assert out.status == "completed"
    assert out.usage is not None
    assert (out.usage.input_tokens, out.usage.output_tokens) == (3, 5)
    assert out.usage.input_tokens_details.cached_tokens == 0
    assert out.usage.output_tokens_details.reasoning_tokens == 0
    assert openai_server.requests[0]["input"][0]["content"] == "Capital of France?"


def test_responses_usage_details_and_reasoning(
    openai_server: OpenAIServer, client: openai.OpenAI
) -> None:
    usage = {"prompt_tokens": 90, "completion_tokens": 30, "cached_tokens": 64}
    openai_server.script(srv.Reply("Paris.", usage={**usage, "reasoning_tokens": 20}))
    out = client.responses.create(model="o4-mini", input="q")
    assert [item.type for item in out.output] == ["reasoning", "message"]
    assert out.usage is not None
    assert out.usage.total_tokens == 120
    assert out.usage.input_tokens_details.cached_tokens == 64
    assert out.usage.output_tokens_details.reasoning_tokens == 20


def test_responses_stream_events_are_the_apis(openai_server: OpenAIServer) -> None:
    openai_server.script("one two")
    kind, body = post(openai_server, "/responses", {"model": "m", "input": "hi", "stream": True})
    assert kind.startswith("text/event-stream")
    events = sse(body)
    names = [name for name, _ in events]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(data["type"] == name for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert [d["delta"] for n, d in events if n == "response.output_text.delta"] == ["one ", "two"]
    created, completed = events[0][1]["response"], events[-1][1]["response"]
    assert (created["status"], created["usage"]) == ("in_progress", None)
    assert completed["status"] == "completed"
    assert completed["usage"]["output_tokens"] == 2
    assert completed["output"][0]["content"][0]["text"] == "one two"


def test_responses_function_calls(openai_server: OpenAIServer, client: openai.OpenAI) -> None:
    openai_server.script(
        srv.ToolCallReply("get_weather", {"city": "Paris"}, id="call_1", more=[("get_time", {})]),
        srv.ToolCallReply("get_weather", {"city": "Oslo, Norway"}),
    )
    out = client.responses.create(model="m", input="weather?")
    calls = [item for item in out.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_1", "get_weather", {"city": "Paris"}),
        (calls[1].call_id, "get_time", {}),
    ]
    events = list(client.responses.create(model="m", input="weather?", stream=True))
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == {"city": "Oslo, Norway"}
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output[0].type == "function_call"


def test_responses_default_answer_after_a_tool_result(
    openai_server: OpenAIServer, client: openai.OpenAI
) -> None:
    out = client.responses.create(
        model="m",
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "18 C"}],
    )
    assert out.output_text == "The tool returned: 18 C"


def test_responses_faults(openai_server: OpenAIServer, client: openai.OpenAI) -> None:
    openai_server.script(
        srv.ErrorReply(429, retry_after=0), srv.Malformed(), srv.Truncated(), srv.Drop()
    )
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="m", input="q")
    with pytest.raises(json.JSONDecodeError):
        client.responses.create(model="m", input="q")
    unfinished = client.responses.create(model="m", input="q")
    assert unfinished.status == "incomplete"
    assert unfinished.incomplete_details is not None
    with pytest.raises(openai.APIConnectionError):
        client.responses.create(model="m", input="q")


def test_responses_stream_cut_short(openai_server: OpenAIServer, client: openai.OpenAI) -> None:
    openai_server.script(srv.Truncated(after=2), srv.Drop(after=1))
    kinds = [e.type for e in client.responses.create(model="m", input="q", stream=True)]
    assert kinds.count("response.output_text.delta") == 2
    assert "response.completed" not in kinds
    with pytest.raises(openai.APIConnectionError):
        list(client.responses.create(model="m", input="q", stream=True))


def test_responses_raw_stream(openai_server: OpenAIServer, client: openai.OpenAI) -> None:
    event = {"type": "response.output_text.delta", "delta": "hi", "sequence_number": 0}
    openai_server.script(
        srv.Raw(f"event: response.output_text.delta\ndata: {json.dumps(event)}\n\n")
    )
    (got,) = list(client.responses.create(model="m", input="q", stream=True))
    assert got.type == "response.output_text.delta"


async def test_responses_async(openai_server: OpenAIServer) -> None:
    sdk = openai.AsyncOpenAI(base_url=openai_server.base_url, api_key="k", max_retries=0)
    openai_server.script("a b c")
    async with sdk.responses.stream(model="m", input="q") as stream:
        final = await stream.get_final_response()
    assert final.output_text == "a b c"
    await sdk.close()


# -- /v1/embeddings -----------------------------------------------------------------------------


def test_embeddings_floats_and_base64(openai_server: OpenAIServer, client: openai.OpenAI) -> None:
    floats = client.embeddings.create(
        model="text-embedding-3-small", input=["a b", "c"], encoding_format="float"
    )
    assert [len(d.embedding) for d in floats.data] == [8, 8]
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 3
    assert abs(sum(x * x for x in floats.data[0].embedding) - 1.0) < 1e-9
    again = client.embeddings.create(model="text-embedding-3-small", input="a b", dimensions=4)
    assert len(again.data[0].embedding) == 4
    # the SDK asks for base64 by default; what it decodes is the same vector, as float32
    assert openai_server.requests[1]["encoding_format"] == "base64"
    _, body = post(
        openai_server,
        "/embeddings",
        {"model": "m", "input": "a b", "encoding_format": "base64"},
    )
    encoded = json.loads(body)["data"][0]["embedding"]
    decoded = struct.unpack("<8f", base64.b64decode(encoded))
    assert decoded == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_embeddings_of_tokens_and_a_scripted_usage(
    openai_server: OpenAIServer, client: openai.OpenAI
) -> None:
    openai_server.script(srv.Reply("", usage={"prompt_tokens": 42}, model="text-embedding-3-large"))
    out = client.embeddings.create(model="m", input=[[1, 2, 3], [4, 5]])
    assert (out.usage.prompt_tokens, out.model, len(out.data)) == (42, "text-embedding-3-large", 2)
    out = client.embeddings.create(model="m", input=[1, 2, 3])
    assert (out.usage.prompt_tokens, len(out.data)) == (3, 1)


def test_embeddings_faults(openai_server: OpenAIServer, client: openai.OpenAI) -> None:
    openai_server.script(
        srv.ErrorReply(500), srv.Truncated(), srv.Malformed(), srv.Drop(), srv.ToolCallReply("f")
    )
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="m", input="x")
    for _ in range(2):
        with pytest.raises(json.JSONDecodeError):
            client.embeddings.create(model="m", input="x", encoding_format="float")
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model="m", input="x")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="m", input="x")


# -- /v1/completions (legacy) -------------------------------------------------------------------


def test_completions_json_and_stream(openai_server: OpenAIServer, client: openai.OpenAI) -> None:
    out = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    assert out.object == "text_completion"
    assert out.choices[0].text == "You said: Say hi"
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (2, 4)
    openai_server.script("x y", "z")
    chunks = list(
        client.completions.create(
            model="m", prompt="q", stream=True, stream_options={"include_usage": True}
        )
    )
    assert [c.choices[0].text for c in chunks if c.choices] == ["x ", "y", ""]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    chunks = list(client.completions.create(model="m", prompt="q", stream=True))
    assert all(c.usage is None for c in chunks)


def test_completions_faults(openai_server: OpenAIServer, client: openai.OpenAI) -> None:
    openai_server.script(
        srv.Truncated(after=1), srv.Drop(after=1), srv.ErrorReply(401), srv.ToolCallReply("f")
    )
    chunks = list(client.completions.create(model="m", prompt="q", stream=True))
    assert [c.choices[0].finish_reason for c in chunks] == [None]
    with pytest.raises(openai.APIConnectionError):
        list(client.completions.create(model="m", prompt="q", stream=True))
    with pytest.raises(openai.AuthenticationError):
        client.completions.create(model="m", prompt="q")
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="m", prompt="q")


# -- routes and the command line ----------------------------------------------------------------


def test_azure_deployment_paths_are_routed(openai_server: OpenAIServer) -> None:
    azure = openai.AzureOpenAI(
        api_key="k", api_version="2024-10-21", base_url=openai_server.base_url, max_retries=0
    )
    out = azure.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a"}])
    assert out.choices[0].message.content == "You said: a"
    azure.close()


def test_runs_as_a_module() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "hookwire.testing.openai_server"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        sdk = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
        assert sdk.embeddings.create(model="m", input="x").data
        sdk.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


@given(st.lists(st.text(alphabet="ab \n", max_size=8), max_size=6))
def test_every_streamed_delta_adds_up_to_the_answer(words: list[str]) -> None:
    # The server cuts the answer into words; the deltas it streams join back into the text.
    text = "".join(words)
    with OpenAIServer(script=[text or "x"]) as server:
        _, body = post(server, "/responses", {"model": "m", "input": "q", "stream": True})
    deltas = [d["delta"] for n, d in sse(body) if n == "response.output_text.delta"]
    assert "".join(deltas) == (text or "x")

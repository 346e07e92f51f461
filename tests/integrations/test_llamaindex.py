"""The LlamaIndex bridge in real LlamaIndex apps (llama-index-core with its OpenAI LLM and
embeddings) against the local OpenAI-compatible server: no network.

llama-index-llms-openai caps ``openai<3``, which the Agents SDK (``openai>=3``) excludes from
one resolution: the ``test`` extra cannot name it, and the tests that need it skip without it
(``pip install --no-deps llama-index-llms-openai`` adds it; it runs on openai 3)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("llama_index.core")
pytest.importorskip("llama_index.embeddings.openai")

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.llms import ChatMessage
from llama_index.core.tools import FunctionTool
from llama_index.embeddings.openai import OpenAIEmbedding
from turns import TOOL_TURN

import hookwire
from hookwire.errors import BadRequestError, RateLimitError
from hookwire.integrations.llamaindex import instrument
from hookwire.testing import OpenAIServer, RecordingCallback
from hookwire.testing.openai_server import ErrorReply, ToolCallReply

pytestmark = [
    # LlamaIndex's workflows list an agent's members, pydantic's deprecated ones included.
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning"),
    # Its prompt helper asks asyncio.get_event_loop() outside a loop (deprecated from 3.12).
    pytest.mark.filterwarnings("ignore:There is no current event loop:DeprecationWarning"),
]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """LlamaIndex must not download anything (tokenizers, NLTK data): only 127.0.0.1."""
    connect = socket.socket.connect

    def local_only(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"the test tried to reach {address}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)


@pytest.fixture
def recorder() -> Iterator[RecordingCallback]:
    rec = RecordingCallback()
    with instrument([rec], user_id="u42"):
        yield rec


def _llm(server: OpenAIServer) -> Any:
    llms = pytest.importorskip(
        "llama_index.llms.openai",
        reason="llama-index-llms-openai is not installed (it caps openai<3: pip install --no-deps)",
    )
    return llms.OpenAI(model="gpt-4o-mini", api_base=server.base_url, api_key="test", max_retries=0)


def _embed(server: OpenAIServer) -> OpenAIEmbedding:
    return OpenAIEmbedding(model="text-embedding-3-small", api_base=server.base_url, api_key="test")


def _without_tokens(rec: RecordingCallback) -> list[str]:
    return [h for h in rec.hooks() if h != "on_llm_new_token"]


def test_a_retrieval_is_a_memory_recall_with_its_embedding_call(
    openai_server: OpenAIServer, recorder: RecordingCallback
) -> None:
    index = VectorStoreIndex.from_documents(
        [Document(text="Paris is the capital of France.")], embed_model=_embed(openai_server)
    )
    recorder.clear()
    with hookwire.trace("app", callbacks=[recorder]) as run:
        nodes = index.as_retriever().retrieve("Capital of France?")
    assert [n.node.get_content() for n in nodes] == ["Paris is the capital of France."]
    assert recorder.hooks() == [
        "on_run_start",
        "on_embedding_start",
        "on_embedding_end",
        "on_memory_recall",
        "on_run_end",
    ]
    start = recorder.of("on_embedding_start")[0]
    assert start["input"] == "Capital of France?"
    assert start["parent_run_id"] == run.run_id and start["trace_id"] == run.trace_id
    recall = recorder.of("on_memory_recall")[0]
    assert recall["query"] == "Capital of France?"
    assert recall["results"] == ["Paris is the capital of France."]
    assert recall["memory"] == "VectorIndexRetriever" and len(recall["scores"]) == 1
    assert recall["parent_run_id"] == run.run_id


def test_a_query_engine_is_a_run_with_its_recall_embedding_and_llm_call(
    openai_server: OpenAIServer, recorder: RecordingCallback
) -> None:
    index = VectorStoreIndex.from_documents(
        [Document(text="Paris is the capital of France.")], embed_model=_embed(openai_server)
    )
    assert recorder.hooks() == ["on_embedding_start", "on_embedding_end"]
    built = recorder.of("on_embedding_end")[0]
    assert built["response"].count == 1 and built["response"].dimensions == 8
    assert built["response"].model == "text-embedding-3-small"
    assert built["response"].provider == "openai"
    assert built["response"].usage.estimated and built["response"].cost is not None
    recorder.clear()

    answer = index.as_query_engine(llm=_llm(openai_server)).query("Capital of France?")

    assert str(answer).startswith("You said:")
    assert recorder.hooks() == [
        "on_run_start",
        "on_embedding_start",
        "on_embedding_end",
        "on_memory_recall",
        "on_llm_start",
        "on_llm_end",
        "on_run_end",
    ]
    start, end = recorder.of("on_run_start")[0], recorder.of("on_run_end")[0]
    assert start["input"] == "Capital of France?"
    assert start["kind"] == "workflow" and start["name"] == "RetrieverQueryEngine"
    assert end["output"] == str(answer)
    run_id = start["run_id"]
    for hook in ("on_embedding_start", "on_memory_recall", "on_llm_start", "on_llm_end"):
        call = recorder.of(hook)[0]
        assert call["parent_run_id"] == run_id, hook
        assert call["trace_id"] == run_id and call["depth"] == 1, hook
        assert call["user_id"] == "u42", hook
    recall = recorder.of("on_memory_recall")[0]
    assert recall["query"] == "Capital of France?"
    assert recall["results"] == ["Paris is the capital of France."]
    assert recall["memory"] == "VectorIndexRetriever"
    llm_start = recorder.of("on_llm_start")[0]
    assert llm_start["prompt"][-1]["role"] == "user"
    assert llm_start["model"] == "gpt-4o-mini" and llm_start["provider"] == "openai"
    assert llm_start["stream"] is False
    response = recorder.of("on_llm_end")[0]["response"]
    assert response.content == str(answer)
    assert not response.usage.estimated and response.usage.completion_tokens > 0
    assert response.usage.prompt_tokens == len(
        openai_server.requests[-1]["messages"][-1]["content"].split()
    ) + len(openai_server.requests[-1]["messages"][0]["content"].split())
    assert response.cost is not None and response.cost > 0
    assert response.id and response.finish_reason == "stop"
    assert end["usage"] == response.usage and end["cost"] == response.cost
    assert end["model"] == "gpt-4o-mini"


def test_a_streamed_completion_reports_tokens_and_an_estimated_usage(
    openai_server: OpenAIServer, recorder: RecordingCallback
) -> None:
    text = "".join(r.delta or "" for r in _llm(openai_server).stream_complete("hello there"))
    assert text == "You said: hello there"
    assert _without_tokens(recorder) == ["on_llm_start", "on_llm_end"]
    tokens = recorder.of("on_llm_new_token")
    assert "".join(t["token"] for t in tokens) == text
    assert [t["index"] for t in tokens] == list(range(len(tokens)))
    start, end = recorder.of("on_llm_start")[0], recorder.of("on_llm_end")[0]
    assert start["prompt"] == "hello there" and start["stream"] is True
    assert end["stream"] is True and end["ttft_ms"] >= 0
    # LlamaIndex's OpenAI LLM drops the stream's usage chunk: an estimate, never 0 tokens.
    assert end["response"].usage.estimated and end["response"].usage.completion_tokens > 0
    assert end["response"].cost is not None
    assert end["run_id"] == start["run_id"] == tokens[0]["run_id"]


async def test_an_async_chat_inside_a_hookwire_trace_is_its_child(
    openai_server: OpenAIServer, recorder: RecordingCallback
) -> None:
    llm = _llm(openai_server)
    with hookwire.trace("app", callbacks=[recorder]) as run:
        answer = await llm.achat([ChatMessage(role="user", content="Hi")])
    assert answer.message.content == "You said: Hi"
    start = recorder.of("on_llm_start")[0]
    assert start["parent_run_id"] == run.run_id
    assert start["trace_id"] == run.trace_id
    assert recorder.of("on_llm_end")[0]["response"].usage.prompt_tokens == 1


async def test_an_agent_with_a_tool_is_an_agent_run_with_its_calls_and_tool(
    openai_server: OpenAIServer, recorder: RecordingCallback
) -> None:
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    agent = FunctionAgent(tools=[FunctionTool.from_defaults(multiply)], llm=_llm(openai_server))
    openai_server.script(ToolCallReply("multiply", {"a": 6, "b": 7}), "It is 42.")

    result = await agent.run(user_msg="What is 6 times 7?")

    assert str(result) == "It is 42."
    assert _without_tokens(recorder) == TOOL_TURN
    run = recorder.of("on_run_start")[0]
    assert run["kind"] == "agent" and run["name"] == "FunctionAgent"
    assert run["input"] == "What is 6 times 7?"
    for hook in ("on_llm_start", "on_tool_start", "on_tool_end"):
        assert all(c["parent_run_id"] == run["run_id"] for c in recorder.of(hook)), hook
    first = recorder.of("on_llm_end")[0]["response"]
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("multiply", '{"a": 6, "b": 7}')]
    assert recorder.of("on_tool_start")[0]["tool_input"] == {"a": 6, "b": 7}
    assert recorder.of("on_tool_end")[0]["tool_output"] == "42"
    end = recorder.of("on_run_end")[0]
    assert end["output"] == "It is 42."
    assert end["usage"].total_tokens == sum(
        c["response"].usage.total_tokens for c in recorder.of("on_llm_end")
    )


def test_a_failing_call_is_reported_once_where_it_began(
    openai_server: OpenAIServer, recorder: RecordingCallback
) -> None:
    index = VectorStoreIndex.from_documents(
        [Document(text="Paris is the capital of France.")], embed_model=_embed(openai_server)
    )
    recorder.clear()
    openai_server.script(ErrorReply(400, "bad request"))
    with pytest.raises(Exception, match="bad request"):
        index.as_query_engine(llm=_llm(openai_server)).query("Capital of France?")
    # The query's embedding is the first request: it fails, and ends the run.
    assert recorder.hooks() == [
        "on_run_start",
        "on_embedding_start",
        "on_embedding_error",
        "on_run_end",
        "on_error",
    ]
    assert isinstance(recorder.of("on_embedding_error")[0]["error"], BadRequestError)
    (error,) = recorder.of("on_error")
    assert error["stage"] == "embedding" and isinstance(error["error"], BadRequestError)
    assert error["run_id"] == recorder.of("on_run_start")[0]["run_id"]
    assert recorder.of("on_run_end")[0]["output"] is None

    recorder.clear()
    openai_server.script(ErrorReply(429, "slow down", retry_after=0))
    with pytest.raises(Exception, match="slow down"):
        _llm(openai_server).complete("Hi")
    assert recorder.hooks() == ["on_llm_start", "on_llm_error", "on_error"]
    assert isinstance(recorder.of("on_llm_error")[0]["error"], RateLimitError)
    assert recorder.of("on_error")[0]["stage"] == "llm"


def test_a_failing_tool_is_reported_as_a_tool_error(openai_server: OpenAIServer) -> None:
    def broken(x: int) -> int:
        """Always fails."""
        raise ValueError("no luck")

    rec = RecordingCallback()
    with instrument([rec]), pytest.raises(ValueError, match="no luck"):
        FunctionTool.from_defaults(broken).call(x=1)
    assert rec.hooks() == ["on_tool_start", "on_tool_error", "on_error"]
    assert rec.of("on_tool_start")[0]["tool_input"] == {"x": 1}
    assert rec.of("on_error")[0]["stage"] == "tool"


def test_uninstrument_stops_the_events(openai_server: OpenAIServer) -> None:
    rec = RecordingCallback()
    instrumentation = instrument([rec])
    llm = _llm(openai_server)
    llm.complete("one")
    instrumentation.uninstrument()
    llm.complete("two")
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]
    assert rec.of("on_llm_start")[0]["prompt"] == "one"


def test_a_chat_made_through_a_completion_is_one_call() -> None:
    from llama_index.core.llms.mock import MockLLM

    rec = RecordingCallback()
    with instrument([rec]):
        # MockLLM (LlamaIndex's offline LLM) answers a chat with its completion: two LLM
        # spans, one call.
        MockLLM(max_tokens=4).chat([ChatMessage(role="user", content="Hello")])
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]
    assert rec.of("on_llm_start")[0]["prompt"] == [{"role": "user", "content": "Hello"}]
    assert rec.of("on_llm_end")[0]["response"].usage.estimated

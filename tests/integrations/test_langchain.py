"""The LangChain bridge, against the real langchain-core: fake chat models, tools, LCEL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.callbacks import CallbackManagerForLLMRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_openai_messages,
)
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool

import hookwire
from hookwire import AsyncBaseCallback, BaseCallback, LLMResponse, Usage
from hookwire.errors import BudgetExceeded, ConfigurationError, RateLimitError
from hookwire.integrations.langchain import (
    AsyncHookwireCallbackHandler,
    HookwireCallbackHandler,
    convert,
    openai_messages,
)
from hookwire.testing import RecordingCallback

USAGE = {
    "input_tokens": 11,
    "output_tokens": 5,
    "total_tokens": 16,
    "input_token_details": {"cache_read": 3},
    "output_token_details": {"reasoning": 1},
}


def answer(text: str = "Paris is the capital.", **kw: Any) -> AIMessage:
    return AIMessage(
        content=text,
        usage_metadata=USAGE,  # type: ignore[arg-type]
        response_metadata={"model_name": "gpt-4o-2024-08-06", "finish_reason": "stop"},
        id="chatcmpl-abc",
        **kw,
    )


def fake(*messages: AIMessage | str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(messages))


class StreamingUsageModel(GenericFakeChatModel):
    """A fake chat model whose stream ends with a usage chunk, as OpenAI's does."""

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for piece in ["Hel", "lo", " there"]:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata={"input_tokens": 7, "output_tokens": 3, "total_tokens": 10},
                response_metadata={"finish_reason": "stop", "model_name": "gpt-4o-mini"},
            )
        )


class FakeRateLimit(Exception):
    status_code = 429


class FailingModel(GenericFakeChatModel):
    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        raise FakeRateLimit("slow down")


class Docs(BaseRetriever):
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [Document(page_content=f"{query}: doc 1"), Document(page_content="doc 2")]


@pytest.fixture
def rec() -> RecordingCallback:
    return RecordingCallback()


def test_plain_chat_model(rec: RecordingCallback) -> None:
    handler = HookwireCallbackHandler([rec])
    model = fake(answer())
    out = model.invoke(
        [("system", "Be brief."), ("human", "Capital of France?")],
        config={"callbacks": [handler], "tags": ["geo"]},
    )
    assert out.content == "Paris is the capital."
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]
    start, end = rec.calls
    assert start["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert start["run_id"] == end["run_id"]
    assert start["tags"] == ("geo",)
    assert start["provider"] == "genericfakechatmodel"
    assert "parent_run_id" not in start.kwargs
    assert start["trace_id"] == start["run_id"]
    response: LLMResponse = end["response"]
    assert response.content == "Paris is the capital."
    assert response.usage == Usage(11, 5, 16, cached_tokens=3, reasoning_tokens=1)
    assert response.usage.total_tokens == 16
    assert response.model == "gpt-4o-2024-08-06"
    assert response.finish_reason == "stop"
    assert response.id == "chatcmpl-abc"
    assert response.provider == "genericfakechatmodel"
    assert end["latency_ms"] >= 0
    assert end["attempts"] == 1
    assert end["stream"] is False
    assert "ttft_ms" not in end.kwargs
    assert handler._bridge.runs == {}


def test_langchain_run_ids_are_kept(rec: RecordingCallback) -> None:
    run_id = uuid4()
    fake(answer()).invoke(
        "hi", config={"callbacks": [HookwireCallbackHandler([rec])], "run_id": run_id}
    )
    assert [c["run_id"] for c in rec.calls] == [str(run_id), str(run_id)]


def test_streaming_tokens(rec: RecordingCallback) -> None:
    model = StreamingUsageModel(messages=iter([]))
    chunks = list(model.stream("hi", config={"callbacks": [HookwireCallbackHandler([rec])]}))
    assert "".join(str(c.content) for c in chunks) == "Hello there"
    tokens = rec.of("on_llm_new_token")
    assert [t["token"] for t in tokens] == ["Hel", "lo", " there"]
    assert [t["index"] for t in tokens] == [0, 1, 2]
    assert {t["attempt"] for t in tokens} == {1}
    (end,) = rec.of("on_llm_end")
    assert {t["run_id"] for t in tokens} == {end["run_id"]}
    assert end["response"].content == "Hello there"
    assert end["response"].usage == Usage(7, 3, 10)
    assert end["response"].model == "gpt-4o-mini"
    assert end["stream"] is True
    assert 0 <= end["ttft_ms"] <= end["latency_ms"]


def test_generic_fake_streaming_splits_words(rec: RecordingCallback) -> None:
    model = fake("one two")
    list(model.stream("x", config={"callbacks": [HookwireCallbackHandler([rec])]}))
    assert [t["token"] for t in rec.of("on_llm_new_token")] == ["one", " ", "two"]


def test_tool_calls_in_the_response_and_tools_run(rec: RecordingCallback) -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    msg = AIMessage(
        content="",
        tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "call_1", "type": "tool_call"}],
        response_metadata={"finish_reason": "tool_calls"},
    )
    handler = HookwireCallbackHandler([rec])
    model = fake(msg).bind(tools=[convert_to_openai_tool(add)])
    ai = model.invoke("2+3?", config={"callbacks": [handler]})
    (end,) = rec.of("on_llm_end")
    (call,) = end["response"].tool_calls
    assert (call.id, call.name, call.arguments) == ("call_1", "add", '{"a":2,"b":3}')
    assert end["response"].finish_reason == "tool_calls"
    (start,) = rec.of("on_llm_start")
    assert start["invocation_params"]["tools"] == ["add"]

    rec.clear()
    result = add.invoke(ai.tool_calls[0], config={"callbacks": [handler]})
    assert result.content == "5"
    assert rec.hooks() == ["on_tool_start", "on_tool_end"]
    ts, te = rec.calls
    assert ts["tool_name"] == "add"
    assert ts["tool_input"] == {"a": 2, "b": 3}
    assert ts["tool_call_id"] == "call_1"
    assert te["tool_output"] == "5"
    assert te["tool_call_id"] == "call_1"
    assert te["run_id"] == ts["run_id"]
    assert te["latency_ms"] >= 0


def test_lcel_chain_is_a_run_with_nested_calls(rec: RecordingCallback) -> None:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    chain = prompt | fake(answer()) | StrOutputParser()
    out = chain.invoke({"q": "Capital?"}, config={"callbacks": [HookwireCallbackHandler([rec])]})
    assert out == "Paris is the capital."
    runs = rec.of("on_run_start")
    # the prompt and the parser are no runs of their own (prompts_and_parsers=True shows them)
    assert [r["name"] for r in runs] == ["RunnableSequence"]
    assert runs[0]["kind"] == "workflow"
    seq = runs[0]
    assert runs[0]["input"] == "Capital?"  # a single text value is passed as that text
    assert "parent_run_id" not in seq.kwargs
    assert "depth" not in seq.kwargs
    for c in rec.calls:
        assert c["trace_id"] == seq["run_id"]
    (llm,) = rec.of("on_llm_start")
    assert llm["parent_run_id"] == seq["run_id"]
    assert llm["depth"] == 1
    assert llm["prompt"][1] == {"role": "user", "content": "Capital?"}
    ends = {c["name"]: c for c in rec.of("on_run_end")}
    assert ends["RunnableSequence"]["output"] == "Paris is the capital."
    assert ends["RunnableSequence"]["usage"] == Usage(
        11, 5, 16, cached_tokens=3, reasoning_tokens=1
    )
    assert ends["RunnableSequence"]["model"] == "gpt-4o-2024-08-06"
    assert rec.hooks()[-1] == "on_run_end"


def test_inside_a_hookwire_trace_with_request_context(rec: RecordingCallback) -> None:
    chain = RunnableLambda(lambda x: x) | fake(answer())
    with hookwire.trace("support", callbacks=[rec], user_id="u1", conversation_id="c1") as run:
        chain.invoke("hi", config={"callbacks": [HookwireCallbackHandler([rec], org_id="o1")]})
    outer, seq = rec.of("on_run_start")[:2]
    assert outer["name"] == "support"
    assert seq["parent_run_id"] == run.run_id
    assert seq["trace_id"] == run.run_id
    assert seq["depth"] == 1
    (llm,) = rec.of("on_llm_start")
    assert llm["parent_run_id"] == seq["run_id"]
    assert llm["trace_id"] == run.run_id
    assert llm["depth"] == 2
    for c in rec.calls[1:-1]:
        assert c["user_id"] == "u1"
        assert c["conversation_id"] == "c1"
        assert c["org_id"] == "o1"


def test_request_context_from_langchain_metadata(rec: RecordingCallback) -> None:
    fake(answer()).invoke(
        "hi",
        config={
            "callbacks": [HookwireCallbackHandler([rec], user_id="default")],
            "metadata": {"user_id": "u7", "request_id": "r7", "team": "x"},
        },
    )
    for c in rec.calls:
        assert c["user_id"] == "u7"
        assert c["request_id"] == "r7"
        assert c["metadata"] == {"team": "x"}


def test_text_llm(rec: RecordingCallback) -> None:
    llm = FakeListLLM(responses=["forty-two"])
    assert (
        llm.invoke("meaning?", config={"callbacks": [HookwireCallbackHandler([rec])]})
        == "forty-two"
    )
    start, end = rec.calls
    assert start["prompt"] == "meaning?"
    assert end["response"].content == "forty-two"
    # The fake model reports no usage: unknown (marked estimated), never a known 0.
    assert end["response"].usage.estimated


def test_llm_error_in_a_chain_reports_once(rec: RecordingCallback) -> None:
    chain = RunnableLambda(lambda x: x) | FailingModel(messages=iter([]))
    with pytest.raises(FakeRateLimit):
        chain.invoke("hi", config={"callbacks": [HookwireCallbackHandler([rec])]})
    assert rec.hooks() == [
        "on_run_start",
        "on_run_start",
        "on_run_end",
        "on_llm_start",
        "on_llm_error",
        "on_run_end",
        "on_error",
    ]
    (err,) = rec.of("on_llm_error")
    assert isinstance(err["error"], RateLimitError)
    assert err["error"].status_code == 429
    assert isinstance(err["error"].__cause__, FakeRateLimit)
    assert err["latency_ms"] >= 0
    seq_end = rec.of("on_run_end")[-1]
    assert isinstance(seq_end["error"], FakeRateLimit)
    assert seq_end["output"] is None
    (on_error,) = rec.of("on_error")
    assert on_error["stage"] == "llm"
    assert on_error["error"] is err["error"]  # the same mapped error as on_llm_error's


def test_llm_error_outside_a_chain(rec: RecordingCallback) -> None:
    with pytest.raises(FakeRateLimit):
        FailingModel(messages=iter([])).invoke(
            "hi", config={"callbacks": [HookwireCallbackHandler([rec])]}
        )
    assert rec.hooks() == ["on_llm_start", "on_llm_error", "on_error"]
    assert rec.of("on_error")[0]["stage"] == "llm"


def test_chain_error_is_a_run_error(rec: RecordingCallback) -> None:
    def boom(x: Any) -> Any:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        RunnableLambda(boom).invoke("x", config={"callbacks": [HookwireCallbackHandler([rec])]})
    assert rec.hooks() == ["on_run_start", "on_run_end", "on_error"]
    assert rec.of("on_error")[0]["stage"] == "run"


def test_tool_error(rec: RecordingCallback) -> None:
    @tool
    def divide(a: int, b: int) -> float:
        """Divide."""
        return a / b

    chain = RunnableLambda(lambda x: x) | divide
    with pytest.raises(ZeroDivisionError):
        chain.invoke({"a": 1, "b": 0}, config={"callbacks": [HookwireCallbackHandler([rec])]})
    assert rec.hooks() == [
        "on_run_start",
        "on_run_start",
        "on_run_end",
        "on_tool_start",
        "on_tool_error",
        "on_error",
        "on_run_end",
    ]
    (te,) = rec.of("on_tool_error")
    assert te["tool_name"] == "divide"
    assert isinstance(te["error"], ZeroDivisionError)
    assert rec.of("on_error")[0]["stage"] == "tool"


def test_retriever_is_a_memory_recall(rec: RecordingCallback) -> None:
    docs = Docs().invoke("tea", config={"callbacks": [HookwireCallbackHandler([rec])]})
    assert len(docs) == 2
    (recall,) = rec.calls
    assert recall.hook == "on_memory_recall"
    assert recall["query"] == "tea"
    assert recall["results"] == ["tea: doc 1", "doc 2"]
    assert recall["memory"] == "Docs"


def test_retry_event_from_tenacity_state(rec: RecordingCallback) -> None:
    handler = HookwireCallbackHandler([rec])
    run_id = uuid4()
    handler.on_chat_model_start({}, [[]], run_id=run_id)
    err = FakeRateLimit("429")
    state = SimpleNamespace(
        attempt_number=1,
        outcome=SimpleNamespace(failed=True, exception=lambda: err),
        retry_object=SimpleNamespace(stop=SimpleNamespace(max_attempt_number=4)),
        next_action=SimpleNamespace(sleep=0.25),
    )
    handler.on_retry(state, run_id=run_id)  # type: ignore[arg-type]
    (retry,) = rec.of("on_retry")
    assert retry["attempt"] == 1
    assert retry["max_attempts"] == 4
    assert isinstance(retry["error"], RateLimitError)
    assert retry["delay"] == 0.25
    assert retry["run_id"] == str(run_id)


class Budget(BaseCallback):
    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        raise BudgetExceeded("user u1 is over 1 USD", scope="user", key="u1")


def test_budget_stops_the_langchain_call(rec: RecordingCallback) -> None:
    handler = HookwireCallbackHandler([Budget(), rec])
    with pytest.raises(BudgetExceeded, match="over 1 USD"):
        fake(answer()).invoke("hi", config={"callbacks": [handler]})
    assert rec.hooks() == ["on_llm_error", "on_budget_exceeded", "on_error"]
    assert rec.of("on_error")[0]["stage"] == "budget"
    assert handler._bridge.runs == {}


class Broken(BaseCallback):
    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        raise RuntimeError("handler bug")


def test_a_failing_handler_never_reaches_the_app(
    rec: RecordingCallback, caplog: pytest.LogCaptureFixture
) -> None:
    handler = HookwireCallbackHandler([Broken(), rec])
    with caplog.at_level(logging.ERROR, logger="hookwire"):
        out = fake(answer()).invoke("hi", config={"callbacks": [handler]})
    assert out.content == "Paris is the capital."
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]
    assert handler.manager.stats()["errors"] == {"Broken.on_llm_end": 1}


def test_a_bridge_failure_never_reaches_the_app(
    rec: RecordingCallback, caplog: pytest.LogCaptureFixture
) -> None:
    handler = HookwireCallbackHandler([rec])
    with caplog.at_level(logging.ERROR, logger="hookwire"):
        # A response that is not an LLMResult at all: the bridge logs and skips the event.
        handler.on_chat_model_start({}, [[]], run_id=(rid := uuid4()))
        handler.on_llm_end(SimpleNamespace(generations=[[object()]], llm_output=42), run_id=rid)
    assert "LangChain bridge failed in on_llm_end" in caplog.text


def test_unknown_context_key() -> None:
    with pytest.raises(ConfigurationError, match="unknown request context"):
        HookwireCallbackHandler([], tenant="x")


async def test_async_chain_with_the_sync_handler(rec: RecordingCallback) -> None:
    chain = RunnableLambda(lambda x: x) | fake(answer())
    with hookwire.request_context(user_id="u2"):
        await chain.ainvoke("hi", config={"callbacks": [HookwireCallbackHandler([rec])]})
    assert rec.hooks() == [
        "on_run_start",
        "on_run_start",
        "on_run_end",
        "on_llm_start",
        "on_llm_end",
        "on_run_end",
    ]
    assert {c["user_id"] for c in rec.calls} == {"u2"}


class AsyncRecorder(AsyncBaseCallback):
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.seen.append(("token", token))

    async def on_llm_end(self, response: LLMResponse, **kwargs: Any) -> None:
        self.seen.append(("end", response.usage.total_tokens))

    async def on_run_end(self, output: Any, **kwargs: Any) -> None:
        self.seen.append(("run_end", kwargs["name"]))


async def test_async_handler_awaits_async_hookwire_handlers() -> None:
    recorder = AsyncRecorder()
    handler = AsyncHookwireCallbackHandler([recorder])
    chain = RunnableLambda(lambda x: x) | StreamingUsageModel(messages=iter([]))
    chunks = [c async for c in chain.astream("hi", config={"callbacks": [handler]})]
    assert "".join(str(c.content) for c in chunks) == "Hello there"
    assert recorder.seen == [
        ("run_end", "RunnableLambda"),
        ("token", "Hel"),
        ("token", "lo"),
        ("token", " there"),
        ("end", 10),
        ("run_end", "RunnableSequence"),
    ]
    assert handler._bridge.runs == {}


async def test_async_handler_budget() -> None:
    rec = RecordingCallback()
    handler = AsyncHookwireCallbackHandler([Budget(), rec])
    with pytest.raises(BudgetExceeded):
        await fake(answer()).ainvoke("hi", config={"callbacks": [handler]})
    assert rec.hooks() == ["on_llm_error", "on_budget_exceeded", "on_error"]


def test_feeds_the_opentelemetry_handler() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hookwire.callbacks import OpenTelemetryCallback

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel = OpenTelemetryCallback(tracer_provider=provider, metrics=False)
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | fake(answer())
    chain.invoke({"q": "x"}, config={"callbacks": [HookwireCallbackHandler([otel])]})
    spans = {s.name: s for s in exporter.get_finished_spans()}
    seq = spans["invoke_workflow RunnableSequence"]  # a chain is a workflow, not an agent
    chat = next(s for n, s in spans.items() if n.startswith("chat"))
    assert chat.parent is not None
    assert chat.parent.span_id == seq.context.span_id
    assert (chat.attributes or {})["gen_ai.usage.input_tokens"] == 11
    assert otel.open_spans == 0
    provider.shutdown()


@pytest.mark.parametrize(
    "batch",
    [
        [SystemMessage("Be brief."), HumanMessage("Capital?")],
        [HumanMessage("hi", name="bob")],
        [
            HumanMessage("2+3?"),
            AIMessage(
                content="",
                tool_calls=[
                    {"name": "add", "args": {"a": 2, "b": 3}, "id": "c1", "type": "tool_call"}
                ],
            ),
            ToolMessage("5", tool_call_id="c1"),
            AIMessage("It is 5."),
        ],
        # not on the fast path: content blocks, extra kwargs
        [HumanMessage([{"type": "text", "text": "look"}])],
        [AIMessage("x", additional_kwargs={"refusal": None})],
    ],
)
def test_fast_message_conversion_matches_langchains(batch: list[BaseMessage]) -> None:
    assert openai_messages(batch) == convert_to_openai_messages(batch)


def test_run_inputs_and_outputs_are_text_never_a_repr(rec: RecordingCallback) -> None:
    handler = HookwireCallbackHandler([rec])
    echo = RunnableLambda(lambda x: x)
    echo.invoke({"question": "hi"}, config={"callbacks": [handler]})
    echo.invoke({"a": 1, "b": "x"}, config={"callbacks": [handler]})
    echo.invoke({"n": 1}, config={"callbacks": [handler]})
    echo.invoke(HumanMessage("as a message"), config={"callbacks": [handler]})
    echo.invoke([SystemMessage("s"), HumanMessage("u")], config={"callbacks": [handler]})
    echo.invoke({"messages": [("user", "state")]}, config={"callbacks": [handler]})
    echo.invoke(
        {"messages": [HumanMessage("q"), AIMessage("the answer"), AIMessage("")]},
        config={"callbacks": [handler]},
    )
    echo.invoke([{"role": "user", "content": "as a dict"}], config={"callbacks": [handler]})
    assert [c["input"] for c in rec.of("on_run_start")] == [
        "hi",
        '{"a":1,"b":"x"}',
        '{"n":1}',
        "as a message",
        "u",
        "state",
        "q",
        "as a dict",
    ]
    outputs = [c["output"] for c in rec.of("on_run_end")]
    assert outputs[3] == "as a message"
    assert outputs[6] == "the answer"  # the last assistant message that says something
    for text in outputs:
        assert isinstance(text, str)
        assert "HumanMessage(" not in text and "AIMessage(" not in text


_text_st = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(
    st.lists(
        st.tuples(st.sampled_from(["system", "human", "ai", "tool"]), _text_st, _text_st),
        max_size=6,
    )
)
def test_fast_conversion_matches_langchains_for_any_text_messages(
    spec: list[tuple[str, str, str]],
) -> None:
    batch: list[BaseMessage] = []
    for kind, text, extra in spec:
        if kind == "system":
            batch.append(SystemMessage(text))
        elif kind == "human":
            batch.append(HumanMessage(text))
        elif kind == "ai":
            batch.append(AIMessage(text))
        else:
            batch.append(ToolMessage(text, tool_call_id=extra or "c"))
    assert openai_messages(batch) == convert_to_openai_messages(batch)


def test_a_stream_stopped_early_ends_with_what_came(rec: RecordingCallback) -> None:
    model = fake("one two three four five")
    handler = HookwireCallbackHandler([rec])
    stream = model.stream("hi", config={"callbacks": [handler]})
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.close()  # what the garbage collector would do: LangChain sees GeneratorExit
    assert rec.hooks()[-1] == "on_llm_end"
    assert "on_llm_error" not in rec.hooks()
    assert "on_error" not in rec.hooks()
    end = rec.of("on_llm_end")[0]
    assert end["cancelled"] is True
    assert end["response"].content == "one two"
    assert end["response"].finish_reason is None
    assert handler._bridge.runs == {}


_message_st = st.builds(
    lambda kind, text: {"human": HumanMessage, "ai": AIMessage, "system": SystemMessage}[kind](
        text
    ),
    st.sampled_from(["human", "ai", "system"]),
    _text_st,
)
_value_st = st.recursive(
    st.none() | st.integers() | _text_st | _message_st,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text_st, inner, max_size=3),
    max_leaves=12,
)


@given(_value_st)
def test_run_text_is_always_text_and_never_a_message_repr(value: Any) -> None:
    for text in (convert.chain_input(value), convert.chain_output(value)):
        assert isinstance(text, str)
        assert "HumanMessage(" not in text and "AIMessage(" not in text


@given(st.lists(_message_st, min_size=1, max_size=6))
def test_run_input_is_the_last_human_message_of_any_message_list(batch: list[BaseMessage]) -> None:
    humans = [m.content for m in batch if m.type == "human"]
    text = convert.chain_input({"messages": batch, "remaining_steps": 3})
    if humans:
        assert text == humans[-1]
    answers = [m.content for m in batch if m.type == "ai" and m.content]
    if answers:
        assert convert.chain_output({"messages": batch}) == answers[-1]

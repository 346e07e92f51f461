"""HookwireSpanProcessor on a real OpenTelemetry SDK: spans from real instrumentations
(opentelemetry-instrumentation-openai-v2, openinference-instrumentation-openai) against the
local OpenAI-compatible server, and spans written with the attribute sets pydantic-ai and
OpenInference's framework instrumentations emit."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from turns import TOOL_TURN

from hookwire import CallbackManager, Usage, pricing
from hookwire.callbacks import BaseCallback, OpenTelemetryCallback
from hookwire.callbacks.accounting import AccountingCallbackHandler
from hookwire.errors import BudgetExceeded, HookwireError, RateLimitError, ToolError
from hookwire.integrations.otel import HookwireSpanProcessor
from hookwire.testing import RecordingCallback
from hookwire.testing.openai_server import ErrorReply, OpenAIServer, Reply, ToolCallReply

# -- fixtures ---------------------------------------------------------------------------------


class Setup:
    def __init__(self, *handlers: Any, **context: Any) -> None:
        self.recorder = RecordingCallback()
        self.processor = HookwireSpanProcessor([self.recorder, *handlers], **context)
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("app")

    def hooks(self) -> list[str]:
        return self.recorder.hooks()

    def span_id(self, name: str) -> str:
        (span,) = [s for s in self.exporter.get_finished_spans() if s.name == name]
        return format(span.context.span_id, "016x")


@pytest.fixture
def otel() -> Iterator[Setup]:
    setup = Setup()
    yield setup
    setup.provider.shutdown()


@pytest.fixture
def openai_v2(otel: Setup) -> Iterator[Setup]:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=otel.provider)
    yield otel
    instrumentor.uninstrument()


@pytest.fixture
def openinference(otel: Setup) -> Iterator[Setup]:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=otel.provider)
    yield otel
    instrumentor.uninstrument()


def agent_span(tracer: Tracer, name: str, **extra: Any) -> Any:
    """An ``invoke_agent`` span as pydantic-ai starts one (its attributes at start)."""
    return tracer.start_as_current_span(
        f"invoke_agent {name}",
        attributes={
            "model_name": "gpt-4o",
            "agent_name": name,
            "gen_ai.agent.name": name,
            "gen_ai.agent.call.id": "run-1",
            "gen_ai.conversation.id": "conv-9",
            "gen_ai.operation.name": "invoke_agent",
            "logfire.msg": f"{name} run",
            **extra,
        },
    )


# -- real instrumentations against the local server ------------------------------------------


def test_openai_v2_calls_become_llm_and_embedding_calls_nested_in_the_apps_agent(
    openai_v2: Setup, openai_server: OpenAIServer
) -> None:
    openai_server.script(
        Reply("Paris.", usage={"prompt_tokens": 12, "completion_tokens": 3}),
    )
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0)
    with agent_span(openai_v2.tracer, "helper") as agent:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Capital of France?"}]
        )
        client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])

    assert openai_v2.hooks() == [
        "on_run_start",
        "on_llm_start",
        "on_llm_end",
        "on_embedding_start",
        "on_embedding_end",
        "on_run_end",
    ]
    run_id = format(agent.get_span_context().span_id, "016x")
    trace_id = format(agent.get_span_context().trace_id, "032x")
    start = openai_v2.recorder.of("on_run_start")[0]
    assert start["run_id"] == run_id and start["kind"] == "agent" and start["name"] == "helper"
    (llm_end,) = openai_v2.recorder.of("on_llm_end")
    assert llm_end["parent_run_id"] == run_id and llm_end["trace_id"] == trace_id
    assert llm_end["run_id"] == openai_v2.span_id("chat gpt-4o")
    assert llm_end["depth"] == 1
    assert llm_end["agent"] == "helper" and llm_end["conversation_id"] == "conv-9"
    response = llm_end["response"]
    assert response.usage == Usage(12, 3)
    assert response.model == "gpt-4o" and response.provider == "openai"
    assert response.cost == pricing.cost("gpt-4o", Usage(12, 3)) is not None
    assert response.finish_reason == "stop"
    assert openai_v2.recorder.of("on_llm_start")[0]["invocation_params"]["model"] == "gpt-4o"
    (emb,) = openai_v2.recorder.of("on_embedding_end")
    assert emb["response"].usage.prompt_tokens == 2 and emb["response"].dimensions is not None
    assert emb["parent_run_id"] == run_id
    (end,) = openai_v2.recorder.of("on_run_end")
    assert end["usage"] == Usage(12, 3) + emb["response"].usage
    assert end["cost"] == response.cost + emb["response"].cost
    assert openai_v2.processor.open_spans == 0


def test_openai_v2_streamed_call_has_its_usage(
    openai_v2: Setup, openai_server: OpenAIServer
) -> None:
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0)
    for _ in client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hello there"}],
        stream=True,
        stream_options={"include_usage": True},
    ):
        pass
    (end,) = openai_v2.recorder.of("on_llm_end")
    assert end["response"].usage.completion_tokens > 0
    assert end["response"].cost is not None
    assert end.get("parent_run_id") is None and end["depth"] == 0


def test_openai_v2_failed_call_is_an_llm_error_and_one_on_error(
    openai_v2: Setup, openai_server: OpenAIServer
) -> None:
    openai_server.script(ErrorReply(429, message="slow down"))
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert openai_v2.hooks() == ["on_llm_start", "on_llm_error", "on_error"]
    error = openai_v2.recorder.of("on_llm_error")[0]["error"]
    assert isinstance(error, RateLimitError) and error.model == "gpt-4o"
    assert openai_v2.recorder.of("on_error")[0]["stage"] == "llm"


def test_openinference_spans_carry_content_and_cached_tokens(
    openinference: Setup, openai_server: OpenAIServer
) -> None:
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0)
    client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ],
    )
    client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    start = openinference.recorder.of("on_llm_start")[0]
    assert start["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    response = openinference.recorder.of("on_llm_end")[0]["response"]
    assert response.content == "You said: hi"
    assert response.usage.cached_tokens == 0 and response.usage.reasoning_tokens == 0
    assert response.cost == pricing.cost("gpt-4o", response.usage)
    assert openinference.recorder.of("on_embedding_start")[0]["input"] == ["a", "b"]
    assert openinference.recorder.of("on_embedding_end")[0]["response"].count == 2


def test_accounting_records_calls_seen_through_spans_with_their_agent(
    tmp_path: Path, openai_server: OpenAIServer
) -> None:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    accounting = AccountingCallbackHandler(database_url=f"sqlite:///{tmp_path}/a.db", user_id="u")
    setup = Setup(accounting)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=setup.provider)
    try:
        openai_server.script(Reply("ok", usage={"prompt_tokens": 100, "completion_tokens": 20}))
        client = openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0)
        with agent_span(setup.tracer, "support"):
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}]
            )
        setup.provider.force_flush()
        (row,) = accounting.summary(by=("user", "agent", "model"))
    finally:
        instrumentor.uninstrument()
        setup.provider.shutdown()
        accounting.close()
    assert (row["user"], row["agent"], row["model"]) == ("u", "support", "gpt-4o")
    assert row["prompt_tokens"] == 100 and row["completion_tokens"] == 20
    assert row["cost"] == pricing.cost("gpt-4o", Usage(100, 20))


# -- spans as pydantic-ai writes them ---------------------------------------------------------


def test_a_pydantic_ai_agent_run_with_a_tool(otel: Setup) -> None:
    tracer = otel.tracer
    tool_call = [
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "call_1", "name": "weather", "arguments": {"c": "P"}}
            ],
        }
    ]
    with agent_span(tracer, "helper") as agent:
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as chat:
            chat.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.system": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "server.address": "api.openai.com",
                    "gen_ai.request.temperature": 0.2,
                    "gen_ai.input.messages": json.dumps(
                        [{"role": "user", "parts": [{"type": "text", "content": "Weather?"}]}]
                    ),
                    "gen_ai.system_instructions": json.dumps(
                        [{"type": "text", "content": "Be brief."}]
                    ),
                    "gen_ai.output.messages": json.dumps(tool_call),
                    "gen_ai.conversation.id": "conv-9",
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.response.id": "chatcmpl-1",
                    "gen_ai.response.finish_reasons": ("tool_call",),
                    "gen_ai.usage.input_tokens": 51,
                    "gen_ai.usage.output_tokens": 4,
                    "gen_ai.usage.cache_read.input_tokens": 10,
                    "logfire.msg": "chat gpt-4o",
                }
            )
        with tracer.start_as_current_span(
            "execute_tool weather",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "weather",
                "gen_ai.tool.call.id": "call_1",
                "gen_ai.tool.call.arguments": '{"c":"P"}',
                "logfire.msg": "running tool: weather",
            },
        ) as tool:
            tool.set_attribute("gen_ai.tool.call.result", "sunny")
        with tracer.start_as_current_span("chat gpt-4o") as chat:
            chat.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.output.messages": json.dumps(
                        [{"role": "assistant", "parts": [{"type": "text", "content": "Sunny."}]}]
                    ),
                    "gen_ai.usage.input_tokens": 60,
                    "gen_ai.usage.output_tokens": 2,
                }
            )
        agent.set_attributes(
            {
                "final_result": "Sunny.",
                "gen_ai.aggregated_usage.input_tokens": 111,
                "gen_ai.aggregated_usage.output_tokens": 6,
            }
        )

    assert otel.hooks() == TOOL_TURN
    first_start = otel.recorder.of("on_llm_start")[0]
    assert first_start["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
    ]
    assert first_start["invocation_params"] == {"temperature": 0.2, "model": "gpt-4o"}
    first = otel.recorder.of("on_llm_end")[0]["response"]
    assert first.tool_calls[0].name == "weather" and first.tool_calls[0].id == "call_1"
    assert json.loads(first.tool_calls[0].arguments) == {"c": "P"}
    assert first.usage == Usage(51, 4, cached_tokens=10)
    assert first.model == "gpt-4o-2024-08-06" and first.id == "chatcmpl-1"
    assert first.finish_reason == "tool_call"
    tool_start = otel.recorder.of("on_tool_start")[0]
    assert tool_start["tool_name"] == "weather" and tool_start["tool_input"] == '{"c":"P"}'
    assert tool_start["tool_call_id"] == "call_1"
    assert otel.recorder.of("on_tool_end")[0]["tool_output"] == "sunny"
    end = otel.recorder.of("on_run_end")[0]
    assert end["output"] == "Sunny."
    assert end["usage"].prompt_tokens == 111 and end["usage"].completion_tokens == 6
    second = otel.recorder.of("on_llm_end")[1]["response"]
    assert end["cost"] == first.cost + second.cost
    assert {c["conversation_id"] for c in otel.recorder.calls} == {"conv-9"}


def test_a_failed_tool_and_a_failed_run(otel: Setup) -> None:
    tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "weather"}
    with (
        pytest.raises(ValueError, match="boom"),
        agent_span(otel.tracer, "helper"),
        otel.tracer.start_as_current_span("execute_tool weather", attributes=tool),
    ):
        raise ValueError("boom")
    assert otel.hooks() == [
        "on_run_start",
        "on_tool_start",
        "on_tool_error",
        "on_run_end",
        "on_error",
    ]
    tool_error = otel.recorder.of("on_tool_error")[0]["error"]
    assert isinstance(tool_error, ToolError) and "ValueError" in str(tool_error)
    end = otel.recorder.of("on_run_end")[0]
    assert end["output"] is None and isinstance(end["error"], HookwireError)
    assert otel.recorder.of("on_error")[0]["stage"] == "run"


# -- spans as OpenInference's framework instrumentations write them ---------------------------


def test_openinference_chain_retriever_and_tool(otel: Setup) -> None:
    tracer = otel.tracer
    with tracer.start_as_current_span(
        "RetrievalQA",
        attributes={
            "openinference.span.kind": "CHAIN",
            "input.value": "Who wrote it?",
            "session.id": "s-1",
            "user.id": "u-7",
        },
    ) as chain:
        with tracer.start_as_current_span(
            "VectorStoreRetriever", attributes={"openinference.span.kind": "RETRIEVER"}
        ) as retriever:
            retriever.set_attributes(
                {
                    "input.value": "author",
                    "retrieval.documents.0.document.id": "d1",
                    "retrieval.documents.0.document.content": "Tolstoy wrote it.",
                    "retrieval.documents.0.document.score": 0.9,
                    "retrieval.documents.1.document.content": "Written in 1869.",
                }
            )
        with tracer.start_as_current_span(
            "lookup",
            attributes={
                "openinference.span.kind": "TOOL",
                "tool.name": "lookup",
                "input.value": '{"q": "author"}',
            },
        ) as tool:
            tool.set_attribute("output.value", "Tolstoy")
        with tracer.start_as_current_span("ChatOpenAI") as llm:
            llm.set_attributes(
                {
                    "openinference.span.kind": "LLM",
                    "llm.provider": "openai",
                    "llm.system": "openai",
                    "llm.model_name": "gpt-4o-mini",
                    "llm.invocation_parameters": '{"temperature": 0}',
                    "llm.input_messages.0.message.role": "user",
                    "llm.input_messages.0.message.content": "Who wrote it?",
                    "llm.output_messages.0.message.role": "assistant",
                    "llm.output_messages.0.message.content": "Tolstoy.",
                    "llm.token_count.prompt": 30,
                    "llm.token_count.completion": 5,
                    "llm.token_count.total": 35,
                    "llm.token_count.prompt_details.cache_read": 8,
                }
            )
        chain.set_attribute("output.value", "Tolstoy.")

    assert otel.hooks() == [
        "on_run_start",
        "on_memory_recall",
        "on_tool_start",
        "on_tool_end",
        "on_llm_start",
        "on_llm_end",
        "on_run_end",
    ]
    start = otel.recorder.of("on_run_start")[0]
    assert start["input"] == "Who wrote it?" and start["kind"] == "workflow"
    assert start["user_id"] == "u-7" and start["conversation_id"] == "s-1"
    recall = otel.recorder.of("on_memory_recall")[0]
    assert recall["query"] == "author"
    assert recall["results"] == ["Tolstoy wrote it.", "Written in 1869."]
    assert recall["memory"] == "VectorStoreRetriever"
    assert otel.recorder.of("on_tool_end")[0]["tool_output"] == "Tolstoy"
    llm_start = otel.recorder.of("on_llm_start")[0]
    assert llm_start["invocation_params"] == {"temperature": 0, "model": "gpt-4o-mini"}
    response = otel.recorder.of("on_llm_end")[0]["response"]
    assert response.content == "Tolstoy." and response.usage == Usage(30, 5, 35, cached_tokens=8)
    assert response.cost == pricing.cost("gpt-4o-mini", response.usage)
    end = otel.recorder.of("on_run_end")[0]
    assert end["output"] == "Tolstoy." and end["usage"] == response.usage


def test_spans_in_between_are_skipped_for_the_parent(otel: Setup) -> None:
    tracer = otel.tracer
    with agent_span(tracer, "helper") as agent:
        with (
            tracer.start_as_current_span("running tools"),
            tracer.start_as_current_span("POST", kind=SpanKind.CLIENT),
            tracer.start_as_current_span(
                "chat gpt-4o",
                attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"},
            ),
        ):
            pass
        assert otel.processor.open_spans == 1
    run_id = format(agent.get_span_context().span_id, "016x")
    (end,) = otel.recorder.of("on_llm_end")
    assert end["parent_run_id"] == run_id and end["depth"] == 1
    assert end["response"].usage.estimated  # no counts on the span: unknown, not 0
    assert otel.processor.open_spans == 0
    assert otel.processor._open == {}


def test_a_run_whose_start_was_not_seen_is_reported_whole_at_its_end(otel: Setup) -> None:
    with otel.tracer.start_as_current_span("step") as step:
        step.set_attribute("openinference.span.kind", "CHAIN")
        step.set_attribute("output.value", "done")
    assert otel.hooks() == ["on_run_start", "on_run_end"]
    assert otel.recorder.of("on_run_end")[0]["output"] == "done"


def test_non_genai_spans_send_nothing(otel: Setup) -> None:
    for i in range(50):
        with otel.tracer.start_as_current_span(f"GET /{i}", attributes={"http.method": "GET"}):
            pass
    assert otel.hooks() == []
    assert otel.processor.open_spans == 0


def test_unknown_operations_and_kinds_are_left_alone(otel: Setup) -> None:
    for attrs in (
        {"gen_ai.operation.name": "create_agent"},
        {"openinference.span.kind": "RERANKER"},
        {"openinference.span.kind": "GUARDRAIL"},
    ):
        with otel.tracer.start_as_current_span("x", attributes=attrs):
            pass
    assert otel.hooks() == []


# -- no loop with OpenTelemetryCallback, never an exception into the tracer -------------------


def test_hookwires_own_spans_are_not_read_back(otel: Setup) -> None:
    # OpenTelemetryCallback writes to the same provider the processor reads.
    callback = OpenTelemetryCallback(tracer_provider=otel.provider, metrics=False)
    otel.processor.manager.add(callback)
    with (
        agent_span(otel.tracer, "helper"),
        otel.tracer.start_as_current_span(
            "chat gpt-4o",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 5,
                "gen_ai.usage.output_tokens": 1,
            },
        ),
    ):
        pass
    assert otel.hooks() == ["on_run_start", "on_llm_start", "on_llm_end", "on_run_end"]
    scopes = [s.instrumentation_scope.name for s in otel.exporter.get_finished_spans()]
    assert scopes.count("hookwire") == 2 and scopes.count("app") == 2


class Raising(BaseCallback):
    raise_error = True

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        raise RuntimeError("handler bug")


class Budget(BaseCallback):
    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        raise BudgetExceeded("over budget", scope="user", key="u")


def chat_span(tracer: Tracer) -> None:
    with tracer.start_as_current_span(
        "chat gpt-4o",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 5,
            "gen_ai.usage.output_tokens": 1,
        },
    ):
        pass


def test_a_handler_that_raises_never_reaches_the_tracer(caplog: pytest.LogCaptureFixture) -> None:
    setup = Setup(Raising())
    with caplog.at_level(logging.ERROR, logger="hookwire"):
        chat_span(setup.tracer)
    assert setup.hooks() == ["on_llm_start", "on_llm_end"]
    assert "handler bug" in caplog.text


def test_a_budget_cannot_refuse_a_call_already_made_and_it_is_still_reported() -> None:
    setup = Setup(Budget())
    chat_span(setup.tracer)
    assert setup.hooks() == ["on_llm_start", "on_llm_end"]


def test_a_span_with_an_error_status_and_no_error_type_is_an_llm_error(otel: Setup) -> None:
    with otel.tracer.start_as_current_span(
        "chat x", attributes={"gen_ai.operation.name": "chat"}
    ) as span:
        span.set_status(Status(StatusCode.ERROR, "the server hung up"))
    error = otel.recorder.of("on_llm_error")[0]["error"]
    assert "the server hung up" in str(error)


def test_a_span_without_token_counts_is_an_estimate_never_zero(otel: Setup) -> None:
    # An instrumentation that writes no gen_ai.usage.* (or a call cut short): unknown usage,
    # estimated from what the span shows and priced at that bound, as on every other path.
    messages = [{"role": "user", "parts": [{"type": "text", "content": "Capital of France?"}]}]
    answer = [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Paris."}],
            "finish_reason": "stop",
        }
    ]
    with otel.tracer.start_as_current_span(
        "chat gpt-4o",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.input.messages": json.dumps(messages),
            "gen_ai.output.messages": json.dumps(answer),
        },
    ):
        pass
    with otel.tracer.start_as_current_span(
        "embeddings text-embedding-3-small",
        attributes={
            "gen_ai.operation.name": "embeddings",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "text-embedding-3-small",
        },
    ):
        pass
    (end,) = otel.recorder.of("on_llm_end")
    usage = end["response"].usage
    assert usage.estimated and usage.prompt_tokens >= 3 and usage.completion_tokens >= 1
    assert end["response"].cost is not None and end["response"].cost > 0
    (embedded,) = otel.recorder.of("on_embedding_end")
    assert embedded["response"].usage.estimated and embedded["response"].usage.prompt_tokens >= 1


def test_request_context_is_added_and_checked() -> None:
    setup = Setup(user_id="u1", org_id="o1")
    chat_span(setup.tracer)
    assert setup.recorder.of("on_llm_end")[0]["org_id"] == "o1"
    with pytest.raises(HookwireError, match="unknown request context"):
        HookwireSpanProcessor([], tenant="t")


def test_max_open_bounds_the_runs_remembered() -> None:
    processor = HookwireSpanProcessor([RecordingCallback()], max_open=3)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("app")
    spans = [
        tracer.start_span(
            f"invoke_agent a{i}", attributes={"gen_ai.operation.name": "invoke_agent"}
        )
        for i in range(10)
    ]
    assert processor.open_spans <= 3
    for span in spans:
        span.end()
    assert processor.open_spans == 0
    with pytest.raises(HookwireError, match="max_open"):
        HookwireSpanProcessor([], max_open=0)


def test_force_flush_flushes_the_handlers(tmp_path: Path) -> None:
    accounting = AccountingCallbackHandler(database_url=f"sqlite:///{tmp_path}/a.db", user_id="u")
    setup = Setup(accounting)
    chat_span(setup.tracer)
    assert setup.provider.force_flush()
    (row,) = accounting.summary()
    assert row["calls"] == 1 and row["cost"] == pricing.cost("gpt-4o", Usage(5, 1))
    accounting.close()
    assert isinstance(row["cost"], Decimal)


def test_the_manager_is_a_callback_manager() -> None:
    manager = CallbackManager([RecordingCallback()])
    assert HookwireSpanProcessor(manager).manager is manager


# -- spans as Semantic Kernel writes them -----------------------------------------------------


def test_semantic_kernel_chat_span_with_message_events(otel: Setup) -> None:
    with otel.tracer.start_as_current_span("chat.streaming_completions gpt-4o") as span:
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat.streaming_completions",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.id": "chatcmpl-9",
                "gen_ai.usage.input_tokens": 12,
                "gen_ai.usage.output_tokens": 4,
            }
        )
        span.add_event(
            "gen_ai.system.message",
            {"gen_ai.event.content": json.dumps({"role": "system", "content": "Be brief."})},
        )
        span.add_event(
            "gen_ai.user.message",
            {"gen_ai.event.content": json.dumps({"role": "user", "content": "Hi"})},
        )
        span.add_event(
            "gen_ai.choice",
            {
                "gen_ai.event.content": json.dumps(
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hello."},
                        "finish_reason": "stop",
                    }
                )
            },
        )
    start = otel.recorder.of("on_llm_start")[0]
    assert start["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert start["stream"] is True
    response = otel.recorder.of("on_llm_end")[0]["response"]
    assert (response.content, response.finish_reason) == ("Hello.", "stop")
    assert response.cost == pricing.cost("gpt-4o", Usage(12, 4))


# -- spans as Google ADK writes them ----------------------------------------------------------


def test_google_adk_agent_llm_call_and_tool(otel: Setup) -> None:
    tracer = otel.tracer
    common = {
        "gen_ai.agent.name": "weather_agent",
        "gen_ai.conversation.id": "session-1",
        "user.id": "user-5",
    }
    with tracer.start_as_current_span(
        "invoke_agent weather_agent",
        attributes={"gen_ai.operation.name": "invoke_agent", **common},
    ):
        # ADK's own call_llm span: no gen_ai.operation.name, so not a call of its own (its
        # generate_content child is the call, and is not counted twice).
        with tracer.start_as_current_span(
            "call_llm", attributes={"gen_ai.system": "gcp.vertex.agent"}
        ) as call_llm:
            with tracer.start_as_current_span("generate_content gemini-2.0-flash") as gen:
                gen.set_attributes(
                    {
                        "gen_ai.system": "gemini",
                        "gen_ai.operation.name": "generate_content",
                        "gen_ai.request.model": "gemini-2.0-flash",
                        **common,
                        "gen_ai.response.finish_reasons": ("stop",),
                        "gen_ai.usage.input_tokens": 1000,
                        "gen_ai.usage.output_tokens": 100,
                    }
                )
            call_llm.set_attributes(
                {"gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100}
            )
        with tracer.start_as_current_span(
            "execute_tool get_weather",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "get_weather",
                "gen_ai.tool.call.id": "adk-1",
            },
        ):
            pass
    assert otel.hooks() == [
        "on_run_start",
        "on_llm_start",
        "on_llm_end",
        "on_tool_start",
        "on_tool_end",
        "on_run_end",
    ]
    end = otel.recorder.of("on_llm_end")[0]
    assert end["user_id"] == "user-5" and end["conversation_id"] == "session-1"
    assert end["agent"] == "weather_agent" and end["depth"] == 1
    assert end["response"].cost == pricing.cost("gemini-2.0-flash", Usage(1000, 100))
    assert otel.recorder.of("on_run_end")[0]["usage"] == Usage(1000, 100)


async def test_openai_v2_async_calls_in_concurrent_agents(
    openai_v2: Setup, openai_server: OpenAIServer
) -> None:
    import asyncio

    client = openai.AsyncOpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0)

    async def agent(name: str) -> None:
        with agent_span(openai_v2.tracer, name):
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": name}]
            )

    await asyncio.gather(agent("a"), agent("b"), agent("c"))
    await client.close()
    runs = {c["run_id"]: c["name"] for c in openai_v2.recorder.of("on_run_start")}
    ends = openai_v2.recorder.of("on_llm_end")
    assert len(ends) == 3
    # each call hangs under its own agent's run, whatever the interleaving
    assert sorted(runs[e["parent_run_id"]] for e in ends) == ["a", "b", "c"]
    assert all(e["agent"] == runs[e["parent_run_id"]] for e in ends)
    assert openai_v2.processor.open_spans == 0


def test_a_call_over_budget_seen_through_its_span_is_still_accounted(tmp_path: Path) -> None:
    from hookwire.callbacks.accounting import Budget

    accounting = AccountingCallbackHandler(
        database_url=f"sqlite:///{tmp_path}/a.db",
        user_id="u",
        budgets=Budget("0.00001", period=None),
        budget_lease=0,
    )
    setup = Setup(accounting)
    for _ in range(3):  # the second and third are over budget: made anyway, and booked
        chat_span(setup.tracer)
    setup.provider.force_flush()
    (row,) = accounting.summary()
    accounting.close()
    assert row["calls"] == 3
    assert row["cost"] == 3 * pricing.cost("gpt-4o", Usage(5, 1))


# -- pydantic-ai itself, against the local server ---------------------------------------------


async def test_a_real_pydantic_ai_agent_with_a_tool(
    otel: Setup, openai_server: OpenAIServer
) -> None:
    from pydantic_ai import Agent, InstrumentationSettings
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    openai_server.script(
        ToolCallReply("weather", {"city": "Paris"}, id="call_1"), Reply("Sunny in Paris.")
    )
    client = openai.AsyncOpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0)
    model = OpenAIChatModel("gpt-4o", provider=OpenAIProvider(openai_client=client))
    agent = Agent(model, name="helper")

    @agent.tool_plain
    def weather(city: str) -> str:
        return f"sunny in {city}"

    Agent.instrument_all(InstrumentationSettings(tracer_provider=otel.provider))
    try:
        assert (await agent.run("Weather in Paris?")).output == "Sunny in Paris."
    finally:
        Agent.instrument_all(False)
        await client.close()

    assert otel.hooks() == TOOL_TURN
    run = otel.recorder.of("on_run_start")[0]
    assert (run["name"], run["kind"]) == ("helper", "agent")
    first, second = (c["response"] for c in otel.recorder.of("on_llm_end"))
    assert first.tool_calls[0].name == "weather" and first.tool_calls[0].id == "call_1"
    assert second.content == "Sunny in Paris." and second.finish_reason == "stop"
    assert second.cost == pricing.cost("gpt-4o", second.usage) is not None
    prompt = otel.recorder.of("on_llm_start")[1]["prompt"]
    assert [m["role"] for m in prompt] == ["user", "assistant", "tool"]
    assert prompt[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny in Paris"}
    tool = otel.recorder.of("on_tool_end")[0]
    assert (tool["tool_name"], tool["tool_output"]) == ("weather", "sunny in Paris")
    assert {c["parent_run_id"] for c in otel.recorder.calls[1:-1]} == {run["run_id"]}
    assert {c["conversation_id"] for c in otel.recorder.calls} == {run["conversation_id"]}
    end = otel.recorder.of("on_run_end")[0]
    assert end["output"] == "Sunny in Paris."
    assert end["usage"] == first.usage + second.usage
    assert end["cost"] == first.cost + second.cost

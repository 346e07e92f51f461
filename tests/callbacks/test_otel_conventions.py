"""OpenTelemetryCallback against the GenAI semantic conventions, attribute by attribute.

``CONVENTIONS`` is the table the spans are checked against: every attribute hookwire writes
outside its own ``hookwire.`` namespace, with the conventions' words it relies on. The text is
the open-telemetry/semantic-conventions repository's docs/gen-ai/gen-ai-spans.md,
gen-ai-agent-spans.md, gen-ai-events.md, gen-ai-metrics.md and the attribute registry
(docs/registry/attributes/gen-ai.md, openai.md, user.md, session.md) as of commit 953276ff4d
(2026-05-05), the last before the GenAI conventions moved to their own repository; the memory
attributes are that repository's (open-telemetry/semantic-conventions-genai,
model/gen-ai/spans.yaml ``gen_ai.memory.client`` and the registry), merged there later.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from test_otel import OTel, parent_id

import hookwire
from hookwire import LLMResponse, Usage
from hookwire.callbacks import otel_conventions as c
from hookwire.errors import LLMError, RateLimitError
from hookwire.llms import OpenAIClient
from hookwire.testing.openai_server import OpenAIServer, Reply

#: attribute -> what the conventions say about it (quoted), for the spans hookwire writes it on.
CONVENTIONS: dict[str, str] = {
    "gen_ai.operation.name": "Required. The name of the operation being performed.",
    "gen_ai.provider.name": "Required (inference and invoke_agent spans). The Generative AI "
    "provider as identified by the client or server instrumentation.",
    "gen_ai.request.model": "Conditionally Required If available.",
    "gen_ai.request.temperature": "Recommended. The temperature setting for the GenAI request.",
    "gen_ai.request.max_tokens": "Recommended. The maximum number of tokens the model "
    "generates for a request.",
    "gen_ai.request.top_p": "Recommended.",
    "gen_ai.request.top_k": "Recommended.",
    "gen_ai.request.frequency_penalty": "Recommended.",
    "gen_ai.request.presence_penalty": "Recommended.",
    "gen_ai.request.seed": "Conditionally Required if applicable and if the request includes "
    "a seed",
    "gen_ai.request.choice.count": "Conditionally Required if available, in the request, and !=1",
    "gen_ai.request.stop_sequences": "Recommended.",
    "gen_ai.request.stream": "If and only if the request is streaming. If unset, the request "
    "is assumed to be non-streaming.",
    "gen_ai.output.type": "when applicable and if the request includes an output format.",
    "gen_ai.response.model": "Recommended. The name of the GenAI model that provided the response.",
    "gen_ai.response.id": "Recommended.",
    "gen_ai.response.finish_reasons": "Recommended.",
    "gen_ai.response.time_to_first_chunk": "Recommended if the request was a streaming request",
    "gen_ai.usage.input_tokens": "Recommended.",
    "gen_ai.usage.output_tokens": "Recommended.",
    "gen_ai.usage.cache_read.input_tokens": "Recommended.",
    "gen_ai.usage.cache_creation.input_tokens": "The number of input tokens written to a "
    "provider-managed cache.",
    "gen_ai.usage.reasoning.output_tokens": "Recommended when applicable",
    "gen_ai.conversation.id": "Conditionally Required when available",
    "gen_ai.agent.name": "Conditionally Required when available",
    "gen_ai.workflow.name": "Conditionally Required when available. This attribute can be "
    "populated in different frameworks eg: name of the first chain in LangChain",
    "gen_ai.tool.name": "Required (execute_tool).",
    "gen_ai.tool.type": "Recommended if available",
    "gen_ai.tool.call.id": "Recommended if available",
    "gen_ai.tool.description": "Recommended if available. The tool description.",
    "gen_ai.tool.call.arguments": "Opt-In",
    "gen_ai.tool.call.result": "Opt-In",
    "gen_ai.tool.definitions": "Opt-In",
    "gen_ai.input.messages": "Opt-In. Instrumentations MUST follow Input messages JSON schema.",
    "gen_ai.output.messages": "Opt-In. Instrumentations MUST follow Output messages JSON schema",
    "gen_ai.retrieval.documents": "Opt-In. The documents retrieved. (example: "
    '[{"id": "doc_123", "score": 0.95}, ...])',
    "gen_ai.memory.store.id": "Conditionally Required if applicable. The unique identifier of "
    "the memory store. Semantic conventions for individual components SHOULD document what "
    "`gen_ai.memory.store.id` maps to within the implementation.",
    "gen_ai.memory.record.count": "Recommended if the operation involves memory records and the "
    "count is available. For `search_memory` operations, this is the number of memory records "
    "returned by the operation. For `create_memory` operations, this is the number of memory "
    "records the operation attempted to create.",
    "gen_ai.memory.query.text": "Opt-In. The search query used to retrieve memories.",
    "gen_ai.memory.records": "Opt-In. The memory records stored or retrieved in a memory "
    "operation.",
    "server.address": "Recommended. GenAI server address.",
    "server.port": "Conditionally Required If `server.address` is set.",
    "error.type": "The `error.type` SHOULD match the error code returned by the Generative AI "
    "provider or the client library, the canonical name of exception that occurred",
    "openai.api.type": "The type of OpenAI API being used. (chat_completions; responses)",
    "openai.request.service_tier": "The service tier requested.",
    "openai.response.service_tier": "The service tier used for the response.",
    "openai.response.system_fingerprint": "A fingerprint to track any eventual change in the "
    "Generative AI environment.",
    "user.id": "Unique identifier of the user.",
    "session.id": "A unique id to identify a session.",
}

#: Exception event attributes (the general conventions' ``exception`` event).
EXCEPTION_EVENT = {"exception.type", "exception.message", "exception.stacktrace"}

#: The well-known operation names and provider names (registry: gen-ai.md).
OPERATIONS = {
    "chat", "create_agent", "create_memory", "embeddings", "execute_tool", "generate_content",
    "invoke_agent", "invoke_workflow", "retrieval", "search_memory", "text_completion",
}  # fmt: skip


def _opened(**kw: Any) -> Iterator[OTel]:
    o = OTel(**kw)
    try:
        yield o
    finally:
        o.shutdown()


@pytest.fixture
def otel() -> Iterator[OTel]:
    yield from _opened()


@pytest.fixture
def otel_all() -> Iterator[OTel]:
    """Content on the spans and in the details event."""
    yield from _opened(capture_content=True, content_event=True)


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _everything(o: OTel) -> None:
    """Every kind of span and event hookwire writes, through a real client and server."""
    m = o.manager
    with OpenAIServer() as server:
        server.script(Reply("Paris is the capital."), Reply("Four."))
        client = OpenAIClient(base_url=server.base_url, model="gpt-4o", callbacks=m)
        with hookwire.trace(
            "helper", callbacks=m, agent="helper", user_id="u1", conversation_id="c1"
        ):
            with hookwire.trace("pipeline", callbacks=m):
                list(client.stream("Capital of France?", response_format={"type": "json_object"}))
            client.generate(
                [{"role": "user", "content": "2+2?"}],
                tools=[{"type": "function", "function": {"name": "add", "parameters": {}}}],
                seed=1,
                service_tier="default",
            )
            tool = m.on_tool_start("add", {"a": 2}, tool_call_id="t1", tool_description="Adds")
            m.on_tool_end("add", "4", run_id=tool)
            m.on_memory_recall("tea?", [{"id": "m1", "score": 0.5, "content": "tea"}])
            bad = m.on_tool_start("div", {"a": 1})
            m.on_tool_error("div", ZeroDivisionError("zero"), run_id=bad)
        client.close()


def test_every_attribute_written_is_in_the_conventions_table(otel_all: OTel) -> None:
    _everything(otel_all)
    seen: set[str] = set()
    for span in otel_all.spans():
        seen |= set(span.attributes or {})
        for event in span.events:
            if event.name in ("exception",):
                assert set(event.attributes or {}) <= EXCEPTION_EVENT
            else:
                seen |= set(event.attributes or {})
    ours = {a for a in seen if a.startswith("hookwire.")}
    assert seen - ours <= set(CONVENTIONS), sorted(seen - ours - set(CONVENTIONS))
    assert {_attrs(s)["gen_ai.operation.name"] for s in otel_all.spans()} <= OPERATIONS
    # the conventions module names nothing the table does not
    names = {v for k, v in vars(c).items() if k.isupper() and isinstance(v, str)}
    names -= {c.DETAILS_EVENT, c.TTFC_METRIC, c.TPOC_METRIC, c.OTHER_PROVIDER, c.TRACER_NAME}
    names -= {c.RETRIEVAL_QUERY}  # read from other instrumentations' spans, never written
    assert names <= set(CONVENTIONS) | EXCEPTION_EVENT | {"gen_ai.token.type"}


def test_usage_is_on_the_calls_spans_only_and_runs_get_hookwire_totals(otel: OTel) -> None:
    m = otel.manager
    run = m.on_run_start("q", name="chain")
    inner = m.on_run_start("q", name="step", parent_run_id=run)
    call = m.on_llm_start("p", model="m", parent_run_id=inner)
    m.on_llm_end(LLMResponse("a", usage=Usage(10, 2)), run_id=call)
    m.on_run_end("a", run_id=inner, usage=Usage(10, 2))
    m.on_run_end("a", run_id=run, usage=Usage(10, 2), cost=0.5)
    for name in ("invoke_workflow chain", "invoke_workflow step"):
        a = _attrs(otel.span(name))
        assert not [k for k in a if k.startswith("gen_ai.usage.")]
        assert a["hookwire.usage.input_tokens"] == 10
        assert a["hookwire.usage.output_tokens"] == 2
    a = _attrs(otel.span("text_completion m"))
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (10, 2)


def test_an_agents_run_is_invoke_agent_with_the_provider_of_its_calls(otel: OTel) -> None:
    m = otel.manager
    with (
        hookwire.trace("support", callbacks=m, agent="support"),
        hookwire.trace("lookup", callbacks=m),
    ):
        call = m.on_llm_start([{"role": "user", "content": "hi"}], model="m", provider="azure")
        m.on_llm_end(LLMResponse("a"), run_id=call)
    agent = _attrs(otel.span("invoke_agent support"))
    assert agent["gen_ai.operation.name"] == "invoke_agent"
    assert agent["gen_ai.agent.name"] == "support"
    assert agent["gen_ai.provider.name"] == "azure.ai.openai"
    workflow = _attrs(otel.span("invoke_workflow lookup"))
    assert workflow["gen_ai.workflow.name"] == "lookup"
    assert "gen_ai.agent.name" not in workflow


def test_an_agent_run_without_calls_still_has_a_provider_name(otel: OTel) -> None:
    with hookwire.trace("idle", callbacks=otel.manager, agent="idle"):
        pass
    assert _attrs(otel.span("invoke_agent idle"))["gen_ai.provider.name"] == "_OTHER"


@pytest.mark.parametrize(
    ("kind", "span"),
    [("agent", "invoke_agent x"), ("graph", "invoke_agent x"), ("workflow", "invoke_workflow x")],
)
def test_a_runs_kind_keyword_decides_agent_or_workflow(otel: OTel, kind: str, span: str) -> None:
    run = otel.manager.on_run_start("q", name="x", kind=kind)
    otel.manager.on_run_end("a", run_id=run)
    assert otel.span(span).kind is SpanKind.INTERNAL


def test_stream_is_set_only_for_a_streamed_call_and_server_comes_from_the_base_url(
    otel: OTel,
) -> None:
    with OpenAIServer() as server:
        server.script(Reply("One two three four."), Reply("Four."))
        client = OpenAIClient(base_url=server.base_url, model="gpt-4o", callbacks=otel.manager)
        pieces = [p for p in client.stream("Count.") if isinstance(p, str)]
        assert "".join(pieces) == "One two three four."
        client.generate("2+2?")
        client.close()
        port = int(server.base_url.split(":")[2].split("/")[0])
    streamed, whole = (_attrs(s) for s in sorted(otel.spans(), key=lambda s: s.start_time or 0))
    assert streamed["gen_ai.request.stream"] is True
    assert "gen_ai.response.time_to_first_chunk" in streamed
    assert "gen_ai.request.stream" not in whole
    assert "gen_ai.response.time_to_first_chunk" not in whole
    for a in (streamed, whole):
        assert a["server.address"] == "127.0.0.1"
        assert a["server.port"] == port
        assert a["openai.api.type"] == "chat_completions"


def test_a_cut_stream_gets_no_made_up_finish_reason(otel_all: OTel) -> None:
    m = otel_all.manager
    call = m.on_llm_start("p", model="m", stream=True)
    m.on_llm_end(LLMResponse("half an ans", finish_reason=None), run_id=call)
    a = _attrs(otel_all.span("text_completion m"))
    assert "gen_ai.response.finish_reasons" not in a
    assert json.loads(a["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "half an ans"}]}
    ]


@pytest.mark.parametrize(
    ("fmt", "kind"),
    [({"type": "json_object"}, "json"), ({"type": "json_schema"}, "json"), ("text", "text")],
)
def test_output_type_is_set_when_a_response_format_is_asked(
    otel: OTel, fmt: Any, kind: str
) -> None:
    m = otel.manager
    call = m.on_llm_start("p", model="m", invocation_params={"response_format": fmt})
    m.on_llm_end(LLMResponse("{}"), run_id=call)
    assert _attrs(otel.span("text_completion m"))["gen_ai.output.type"] == kind


def test_tool_definitions_only_with_content_capture_and_tool_description_always(
    otel: OTel, otel_all: OTel
) -> None:
    for o in (otel, otel_all):
        call = o.manager.on_llm_start("p", model="m", invocation_params={"tools": ["add"]})
        o.manager.on_llm_end(LLMResponse("x"), run_id=call)
        tool = o.manager.on_tool_start("add", {}, tool_description="Adds two numbers")
        o.manager.on_tool_end("add", "4", run_id=tool)
        assert _attrs(o.span("execute_tool add"))["gen_ai.tool.description"] == "Adds two numbers"
    assert "gen_ai.tool.definitions" not in _attrs(otel.span("text_completion m"))
    assert json.loads(_attrs(otel_all.span("text_completion m"))["gen_ai.tool.definitions"]) == [
        {"type": "function", "name": "add"}
    ]


def test_openai_attributes_from_the_request_and_the_end_keywords(otel: OTel) -> None:
    m = otel.manager
    call = m.on_llm_start(
        [], model="m", provider="openai", invocation_params={"service_tier": "auto"}
    )
    m.on_llm_end(LLMResponse("x"), run_id=call, system_fingerprint="fp_1", service_tier="default")
    a = _attrs(otel.span("chat m"))
    assert a["openai.api.type"] == "chat_completions"
    assert a["openai.request.service_tier"] == "auto"
    assert a["openai.response.service_tier"] == "default"
    assert a["openai.response.system_fingerprint"] == "fp_1"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "streamed"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_openai_clients_calls_carry_how_the_answer_was_served(
    otel: OTel, stream: bool, mode: str
) -> None:
    # OpenAIClient's own calls, through the openai SDK and the wire: the answer's
    # system_fingerprint and service_tier reach on_llm_end and the span.
    from hookwire.testing import RecordingCallback

    rec = RecordingCallback()
    with OpenAIServer() as server:
        server.script(Reply("Paris."))
        client = OpenAIClient(
            base_url=server.base_url, model="gpt-4o", callbacks=[otel.handler, rec]
        )
        if mode == "sync":
            response = client.generate("Capital?", stream=stream, service_tier="auto")
            client.close()
        else:

            async def call() -> LLMResponse:
                try:
                    return await client.agenerate("Capital?", stream=stream, service_tier="auto")
                finally:
                    await client.aclose()

            response = asyncio.run(call())
    served = {"system_fingerprint": "fp_hookwire_test", "service_tier": "default"}
    assert dict(response.response_metadata) == served
    (end,) = rec.of("llm_end")
    assert {k: end[k] for k in served} == served
    a = _attrs(otel.span("chat gpt-4o"))
    assert a["openai.request.service_tier"] == "auto"
    assert a["openai.response.service_tier"] == "default"
    assert a["openai.response.system_fingerprint"] == "fp_hookwire_test"
    assert ("gen_ai.request.stream" in a) is stream


def test_a_stream_the_caller_stops_keeps_how_it_was_served(otel: OTel) -> None:
    with OpenAIServer() as server:
        server.script(Reply("One two three four five six."))
        client = OpenAIClient(base_url=server.base_url, model="gpt-4o", callbacks=otel.manager)
        pieces = client.stream("Count.")
        next(pieces)
        pieces.close()  # type: ignore[attr-defined]
        client.close()
    a = _attrs(otel.span("chat gpt-4o"))
    assert a["openai.response.system_fingerprint"] == "fp_hookwire_test"
    assert a["openai.response.service_tier"] == "default"
    assert "gen_ai.response.finish_reasons" not in a
    assert not [k for k in a if k.startswith("gen_ai.usage.")]  # estimated: left out


def test_openai_api_type_only_for_openai_providers(otel: OTel) -> None:
    call = otel.manager.on_llm_start([], model="m", provider="anthropic")
    otel.manager.on_llm_end(LLMResponse("x"), run_id=call)
    assert "openai.api.type" not in _attrs(otel.span("chat m"))


class _SDKError(Exception):
    code = "rate_limit_exceeded"


def test_error_type_is_the_providers_code_or_the_exceptions_qualified_name() -> None:
    assert c.error_type(RateLimitError("slow down", status_code=429)) == "429"
    chained = LLMError("failed", status_code=429)
    chained.__cause__ = _SDKError()
    assert c.error_type(chained) == "rate_limit_exceeded"
    assert c.error_type(ValueError("x")) == "ValueError"
    assert c.error_type(LLMError("x")) == "hookwire.errors.LLMError"
    assert c.error_type("hookwire.abandoned") == "hookwire.abandoned"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("openai", "openai"),
        ("azure", "azure.ai.openai"),
        ("azure.ai.openai", "azure.ai.openai"),
        ("bedrock", "aws.bedrock"),
        ("vertexai", "gcp.vertex_ai"),
        ("google_genai", "gcp.gen_ai"),
        ("mistralai", "mistral_ai"),
        ("xai", "x_ai"),
        ("ollama", "ollama"),
        (None, "_OTHER"),
    ],
)
def test_provider_names_follow_the_conventions(given: str | None, expected: str) -> None:
    assert c.provider_name(given) == expected


def test_streaming_metrics_time_to_first_chunk_and_per_output_chunk(otel: OTel) -> None:
    m = otel.manager
    call = m.on_llm_start("p", model="m", stream=True)
    end = LLMResponse("x", usage=Usage(3, 11))
    m.on_llm_end(end, run_id=call, ttft_ms=200.0, latency_ms=1200.0)
    whole = m.on_llm_start("p", model="m")
    m.on_llm_end(LLMResponse("x", usage=Usage(3, 11)), run_id=whole, latency_ms=900.0)
    (first,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert (first.count, first.sum) == (1, pytest.approx(0.2))
    (per,) = otel.points("gen_ai.client.operation.time_per_output_chunk")
    assert (per.count, per.sum) == (1, pytest.approx(0.1))  # 1.0 s over the 10 chunks after


def test_content_event_carries_the_calls_content_and_request(otel: OTel) -> None:
    o = OTel(content_event=True)
    try:
        call = o.manager.on_llm_start(
            [{"role": "user", "content": "hi"}], model="m", provider="openai"
        )
        o.manager.on_llm_end(LLMResponse("hello", finish_reason="stop"), run_id=call)
        span = o.span("chat m")
        assert "gen_ai.input.messages" not in _attrs(span)  # not on the span without capture
        (event,) = [e for e in span.events if e.name == c.DETAILS_EVENT]
        a = dict(event.attributes or {})
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.request.model"] == "m"
        assert json.loads(a["gen_ai.input.messages"])[0]["parts"][0]["content"] == "hi"
        assert json.loads(a["gen_ai.output.messages"])[0]["finish_reason"] == "stop"
    finally:
        o.shutdown()


def test_user_and_session_ids_come_from_the_request_context(otel: OTel) -> None:
    with hookwire.trace("t", callbacks=otel.manager, user_id="u7", conversation_id="c7"):
        call = otel.manager.on_llm_start("p", model="m")
        otel.manager.on_llm_end(LLMResponse("x"), run_id=call)
    for span in otel.spans():
        a = _attrs(span)
        assert (a["user.id"], a["hookwire.user_id"], a["session.id"]) == ("u7", "u7", "c7")


def test_the_apps_spans_inside_a_run_and_a_tool_nest_under_hookwires(otel: OTel) -> None:
    tracer = otel.tracer_provider.get_tracer("app")
    m = otel.manager
    with hookwire.trace("t", callbacks=m):
        with tracer.start_as_current_span("app in run"):
            pass
        tool = m.on_tool_start("fetch", {})
        with tracer.start_as_current_span("app in tool"):
            pass
        m.on_tool_end("fetch", "ok", run_id=tool)
        with tracer.start_as_current_span("app after tool"):
            pass
    with tracer.start_as_current_span("app after run") as after:
        assert after.parent is None
    run, tool_span = otel.span("invoke_workflow t"), otel.span("execute_tool fetch")
    assert parent_id(otel.span("app in run")) == run.context.span_id
    assert parent_id(otel.span("app in tool")) == tool_span.context.span_id
    assert parent_id(otel.span("app after tool")) == run.context.span_id


def test_an_async_runs_span_is_current_inside_it(otel: OTel) -> None:
    tracer = otel.tracer_provider.get_tracer("app")

    async def main() -> None:
        async with hookwire.trace("t", callbacks=otel.manager):
            with tracer.start_as_current_span("app"):
                await asyncio.sleep(0)

    asyncio.run(main())
    assert parent_id(otel.span("app")) == otel.span("invoke_workflow t").context.span_id


def test_retrieval_documents_are_objects_with_id_and_score(otel: OTel, otel_all: OTel) -> None:
    results = [{"id": "d1", "score": 0.9, "content": "tea"}, "plain text"]
    for o in (otel, otel_all):
        with hookwire.trace("t", callbacks=o.manager):
            o.manager.on_memory_recall("tea?", results)
    recall = _attrs(otel.span("search_memory"))
    assert json.loads(str(recall["gen_ai.retrieval.documents"])) == [
        {"id": "d1", "score": 0.9},
        {"id": "1"},
    ]
    assert "gen_ai.memory.records" not in recall  # opt-in: it holds the content
    recall = _attrs(otel_all.span("search_memory"))
    documents = [
        {"id": "d1", "score": 0.9, "content": "tea"},
        {"id": "1", "content": "plain text"},
    ]
    assert json.loads(str(recall["gen_ai.retrieval.documents"])) == documents
    # the conventions' memory records: content required, id and score when known
    assert json.loads(str(recall["gen_ai.memory.records"])) == documents


def test_non_text_parts_are_uri_and_blob_parts() -> None:
    parts = c.message_parts(
        [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
        ]
    )
    assert parts == [
        {"type": "text", "content": "What is this?"},
        {"type": "uri", "modality": "image", "uri": "https://x.test/cat.png"},
        {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "AAAA"},
        {"type": "blob", "modality": "audio", "mime_type": "audio/wav", "content": "UklG"},
    ]


@given(st.lists(st.one_of(st.text(max_size=10), st.fixed_dictionaries({"id": st.text()}))))
def test_retrieval_documents_keep_one_document_per_result_with_an_id(results: list[Any]) -> None:
    docs = c.retrieval_documents(results)
    assert len(docs) == len(results)
    assert all(isinstance(d["id"], str) for d in docs)


def test_a_tool_run_by_hookwire_has_its_description(otel: OTel) -> None:
    from hookwire import ToolCall
    from hookwire.tools import run_tool, tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    out = run_tool({"add": add}, ToolCall("c1", "add", '{"a": 2, "b": 2}'), otel.manager)
    assert out == "4"
    a = _attrs(otel.span("execute_tool add"))
    assert a["gen_ai.tool.description"] == "Add two numbers."
    assert a["gen_ai.tool.call.id"] == "c1"


def test_current_spans_off_leaves_the_apps_context_alone() -> None:
    o = OTel(current_spans=False)
    try:
        tracer = o.tracer_provider.get_tracer("app")
        with hookwire.trace("t", callbacks=o.manager), tracer.start_as_current_span("app"):
            pass
        assert parent_id(o.span("app")) is None
    finally:
        o.shutdown()


# -- docs/ecosystem.md against the table ---------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "ecosystem.md"

#: Names the page gives that are no span attribute hookwire writes: metrics, the details event,
#: the metrics' token type, the memory span's type, and what the deliberate differences name
#: as not written.
NOT_ATTRIBUTES = {
    "gen_ai.client.token.usage", "gen_ai.client.operation.duration", c.TTFC_METRIC, c.TPOC_METRIC,
    c.DETAILS_EVENT, "gen_ai.token.type", "gen_ai.memory.client",
}  # fmt: skip
NOT_WRITTEN = {
    "gen_ai.agent.id", "gen_ai.agent.description", "gen_ai.agent.version",
    "gen_ai.system_instructions",
}  # fmt: skip
_NAMESPACES = ("gen_ai.", "openai.", "server.", "user.", "session.", "error.")


def _documented() -> set[str]:
    """The attribute names docs/ecosystem.md's OpenTelemetry section gives, its shorthand
    (`gen_ai.request.temperature` / `.max_tokens`) written out."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("### What you see") : text.index("### Options")]
    known = set(CONVENTIONS) | NOT_ATTRIBUTES | NOT_WRITTEN
    names: set[str] = set()
    last = ""
    for token in re.findall(r"`(\.?[a-z_]+(?:\.[a-z_0-9]+)*)`", section):
        if token.startswith("."):
            parts = last.split(".")
            candidates = [".".join(parts[:i]) + token for i in range(len(parts) - 1, 0, -1)]
            token = next((n for n in candidates if n in known), candidates[0])
        elif "." in token:
            last = token
        if token.startswith(_NAMESPACES):
            names.add(token)
    return names


def test_the_docs_list_every_attribute_of_the_table_and_name_what_is_not_written() -> None:
    documented = _documented()
    assert set(CONVENTIONS) - documented == set(), "written but not documented"
    extra = documented - set(CONVENTIONS) - NOT_ATTRIBUTES
    assert extra == NOT_WRITTEN, "documented but neither written nor named as not written"
    differences = DOC.read_text(encoding="utf-8").split("### Deliberate differences")[1]
    differences = differences.split("### Options")[0]
    for name in NOT_WRITTEN:
        short = name.rsplit(".", 1)[1]
        assert f"`{name}`" in differences or f"`.{short}`" in differences, name

"""OpenTelemetryCallback in real apps, as a backend reads the spans: a LangGraph ReAct turn
(langchain-openai's ``ChatOpenAI`` in LangGraph's prebuilt agent) and an LCEL chain, streamed
and not, against the local OpenAI-compatible server, exported over OTLP/HTTP to a receiver on
127.0.0.1 and read back; every attribute checked against the conventions table."""

from __future__ import annotations

import http.server
import json
from typing import Any

import pytest
from test_otel_conventions import CONVENTIONS

from hookwire.callbacks import OpenTelemetryCallback
from hookwire.testing import OpenAIServer
from hookwire.testing.openai_server import Reply, ToolCallReply

langchain_openai = pytest.importorskip("langchain_openai")
prebuilt = pytest.importorskip("langgraph.prebuilt")
otlp = pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")

from langchain_core.output_parsers import StrOutputParser  # noqa: E402  (after the skips)
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from opentelemetry import trace as otel_trace  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

from hookwire.integrations.langchain import HookwireCallbackHandler  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:create_react_agent has been moved")

#: The request context of the turn, as an app passes it in LangChain's metadata.
CONTEXT = {"user_id": "u1", "conversation_id": "c1"}


#: The OpenTelemetry span current inside each run of the ``weather`` tool: the app's own spans
#: there nest under it.
CURRENT: list[int] = []


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    CURRENT.append(otel_trace.get_current_span().get_span_context().span_id)
    return f"Sunny in {city}"


class Span:
    """One span as the receiver got it: name, kind, ids and attributes as Python values."""

    def __init__(self, raw: Any) -> None:
        self.name: str = raw.name
        self.kind: int = raw.kind
        self.span_id: bytes = raw.span_id
        self.parent: bytes = raw.parent_span_id
        self.trace_id: bytes = raw.trace_id
        self.attrs = {kv.key: _value(kv.value) for kv in raw.attributes}

    @property
    def operation(self) -> str:
        return str(self.attrs["gen_ai.operation.name"])


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which)


def _export(receiver: http.server.ThreadingHTTPServer, run: Any) -> list[Span]:
    """Runs ``run(handler)`` with an ``OpenTelemetryCallback`` exporting over OTLP/HTTP to
    ``receiver``; the spans the receiver got."""
    port = receiver.server_address[1]
    provider = TracerProvider()
    exporter = otlp.OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    otel = OpenTelemetryCallback(tracer_provider=provider, metrics=False)
    try:
        run(HookwireCallbackHandler([otel]))
    finally:
        otel.close()
        provider.shutdown()
    spans = []
    for _, body in receiver.bodies:  # type: ignore[attr-defined]
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                spans.extend(Span(s) for s in ss.spans)
    assert spans, "the receiver got nothing"
    return spans


def _check_conventions(spans: list[Span]) -> None:
    for s in spans:
        theirs = {k for k in s.attrs if not k.startswith("hookwire.")}
        assert theirs <= set(CONVENTIONS), (s.name, sorted(theirs - set(CONVENTIONS)))
        assert s.attrs["user.id"] == "u1" and s.attrs["session.id"] == "c1"
    (root,) = [s for s in spans if not s.parent]
    assert {s.trace_id for s in spans} == {root.trace_id}
    ids = {s.span_id for s in spans}
    assert all(s.parent in ids for s in spans if s is not root)


def _chat(base_url: str) -> Any:
    return langchain_openai.ChatOpenAI(
        model="gpt-4o", base_url=base_url, api_key="test", max_retries=0
    )


@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
def test_a_react_turn_reads_as_one_agent_with_usage_only_on_its_calls(
    receiver: http.server.ThreadingHTTPServer, streamed: bool
) -> None:
    with OpenAIServer() as server:
        server.script(ToolCallReply("weather", {"city": "Paris"}), Reply("It is sunny in Paris."))
        agent = prebuilt.create_react_agent(_chat(server.base_url), [weather])

        def run(handler: Any) -> None:
            config: Any = {"callbacks": [handler], "metadata": CONTEXT}
            question = {"messages": [("user", "Weather in Paris?")]}
            if streamed:
                for _ in agent.stream(question, config=config, stream_mode="messages"):
                    pass
            else:
                agent.invoke(question, config=config)

        spans = _export(receiver, run)
    _check_conventions(spans)
    agents = [s for s in spans if s.operation == "invoke_agent"]
    assert [s.name for s in agents] == ["invoke_agent LangGraph"]
    (agent_span,) = agents
    assert not agent_span.parent
    assert agent_span.attrs["gen_ai.agent.name"] == "LangGraph"
    assert agent_span.attrs["gen_ai.provider.name"] == "openai"
    workflows = [s for s in spans if s.operation == "invoke_workflow"]
    assert workflows and all(s.attrs["gen_ai.workflow.name"] for s in workflows)
    assert all(s.name == f"invoke_workflow {s.attrs['gen_ai.workflow.name']}" for s in workflows)
    calls = [s for s in spans if s.operation == "chat"]
    assert [s.name for s in calls] == ["chat gpt-4o"] * 2
    for s in calls:
        assert s.kind == 3  # SPAN_KIND_CLIENT
        assert s.attrs["gen_ai.provider.name"] == "openai"
        assert s.attrs["openai.response.system_fingerprint"] == "fp_hookwire_test"
        assert s.attrs["openai.response.service_tier"] == "default"
        assert ("gen_ai.request.stream" in s.attrs) is streamed
        assert ("gen_ai.response.time_to_first_chunk" in s.attrs) is streamed
        usage = [k for k in s.attrs if k.startswith("gen_ai.usage.")]
        # Streamed, langchain-openai asks a custom base URL for no usage: none is written.
        assert bool(usage) is not streamed
    finishes = sorted(s.attrs["gen_ai.response.finish_reasons"][0] for s in calls)
    assert finishes == ["stop", "tool_calls"]
    # Usage only where the calls were made: a backend summing the trace counts each once.
    for s in spans:
        if s.operation != "chat":
            assert not [k for k in s.attrs if k.startswith("gen_ai.usage.")], s.name
    if not streamed:
        total_in = sum(s.attrs["gen_ai.usage.input_tokens"] for s in calls)
        assert agent_span.attrs["hookwire.usage.input_tokens"] == total_in
    (tool_span,) = [s for s in spans if s.operation == "execute_tool"]
    assert tool_span.name == "execute_tool weather"
    assert tool_span.attrs["gen_ai.tool.description"] == "The weather in a city."
    assert tool_span.attrs["gen_ai.tool.call.id"]
    # hookwire's tool span is the current span while the tool runs (in LangGraph's threads too)
    assert CURRENT[-1] == int.from_bytes(tool_span.span_id, "big")


@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
def test_an_lcel_chain_reads_as_a_workflow_around_its_call(
    receiver: http.server.ThreadingHTTPServer, streamed: bool
) -> None:
    with OpenAIServer() as server:
        chain = (
            ChatPromptTemplate.from_messages([("human", "{q}")])
            | _chat(server.base_url)
            | StrOutputParser()
        )

        def run(handler: Any) -> None:
            config: Any = {"callbacks": [handler], "metadata": CONTEXT}
            if streamed:
                assert "".join(chain.stream({"q": "Capital?"}, config=config))
            else:
                assert chain.invoke({"q": "Capital?"}, config=config)

        spans = _export(receiver, run)
    _check_conventions(spans)
    assert sorted(s.name for s in spans) == ["chat gpt-4o", "invoke_workflow RunnableSequence"]
    seq = next(s for s in spans if s.operation == "invoke_workflow")
    call = next(s for s in spans if s.operation == "chat")
    assert call.parent == seq.span_id
    assert ("gen_ai.request.stream" in call.attrs) is streamed
    assert not [k for k in seq.attrs if k.startswith("gen_ai.usage.")]
    assert bool([k for k in call.attrs if k.startswith("gen_ai.usage.")]) is not streamed
    assert call.attrs["gen_ai.response.finish_reasons"] == ["stop"]


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_an_anthropic_call_writes_its_cache_reads_and_writes(streamed: bool) -> None:
    anthropic = pytest.importorskip("anthropic")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hookwire.integrations.anthropic import instrument

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel = OpenTelemetryCallback(tracer_provider=provider, metrics=False)
    usage = {"prompt_tokens": 1000, "cached_tokens": 600, "cache_creation_tokens": 300}
    with OpenAIServer() as server:
        server.script(Reply("Paris.", usage=usage))
        client = anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0)
        instrument(client, callbacks=[otel])
        try:
            kw: Any = {"model": "claude-haiku-4-5", "max_tokens": 50}
            question = [{"role": "user", "content": "Capital of France?"}]
            if streamed:
                with client.messages.stream(messages=question, **kw) as stream:
                    "".join(stream.text_stream)
            else:
                client.messages.create(messages=question, **kw)
        finally:
            client.close()
            otel.close()
    (span,) = exporter.get_finished_spans()
    a = dict(span.attributes or {})
    provider.shutdown()
    assert set(a) - {k for k in a if k.startswith("hookwire.")} <= set(CONVENTIONS)
    assert a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.usage.input_tokens"] == 1000
    assert a["gen_ai.usage.cache_read.input_tokens"] == 600
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 300
    assert "openai.api.type" not in a


def test_an_openai_client_stream_with_an_image_gives_parts_details_and_chunk_metrics() -> None:
    # Through the real openai SDK: non-text parts as uri / blob parts, the opt-in details
    # event, and the streaming metrics.
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hookwire.callbacks import otel_conventions as c
    from hookwire.llms import OpenAIClient

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    otel = OpenTelemetryCallback(
        tracer_provider=provider, meter_provider=meters, capture_content=True, content_event=True
    )
    question = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    with OpenAIServer() as server:
        server.script(Reply("A cat on a mat, sleeping."))
        client = OpenAIClient(base_url=server.base_url, model="gpt-4o", callbacks=[otel])
        try:
            assert [p for p in client.stream(question) if isinstance(p, str)]
        finally:
            client.close()
            otel.close()
    (span,) = exporter.get_finished_spans()
    a = dict(span.attributes or {})
    parts = json.loads(str(a["gen_ai.input.messages"]))[0]["parts"]
    assert [p["type"] for p in parts] == ["text", "uri", "blob"]
    assert parts[1]["uri"] == "https://x.test/cat.png" and parts[2]["mime_type"] == "image/png"
    (details,) = [e for e in span.events if e.name == c.DETAILS_EVENT]
    assert json.loads(str((details.attributes or {})["gen_ai.input.messages"]))[0]["parts"] == (
        parts
    )
    names = {
        m.name: m
        for rm in reader.get_metrics_data().resource_metrics  # type: ignore[union-attr]
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    for name in (c.TTFC_METRIC, c.TPOC_METRIC, "gen_ai.client.operation.duration"):
        (point,) = names[name].data.data_points  # type: ignore[attr-defined]
        assert point.count == 1
    provider.shutdown()
    meters.shutdown()

"""OpenTelemetryCallback: spans and metrics checked attribute by attribute, and over OTLP/HTTP."""

from __future__ import annotations

import http.server
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import hookwire
from hookwire import CallbackManager, LLMResponse, ToolCall, Usage
from hookwire.callbacks import OpenTelemetryCallback
from hookwire.callbacks.otel import DURATION_BUCKETS, TOKEN_BUCKETS, input_messages
from hookwire.errors import BudgetExceeded, ConfigurationError, RateLimitError


class OTel:
    """A tracer and meter provider that keep what they get, and a manager with the handler."""

    def __init__(self, **kw: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.handler = OpenTelemetryCallback(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kw
        )
        self.manager = CallbackManager([self.handler])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    def points(self, metric: str) -> list[HistogramDataPoint]:
        data = self.reader.get_metrics_data()
        out: list[HistogramDataPoint] = []
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        out.extend(m.data.data_points)  # type: ignore[arg-type]
        return out

    def shutdown(self) -> None:
        self.manager.close()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def otel() -> Iterator[OTel]:
    o = OTel()
    yield o
    o.shutdown()


@pytest.fixture
def otel_content() -> Iterator[OTel]:
    o = OTel(capture_content=True)
    yield o
    o.shutdown()


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2+2?"},
]
PARAMS = {"model": "gpt-4o", "temperature": 0.2, "max_tokens": 64, "top_p": 0.9, "stop": "END"}


def _call(manager: CallbackManager, response: LLMResponse | None = None, **kw: Any) -> str:
    run_id = manager.on_llm_start(
        MESSAGES, model="gpt-4o", provider="openai", invocation_params=PARAMS, stream=False, **kw
    )
    response = response or LLMResponse(
        content="4",
        usage=Usage(prompt_tokens=12, completion_tokens=3, cached_tokens=2),
        model="gpt-4o-2024-08-06",
        finish_reason="stop",
        id="chatcmpl-1",
        provider="openai",
        cost=Decimal("0.000123"),
    )
    manager.on_llm_end(
        response, run_id=run_id, model="gpt-4o", provider="openai", latency_ms=250.0, ttft_ms=40.0
    )
    return run_id


def test_llm_call_span_attributes(otel: OTel) -> None:
    _call(otel.manager)
    span = otel.span("chat gpt-4o")
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    a = dict(span.attributes or {})
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert a["gen_ai.response.id"] == "chatcmpl-1"
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.request.max_tokens"] == 64
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.stop_sequences"] == ("END",)
    assert "gen_ai.request.stream" not in a  # only when streaming
    assert a["gen_ai.usage.input_tokens"] == 12
    assert a["gen_ai.usage.output_tokens"] == 3
    assert a["gen_ai.usage.cache_read.input_tokens"] == 2
    assert a["gen_ai.response.time_to_first_chunk"] == pytest.approx(0.04)
    assert a["hookwire.cost"] == pytest.approx(0.000123)
    assert a["hookwire.cost.currency"] == "USD"
    # content is off by default
    assert "gen_ai.input.messages" not in a
    assert "gen_ai.output.messages" not in a
    assert otel.handler.open_spans == 0


def test_parameters_not_set_are_not_recorded(otel: OTel) -> None:
    run_id = otel.manager.on_llm_start("hello", invocation_params={"model": "m1"}, provider="local")
    otel.manager.on_llm_end(LLMResponse(content="hi"), run_id=run_id)
    span = otel.span("text_completion m1")
    a = dict(span.attributes or {})
    assert a["gen_ai.operation.name"] == "text_completion"
    assert a["gen_ai.provider.name"] == "local"
    assert not [k for k in a if k.startswith("gen_ai.request.") and k != "gen_ai.request.model"]
    assert "gen_ai.response.finish_reasons" not in a
    assert "hookwire.cost" not in a


def test_span_without_model_is_named_by_operation(otel: OTel) -> None:
    run_id = otel.manager.on_llm_start([{"role": "user", "content": "x"}])
    otel.manager.on_llm_end(LLMResponse(content="y"), run_id=run_id)
    span = otel.span("chat")
    assert dict(span.attributes or {})["gen_ai.provider.name"] == "_OTHER"


def test_content_captured_only_when_asked(otel_content: OTel) -> None:
    response = LLMResponse(
        content="",
        tool_calls=(ToolCall(id="call_1", name="add", arguments='{"a": 2, "b": 2}'),),
        finish_reason="tool_calls",
    )
    _call(otel_content.manager, response)
    a = dict(otel_content.span("chat gpt-4o").attributes or {})
    inputs = json.loads(str(a["gen_ai.input.messages"]))
    assert inputs == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "What is 2+2?"}]},
    ]
    outputs = json.loads(str(a["gen_ai.output.messages"]))
    assert outputs == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "call_1",
                    "name": "add",
                    "arguments": '{"a": 2, "b": 2}',
                }
            ],
            "finish_reason": "tool_calls",
        }
    ]


def test_input_messages_with_tool_calls_and_results() -> None:
    msgs = [
        {"role": "user", "content": "add"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "4"},
    ]
    out = json.loads(input_messages(msgs))
    assert out[1] == {
        "role": "assistant",
        "parts": [{"type": "tool_call", "id": "c1", "name": "add", "arguments": "{}"}],
    }
    assert out[2] == {
        "role": "tool",
        "parts": [{"type": "tool_call_response", "id": "c1", "response": "4"}],
    }


def test_metrics_token_usage_and_duration(otel: OTel) -> None:
    _call(otel.manager)
    tokens = otel.points("gen_ai.client.token.usage")
    by_type = {p.attributes["gen_ai.token.type"]: p for p in tokens}  # type: ignore[index]
    assert set(by_type) == {"input", "output"}
    assert by_type["input"].sum == 12
    assert by_type["output"].sum == 3
    for p in tokens:
        attrs = dict(p.attributes or {})
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == "openai"
        assert attrs["gen_ai.request.model"] == "gpt-4o"
        assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
        assert tuple(p.explicit_bounds) == TOKEN_BUCKETS
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.sum == pytest.approx(0.25)
    assert duration.count == 1
    assert tuple(duration.explicit_bounds) == DURATION_BUCKETS
    assert "error.type" not in dict(duration.attributes or {})


def test_metrics_off(otel: OTel) -> None:
    o = OTel(metrics=False)
    try:
        _call(o.manager)
        assert o.points("gen_ai.client.token.usage") == []
        assert o.points("gen_ai.client.operation.duration") == []
        assert len(o.spans()) == 1
    finally:
        o.shutdown()


def test_llm_error_sets_status_error_type_and_duration(otel: OTel) -> None:
    run_id = otel.manager.on_llm_start(MESSAGES, model="gpt-4o", provider="openai")
    otel.manager.on_retry(1, 3, RateLimitError("slow down"), run_id=run_id, delay=0.5)
    err = RateLimitError("still slow")
    otel.manager.on_llm_error(err, run_id=run_id, latency_ms=900.0, attempts=3)
    span = otel.span("chat gpt-4o")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "still slow"
    a = dict(span.attributes or {})
    assert a["error.type"] == "hookwire.errors.RateLimitError"
    assert a["hookwire.attempts"] == 3
    names = [e.name for e in span.events]
    assert names == ["hookwire.retry", "exception"]
    retry = dict(span.events[0].attributes or {})
    assert retry == {
        "hookwire.attempt": 1,
        "hookwire.max_attempts": 3,
        "error.type": "hookwire.errors.RateLimitError",
        "hookwire.retry.delay": 0.5,
    }
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert dict(duration.attributes or {})["error.type"] == "hookwire.errors.RateLimitError"
    assert duration.sum == pytest.approx(0.9)
    assert otel.points("gen_ai.client.token.usage") == []


_KEY = "sk-proj-abcdefghijklmnop1234567890"
_ECHO = f"Incorrect API key provided:\n{_KEY}. Authorization: Bearer QZtok123456"


def _fail_everywhere(manager: CallbackManager, error: BaseException) -> None:
    call = manager.on_llm_start(MESSAGES, model="gpt-4o", provider="openai")
    manager.on_llm_error(error, run_id=call)
    tool = manager.on_tool_start("fetch", {"url": "x"})
    manager.on_tool_error("fetch", error, run_id=tool)
    run = manager.on_run_start("go", name="agent")
    manager.on_error(error, stage="tool", parent_run_id=run)
    manager.on_run_end(None, run_id=run, name="agent", error=error)


def _raised(message: str) -> BaseException:
    try:
        raise hookwire.errors.AuthenticationError(message)
    except hookwire.errors.AuthenticationError as exc:
        return exc


def test_otel_keeps_no_api_key_from_an_error_message_with_content_capture_off(otel: OTel) -> None:
    _fail_everywhere(otel.manager, _raised(_ECHO))
    spans = otel.spans()
    assert {s.name for s in spans} == {"chat gpt-4o", "execute_tool fetch", "invoke_workflow agent"}
    for span in spans:
        assert span.status.status_code is StatusCode.ERROR
        assert _KEY not in str(span.status.description)
        assert "QZtok123456" not in str(span.status.description)
        assert "[REDACTED]" in str(span.status.description)
        exceptions = [dict(e.attributes or {}) for e in span.events if e.name == "exception"]
        assert exceptions, span.name
        for attrs in exceptions:
            # the type and the redacted message only: the traceback needs capture_content
            assert set(attrs) == {"exception.type", "exception.message"}
            assert attrs["exception.type"] == "AuthenticationError"
            assert _KEY not in str(attrs["exception.message"])
            assert "Incorrect API key provided" in str(attrs["exception.message"])
        for event in span.events:
            assert _KEY not in str(dict(event.attributes or {}))


def test_otel_adds_a_redacted_stacktrace_only_with_content_capture(otel_content: OTel) -> None:
    _fail_everywhere(otel_content.manager, _raised(_ECHO))
    for span in otel_content.spans():
        for event in span.events:
            attrs = dict(event.attributes or {})
            assert _KEY not in str(attrs)
            assert "QZtok123456" not in str(attrs)
            if event.name == "exception":
                assert "Traceback" in str(attrs["exception.stacktrace"])
                assert "AuthenticationError" in str(attrs["exception.stacktrace"])


def test_otel_masks_error_messages_statuses_and_stacktraces_alike() -> None:
    o = OTel(capture_content=True, mask=True)
    try:
        _fail_everywhere(o.manager, _raised(f"jane@example.com, +1 415-555-0100:\n{_ECHO}"))
        for span in o.spans():
            texts = [str(span.status.description)]
            texts += [str(dict(e.attributes or {})) for e in span.events]
            for text in texts:
                assert "jane@example.com" not in text and "415-555-0100" not in text
                assert _KEY not in text and "QZtok123456" not in text
            assert "[EMAIL]" in str(span.status.description)
            assert "[PHONE]" in texts[1]
    finally:
        o.shutdown()


def test_held_spans_keep_the_times_of_their_events() -> None:
    import time

    o = OTel(sample_rate=0.0)
    try:
        m = o.manager
        run = m.on_run_start("go", name="agent", timestamp=time.time() - 5.0)
        call = m.on_llm_start(MESSAGES, model="gpt-4o", parent_run_id=run, trace_id=run)
        m.on_llm_end(LLMResponse("4", Usage(1, 1)), run_id=call, trace_id=run)
        assert o.spans() == []  # held: the trace is not in the sample (yet)
        m.on_retry(1, 2, RuntimeError("again"), run_id=call, trace_id=run)
        m.on_run_end(None, run_id=run, name="agent", trace_id=run)
        agent, chat = o.span("invoke_workflow agent"), o.span("chat gpt-4o")
        assert parent_id(chat) == agent.context.span_id
        assert agent.start_time is not None and chat.start_time is not None
        assert chat.end_time is not None and agent.end_time is not None
        # The run's span starts when its event said (5 s ago), not when it was handed over.
        assert time.time_ns() - agent.start_time > 4_000_000_000
        assert agent.start_time < chat.start_time <= chat.end_time <= agent.end_time
        # Not sampled and without an error: nothing at all.
        run = m.on_run_start("quiet", name="quiet")
        m.on_run_end(None, run_id=run, name="quiet")
        assert {s.name for s in o.spans()} == {"invoke_workflow agent", "chat gpt-4o"}
        assert o.handler.sampler is not None and o.handler.sampler.held == 0
    finally:
        o.shutdown()


def test_otel_captured_content_keeps_no_key(otel_content: OTel) -> None:
    m = otel_content.manager
    secret = f"use\t{_KEY} or Bearer QZtok123456"
    _call(m, LLMResponse(secret, Usage(1, 1)))
    call = m.on_llm_start([{"role": "user", "content": secret}], model="gpt-4o")
    m.on_llm_end(LLMResponse("ok"), run_id=call)
    tool = m.on_tool_start("fetch", {"headers": {"Authorization": "QZtok123456"}})
    m.on_tool_end("fetch", secret, run_id=tool)
    tool = m.on_tool_start("fetch", secret)
    m.on_tool_end("fetch", {"echo": secret}, run_id=tool)
    with hookwire.trace("agent", callbacks=m, input=secret) as run:
        m.on_memory_store(secret)
        m.on_memory_recall(secret, [secret])
        run.output = secret
    for span in otel_content.spans():
        seen = str(dict(span.attributes or {})) + str(
            [dict(e.attributes or {}) for e in span.events]
        )
        assert _KEY not in seen, span.name
        assert "QZtok123456" not in seen, span.name
    tools = [
        dict(s.attributes or {}) for s in otel_content.spans() if s.name == "execute_tool fetch"
    ]
    assert all("[REDACTED]" in str(a) for a in tools)


def test_runs_tools_and_llm_calls_nest(otel: OTel) -> None:
    with hookwire.trace(
        "support-agent",
        callbacks=otel.manager,
        user_id="u1",
        conversation_id="c9",
        agent="support-agent",
    ):
        llm = _call(otel.manager)
        tool = otel.manager.on_tool_start("add", {"a": 2, "b": 2}, tool_call_id="call_1")
        otel.manager.on_tool_end("add", "4", run_id=tool, tool_call_id="call_1")
        with hookwire.trace("sub", callbacks=otel.manager):
            _call(otel.manager)
    assert llm
    run = otel.span("invoke_agent support-agent")
    sub = otel.span("invoke_workflow sub")
    tool_span = otel.span("execute_tool add")
    llms = [s for s in otel.spans() if s.name == "chat gpt-4o"]
    assert len(llms) == 2
    assert run.parent is None
    assert run.kind is SpanKind.INTERNAL
    ra = dict(run.attributes or {})
    assert ra["gen_ai.operation.name"] == "invoke_agent"
    assert ra["gen_ai.agent.name"] == "support-agent"
    assert ra["gen_ai.provider.name"] == "openai"  # from the call made under it
    assert ra["gen_ai.conversation.id"] == "c9"
    assert ra["hookwire.user_id"] == "u1"
    trace_id = run.context.trace_id
    assert all(s.context.trace_id == trace_id for s in otel.spans())
    assert parent_id(llms[0]) == run.context.span_id
    assert parent_id(tool_span) == run.context.span_id
    assert parent_id(sub) == run.context.span_id
    assert parent_id(llms[1]) == sub.context.span_id
    ta = dict(tool_span.attributes or {})
    assert ta == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "add",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": "call_1",
        "hookwire.user_id": "u1",
        "user.id": "u1",
        "session.id": "c9",
    }
    assert otel.handler.open_spans == 0


def test_nested_in_the_apps_own_span(otel: OTel) -> None:
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("http request") as app_span:
        with hookwire.trace("agent", callbacks=otel.manager):
            _call(otel.manager)
        # a call outside any hookwire run nests under the app's span too
        _call(otel.manager)
    app_ctx = app_span.get_span_context()
    run = otel.span("invoke_workflow agent")
    assert parent_id(run) == app_ctx.span_id
    llms = [s for s in otel.spans() if s.name == "chat gpt-4o"]
    assert parent_id(llms[0]) == run.context.span_id
    assert parent_id(llms[1]) == app_ctx.span_id
    assert {s.context.trace_id for s in otel.spans()} == {app_ctx.trace_id}


async def test_async_dispatch_nests_the_same(otel: OTel) -> None:
    async with hookwire.trace("agent", callbacks=otel.manager, request_id="r1"):
        run_id = await otel.manager.aon_llm_start(MESSAGES, model="gpt-4o", provider="openai")
        await otel.manager.aon_llm_end(LLMResponse(content="4"), run_id=run_id)
    run = otel.span("invoke_workflow agent")
    llm = otel.span("chat gpt-4o")
    assert parent_id(llm) == run.context.span_id
    assert dict(llm.attributes or {})["hookwire.request_id"] == "r1"


def test_tool_error_and_content(otel_content: OTel) -> None:
    m = otel_content.manager
    tool = m.on_tool_start("divide", {"a": 1, "b": 0}, tool_call_id="c2")
    m.on_tool_error("divide", ZeroDivisionError("division by zero"), run_id=tool)
    span = otel_content.span("execute_tool divide")
    assert span.status.status_code is StatusCode.ERROR
    a = dict(span.attributes or {})
    assert a["error.type"] == "ZeroDivisionError"
    assert json.loads(str(a["gen_ai.tool.call.arguments"])) == {"a": 1, "b": 0}
    tool = m.on_tool_start("echo", "raw text")
    m.on_tool_end("echo", "raw text", run_id=tool)
    ea = dict(otel_content.span("execute_tool echo").attributes or {})
    assert ea["gen_ai.tool.call.arguments"] == "raw text"
    assert ea["gen_ai.tool.call.result"] == "raw text"


def test_memory_operations_are_memory_spans_under_the_enclosing_span(otel: OTel) -> None:
    with hookwire.trace("rlm", callbacks=otel.manager):
        otel.manager.on_memory_store("the user likes tea", memory="BufferMemory")
        otel.manager.on_memory_recall("tea?", ["likes tea", "no sugar"], memory="BufferMemory")
    run = otel.span("invoke_workflow rlm")
    store, recall = otel.span("create_memory"), otel.span("search_memory")
    for span in (store, recall):
        assert span.parent is not None and span.parent.span_id == run.context.span_id
        assert span.kind is SpanKind.INTERNAL
    assert dict(store.attributes or {}) == {
        "gen_ai.operation.name": "create_memory",
        "gen_ai.memory.store.id": "BufferMemory",
        "hookwire.memory": "BufferMemory",
        "gen_ai.memory.record.count": 1,
    }
    assert dict(recall.attributes or {}) == {
        "gen_ai.operation.name": "search_memory",
        "gen_ai.memory.store.id": "BufferMemory",
        "hookwire.memory": "BufferMemory",
        "gen_ai.memory.record.count": 2,
        "gen_ai.retrieval.documents": '[{"id":"0"},{"id":"1"}]',
    }


def test_memory_content_when_captured(otel_content: OTel) -> None:
    with hookwire.trace("rlm", callbacks=otel_content.manager):
        otel_content.manager.on_memory_store("likes tea")
        otel_content.manager.on_memory_recall("tea?", ["likes tea"])
    store = dict(otel_content.span("create_memory").attributes or {})
    assert json.loads(str(store["gen_ai.memory.records"])) == [{"content": "likes tea"}]
    recall = dict(otel_content.span("search_memory").attributes or {})
    assert recall["gen_ai.memory.query.text"] == "tea?"
    records = json.loads(str(recall["gen_ai.memory.records"]))
    assert records == [{"id": "0", "content": "likes tea"}]
    assert json.loads(str(recall["gen_ai.retrieval.documents"])) == records


def test_memory_outside_a_run_goes_under_the_apps_span(otel: OTel) -> None:
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("job"):
        otel.manager.on_memory_store("x")
    store = otel.span("create_memory")
    assert store.parent is not None and store.parent.span_id == otel.span("job").context.span_id
    otel.manager.on_memory_store("no span at all")  # no current span: a root span, no error


def test_run_end_with_usage_cost_and_error(otel: OTel) -> None:
    m = otel.manager
    run_id = m.on_run_start("q", name="rlm")
    m.on_run_end(None, run_id=run_id, name="rlm", error=ValueError("bad"), usage=Usage(5, 7))
    span = otel.span("invoke_workflow rlm")
    assert span.status.status_code is StatusCode.ERROR
    a = dict(span.attributes or {})
    assert a["error.type"] == "ValueError"
    assert a["hookwire.usage.input_tokens"] == 5
    assert a["hookwire.usage.output_tokens"] == 7
    run_id = m.on_run_start("q", name="ok")
    m.on_run_end("a", run_id=run_id, name="ok", cost=Decimal("0.5"))
    assert dict(otel.span("invoke_workflow ok").attributes or {})["hookwire.cost"] == 0.5


def test_budget_refusal_ends_the_call_span(otel: OTel) -> None:
    m = otel.manager
    with hookwire.trace("agent", callbacks=m):
        run_id = m.on_llm_start(MESSAGES, model="gpt-4o")
        err = BudgetExceeded("user u1 spent 10 of 10 USD", scope="user", key="u1")
        m.on_budget_exceeded(err, run_id=run_id)
        m.on_error(err, run_id=run_id, stage="budget")
    span = otel.span("chat gpt-4o")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "hookwire.errors.BudgetExceeded"
    assert otel.handler.open_spans == 0


def test_on_error_does_not_end_a_run_span(otel: OTel) -> None:
    m = otel.manager
    run_id = m.on_run_start("q", name="agent")
    m.on_error(ValueError("x"), run_id=run_id, stage="run")
    assert otel.spans() == []
    m.on_run_end(None, run_id=run_id, name="agent", error=ValueError("x"))
    assert otel.span("invoke_workflow agent").status.status_code is StatusCode.ERROR


def test_unended_children_are_closed_with_their_run(otel: OTel) -> None:
    with hookwire.trace("agent", callbacks=otel.manager):
        otel.manager.on_llm_start(MESSAGES, model="gpt-4o")  # its end never comes
    llm = otel.span("chat gpt-4o")
    assert dict(llm.attributes or {})["error.type"] == "hookwire.abandoned"
    assert otel.handler.open_spans == 0


def test_open_spans_are_bounded(otel: OTel) -> None:
    o = OTel(max_open_spans=3)
    try:
        ids = [o.manager.on_llm_start("p", model=f"m{i}") for i in range(5)]
        assert o.handler.open_spans == 3
        abandoned = [s.name for s in o.spans()]
        assert abandoned == ["text_completion m0", "text_completion m1"]
        for run_id in ids:
            o.manager.on_llm_end(LLMResponse(content="x"), run_id=run_id)
        assert o.handler.open_spans == 0
        assert len(o.spans()) == 5
    finally:
        o.shutdown()


def test_close_ends_open_spans(otel: OTel) -> None:
    otel.manager.on_run_start("q", name="agent")
    assert otel.handler.open_spans == 1
    otel.manager.close()
    assert otel.handler.open_spans == 0
    assert dict(otel.span("invoke_workflow agent").attributes or {})["error.type"] == (
        "hookwire.abandoned"
    )


def test_end_events_without_a_start_are_ignored(otel: OTel) -> None:
    otel.manager.on_llm_end(LLMResponse(content="x"), run_id="nope")
    otel.manager.on_llm_error(ValueError("x"), run_id="nope")
    otel.manager.on_tool_end("t", "x", run_id="nope")
    otel.manager.on_tool_error("t", ValueError("x"), run_id="nope")
    otel.manager.on_run_end(None, run_id="nope")
    otel.manager.on_error(ValueError("x"), run_id="nope")
    assert otel.spans() == []
    assert otel.manager.stats()["errors_total"] == 0


def test_bad_configuration() -> None:
    with pytest.raises(ConfigurationError, match="max_open_spans"):
        OpenTelemetryCallback(max_open_spans=0)


def test_global_providers_by_default() -> None:
    # Without providers the handler uses the global API: with none set, a no-op tracer, and
    # the app keeps working.
    handler = OpenTelemetryCallback()
    m = CallbackManager([handler])
    run_id = m.on_llm_start("p", model="m")
    m.on_llm_end(LLMResponse(content="x"), run_id=run_id)
    assert handler.open_spans == 0
    assert m.stats()["errors_total"] == 0
    assert isinstance(otel_trace.get_tracer_provider(), otel_trace.TracerProvider)


# -- OTLP/HTTP to a receiver on 127.0.0.1 -----------------------------------------------------


def test_traces_arrive_nested_in_an_otlp_receiver(
    receiver: http.server.ThreadingHTTPServer,
) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    port = receiver.server_address[1]
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    handler = OpenTelemetryCallback(tracer_provider=provider, metrics=False)
    m = CallbackManager([handler])
    with hookwire.trace("agent", callbacks=m, agent="agent", user_id="u1"):
        _call(m)
        with hookwire.trace("lookup", callbacks=m):
            tool = m.on_tool_start("search", {"q": "x"})
            m.on_tool_end("search", "found", run_id=tool)
    m.flush()
    provider.shutdown()

    assert receiver.bodies, "the receiver got nothing"  # type: ignore[attr-defined]
    spans = {}
    for path, body in receiver.bodies:  # type: ignore[attr-defined]
        assert path == "/v1/traces"
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            res = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
            assert res["service.name"] == "support-bot"
            for ss in rs.scope_spans:
                assert ss.scope.name == "hookwire"
                for s in ss.spans:
                    spans[s.name] = s
    assert set(spans) == {
        "invoke_agent agent",
        "chat gpt-4o",
        "invoke_workflow lookup",
        "execute_tool search",
    }
    root = spans["invoke_agent agent"]
    assert root.parent_span_id == b""
    for name in ("chat gpt-4o", "invoke_workflow lookup"):
        assert spans[name].parent_span_id == root.span_id
        assert spans[name].trace_id == root.trace_id
    assert spans["execute_tool search"].parent_span_id == spans["invoke_workflow lookup"].span_id
    root_attrs = {kv.key: kv.value for kv in root.attributes}
    assert root_attrs["gen_ai.operation.name"].string_value == "invoke_agent"
    assert root_attrs["gen_ai.provider.name"].string_value == "openai"
    assert root_attrs["user.id"].string_value == "u1"
    assert not [k for k in root_attrs if k.startswith("gen_ai.usage.")]
    lookup = {kv.key: kv.value for kv in spans["invoke_workflow lookup"].attributes}
    assert lookup["gen_ai.workflow.name"].string_value == "lookup"
    chat = spans["chat gpt-4o"]
    attrs = {kv.key: kv.value for kv in chat.attributes}
    assert "gen_ai.request.stream" not in attrs
    assert attrs["gen_ai.request.model"].string_value == "gpt-4o"
    assert attrs["gen_ai.usage.input_tokens"].int_value == 12
    assert attrs["gen_ai.usage.output_tokens"].int_value == 3
    assert attrs["gen_ai.request.temperature"].double_value == 0.2
    assert [v.string_value for v in attrs["gen_ai.response.finish_reasons"].array_value.values] == [
        "stop"
    ]
    assert chat.kind == chat.SPAN_KIND_CLIENT


# -- invariants --------------------------------------------------------------------------------

_content = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), _content), max_size=6))
def test_input_messages_keep_roles_and_text(msgs: list[tuple[str, str]]) -> None:
    out = json.loads(input_messages([{"role": r, "content": c} for r, c in msgs]))
    assert [m["role"] for m in out] == [r for r, _ in msgs]
    assert [m["parts"][0]["content"] if m["parts"] else "" for m in out] == [c for _, c in msgs]


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(6))), st.integers(min_value=1, max_value=8))
def test_the_span_map_never_leaks(order: list[int], bound: int) -> None:
    # Six LLM calls inside a run, ended in any order, with any bound on open spans: every span
    # ends exactly once and nothing stays in the map.
    o = OTel(max_open_spans=bound, metrics=False)
    try:
        m = o.manager
        run = m.on_run_start("q", name="agent")
        ids = [m.on_llm_start("p", model=f"m{i}", parent_run_id=run) for i in range(6)]
        for i in order:
            m.on_llm_end(LLMResponse(content="x"), run_id=ids[i])
        m.on_run_end("a", run_id=run, name="agent")
        assert o.handler.open_spans == 0
        names = sorted(s.name for s in o.spans())
        spans = [*(f"text_completion m{i}" for i in range(6)), "invoke_workflow agent"]
        assert names == sorted(spans)
    finally:
        o.shutdown()


def test_hookwire_client_with_retries_through_the_local_server(otel: OTel) -> None:
    from hookwire.llms import OpenAIClient
    from hookwire.testing.openai_server import ErrorReply, OpenAIServer, Reply

    with OpenAIServer() as server:
        server.script(ErrorReply(503, retry_after=0), Reply("Four."))
        client = OpenAIClient(
            base_url=server.base_url, model="gpt-4o", callbacks=otel.manager, temperature=0
        )
        with hookwire.trace("agent", callbacks=otel.manager, conversation_id="c1"):
            answer = client.generate([{"role": "user", "content": "2+2?"}])
        client.close()
    assert answer.content == "Four."
    run = otel.span("invoke_workflow agent")
    chat = otel.span("chat gpt-4o")
    assert parent_id(chat) == run.context.span_id
    a = dict(chat.attributes or {})
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.temperature"] == 0
    assert a["gen_ai.conversation.id"] == "c1"
    assert a["gen_ai.usage.output_tokens"] == 1
    assert a["hookwire.attempts"] == 2
    assert [e.name for e in chat.events] == ["hookwire.retry"]
    assert chat.status.status_code is StatusCode.UNSET

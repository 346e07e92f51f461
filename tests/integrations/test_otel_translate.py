"""The span readers of hookwire.integrations.otel: any attribute mapping is read without an
exception, and the processor on a real TracerProvider never raises into the tracer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from hookwire import Usage
from hookwire.callbacks import otel_conventions as c
from hookwire.errors import (
    AuthenticationError,
    BadRequestError,
    HookwireError,
    LLMError,
    LLMTimeoutError,
    RateLimitError,
    ServerError,
    ToolError,
)
from hookwire.integrations.otel import HookwireSpanProcessor, openinference, translate
from hookwire.testing import RecordingCallback

#: Every attribute the readers look at, so that generated mappings hit them.
NAMES = [
    c.OPERATION, c.PROVIDER, translate.SYSTEM, c.REQUEST_MODEL, c.RESPONSE_MODEL, c.RESPONSE_ID,
    c.FINISH_REASONS, c.INPUT_TOKENS, c.OUTPUT_TOKENS, c.CACHE_READ_TOKENS, c.REASONING_TOKENS,
    translate.AGGREGATED_INPUT_TOKENS, translate.AGGREGATED_OUTPUT_TOKENS,
    translate.EMBEDDING_DIMENSIONS, translate.SYSTEM_INSTRUCTIONS, c.CONVERSATION_ID,
    c.AGENT_NAME, c.TOOL_NAME, c.TOOL_CALL_ID,
    c.TOOL_ARGS, c.TOOL_RESULT, c.INPUT_MESSAGES, c.OUTPUT_MESSAGES, c.RETRIEVAL_QUERY,
    c.RETRIEVAL_DOCUMENTS, c.ERROR_TYPE, "gen_ai.request.temperature", "gen_ai.request.stream",
    openinference.SPAN_KIND, openinference.MODEL_NAME, openinference.EMBEDDING_MODEL_NAME,
    openinference.PROVIDER, openinference.SYSTEM, openinference.PROMPT_TOKENS,
    openinference.COMPLETION_TOKENS, openinference.TOTAL_TOKENS, openinference.CACHE_READ_TOKENS,
    openinference.REASONING_TOKENS, openinference.INVOCATION_PARAMETERS,
    openinference.INPUT_VALUE, openinference.OUTPUT_VALUE, openinference.TOOL_NAME,
    openinference.SESSION_ID, openinference.USER_ID, "final_result", "llm.finish_reason",
    "llm.input_messages.0.message.role", "llm.input_messages.1.message.content",
    "llm.input_messages.x.message.content", "llm.output_messages.0.message.content",
    "llm.output_messages.0.message.contents.0.message_content.text",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name",
    "embedding.embeddings.0.embedding.text", "embedding.embeddings.0.embedding.vector",
    "retrieval.documents.0.document.content", "retrieval.documents.2.document.score",
]  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
messages_json = st.lists(
    st.fixed_dictionaries(
        {"role": st.text(max_size=8)},
        optional={
            "parts": st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["text", "tool_call", "tool_call_response", "x"])},
                    optional={
                        "content": json_values,
                        "id": json_values,
                        "name": json_values,
                        "arguments": json_values,
                        "response": json_values,
                        "result": json_values,
                    },
                )
                | json_values,
                max_size=3,
            ),
            "finish_reason": json_values,
        },
    )
    | json_values,
    max_size=3,
).map(json.dumps)
scalars = (
    st.text()
    | st.integers()
    | st.floats()
    | st.booleans()
    | st.sampled_from(
        ["chat", "embeddings", "execute_tool", "invoke_agent", "retrieval", "LLM", "TOOL", "CHAIN"]
    )
    | st.sampled_from(["429", "503", "401", "400", "timeout", "٣٣٣", "²"])
)
values: Any = (
    scalars
    | st.lists(scalars, max_size=4).map(tuple)
    | st.none()
    | messages_json
    | json_values.map(json.dumps)
)
attribute_maps = st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=40), values)


def read_everything(attrs: dict[str, Any]) -> None:
    kind = translate.category(attrs)
    translate.is_agent(attrs)
    translate.provider(attrs)
    translate.model(attrs)
    translate.conversation_id(attrs)
    usage = translate.usage(attrs)
    translate.run_usage(attrs)
    translate.prompt(attrs)
    translate.invocation_params(attrs)
    translate.llm_response(attrs, usage, 1_700_000_000_000_000_000)
    translate.embedding(attrs, usage)
    translate.tool(attrs, "execute_tool x")
    translate.retrieval(attrs)
    translate.run_input(attrs)
    translate.run_output(attrs)
    for k in (translate.LLM, translate.TOOL, translate.RUN, kind or translate.EMBEDDING):
        assert isinstance(translate.error(k, attrs, "d", []), HookwireError)


@given(attribute_maps)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_attribute_mapping_is_read_without_an_exception(attrs: dict[str, Any]) -> None:
    read_everything(attrs)


@given(attribute_maps)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_processor_never_raises_into_the_tracer(attrs: dict[str, Any]) -> None:
    recorder = RecordingCallback()
    provider = TracerProvider()
    processor = HookwireSpanProcessor([recorder])
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("app")
    # OpenTelemetry keeps only its own attribute types; the rest it drops with a warning.
    valid = {
        k: v
        for k, v in attrs.items()
        if isinstance(v, (str, bool, int, float))
        and not (isinstance(v, int) and not -(2**63) <= v < 2**63)
    }
    with tracer.start_as_current_span("outer", attributes=valid) as outer:
        with tracer.start_as_current_span("inner", attributes=valid) as inner:
            inner.set_status(Status(StatusCode.ERROR, "x"))
        outer.set_attributes(valid)
    assert processor.open_spans == 0


def test_token_counts_must_be_whole_non_negative_numbers() -> None:
    assert translate.usage({c.INPUT_TOKENS: -1, c.OUTPUT_TOKENS: True}) is None
    assert translate.usage({c.INPUT_TOKENS: 3.0, c.OUTPUT_TOKENS: "4"}) == Usage(3, 0)
    # a total that does not add up is recomputed
    assert translate.usage({"llm.token_count.prompt": 3, "llm.token_count.total": 1}) == Usage(3)


def test_the_gen_ai_operation_wins_over_the_openinference_kind() -> None:
    assert translate.category({c.OPERATION: "chat", "openinference.span.kind": "TOOL"}) == "llm"
    assert translate.category({c.OPERATION: "create_agent", "openinference.span.kind": "LLM"}) == (
        "llm"
    )
    assert translate.category({"openinference.span.kind": "agent"}) == "run"


@pytest.mark.parametrize(
    ("error_type", "cls", "status"),
    [
        ("429", RateLimitError, 429),
        ("rate_limit_exceeded", RateLimitError, None),
        ("openai.RateLimitError", RateLimitError, None),
        ("503", ServerError, 503),
        ("401", AuthenticationError, 401),
        ("404", BadRequestError, 404),
        ("httpx.ReadTimeout", LLMTimeoutError, None),
        ("ValueError", LLMError, None),
    ],
)
def test_error_type_chooses_the_hookwire_error(
    error_type: str, cls: type[LLMError], status: int | None
) -> None:
    err = translate.error(translate.LLM, {c.ERROR_TYPE: error_type}, "failed", [], model_name="m")
    assert type(err) is cls and err.status_code == status and err.model == "m"
    assert isinstance(
        translate.error(translate.TOOL, {c.ERROR_TYPE: error_type}, None, []), ToolError
    )


def test_error_messages_are_redacted() -> None:
    err = translate.error(translate.LLM, {}, "bad key sk-abcdefghijklmnopqrstuvwxyz0123456789", [])
    assert "sk-abcdefghijklmnopqrstuvwxyz0123456789" not in str(err)


def test_openinference_lists_are_read_in_index_order_from_any_start() -> None:
    attrs = {
        "llm.input_messages.2.message.role": "user",
        "llm.input_messages.2.message.content": "second",
        "llm.input_messages.1.message.role": "system",
        "llm.input_messages.1.message.contents.0.message_content.text": "first",
        "llm.input_messages.1.message.contents.1.message_content.text": " part",
    }
    assert openinference.input_messages(attrs) == [
        {"role": "system", "content": "first part"},
        {"role": "user", "content": "second"},
    ]


def test_tool_calls_from_openinference_output_messages() -> None:
    prefix = "llm.output_messages.0.message.tool_calls.0.tool_call."
    attrs = {
        f"{prefix}id": "call_1",
        f"{prefix}function.name": "weather",
        f"{prefix}function.arguments": '{"city": "Oslo"}',
        "llm.output_messages.0.message.role": "assistant",
        "openinference.span.kind": "LLM",
    }
    response = translate.llm_response(attrs, None)
    assert response.tool_calls[0].name == "weather" and response.content == ""
    assert response.cost is None


class Event:
    """What the readers use of an SDK span event: its name and attributes."""

    def __init__(self, name: Any, attributes: Any) -> None:
        self.name = name
        self.attributes = attributes


event_names = st.sampled_from(
    [
        "gen_ai.system.message",
        "gen_ai.user.message",
        "gen_ai.assistant.message",
        "gen_ai.tool.message",
        "gen_ai.choice",
        "exception",
        "other",
    ]
)
event_attrs = st.dictionaries(
    st.sampled_from(["gen_ai.event.content", "content", "role", "exception.type"]) | st.text(),
    values,
)


@given(st.lists(st.builds(Event, event_names | st.none(), event_attrs | st.none()), max_size=5))
@settings(max_examples=200)
def test_any_span_events_are_read_without_an_exception(events: list[Event]) -> None:
    translate.event_messages(events)
    translate.prompt({}, events)
    translate.llm_response({}, None, None, events)
    assert isinstance(translate.error(translate.LLM, {}, None, events), LLMError)

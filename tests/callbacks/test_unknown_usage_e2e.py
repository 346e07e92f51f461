"""Usage that never arrived is never booked as free: on every path where a server sends no
usage, through the real packages against the local server, the call reaches the ledger,
the budgets, the metrics and the spans as an estimated (unknown) usage, not as 0 tokens."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hookwire import LLMResponse, pricing
from hookwire.callbacks import MetricsCallback, OpenTelemetryCallback
from hookwire.callbacks.accounting import AccountingCallbackHandler, Budget
from hookwire.cli.costs import render_json, render_table
from hookwire.integrations.openai import instrument
from hookwire.llms import OpenAIClient
from hookwire.llms.retry import RetryPolicy
from hookwire.stores import runner
from hookwire.testing import RecordingCallback
from hookwire.testing.openai_server import OpenAIServer, Raw, Reply

MESSAGES: list[Any] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Capital of France?"},
]
ANSWER = "Paris is the capital of France."


class Sinks:
    """Every consumer of a call's usage: the ledger with a budget, metrics, spans, events."""

    def __init__(self, db_url: str) -> None:
        self.user = f"u-{uuid.uuid4().hex[:10]}"
        self.accounting = AccountingCallbackHandler(
            database_url=db_url, user_id=self.user, budgets=Budget(Decimal(10), period="day")
        )
        self.metrics = MetricsCallback()
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.otel = OpenTelemetryCallback(tracer_provider=self.tracer_provider, metrics=False)
        self.rec = RecordingCallback()

    @property
    def callbacks(self) -> list[Any]:
        return [self.accounting, self.metrics, self.otel, self.rec]

    def response(self) -> LLMResponse:
        (end,) = self.rec.of("on_llm_end")
        response: LLMResponse = end["response"]
        return response

    def check_booked_as_an_estimate(self) -> LLMResponse:
        """The call's usage is an estimate everywhere, and its bound is charged, never 0."""
        response = self.response()
        usage = response.usage
        assert usage.estimated and not usage.known
        # The bound holds for what the server counted (a word a token) and what came.
        assert usage.prompt_tokens >= sum(len(str(m["content"]).split()) for m in MESSAGES)
        assert usage.completion_tokens >= len(response.content.split()) > 0
        estimate = pricing.cost(response.model or "gpt-4o", usage, "openai")
        assert estimate is not None and estimate > 0
        assert response.cost == estimate
        # The ledger: marked estimated, with the bound's tokens and cost, charged to budgets.
        self.accounting.flush()
        store = self.accounting.store
        (row,) = runner.run_sync(store.records(user_id=self.user))
        assert row.source == "estimated"
        assert (row.prompt_tokens, row.completion_tokens) == (
            usage.prompt_tokens,
            usage.completion_tokens,
        )
        assert row.cost == estimate
        assert runner.run_sync(store.spent("user", self.user, "day")) == estimate
        (summary,) = runner.run_sync(store.summary(where={"user": self.user}))
        assert summary["cost"] is None  # no known cost
        assert summary["prompt_tokens"] == summary["completion_tokens"] == 0
        assert summary["unknown_cost_calls"] == 1
        assert summary["estimated_calls"] == 1
        assert summary["estimated_tokens"] == usage.total_tokens
        assert summary["estimated_cost"] == estimate
        # Metrics: apart from the known counts.
        m = self.metrics.get_metrics()
        assert m["usage_unknown_calls"] == 1
        assert m["total_tokens"] == 0 and m["total_cost"] is None
        assert m["estimated_tokens"] == usage.total_tokens
        # The span: no gen_ai.usage.* rather than a made-up count.
        (span,) = self.exporter.get_finished_spans()
        assert not [k for k in span.attributes or {} if k.startswith("gen_ai.usage.")]
        return response


@pytest.fixture
def sinks(db_url: str) -> Iterator[Sinks]:
    s = Sinks(db_url)
    yield s
    for close in (s.accounting.close, s.otel.close, s.tracer_provider.shutdown):
        close()


SDKStream = Callable[..., Any]


@pytest.fixture
def sdk_stream(openai_server: OpenAIServer, sinks: Sinks) -> Iterator[SDKStream]:
    """Streams ``ANSWER`` through the real openai SDK, instrumented for ``sinks``."""
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0)
    instrument(client, callbacks=sinks.callbacks)

    def create(**kw: Any) -> Any:
        openai_server.script(Reply(ANSWER))
        return client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, **kw)

    yield create
    client.close()


@pytest.fixture
def chatopenai_stream(openai_server: OpenAIServer, sinks: Sinks) -> SDKStream:
    """Streams ``ANSWER`` through LangChain's ``ChatOpenAI`` at ``openai_server`` (a custom
    base URL), with hookwire's LangChain handler for ``sinks``."""
    chat_openai = pytest.importorskip("langchain_openai").ChatOpenAI
    from hookwire.integrations.langchain import HookwireCallbackHandler

    llm = chat_openai(
        model="gpt-4o", base_url=openai_server.base_url, api_key="test", max_retries=0
    )
    handler = HookwireCallbackHandler(callbacks=sinks.callbacks)

    def stream() -> Any:
        openai_server.script(Reply(ANSWER))
        return llm.stream(MESSAGES, config={"callbacks": [handler]})

    return stream


def test_an_openai_sdk_stream_with_include_usage_false_is_booked_as_an_estimate(
    sinks: Sinks, sdk_stream: SDKStream
) -> None:
    stream = sdk_stream(stream_options={"include_usage": False})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == ANSWER
    assert sinks.check_booked_as_an_estimate().content == ANSWER


def test_an_openai_sdk_stream_the_caller_stops_early_is_booked_as_an_estimate(
    sinks: Sinks, sdk_stream: SDKStream
) -> None:
    for chunk in sdk_stream():
        if chunk.choices and chunk.choices[0].delta.content:
            break
    response = sinks.check_booked_as_an_estimate()
    assert sinks.rec.of("on_llm_end")[0]["cancelled"] is True
    assert ANSWER.startswith(response.content) and response.content != ANSWER


def _client(openai_server: OpenAIServer, sinks: Sinks, **kw: Any) -> OpenAIClient:
    """hookwire's ``OpenAIClient`` at ``openai_server`` for ``sinks``, one attempt a call."""
    return OpenAIClient(
        api_key="sk-test",
        base_url=openai_server.base_url,
        callbacks=sinks.callbacks,
        retry=RetryPolicy(max_attempts=1),
        **kw,
    )


def test_an_openai_client_stream_without_usage_is_booked_as_an_estimate(
    openai_server: OpenAIServer, sinks: Sinks
) -> None:
    openai_server.script(Reply(ANSWER))
    llm = _client(openai_server, sinks, stream_usage=False)
    try:
        items = list(llm.stream(MESSAGES, model="gpt-4o"))
        assert "".join(i for i in items if isinstance(i, str)) == ANSWER
    finally:
        llm.close()
    assert "stream_options" not in openai_server.requests[0]
    sinks.check_booked_as_an_estimate()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_openai_client_stream_the_caller_stops_early_is_booked_as_an_estimate(
    openai_server: OpenAIServer, sinks: Sinks, mode: str
) -> None:
    # The server bills the prompt and what it streamed before the caller went away.
    openai_server.script(Reply(ANSWER))
    llm = _client(openai_server, sinks)
    try:
        if mode == "sync":
            tokens = llm.stream(MESSAGES, model="gpt-4o")
            assert isinstance(next(tokens), str)
            tokens.close()
        else:
            atokens = llm.astream(MESSAGES, model="gpt-4o")
            assert isinstance(await atokens.__anext__(), str)
            await atokens.aclose()
    finally:
        await llm.aclose()
        llm.close()
    response = sinks.check_booked_as_an_estimate()
    assert sinks.rec.of("on_llm_end")[0]["cancelled"] is True
    assert response.finish_reason is None
    assert ANSWER.startswith(response.content) and response.content != ANSWER


def test_an_openai_client_answer_without_usage_is_booked_as_an_estimate(
    openai_server: OpenAIServer, sinks: Sinks
) -> None:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER},
                "finish_reason": "stop",
            }
        ],
    }
    openai_server.script(Raw(json.dumps(body)))
    llm = _client(openai_server, sinks)
    try:
        assert llm.generate(MESSAGES, model="gpt-4o", stream=False).content == ANSWER
    finally:
        llm.close()
    sinks.check_booked_as_an_estimate()


def test_a_langchain_chatopenai_stream_to_a_custom_base_url_is_booked_as_an_estimate(
    openai_server: OpenAIServer, sinks: Sinks, chatopenai_stream: SDKStream
) -> None:
    chunks = list(chatopenai_stream())
    assert "".join(str(c.content) for c in chunks) == ANSWER
    # What every vLLM, Ollama, Azure or proxy user sends: no stream_options, so no usage.
    assert "stream_options" not in openai_server.requests[0]
    response = sinks.response()
    assert response.usage.estimated
    assert response.usage.completion_tokens >= len(ANSWER.split())
    sinks.accounting.flush()
    (row,) = runner.run_sync(sinks.accounting.store.records(user_id=sinks.user))
    assert row.source == "estimated"
    assert row.cost is not None and row.cost > 0
    assert sinks.metrics.get_metrics()["usage_unknown_calls"] == 1


def test_a_call_with_usage_is_booked_as_known(sinks: Sinks, sdk_stream: SDKStream) -> None:
    list(sdk_stream())
    usage = sinks.response().usage
    assert usage.known and usage.completion_tokens == len(ANSWER.split())
    sinks.accounting.flush()
    (row,) = runner.run_sync(sinks.accounting.store.records(user_id=sinks.user))
    assert row.source == "auto"
    (span,) = sinks.exporter.get_finished_spans()
    assert (span.attributes or {})["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert sinks.metrics.get_metrics()["usage_unknown_calls"] == 0


def test_costs_show_calls_of_unknown_usage_apart() -> None:
    from rich.console import Console

    row = {
        "currency": "USD",
        "calls": 3,
        "prompt_tokens": 200,
        "completion_tokens": 20,
        "cost": Decimal("0.001"),
        "unknown_cost_calls": 2,
        "estimated_calls": 1,
        "estimated_tokens": 400,
        "estimated_cost": Decimal("0.004"),
    }
    console = Console(width=200, record=True)
    console.print(render_table([row], []))
    out = console.export_text()
    assert "usage unknown" in out and "estimate ≤" in out
    assert "0.004 USD" in out
    assert "unpriced calls" in out  # the other unknown-cost call: a model with no price
    (item,) = json.loads(render_json([row]), parse_float=Decimal)
    assert item["estimated_cost"] == Decimal("0.004")  # exact, not a rounded float
    assert item["estimated_calls"] == 1


def test_hookwire_costs_shows_a_streamed_chatopenai_call_apart(
    sinks: Sinks, db_url: str, chatopenai_stream: SDKStream
) -> None:
    # The whole path a user sees: LangChain's ChatOpenAI streams from a custom base URL (no
    # usage comes), the ledger books an estimate, and `hookwire costs` shows it apart.
    from typer.testing import CliRunner

    from hookwire.cli import app

    assert "".join(str(c.content) for c in chatopenai_stream())
    usage = sinks.response().usage
    sinks.accounting.flush()
    cli = CliRunner()
    env = {"COLUMNS": "200"}
    result = cli.invoke(app, ["costs", "--db", db_url, "--user", sinks.user, "--json"], env=env)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output, parse_float=Decimal)
    assert row["cost"] is None and row["prompt_tokens"] == row["completion_tokens"] == 0
    assert row["unknown_cost_calls"] == row["estimated_calls"] == 1
    assert row["estimated_tokens"] == usage.total_tokens
    assert row["estimated_cost"] == sinks.response().cost > 0
    table = cli.invoke(app, ["costs", "--db", db_url, "--user", sinks.user], env=env).output
    assert "usage unknown" in table and "estimate ≤" in table


def test_a_chatopenai_stream_the_caller_stops_early_is_booked_as_an_estimate(
    sinks: Sinks, chatopenai_stream: SDKStream
) -> None:
    stream = chatopenai_stream()
    for chunk in stream:
        if chunk.content:
            break
    stream.close()  # the caller goes away: LangChain sees GeneratorExit
    response = sinks.check_booked_as_an_estimate()
    assert sinks.rec.of("on_llm_end")[0]["cancelled"] is True
    assert response.finish_reason is None
    assert ANSWER.startswith(response.content) and response.content != ANSWER

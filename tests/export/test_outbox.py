"""OutboxCallback: events reach the outbox from the background worker, with UUIDv7 ids,
ordering keys, filters and redaction; an outbox that cannot be written costs dropped events
(counted, warned once), never a blocked app."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal

import orjson
import pytest

from hookwire import CallbackManager, LLMResponse, Usage, trace
from hookwire.errors import ConfigurationError
from hookwire.export import OutboxCallback, WebhookSink
from hookwire.stores import runner
from hookwire.stores.outbox import Outbox


def _one_call(manager: CallbackManager, conversation: str, answer: str = "4") -> None:
    with trace("rlm", callbacks=manager, user_id="u1", conversation_id=conversation):
        rid = manager.on_llm_start([{"role": "user", "content": "2+2?"}], model="gpt-4o")
        manager.on_llm_end(
            LLMResponse(answer, Usage(7, 1), model="gpt-4o", cost=Decimal("0.0001")),
            run_id=rid,
            model="gpt-4o",
        )


def test_events_reach_the_outbox_in_order_with_ids_and_keys(db_url: str, sink_name: str) -> None:
    handler = OutboxCallback([sink_name], db_url)
    manager = CallbackManager([handler])
    _one_call(manager, "c1")
    _one_call(manager, "c2", answer="5")
    assert handler.flush(30)
    rows = runner.run_sync(Outbox(db_url).rows(sink=sink_name))
    assert [r["event"] for r in rows] == ["run_start", "llm_start", "llm_end", "run_end"] * 2
    assert [r["key"] for r in rows] == ["c1"] * 4 + ["c2"] * 4
    ids = [r["event_id"] for r in rows]
    assert len(set(ids)) == 8 and all(uuid.UUID(i).version == 7 for i in ids)
    end = orjson.loads(rows[2]["body"])
    assert end["data"]["response"]["content"] == "4" and end["user_id"] == "u1"
    assert manager.stats()["dropped"]["OutboxCallback"] == 0


def test_one_row_per_sink_and_sinks_by_name(tmp_path: pytest.TempPathFactory) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    sink = WebhookSink("http://127.0.0.1:9/x", secret="k", name="hooks")
    handler = OutboxCallback([sink, "redis"], url)
    CallbackManager([handler]).on_error(RuntimeError("boom"))
    assert handler.flush(30)
    rows = runner.run_sync(Outbox(url).rows())
    assert sorted(r["sink"] for r in rows) == ["hooks", "redis"]
    assert rows[0]["event_id"] == rows[1]["event_id"]
    sink.close()


def test_filters_and_redaction(tmp_path: pytest.TempPathFactory) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    handler = OutboxCallback(
        ["s"],
        url,
        hooks=["on_llm_end", "on_llm_start"],
        users=["u1"],
        include_prompts=False,
        redact=[r"\b\d{4}-\d{4}\b"],
    )
    manager = CallbackManager([handler])
    _one_call(manager, "c1", answer="call 1234-5678, key sk-abcdefghijklmnopqrstuvwx12345")
    with trace("rlm", callbacks=manager, user_id="someone-else"):
        manager.on_llm_start(["hi"])
    assert handler.flush(30)
    rows = runner.run_sync(Outbox(url).rows())
    assert [r["event"] for r in rows] == ["llm_start", "llm_end"]
    assert "prompt" not in orjson.loads(rows[0]["body"])["data"]
    content = orjson.loads(rows[1]["body"])["data"]["response"]["content"]
    assert "1234-5678" not in content and "sk-abcdefghijkl" not in content


def test_unknown_hooks_and_bad_sinks_are_refused(tmp_path: pytest.TempPathFactory) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    with pytest.raises(ConfigurationError, match="not hooks"):
        OutboxCallback(["s"], url, hooks=["on_nothing"])
    with pytest.raises(ConfigurationError, match="share a name"):
        OutboxCallback(["s", "s"], url)
    with pytest.raises(ConfigurationError, match="sink names"):
        OutboxCallback([], url)


def test_an_outbox_that_cannot_be_written_drops_and_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A real PostgreSQL URL where nothing listens: every write fails at once.
    url = "postgresql+asyncpg://postgres@127.0.0.1:1/nothing"
    handler = OutboxCallback(["s"], url, queue_size=5, put_wait=0.0, retry_for=0.2)
    manager = CallbackManager([handler])
    with caplog.at_level(logging.DEBUG, logger="hookwire"):
        for _ in range(40):
            manager.on_error(RuntimeError("boom"))
        handler.flush(30)
        for _ in range(5):
            manager.on_error(RuntimeError("boom"))
        handler.flush(30)
    assert handler.pending == 0
    assert manager.stats()["dropped"]["OutboxCallback"] == 45
    warnings = [r for r in caplog.records if "cannot be written" in r.getMessage()]
    assert warnings and warnings[0].levelno == logging.ERROR
    assert all(r.levelno == logging.DEBUG for r in warnings[1:])


def test_sampling_keeps_whole_traces_and_always_errors(tmp_path: pytest.TempPathFactory) -> None:
    from hookwire.sampling import trace_kept

    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    handler = OutboxCallback(["s"], url, sample_rate=0.5)
    manager = CallbackManager([handler])
    traces = []
    for i in range(40):
        with trace("turn", callbacks=manager, conversation_id=f"c{i}") as run:
            manager.on_memory_store("x")
            manager.on_retry(1, 3, RuntimeError("again"))
        traces.append((f"c{i}", run.trace_id))
    assert handler.flush(30)
    rows = runner.run_sync(Outbox(url).rows())
    by_key: dict[str, list[str]] = {}
    for r in rows:
        by_key.setdefault(r["key"], []).append(r["event"])
    # A retry keeps its trace whole, sampled in or not (hookwire.sampling holds the events of
    # a trace left out until its retry or its end).
    for key, _ in traces:
        assert by_key[key] == ["run_start", "memory_store", "retry", "run_end"]
    assert 0 < sum(trace_kept(t, 0.5) for _, t in traces) < 40

    none = OutboxCallback(["none"], url, sample_rate=0.0, keep_over_ms=100)
    manager = CallbackManager([none])
    with trace("turn", callbacks=manager):
        rid = manager.on_llm_start(["hi"])
        manager.on_llm_end(LLMResponse("ok", Usage(1, 1)), run_id=rid, latency_ms=250.0)
    assert none.flush(30)
    events = [r["event"] for r in runner.run_sync(Outbox(url).rows(sink="none"))]
    assert events == ["run_start", "llm_start", "llm_end", "run_end"]


def test_mask_applies_to_every_text_value(tmp_path: pytest.TempPathFactory) -> None:
    from hookwire.masking import mask_pii

    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    handler = OutboxCallback(["s"], url, mask=mask_pii, redact=[r"secret-\w+"])
    manager = CallbackManager([handler])
    manager.on_memory_store("jane@example.com paid with 4111 1111 1111 1111, secret-abc")
    assert handler.flush(30)
    body = orjson.loads(runner.run_sync(Outbox(url).rows())[0]["body"])
    assert body["data"]["content"] == "[EMAIL] paid with [CARD], [REDACTED]"


def test_an_event_is_written_as_it_was_when_emitted(tmp_path: pytest.TempPathFactory) -> None:
    # Values that cannot change are serialised by the worker, containers at once: a tool
    # input the app changes after the hook returned is written as it was.
    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    handler = OutboxCallback(["s"], url, hooks=["on_tool_start", "on_memory_store"])
    manager = CallbackManager([handler])
    tool_input = {"q": "before"}
    with trace("t", callbacks=manager, conversation_id="c9"):
        manager.on_tool_start("search", tool_input)
        tool_input["q"] = "after"
        manager.on_memory_store("a note", importance=3)
    manager.on_memory_store("direct", conversation_id="c8", run_id="r1", timestamp=12.5)
    assert handler.flush(30)
    rows = runner.run_sync(Outbox(url).rows())
    bodies = [orjson.loads(r["body"]) for r in rows]
    assert bodies[0]["data"] == {"tool_name": "search", "tool_input": {"q": "before"}}
    assert bodies[1]["data"] == {"content": "a note"} and bodies[1]["importance"] == 3
    assert [r["key"] for r in rows] == ["c9", "c9", "c8"]
    assert bodies[2]["timestamp"] == 12.5 and bodies[2]["data"] == {"content": "direct"}
    assert rows[2]["created_at"].timestamp() == 12.5

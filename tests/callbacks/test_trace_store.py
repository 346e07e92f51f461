"""``TraceStoreCallback``: a real run's events become spans in the store, in the background,
with FileLog's content switches and secret redaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hookwire import RLM, CallbackManager
from hookwire.callbacks import TraceStoreCallback
from hookwire.stores import runner
from hookwire.stores.traces import TraceStore

SECRET = "sk-abcdefghijklmnopqrstuvwxyz123"


def _empty(db_url: str) -> TraceStore:
    store = TraceStore.for_url(db_url)
    runner.run_sync(store.prune(max_spans=0))
    return store


def test_a_run_is_recorded_as_a_tree_of_spans(db_url: str, make_rlm: Callable[..., RLM]) -> None:
    store = _empty(db_url)
    handler = TraceStoreCallback(db_url)
    rlm = make_rlm([handler])
    rlm.run(f"Say hello; my key is {SECRET}")
    assert handler.flush()
    runs = runner.run_sync(store.runs()).items
    assert len(runs) == 1
    run = runs[0]
    assert run["kind"] == "run" and run["status"] == "ok" and run["ended_at"] is not None
    kids = runner.run_sync(store.children(run["trace_id"], run["span_id"])).items
    llm = [k for k in kids if k["kind"] == "llm"]
    assert llm and llm[0]["model"] == "gpt-4o" and llm[0]["input_tokens"]
    assert llm[0]["latency_ms"] is not None and llm[0]["ended_at"] is not None
    detail: dict[str, Any] | None = runner.run_sync(store.span(run["span_id"]))
    assert detail is not None
    assert SECRET not in str(detail["input"]) and "[REDACTED]" in str(detail["input"])
    assert SECRET not in (run["input_preview"] or "")
    assert handler.failed == 0 and handler.dropped == 0


def test_content_switches_leave_prompts_and_answers_out(db_url: str) -> None:
    store = _empty(db_url)
    handler = TraceStoreCallback(db_url, include_prompts=False, include_responses=False)
    manager = CallbackManager([handler])
    run_id = manager.on_tool_start("lookup", {"q": "private question"})
    manager.on_tool_end("lookup", "private answer", run_id=run_id)
    manager.on_memory_store("private memory")
    assert handler.flush()
    spans = runner.run_sync(store.runs()).items
    assert {s["kind"] for s in spans} == {"tool", "memory"}
    for s in spans:
        detail = runner.run_sync(store.span(s["span_id"]))
        assert detail is not None
        assert "private" not in str(detail) and s["input_preview"] is None
    tool = next(s for s in spans if s["kind"] == "tool")
    assert tool["name"] == "lookup" and tool["status"] == "ok"
    manager.close()


def test_a_redact_function_adds_to_the_built_in_rules(db_url: str) -> None:
    store = _empty(db_url)
    handler = TraceStoreCallback(db_url, redact=lambda text: text.replace("private", "[P]"))
    manager = CallbackManager([handler])
    manager.on_memory_store(f"private note, key {SECRET}")
    assert handler.flush()
    (span,) = runner.run_sync(store.runs()).items
    detail = runner.run_sync(store.span(span["span_id"]))
    assert SECRET not in str(detail) and "private" not in str(detail)
    assert "[REDACTED]" in str(detail) and "[P] note" in str(detail)
    manager.close()

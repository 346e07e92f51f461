"""``hookwire traces``: retention by age and by size, and rebuilding the rollups."""

from __future__ import annotations

import time

from typer.testing import CliRunner

from hookwire.cli import app
from hookwire.stores import runner as store_runner
from hookwire.stores.traces import TraceStore, spans_from_records

runner = CliRunner()
DAY = 86400.0


def _seed(db_url: str) -> TraceStore:
    store = TraceStore(db_url)
    store_runner.run_sync(store.prune(max_spans=0))
    now = time.time()
    records = []
    for age in (40, 35, 5, 1):  # days old
        run = f"run-{age}"
        records += [
            {"v": 1, "event": "run_start", "run_id": run, "timestamp": now - age * DAY,
             "data": {"input": "hi"}},
            {"v": 1, "event": "memory_store", "run_id": f"{run}-m", "trace_id": run,
             "parent_run_id": run, "timestamp": now - age * DAY + 1, "data": {"content": "x"}},
            {"v": 1, "event": "run_end", "run_id": run, "timestamp": now - age * DAY + 2,
             "data": {"output": "bye"}},
        ]  # fmt: skip
    store_runner.run_sync(store.record(spans_from_records(records)))
    return store


def test_prune_older_than_deletes_whole_old_traces(db_url: str) -> None:
    store = _seed(db_url)
    result = runner.invoke(app, ["traces", "prune", "--older-than", "30d", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "deleted 4 span(s); 4 left" in result.output
    roots = store_runner.run_sync(store.runs()).items
    assert [r["span_id"] for r in roots] == ["run-1", "run-5"]


def test_prune_to_a_size_cap_keeps_the_newest_traces(db_url: str) -> None:
    store = _seed(db_url)
    result = runner.invoke(app, ["traces", "prune", "--max-spans", "3", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert [r["span_id"] for r in store_runner.run_sync(store.runs()).items] == ["run-1"]


def test_prune_needs_to_be_told_what_to_delete(db_url: str) -> None:
    result = runner.invoke(app, ["traces", "prune", "--db", db_url])
    assert result.exit_code == 1
    assert "--older-than 30d" in result.output
    result = runner.invoke(app, ["traces", "prune", "--older-than", "soon", "--db", db_url])
    assert result.exit_code == 2


def test_rebuild_rollups_counts_the_ended_spans(db_url: str) -> None:
    _seed(db_url)
    result = runner.invoke(app, ["traces", "rebuild-rollups", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "counted 8 ended span(s)" in result.output  # 4 runs, 4 memory stores

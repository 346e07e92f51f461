"""The trace store's hourly rollups (``hookwire.stores.traces.rollups``): kept by every write
and every prune exactly as a count from the spans would make them, backfilled by migration
0007, and what the health view and the traced usage read."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from trace_records import T0, trace

from hookwire.stores import engine, runner
from hookwire.stores.schema import span_latency, span_rollups
from hookwire.stores.traces import TraceStore, spans_from_records
from hookwire.stores.traces.rollups import bucket, bucket_value, quantile

HOUR = 3600.0


def store_of(db_url: str) -> TraceStore:
    store = TraceStore(db_url)
    runner.run_sync(store.prune(max_spans=0))
    return store


def tables(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Both rollup tables' rows, sorted."""

    async def read() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        async with engine.get_engine(url).connect() as conn:
            sums = [tuple(r) for r in await conn.execute(select(span_rollups))]
            hist = [tuple(r) for r in await conn.execute(select(span_latency))]
        return sorted(sums, key=repr), sorted(hist, key=repr)

    return runner.run_sync(read())


def assert_as_rebuilt(store: TraceStore) -> None:
    kept = tables(store.url)
    runner.run_sync(store.rebuild_rollups())
    assert tables(store.url) == kept


def many_traces(n: int) -> list[dict[str, Any]]:
    records = []
    for i in range(n):
        records += trace(i, T0 + i * 1200.0, model=f"m{i % 2}")  # 3 runs an hour
    return records


def test_writes_in_any_pieces_count_each_ended_span_once(db_url: str) -> None:
    store = store_of(db_url)
    records = many_traces(12)
    rng = random.Random(7)
    # written in batches cut anywhere (a span's start and end often apart), some twice
    cut = 0
    while cut < len(records):
        step = rng.randint(1, 9)
        batch = records[cut : cut + step]
        runner.run_sync(store.record(spans_from_records(batch)))
        if rng.random() < 0.3:
            runner.run_sync(store.record(spans_from_records(batch)))  # a write tried again
        cut += step
    assert_as_rebuilt(store)
    health = runner.run_sync(store.health(datetime.fromtimestamp(T0, timezone.utc)))
    assert health["llm"]["calls"] == 12 and health["llm"]["errors"] == 0
    assert health["llm"]["latency_p50"] == pytest.approx(400.0, rel=0.045)
    assert health["llm"]["ttft_p99"] == pytest.approx(50.0, rel=0.045)
    assert health["retries"] == 12
    assert health["errors"] == [{"error_type": "ConnectionError", "count": 12}]
    assert len(health["series"]) == 4 and sum(s["calls"] for s in health["series"]) == 12
    kinds = {(k["kind"], k["status"]): k["spans"] for k in health["kinds"]}
    assert kinds == {("run", "ok"): 12, ("llm", "ok"): 12, ("retry", "error"): 12,
                     ("tool", "error"): 12}  # fmt: skip


def test_a_running_span_is_counted_when_it_ends(db_url: str) -> None:
    store = store_of(db_url)
    since = datetime.fromtimestamp(T0, timezone.utc)
    start, *_, end = [r for r in trace(1, T0) if r["run_id"] == "r1-llm"]
    runner.run_sync(store.record(spans_from_records([start])))
    assert runner.run_sync(store.health(since))["llm"]["calls"] == 0
    runner.run_sync(store.record(spans_from_records([end])))
    runner.run_sync(store.record(spans_from_records([end])))  # its end again: still one
    assert runner.run_sync(store.health(since))["llm"]["calls"] == 1


def test_prune_keeps_the_rollups_of_what_is_left(db_url: str) -> None:
    store = store_of(db_url)
    runner.run_sync(store.record(spans_from_records(many_traces(12))))
    cutoff = datetime.fromtimestamp(T0 + 5 * 1200.0 + 1, timezone.utc)  # mid-hour
    assert runner.run_sync(store.prune(before=cutoff)) == 6 * 4
    assert_as_rebuilt(store)
    since = datetime.fromtimestamp(T0 - HOUR, timezone.utc)
    assert runner.run_sync(store.health(since))["llm"]["calls"] == 6
    runner.run_sync(store.prune(max_spans=8))
    assert_as_rebuilt(store)
    assert runner.run_sync(store.health(since))["llm"]["calls"] == 2
    runner.run_sync(store.prune(max_spans=0))
    assert tables(store.url) == ([], [])


def test_usage_by_day_and_model(db_url: str) -> None:
    store = store_of(db_url)
    runner.run_sync(store.record(spans_from_records(many_traces(4))))
    rows = runner.run_sync(store.usage(datetime.fromtimestamp(T0, timezone.utc)))
    day = datetime.fromtimestamp(T0, timezone.utc).date().isoformat()
    assert [(r["day"], r["model"], r["calls"]) for r in rows] == [(day, "m0", 2), (day, "m1", 2)]
    assert rows[0]["input_tokens"] == 20 and rows[0]["cached_tokens"] == 4
    assert rows[0]["cost"] == Decimal("0.002") and rows[0]["currency"] == "USD"


def test_the_migration_counts_the_spans_already_stored(own_db_url: str) -> None:
    from alembic import command

    url = own_db_url
    runner.run_sync(engine.upgrade(url))
    store = TraceStore(url)
    runner.run_sync(store.record(spans_from_records(many_traces(6))))
    kept = tables(url)
    assert kept[0]

    async def down() -> None:
        async with engine.get_write_engine(url).begin() as conn:
            await conn.run_sync(
                lambda c: command.downgrade(engine._alembic_config(c), "0006_traces")
            )

    runner.run_sync(down())
    runner.run_sync(engine.upgrade(url))
    assert tables(url) == kept


def test_buckets_keep_a_value_to_within_five_percent() -> None:
    for ms in (0.002, 0.5, 1.0, 40.0, 290.0, 12_345.6, 3_600_000.0):
        assert bucket_value(bucket(ms)) == pytest.approx(ms, rel=0.045)
    assert bucket(0.0) == bucket(-1.0)  # no duration shares the smallest bucket
    assert quantile({}, 0.5) is None
    hist = {bucket(10.0): 98, bucket(1000.0): 2}
    assert quantile(hist, 0.5) == pytest.approx(10.0, rel=0.045)
    assert quantile(hist, 0.99) == pytest.approx(1000.0, rel=0.045)


def test_the_health_window_starts_at_the_top_of_its_first_hour(db_url: str) -> None:
    store = store_of(db_url)
    runner.run_sync(store.record(spans_from_records(trace(1, T0))))
    called = datetime.fromtimestamp(T0, timezone.utc)
    hour = called.replace(minute=0, second=0, microsecond=0)
    found = runner.run_sync(store.health(called + timedelta(seconds=30)))  # later, same hour
    assert found["llm"]["calls"] == 1 and [s["hour"] for s in found["series"]] == [hour]
    assert runner.run_sync(store.health(hour + timedelta(hours=1)))["llm"]["calls"] == 0

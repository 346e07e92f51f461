"""The trace store (``hookwire.stores.traces``) on SQLite and PostgreSQL: spans merged across
writes, keyset pages of runs with filters, a trace opened one level at a time, retention."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from trace_records import T0, rec, trace

from hookwire.errors import InvalidInputError
from hookwire.stores import runner
from hookwire.stores.traces import RunFilter, TraceStore, spans_from_records


def store_of(db_url: str) -> TraceStore:
    """The store of ``db_url``, emptied (the PostgreSQL database is the session's)."""
    store = TraceStore(db_url)
    runner.run_sync(store.prune(max_spans=0))
    return store


def test_a_trace_written_in_pieces_is_one_set_of_spans(db_url: str) -> None:
    store = store_of(db_url)
    records = trace(1, T0)
    # every event in a write of its own: the start's values stay, the end's fill in
    for r in records:
        runner.run_sync(store.record(spans_from_records([r])))
    page = runner.run_sync(store.runs())
    assert [r["span_id"] for r in page.items] == ["r1"]
    run = page.items[0]
    assert run["status"] == "ok" and run["name"] == "bot" and run["cost"] == Decimal("0.001")
    assert run["input_preview"] == "question 1" and run["output_preview"] == "answer 1"
    kids = runner.run_sync(store.children("r1", "r1")).items
    assert [k["span_id"] for k in kids] == ["r1-llm", "r1-tool"]
    llm, tool = kids
    assert llm["retries"] == 1 and llm["children"] == 1 and llm["status"] == "ok"
    assert (llm["input_tokens"], llm["output_tokens"], llm["cached_tokens"]) == (10, 5, 2)
    assert llm["started_at"] == datetime.fromtimestamp(T0 + 0.1, timezone.utc)
    assert llm["ttft_ms"] == 50.0 and llm["cost"] == Decimal("0.001")
    assert tool["status"] == "error" and tool["error_type"] == "ConnectionError"
    retry = runner.run_sync(store.children("r1", "r1-llm")).items
    assert [r["kind"] for r in retry] == ["retry"] and retry[0]["error_type"] == "RateLimitError"
    detail = runner.run_sync(store.span("r1-llm"))
    assert detail is not None and detail["input"] == "p" and detail["output"] == "answer"
    assert runner.run_sync(store.span("nope")) is None
    assert runner.run_sync(store.count()) == 4  # the run, the call, its retry, the tool


def test_runs_are_paged_by_keyset_and_filtered(db_url: str) -> None:
    store = store_of(db_url)
    records = []
    for n in range(1, 26):
        records += trace(n, T0 + n, user="even" if n % 2 == 0 else "odd", model=f"m{n % 3}")
    runner.run_sync(store.record(spans_from_records(records)))
    seen: list[str] = []
    cursor = None
    while True:
        page = runner.run_sync(store.runs(limit=7, cursor=cursor))
        seen += [r["span_id"] for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"r{n}" for n in range(25, 0, -1)]
    evens = runner.run_sync(store.runs(RunFilter(user_id="even"), limit=100)).items
    assert [r["span_id"] for r in evens] == [f"r{n}" for n in range(24, 0, -2)]
    m0 = runner.run_sync(store.runs(RunFilter(model="m0", user_id="odd"), limit=100)).items
    assert [r["span_id"] for r in m0] == ["r21", "r15", "r9", "r3"]
    since = datetime.fromtimestamp(T0 + 20, timezone.utc)
    until = datetime.fromtimestamp(T0 + 23, timezone.utc)
    window = runner.run_sync(store.runs(RunFilter(since=since, until=until))).items
    assert [r["span_id"] for r in window] == ["r22", "r21", "r20"]
    dear = runner.run_sync(store.runs(RunFilter(min_cost=Decimal("0.024")))).items
    assert [r["span_id"] for r in dear] == ["r25", "r24"]
    found = runner.run_sync(store.runs(RunFilter(search="QUESTION 1"))).items
    assert sorted(r["span_id"] for r in found) == ["r1"] + [f"r{n}" for n in range(10, 20)]
    assert runner.run_sync(store.runs(RunFilter(search="100%"))).items == []
    assert runner.run_sync(store.runs(RunFilter(status="error"))).items == []
    with pytest.raises(InvalidInputError, match="cursor"):
        runner.run_sync(store.runs(cursor="garbage!"))


def test_a_wide_trace_opens_a_page_at_a_time(db_url: str) -> None:
    store = store_of(db_url)
    records = [rec("run_start", "big", T0, data={"input": "x"})]
    for i in range(450):
        records.append(
            rec(
                "memory_store",
                f"m{i:04d}",
                T0 + i / 1000,
                trace_id="big",
                parent_run_id="big",
                data={"content": f"item {i}"},
            )
        )
    runner.run_sync(store.record(spans_from_records(records)))
    roots = runner.run_sync(store.children("big")).items
    assert [(r["span_id"], r["children"]) for r in roots] == [("big", 450)]
    got: list[str] = []
    cursor = None
    while True:
        page = runner.run_sync(store.children("big", "big", limit=200, cursor=cursor))
        assert len(page.items) <= 200
        got += [r["span_id"] for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert got == [f"m{i:04d}" for i in range(450)]


def test_prune_by_age_and_by_size(db_url: str) -> None:
    store = store_of(db_url)
    records = []
    for n in range(10):
        records += trace(n, T0 + n * 86400)
    runner.run_sync(store.record(spans_from_records(records)))
    assert runner.run_sync(store.count()) == 40
    cutoff = datetime.fromtimestamp(T0 + 3 * 86400, timezone.utc)
    assert runner.run_sync(store.prune(before=cutoff)) == 12
    assert runner.run_sync(store.span("r2-llm")) is None
    assert runner.run_sync(store.span("r3-llm")) is not None
    # the oldest whole traces go until at most 22 spans are left: 5 traces of 4
    assert runner.run_sync(store.prune(max_spans=22)) == 8
    left = [r["span_id"] for r in runner.run_sync(store.runs()).items]
    assert left == ["r9", "r8", "r7", "r6", "r5"]
    assert runner.run_sync(store.prune(before=cutoff - timedelta(days=1))) == 0


def test_prune_by_size_takes_spans_whose_run_was_never_stored(db_url: str) -> None:
    """A process killed mid-run leaves child spans with no root: a size cap takes them first,
    oldest first, and keeps the whole traces."""
    store = store_of(db_url)
    records = []
    for n in range(4):  # 3 spans each (the call, its retry, the tool), no run span
        records += [r for r in trace(n, T0 + n * 86400) if not r["event"].startswith("run")]
    for n in range(4, 6):  # whole traces, newer
        records += trace(n, T0 + n * 86400)
    runner.run_sync(store.record(spans_from_records(records)))
    assert runner.run_sync(store.count()) == 12 + 8
    assert runner.run_sync(store.prune(max_spans=14)) == 6
    assert runner.run_sync(store.span("r1-llm")) is None
    assert runner.run_sync(store.span("r2-llm")) is not None
    assert runner.run_sync(store.prune(max_spans=8)) == 6
    assert runner.run_sync(store.span("r3-llm")) is None
    assert [r["span_id"] for r in runner.run_sync(store.runs()).items] == ["r5", "r4"]
    assert runner.run_sync(store.prune(max_spans=0)) == 8
    assert runner.run_sync(store.count()) == 0


def test_the_migration_makes_the_tables_of_the_schema(db_url: str) -> None:
    """What 0006_traces creates is what ``hookwire.stores.schema`` declares (columns, types,
    indexes), so neither drifts from the other."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from hookwire.stores import engine
    from hookwire.stores.schema import metadata

    async def diff() -> list[Any]:
        async with engine.get_engine(db_url).connect() as conn:
            return await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), metadata
                )
            )

    runner.run_sync(engine.ensure_schema(db_url))
    # the search indexes are the migration's own (FTS5 tables, an expression index)
    search = ("span_search", "ix_span_contents_search")
    ours = [
        d
        for d in runner.run_sync(diff())
        if "span" in repr(d) and not any(n in repr(d) for n in search)
    ]
    assert ours == []


def test_search_finds_runs_by_their_whole_input_and_output(db_url: str) -> None:
    store = store_of(db_url)
    long_tail = "x" * 500 + " the needle at the end"
    records = [
        rec("run_start", "a", T0, data={"input": "Где мой заказ? 注文はどこ"}),
        rec("run_end", "a", T0 + 1, data={"output": long_tail}),
        rec("run_start", "b", T0 + 2, data={"input": "100% sure_thing"}),
        rec("run_end", "b", T0 + 3, data={"output": "ok"}),
        rec("tool_start", "t", T0 + 2.5, trace_id="b", parent_run_id="b",
            data={"tool_name": "x", "tool_input": "needle in a child"}),
    ]  # fmt: skip
    runner.run_sync(store.record(spans_from_records(records)))

    def found(words: str) -> list[str]:
        page = runner.run_sync(store.runs(RunFilter(search=words)))
        return [r["span_id"] for r in page.items]

    assert found("NEEDLE AT THE END") == ["a"]  # past the preview, any case
    assert found("мой заказ") == ["a"] and found("注文は") == ["a"]
    assert found("0% sure_") == ["b"]  # LIKE's wildcards are text here
    assert found("needle in") == []  # a run's own input and output, not its children's
    assert found("ok") == ["b"]  # shorter than a trigram: the previews
    assert found('say "hi"') == []


def test_a_word_in_many_runs_is_searched_run_by_run(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hookwire.stores.traces import sql

    store = store_of(db_url)
    records = []
    for n in range(1, 8):
        records += trace(n, T0 + n)
    runner.run_sync(store.record(spans_from_records(records)))
    monkeypatch.setattr(sql, "SEARCH_FEW", 2)  # "question" is in 7 runs: more than a few
    page = runner.run_sync(store.runs(RunFilter(search="question"), limit=3))
    assert [r["span_id"] for r in page.items] == ["r7", "r6", "r5"]
    rest = runner.run_sync(store.runs(RunFilter(search="question"), cursor=page.next_cursor))
    assert [r["span_id"] for r in rest.items] == ["r4", "r3", "r2", "r1"]
    assert runner.run_sync(store.runs(RunFilter(search="question 3"))).items[0]["span_id"] == "r3"

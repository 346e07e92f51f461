"""The plans PostgreSQL makes for the trace store's search, on tables just filled and never
analysed (``generate_series``, as a bulk load leaves them; this server has autovacuum off).

Each test runs ``EXPLAIN (ANALYZE, FORMAT JSON)`` of the exact statements the store runs
(captured from SQLAlchemy, with the session settings the store's transaction makes): a rare
word's matches come from the ``pg_trgm`` index and its runs by key, never from a scan of the
contents; a common word walks the runs newest first and tests each against its own contents
(a few rows read), never gathering every match first."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event

from hookwire.stores import engine, runner
from hookwire.stores.traces import RunFilter, TraceStore

pytestmark = pytest.mark.postgres

RUNS = 20_000
NEEDLE_EVERY = 2_000  # 10 runs hold the rare word; every run holds "order"

_FILL = (
    f"""
INSERT INTO spans (span_id, trace_id, kind, started_at, status, user_id)
SELECT 'r' || lpad(g::text, 6, '0'), 'r' || lpad(g::text, 6, '0'), 'run',
       now() - (({RUNS} - g) * interval '1 second'), 'ok', 'user-' || (g % 100)
FROM generate_series(1, {RUNS}) g
""",
    f"""
INSERT INTO span_contents (span_id, input, output)
SELECT 'r' || lpad(g::text, 6, '0'),
       '"question ' || g || ' about the ' ||
       CASE WHEN g % {NEEDLE_EVERY} = 0 THEN 'needle' ELSE 'hay' END || ' and the order"',
       '"answer"'
FROM generate_series(1, {RUNS}) g
""",
)


def _admin_url(url: str) -> str:
    return url.replace("+asyncpg", "")


@pytest.fixture(scope="module")
def filled(pg_url: str) -> Iterator[str]:
    """A database of the module's own at head, filled and not analysed."""
    name = f"hookwire_t_trace_plans_{uuid.uuid4().hex[:10]}"
    base = pg_url.rsplit("/", 1)[0]
    url = f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://")
    admin = _admin_url(pg_url)

    async def run(dsn: str, *statements: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    import asyncio

    asyncio.run(run(admin, f'CREATE DATABASE "{name}"'))
    try:
        runner.run_sync(engine.upgrade(url), timeout=120)
        asyncio.run(run(_admin_url(url), *_FILL))
        yield url
    finally:
        runner.run_sync(engine.dispose_engines(), timeout=30)
        asyncio.run(run(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _captured(url: str, call: Any) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements SQLAlchemy sends for ``call``, with their arguments."""
    seen: list[tuple[str, tuple[Any, ...]]] = []

    async def listen() -> Any:
        def record(conn: Any, cursor: Any, sql: str, params: Any, ctx: Any, many: bool) -> None:
            seen.append((sql, tuple(params or ())))

        sync_engine = engine.get_engine(url).sync_engine
        event.listen(sync_engine, "before_cursor_execute", record)
        return sync_engine, record

    sync_engine, record = runner.run_sync(listen(), timeout=30)
    try:
        runner.run_sync(call, timeout=60)
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
    return seen


async def _explain(url: str, sql: str, args: tuple[Any, ...], setup: list[str]) -> dict[str, Any]:
    conn = await asyncpg.connect(_admin_url(url))
    try:
        async with conn.transaction():
            for s in setup:
                await conn.execute(s)
            text = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
    finally:
        await conn.close()
    return dict(json.loads(text)[0]["Plan"])


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _plans(url: str, words: str) -> list[tuple[str, dict[str, Any]]]:
    """``(statement, plan)`` of each statement a search of ``words`` runs."""
    store = TraceStore(url)
    statements = _captured(url, store.runs(RunFilter(search=words)))
    out = []
    setup: list[str] = []
    for sql, args in statements:
        if sql.startswith("SET LOCAL"):
            setup.append(sql)
            continue
        if not sql.lstrip().upper().startswith("SELECT") or "span" not in sql:
            continue  # the schema's check
        out.append((sql, runner.run_sync(_explain(url, sql, args, list(setup)))))
    return out


def test_a_rare_word_is_found_through_the_trigram_index_then_by_key(filled: str) -> None:
    (found_sql, found), (_, runs) = _plans(filled, "needle")
    assert "span_contents" in found_sql and "ILIKE" in found_sql
    shown = json.dumps(found, indent=1)
    nodes = list(_nodes(found))
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], shown
    assert any(n.get("Index Name") == "ix_span_contents_search" for n in nodes), shown
    shown = json.dumps(runs, indent=1)
    nodes = list(_nodes(runs))
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], shown
    assert any(n.get("Index Name") == "pk_spans" for n in nodes), shown
    assert runs["Actual Rows"] == RUNS // NEEDLE_EVERY


def test_a_common_word_walks_the_runs_and_tests_each(filled: str) -> None:
    plans = _plans(filled, "order")
    runs_sql, runs = plans[-1]
    assert "FROM spans" in runs_sql
    shown = json.dumps(runs, indent=1)
    nodes = list(_nodes(runs))
    assert not [n for n in nodes if n["Node Type"] in ("Seq Scan", "Bitmap Heap Scan")], shown
    assert any(n.get("Index Name") == "ix_spans_root_started" for n in nodes), shown
    # the contents read are those of the page's runs, not the word's 20,000 matches
    per_run = [n for n in nodes if n.get("Index Name") == "uq_span_contents_span_id"]
    assert per_run and all(n["Actual Loops"] <= 51 for n in per_run), shown

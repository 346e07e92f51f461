"""Bulk loading of runs for ``ui.py`` (not a benchmark itself): the rows the trace store's
write path makes, generated inside the database (a recursive CTE on SQLite,
``generate_series`` on PostgreSQL) with the indexes dropped and made again afterwards, so
that 10,000,000 spans load in minutes; then ``TraceStore.rebuild_rollups``.

Each run has 10 spans: the run, three LLM calls (the first retried once), the retry, three
tool calls and two memory reads, spread evenly over the last ``DAYS`` days. A run's input
and output are in ``span_contents`` (one run in 10,000 mentions ``needle``); the other
spans have previews only.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex

from hookwire.stores.schema import spans

DAYS = 30
SPANS_PER_RUN = 10
_CHUNK = 100_000  # runs per statement

_COLUMNS = (
    "span_id, trace_id, parent_id, kind, name, started_at, ended_at, status, error_type, "
    "model, user_id, agent, depth, input_tokens, output_tokens, cached_tokens, cost, "
    "currency, latency_ms, ttft_ms, retries, input_preview, output_preview"
)
_KIND = (
    "CASE WHEN j IN (0, 3, 6) THEN 'llm' WHEN j = 1 THEN 'retry' "
    "WHEN j IN (2, 5, 8) THEN 'tool' ELSE 'memory' END"
)
_LLM = "j IN (0, 3, 6)"
_ERROR = "(i % 97 = 0)"


def _select(lpad: str, ts: str, cost_run: str, cost_call: str, series: str, children: bool) -> str:
    """The SELECT of a chunk of runs (``children``: their 9 child spans), in the dialect's
    pieces: ``lpad`` the run id of ``i``, ``ts(x)`` a time from seconds ``x``."""
    run = lpad
    if not children:
        return (
            f"SELECT {run}, {run}, NULL, 'run', 'Support Agent', {ts.format('i * :step')}, "
            f"{ts.format('i * :step + 0.5')}, CASE WHEN {_ERROR} THEN 'error' ELSE 'ok' END, "
            f"CASE WHEN {_ERROR} THEN 'RateLimitError' END, 'model-' || (i % 5), "
            f"'user-' || (i % 1000), CASE WHEN i % 2 = 0 THEN 'support' ELSE 'billing' END, "
            f"0, NULL, NULL, NULL, {cost_run}, 'USD', 500.0, NULL, 0, "
            f"'question ' || i || ' about ' || CASE WHEN i % 10000 = 0 THEN 'needle' "
            f"ELSE 'hay' END || ' and the order', 'answer answer answer' {series}"
        )
    at = "i * :step + 0.01 * (j + 1)"
    return (
        f"SELECT CASE WHEN j = 1 THEN {run} || '-c0:retry:1' ELSE {run} || '-c' || j END, "
        f"{run}, CASE WHEN j = 1 THEN {run} || '-c0' ELSE {run} END, {_KIND}, "
        f"CASE WHEN {_LLM} THEN 'model-' || (i % 5) WHEN j = 1 THEN 'attempt 1 of 3' "
        f"WHEN j IN (2, 5, 8) THEN 'order_status' ELSE 'recall' END, {ts.format(at)}, "
        f"{ts.format(at + ' + 0.3')}, "
        f"CASE WHEN j = 1 OR (j = 6 AND {_ERROR}) THEN 'error' ELSE 'ok' END, "
        f"CASE WHEN j = 1 OR (j = 6 AND {_ERROR}) THEN 'RateLimitError' END, "
        f"CASE WHEN {_LLM} THEN 'model-' || (i % 5) END, 'user-' || (i % 1000), "
        f"CASE WHEN i % 2 = 0 THEN 'support' ELSE 'billing' END, "
        f"CASE WHEN j = 1 THEN 2 ELSE 1 END, "
        f"CASE WHEN {_LLM} THEN 120 END, CASE WHEN {_LLM} THEN 40 END, "
        f"CASE WHEN {_LLM} AND i % 3 = 0 THEN 16 END, "
        f"CASE WHEN {_LLM} THEN {cost_call} END, CASE WHEN {_LLM} THEN 'USD' END, "
        f"CASE WHEN {_LLM} THEN 250.0 + (i % 50) * 4 + j WHEN j IN (2, 5, 8) THEN 90.0 END, "
        f"CASE WHEN {_LLM} THEN 40.0 + (i % 20) END, CASE WHEN j = 0 THEN 1 ELSE 0 END, "
        f"'p', 'r' {series}"
    )


def _contents(lpad: str, series: str) -> str:
    word = "CASE WHEN i % 10000 = 0 THEN 'needle' ELSE 'hay' END"
    return (
        f"SELECT {lpad}, '\"question ' || i || ' about ' || {word} || ' and the order\"', "
        f"'\"answer answer answer\"' {series}"
    )


def _wide(lpad_wide: str, ts: str, series: str) -> str:
    return (
        f"SELECT {lpad_wide}, 'wide', 'wide', 'memory', 'recall', {ts.format('k / 10000.0')}, "
        f"{ts.format('k / 10000.0')}, 'ok', NULL, NULL, NULL, NULL, 1, NULL, NULL, NULL, "
        f"NULL, NULL, NULL, NULL, 0, 'x', NULL {series}"
    )


def _drop_create(dialect: Any) -> tuple[list[str], list[str]]:
    drops = [f"DROP INDEX IF EXISTS {ix.name}" for ix in spans.indexes]
    creates = [str(CreateIndex(ix).compile(dialect=dialect)) for ix in spans.indexes]
    return drops, creates


def load_sqlite(path: str, runs: int, now: float) -> float:
    """Load ``runs`` runs into the SQLite file at ``path``; returns seconds taken."""
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    drops, creates = _drop_create(sqlite.dialect())
    trigger = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'span_search_insert'"
    ).fetchone()[0]
    for sql in [*drops, "DROP TRIGGER span_search_insert"]:
        conn.execute(sql)
    ts = "strftime('%Y-%m-%dT%H:%M:%f', :t0 + {}, 'unixepoch') || '000+00:00'"
    lpad = "printf('r%09d', i)"
    cost_run, cost_call = "2100000000", "700000000"  # 0.0021 and 0.0007 in 10^-12 units
    step = DAYS * 86400.0 / runs
    params = {"t0": now - DAYS * 86400.0, "step": step}
    series = "FROM r"
    for lo in range(0, runs, _CHUNK):
        hi = min(lo + _CHUNK, runs)
        cte = (
            f"WITH RECURSIVE r(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM r WHERE i < {hi - 1})"
        )
        kids = (
            "WITH RECURSIVE r0(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM r0 WHERE i < {hi}), "
        )
        kids = kids.format(lo=lo, hi=hi - 1) + (
            "js(j) AS (VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8)), "
            "r(i, j) AS (SELECT i, j FROM r0, js)"
        )
        conn.execute("BEGIN")
        conn.execute(
            f"{cte} INSERT INTO spans ({_COLUMNS}) "
            + _select(lpad, ts, cost_run, cost_call, series, False),
            params,
        )
        conn.execute(
            f"{kids} INSERT INTO spans ({_COLUMNS}) "
            + _select(lpad, ts, cost_run, cost_call, series, True),
            params,
        )
        conn.execute(
            f"{cte} INSERT INTO span_contents (span_id, input, output) " + _contents(lpad, series)
        )
        conn.execute("COMMIT")
    wide = "WITH RECURSIVE r(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM r WHERE k < 9999) "
    conn.execute(
        f"INSERT INTO spans ({_COLUMNS}) VALUES ('wide', 'wide', NULL, 'run', 'wide', "
        f"{ts.format('0')}, NULL, 'running', NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, "
        "NULL, NULL, NULL, NULL, 0, NULL, NULL)",
        {"t0": now},
    )
    conn.execute(
        f"{wide} INSERT INTO spans ({_COLUMNS}) " + _wide("printf('wide-%05d', k)", ts, "FROM r"),
        {"t0": now},
    )
    for sql in creates:
        conn.execute(sql)
    conn.execute(trigger)
    conn.execute("INSERT INTO span_search(span_search) VALUES ('rebuild')")
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - started


def load_postgres(dsn: str, runs: int, now: float) -> float:
    """Load ``runs`` runs into the PostgreSQL database ``dsn`` (asyncpg's form)."""
    import asyncpg

    async def go() -> float:
        started = time.perf_counter()
        conn = await asyncpg.connect(dsn)
        try:
            drops, creates = _drop_create(postgresql.dialect())
            search = await conn.fetchval(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_span_contents_search'"
            )
            for sql in [*drops, "DROP INDEX IF EXISTS ix_span_contents_search"]:
                await conn.execute(sql)
            ts = "to_timestamp($1::float8 + {})"
            lpad = "('r' || lpad(i::text, 9, '0'))"
            step = DAYS * 86400.0 / runs
            for lo in range(0, runs, _CHUNK):
                hi = min(lo + _CHUNK, runs)
                series = f"FROM generate_series({lo}, {hi - 1}) AS i"
                kids = f"{series} CROSS JOIN generate_series(0, 8) AS j"

                def bind(sql: str) -> str:
                    return sql.replace(":step", "$2::float8")

                async with conn.transaction():
                    await conn.execute(
                        bind(
                            f"INSERT INTO spans ({_COLUMNS}) "
                            + _select(lpad, ts, "0.0021", "0.0007", series, False)
                        ),
                        now - DAYS * 86400.0,
                        step,
                    )
                    await conn.execute(
                        bind(
                            f"INSERT INTO spans ({_COLUMNS}) "
                            + _select(lpad, ts, "0.0021", "0.0007", kids, True)
                        ),
                        now - DAYS * 86400.0,
                        step,
                    )
                    await conn.execute(
                        "INSERT INTO span_contents (span_id, input, output) "
                        + _contents(lpad, series)
                    )
            await conn.execute(
                f"INSERT INTO spans ({_COLUMNS}) VALUES ('wide', 'wide', NULL, 'run', 'wide', "
                f"{ts.format('0')}, NULL, 'running', NULL, NULL, NULL, NULL, 0, NULL, NULL, "
                "NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL)",
                now,
            )
            await conn.execute(
                f"INSERT INTO spans ({_COLUMNS}) "
                + _wide(
                    "('wide-' || lpad(k::text, 5, '0'))", ts, "FROM generate_series(0, 9999) k"
                ),
                now,
            )
            for sql in creates:
                await conn.execute(sql)
            if search:
                await conn.execute(search)
        finally:
            await conn.close()
        return time.perf_counter() - started

    return asyncio.run(go())

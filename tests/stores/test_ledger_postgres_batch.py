"""The plan of a batch's budget lookups on PostgreSQL (``hookwire.stores.ledger.
postgres_batch``): each key's ``usage_totals`` row is found by its whole key as an index
condition, whichever index the planner takes, with a day of many users' totals and with or
without statistics (a filter on the key read every key of the day: 44 million rows for a
batch of 1,000 checks with 40,000 users)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest

from hookwire.stores.ledger.postgres_batch import _LOCK, _SPENT

pytestmark = pytest.mark.postgres

USERS = 20_000
DAY = "2026-12-01"


def _plans(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(p for child in node.get("Plans", []) for p in _plans(child))]


_FILL = {
    "usage_totals": (
        "INSERT INTO usage_totals (scope, key, period, period_start, currency, calls, "
        "prompt_tokens, completion_tokens, cost) SELECT 'user', $1 || g, 'day', $2, 'USD', "
        "1, 1, 1, 0 FROM generate_series(1, $3::int) g"
    ),
    "budget_totals": (
        "INSERT INTO budget_totals (scope, key, period, period_start, currency, reserved) "
        "SELECT 'user', $1 || g, 'day', $2, 'USD', 0 FROM generate_series(1, $3::int) g"
    ),
}


async def _explain(url: str, statement: str, table: str, analyse: bool) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tag = uuid.uuid4().hex[:6]
        await conn.execute(_FILL[table], tag, DAY, USERS)
        if analyse:
            await conn.execute(f"ANALYZE {table}")
        keys = [("user", f"{tag}{i}", "day", DAY, "USD") for i in range(1, 1001, 10)]
        columns = [list(c) for c in zip(*keys, strict=True)]
        async with conn.transaction():  # the locks of _LOCK, for the statement only
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *columns)
        return _plans(json.loads(rows[0][0])[0]["Plan"])
    finally:
        await conn.close()


@pytest.mark.parametrize("analyse", [False, True])
@pytest.mark.parametrize(
    ("statement", "table"), [(_SPENT, "usage_totals"), (_LOCK, "budget_totals")]
)
def test_a_batch_seeks_each_keys_row_by_the_whole_key(
    pg_database_url: str, statement: str, table: str, analyse: bool
) -> None:
    nodes = asyncio.run(_explain(pg_database_url, statement, table, analyse))
    totals = [n for n in nodes if n.get("Relation Name") == table]
    assert totals, nodes
    for node in totals:
        assert node["Node Type"] in ("Index Scan", "Index Only Scan"), node
        assert "key" in node["Index Cond"], node
        assert node.get("Rows Removed by Filter", 0) == 0, node

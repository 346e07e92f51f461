"""Migration 0004 (``hookwire.stores.migrations``): on a database at 0003 with data, the
upgrade counts each conversation's messages and rebuilds the usage totals from the ledger
(so summaries from them equal the ledger's); the downgrade gives the 0003 schema back with
every row kept. On SQLite and on a fresh PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from hookwire.stores import engine, runner
from hookwire.stores.ledger import UsageLedger

BEFORE = "0003_budget_totals"
AFTER = "0004_scale"

_CONVERSATION = (
    "INSERT INTO conversations (id, realm, org_id, user_id, is_anonymous, state, created_at, "
    "updated_at) VALUES (:id, '', '', 'u1', false, 'normal', :at, :at)"
)
_MESSAGE = (
    "INSERT INTO messages (id, conversation_id, sender, text, message_time, created_at) "
    "VALUES (:id, :cid, 'end_user', 'hi', :at, :at)"
)
_LEDGER = (
    "INSERT INTO usage_ledger (run_id, created_at, user_id, org_id, agent, prompt_tokens, "
    "completion_tokens, total_tokens, cached_tokens, cost, currency, source) VALUES "
    "(:run, :at, :user, 'o1', NULL, 10, 5, 15, :cached, :cost, 'USD', :source)"
)


def _at(url: str, day: int) -> Any:
    from datetime import datetime, timezone

    when = datetime(2026, 11, day, 10, tzinfo=timezone.utc)
    return when.isoformat(timespec="microseconds") if engine.is_sqlite(url) else when


async def _fill(url: str) -> None:
    sqlite = engine.is_sqlite(url)
    async with engine.get_write_engine(url).begin() as conn:
        for cid in ("c1", "c2"):
            await conn.execute(text(_CONVERSATION), {"id": cid, "at": _at(url, 1)})
        for i in range(3):
            await conn.execute(text(_MESSAGE), {"id": f"m{i}", "cid": "c1", "at": _at(url, 1)})
        for i in range(6):
            # the totals of these rows are left out on purpose: the upgrade rebuilds them
            cost = None if i == 5 else (10**10 if sqlite else 0.01)
            await conn.execute(
                text(_LEDGER),
                {
                    "run": f"r{i}",
                    "at": _at(url, 1 + i),
                    "user": None if i % 3 == 0 else "u1",
                    "cached": None if i % 2 else 4,
                    "cost": cost,
                    "source": "estimated" if i == 4 else "auto",
                },
            )


def _downgrade(url: str, revision: str) -> None:
    from alembic import command

    async def go() -> None:
        def down(conn: Any) -> None:
            command.downgrade(engine._alembic_config(conn), revision)

        async with engine.get_write_engine(url).begin() as conn:
            await conn.run_sync(down)

    runner.run_sync(go())


async def _scalar(url: str, sql: str) -> Any:
    async with engine.get_engine(url).connect() as conn:
        return (await conn.execute(text(sql))).scalar()


async def _columns(url: str, table: str) -> set[str]:
    from sqlalchemy import inspect

    async with engine.get_engine(url).connect() as conn:
        return await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns(table)})


def _round_trip(url: str) -> None:
    assert runner.run_sync(engine.upgrade(url, BEFORE)) == BEFORE
    runner.run_sync(_fill(url))
    assert runner.run_sync(engine.upgrade(url)) == engine.head_revision()  # past AFTER too

    counts = runner.run_sync(
        _scalar(url, "SELECT sum(message_count * (CASE WHEN id = 'c1' THEN 1 ELSE 100 END)) "
                     "FROM conversations")
    )  # fmt: skip
    assert counts == 3
    every_call = "SELECT sum(calls) FROM usage_totals WHERE scope = 'all' AND period = 'month'"
    assert runner.run_sync(_scalar(url, every_call)) == 6
    ledger = UsageLedger(url)
    for by in ([], ["user"], ["user", "day"], ["month"]):
        from_totals = runner.run_sync(ledger.summary(by))
        ledger.summaries_from_totals = False  # type: ignore[attr-defined]
        from_rows = runner.run_sync(ledger.summary(by))
        del ledger.summaries_from_totals  # type: ignore[attr-defined]
        assert from_totals == from_rows, by
    assert runner.run_sync(ledger.summary())[0]["calls"] == 6

    _downgrade(url, BEFORE)
    assert runner.run_sync(engine.schema_revision(url)) == BEFORE
    assert "message_count" not in runner.run_sync(_columns(url, "conversations"))
    assert "unknown_cost_calls" not in runner.run_sync(_columns(url, "usage_totals"))
    assert runner.run_sync(_scalar(url, "SELECT count(*) FROM messages")) == 3
    assert runner.run_sync(_scalar(url, "SELECT count(*) FROM usage_totals "
                                        "WHERE scope = 'all'")) == 0  # fmt: skip
    # and up again
    assert runner.run_sync(engine.upgrade(url)) == engine.head_revision()  # past AFTER too


def test_migration_0004_counts_messages_and_rebuilds_totals_on_sqlite(tmp_path: Any) -> None:
    _round_trip(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")


@pytest.fixture
def fresh_pg(pg_url: str) -> Iterator[str]:
    """A new PostgreSQL database without hookwire's schema (``pg_database_url`` is at head)."""
    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(pg_url)
    name = f"hookwire_m_{uuid.uuid4().hex[:12]}"

    def admin(sql: str) -> None:
        where = {"host": server.host, "port": server.port, "user": server.username}
        with psycopg.connect(**where, dbname=server.database, autocommit=True) as conn:
            conn.execute(sql.encode())

    admin(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        runner.run_sync(engine.dispose_engines(), timeout=30)
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_migration_0004_counts_messages_and_rebuilds_totals_on_postgres(fresh_pg: str) -> None:
    _round_trip(fresh_pg)
    fillfactor = runner.run_sync(
        _scalar(fresh_pg, "SELECT array_to_string(reloptions, ',') FROM pg_class "
                          "WHERE relname = 'conversations'")
    )  # fmt: skip
    assert fillfactor == "fillfactor=80"

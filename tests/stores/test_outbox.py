"""The outbox store (``hookwire.stores.outbox``) on SQLite and PostgreSQL: rows per event and
sink, claims in order per key, leases, retries, dead rows, status and replay."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from hookwire.errors import StoreError
from hookwire.ids import new_id
from hookwire.stores import runner
from hookwire.stores.outbox import DEAD, DELIVERED, PENDING, Outbox, OutboxEvent

UTC = timezone.utc


def _events(keys: list[str]) -> list[OutboxEvent]:
    now = datetime.now(UTC)
    return [OutboxEvent(new_id(), k, "llm_end", now, b'{"n":%d}' % i) for i, k in enumerate(keys)]


@pytest.fixture
def box(db_url: str) -> Outbox:
    return Outbox(db_url)


@pytest.fixture
def sink() -> str:
    return f"s-{uuid.uuid4().hex[:8]}"  # the PostgreSQL database is shared by the session


def test_enqueue_makes_a_row_per_event_and_sink_and_is_idempotent(box: Outbox, sink: str) -> None:
    events = _events(["a", "b"])
    other = sink + "-2"
    runner.run_sync(box.enqueue(events, [sink, other]))
    runner.run_sync(box.enqueue(events, [sink]))  # already there: left as it is
    assert len(runner.run_sync(box.rows(sink=other))) == 2
    rows = runner.run_sync(box.rows(sink=sink))
    assert [r["event_id"] for r in rows] == [e.event_id for e in events]
    assert {r["state"] for r in rows} == {PENDING}


def test_claim_keeps_order_per_key_and_holds_rows(box: Outbox, sink: str) -> None:
    runner.run_sync(box.enqueue(_events(["a", "a", "b", "a"]), [sink]))
    first = runner.run_sync(box.claim(sink, "r1", limit=2, lease=60))
    assert [d.key for d in first] == ["a", "a"]
    # the other relay finds b, but not the third a: the first two are still pending
    second = runner.run_sync(box.claim(sink, "r2", limit=10, lease=60))
    assert [d.key for d in second] == ["b"]
    runner.run_sync(box.delivered([d.seq for d in first]))
    third = runner.run_sync(box.claim(sink, "r2", limit=10, lease=60))
    assert [d.key for d in third] == ["a"]
    assert third[0].body == b'{"n":3}'


def test_a_failing_row_holds_back_its_key_only(box: Outbox, sink: str) -> None:
    runner.run_sync(box.enqueue(_events(["a", "a", "b"]), [sink]))
    claimed = runner.run_sync(box.claim(sink, "r", limit=1, lease=60))
    later = datetime.now(UTC) + timedelta(hours=1)
    runner.run_sync(box.failed([claimed[0].seq], "boom", later))
    again = runner.run_sync(box.claim(sink, "r", limit=10, lease=60))
    assert [d.key for d in again] == ["b"]
    status = {s["sink"]: s for s in runner.run_sync(box.status())}[sink]
    assert status[PENDING] == 3 and status["failing"] == 1 and status["lag"] >= 0.0
    since = runner.run_sync(box.failing_since([claimed[0].seq]))
    assert list(since) == [claimed[0].seq]
    assert since[claimed[0].seq].tzinfo is not None  # stored as the column's own type


def test_an_expired_lease_gives_rows_back(box: Outbox, sink: str) -> None:
    runner.run_sync(box.enqueue(_events(["a"]), [sink]))
    now = datetime.now(UTC)
    assert len(runner.run_sync(box.claim(sink, "dead-relay", 10, lease=5, now=now))) == 1
    assert runner.run_sync(box.claim(sink, "r", 10, lease=5, now=now)) == []
    after = now + timedelta(seconds=6)
    assert len(runner.run_sync(box.claim(sink, "r", 10, lease=5, now=after))) == 1


def test_a_relays_claim_holds_its_rows_until_closed(box: Outbox, sink: str) -> None:
    runner.run_sync(box.enqueue(_events(["a", "a", "b", "a"]), [sink]))
    first = runner.run_sync(box.take(sink, "r1", limit=2, lease=60))
    assert [d.key for d in first.rows] == ["a", "a"]
    # another relay skips the held rows and the a after them, as with ``claim``
    second = runner.run_sync(box.take(sink, "r2", limit=10, lease=60))
    assert [d.key for d in second.rows] == ["b"]
    runner.run_sync(second.delivered([second.rows[0].seq]))
    runner.run_sync(second.close())
    runner.run_sync(first.delivered([first.rows[0].seq]))
    runner.run_sync(first.failed([first.rows[1].seq], "boom", datetime.now(UTC)))
    runner.run_sync(first.close())
    rows = {r["seq"]: r for r in runner.run_sync(box.rows(sink=sink))}
    marked = [rows[d.seq] for d in first.rows]
    assert [r["state"] for r in marked] == [DELIVERED, PENDING]
    assert [r["attempts"] for r in marked] == [1, 1] and marked[1]["last_error"] == "boom"
    assert [d.key for d in runner.run_sync(box.claim(sink, "r3", 10, lease=60))] == ["a", "a"]


@pytest.mark.postgres
def test_on_postgres_a_claim_closed_without_commit_gives_its_rows_back_at_once(
    pg_database_url: str, sink: str
) -> None:
    box = Outbox(pg_database_url)
    runner.run_sync(box.enqueue(_events(["a", "a"]), [sink]))
    held = runner.run_sync(box.take(sink, "r1", limit=10, lease=60))
    assert len(held.rows) == 2
    assert runner.run_sync(box.take(sink, "r2", limit=10, lease=60)).rows == []
    runner.run_sync(held.delivered([held.rows[0].seq]))
    runner.run_sync(held.close(commit=False))  # as a relay that died: nothing it marked stays
    assert {r["state"] for r in runner.run_sync(box.rows(sink=sink))} == {PENDING}
    again = runner.run_sync(box.take(sink, "r2", limit=10, lease=60))
    assert [d.seq for d in again.rows] == [d.seq for d in held.rows]
    runner.run_sync(again.close())


@pytest.mark.postgres
def test_on_postgres_a_hung_claim_ends_after_its_lease(pg_database_url: str, sink: str) -> None:
    box = Outbox(pg_database_url)
    runner.run_sync(box.enqueue(_events(["a"]), [sink]))
    hung = runner.run_sync(box.take(sink, "r1", limit=10, lease=0.5))
    assert len(hung.rows) == 1
    deadline = time.monotonic() + 30
    while not (again := runner.run_sync(box.take(sink, "r2", limit=10, lease=60))).rows:
        assert time.monotonic() < deadline, "the server never ended the hung claim"
        time.sleep(0.1)
    assert [d.seq for d in again.rows] == [d.seq for d in hung.rows]
    runner.run_sync(again.delivered([again.rows[0].seq]))
    runner.run_sync(again.close())
    with pytest.raises(StoreError):  # the hung relay's marks come too late: they are refused
        runner.run_sync(hung.delivered([hung.rows[0].seq]))
    runner.run_sync(hung.close(commit=False))
    assert [r["state"] for r in runner.run_sync(box.rows(sink=sink))] == [DELIVERED]


def test_dead_rows_keep_the_response_and_replay(box: Outbox, sink: str) -> None:
    runner.run_sync(box.enqueue(_events(["a", "b"]), [sink]))
    a, b = runner.run_sync(box.claim(sink, "r", 10, lease=60))
    runner.run_sync(box.dead([a.seq], "HTTP 400", response='{"error": "bad"}'))
    runner.run_sync(box.delivered([b.seq]))
    dead = runner.run_sync(box.rows(sink=sink, state=DEAD))
    assert dead[0]["response"] == '{"error": "bad"}' and dead[0]["last_error"] == "HTTP 400"
    assert runner.run_sync(box.replay(sink=sink, dead_only=True)) == 1
    assert [r["state"] for r in runner.run_sync(box.rows(sink=sink))] == [PENDING, DELIVERED]
    future = datetime.now(UTC) + timedelta(days=1)
    assert runner.run_sync(box.replay(sink=sink, since=future)) == 0
    assert runner.run_sync(box.replay(sink=sink)) == 1


def test_migration_0005_adds_and_removes_the_outbox(tmp_path: pytest.TempPathFactory) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from hookwire.stores import engine

    url = f"sqlite+aiosqlite:///{tmp_path}/m.db"

    async def tables() -> set[str]:
        async with engine.get_engine(url).connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))

    async def down() -> None:
        async with engine.get_write_engine(url).begin() as conn:
            await conn.run_sync(
                lambda c: command.downgrade(engine._alembic_config(c), "0004_scale")
            )

    assert runner.run_sync(engine.upgrade(url, "0004_scale")) == "0004_scale"
    assert "outbox" not in runner.run_sync(tables())
    assert runner.run_sync(engine.upgrade(url, "0005_outbox")) == "0005_outbox"
    assert "outbox" in runner.run_sync(tables())
    runner.run_sync(down())
    assert "outbox" not in runner.run_sync(tables())


def test_migration_0009_keeps_only_pending_rows_in_the_claim_indexes(
    tmp_path: pytest.TempPathFactory,
) -> None:
    import sqlite3
    from contextlib import closing

    from hookwire.stores import engine

    path = f"{tmp_path}/m.db"
    url = f"sqlite+aiosqlite:///{path}"
    assert (
        runner.run_sync(engine.upgrade(url, "0008_totals_period_key")) == "0008_totals_period_key"
    )
    box = Outbox(url)
    assert runner.run_sync(engine.upgrade(url)) == "0009_outbox_pending"
    runner.run_sync(box.enqueue(_events(["a", "b"]), ["s"]))
    runner.run_sync(box.delivered([runner.run_sync(box.claim("s", "r", 1, lease=60))[0].seq]))
    # closing(): a sqlite3 connection's own ``with`` commits but does not close (Python 3.13
    # reports the connection left open when it is collected, in whichever test that is).
    with closing(sqlite3.connect(path)) as conn:
        made = dict(
            conn.execute("SELECT name, sql FROM sqlite_master WHERE tbl_name = 'outbox'").fetchall()
        )
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM outbox WHERE sink = 's' AND state = 'pending' "
            "ORDER BY seq"
        ).fetchall()
    assert "ix_outbox_sink_state_seq" not in made and "ix_outbox_sink_key_state_seq" not in made
    for name in ("ix_outbox_pending", "ix_outbox_pending_key"):
        assert made[name].endswith("WHERE state = 'pending'")
    assert "ix_outbox_pending" in str(plan)  # the claim's query reads the partial index
    assert [r["state"] for r in runner.run_sync(box.rows(sink="s"))] == [DELIVERED, PENDING]

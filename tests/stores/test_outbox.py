"""The outbox store (``hookwire.stores.outbox``) on SQLite and PostgreSQL: rows per event and
sink, claims in order per key, leases, retries, dead rows, status and replay."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

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

"""``hookwire.stores.retention``: what ``hookwire db prune`` deletes and what it never does,
on SQLite and PostgreSQL (each test on a database of its own: prune works database-wide)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from hookwire.stores import engine, runner
from hookwire.stores.conversations import ConversationStore, Owner
from hookwire.stores.ledger import UsageLedger, UsageRecord
from hookwire.stores.ledger.records import Claim
from hookwire.stores.retention import Retention, prune
from hookwire.stores.schema import (
    budget_reservations,
    budget_totals,
    messages,
    usage_ledger,
    usage_totals,
)

UTC = timezone.utc
# The tests' clock, and prune's (now=NOW): a run that crosses midnight between the import and a
# test still prunes the days the rows were written for.
NOW = datetime.now(UTC)


def _call(user: str, at: datetime, cost: str = "0.5") -> UsageRecord:
    return UsageRecord(
        run_id=f"run-{uuid.uuid4().hex}",
        created_at=at,
        prompt_tokens=10,
        completion_tokens=5,
        total_tokens=15,
        cost=Decimal(cost),
        user_id=user,
        model="m",
        provider="p",
    )


async def _count(url: str, table: object, *where: object) -> int:
    async def go() -> int:
        async with engine.get_engine(url).connect() as conn:
            query = select(func.count()).select_from(table).where(*where)  # type: ignore[arg-type]
            return int((await conn.execute(query)).scalar_one())

    return await runner.run(go())


async def test_old_ledger_rows_and_totals_go_and_budgets_read_the_same(own_db_url: str) -> None:
    ledger = UsageLedger(own_db_url)
    old = [_call("u1", NOW - timedelta(days=d)) for d in (500, 450, 420)]
    await ledger.record([*old, _call("u1", NOW - timedelta(days=3)), _call("u1", NOW)])
    before = {p: await ledger.spent("user", "u1", p) for p in ("day", "month", None)}
    whole = await ledger.summary(["user"])

    counted = await runner.run(prune(own_db_url, Retention(batch=2), dry_run=True, now=NOW))
    assert counted["usage_ledger"] == 3
    assert counted["usage_totals (day)"] > 0
    assert await _count(own_db_url, usage_ledger) == 5  # a dry run deletes nothing

    done = await runner.run(prune(own_db_url, Retention(batch=2), now=NOW))  # batches of 2
    assert done == counted
    assert await _count(own_db_url, usage_ledger) == 2
    t = usage_totals.c
    assert await _count(own_db_url, usage_totals, t.period == "day", t.key == "u1") == 2
    # budgets in force read what they read before; all-time sums stay whole
    assert {p: await ledger.spent("user", "u1", p) for p in ("day", "month", None)} == before
    assert await ledger.summary(["user"]) == whole
    again = await runner.run(prune(own_db_url, Retention(batch=2), now=NOW))
    assert set(again.values()) == {0}


async def test_the_periods_in_force_and_the_last_are_kept_whatever_the_retention(
    own_db_url: str,
) -> None:
    ledger = UsageLedger(own_db_url)
    await ledger.record([_call("u2", NOW - timedelta(days=d)) for d in (0, 1, 2, 40, 70)])
    retention = Retention(ledger_days=1, day_totals_days=1, month_totals=1)
    await runner.run(prune(own_db_url, retention, now=NOW))
    t = usage_totals.c
    days = await _count(own_db_url, usage_totals, t.period == "day", t.scope == "user")
    months = await _count(own_db_url, usage_totals, t.period == "month", t.scope == "user")
    assert days == 2  # today and yesterday
    first_of_last_month = (NOW.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    kept = {NOW.strftime("%Y-%m"), first_of_last_month}
    written = {(NOW - timedelta(days=d)).strftime("%Y-%m") for d in (0, 1, 2, 40, 70)}
    assert months == len(kept & written)
    assert await ledger.spent("user", "u2", None) == Decimal("2.5")


async def test_retention_zero_keeps_every_row(own_db_url: str) -> None:
    ledger = UsageLedger(own_db_url)
    await ledger.record([_call("u3", NOW - timedelta(days=900))])
    keep = Retention(ledger_days=0, day_totals_days=0, month_totals=0)
    done = await runner.run(prune(own_db_url, keep, now=NOW))
    assert "usage_ledger" not in done and "usage_totals (day)" not in done
    assert await _count(own_db_url, usage_ledger) == 1


async def test_old_conversations_go_with_their_messages_only_when_asked(own_db_url: str) -> None:
    store = ConversationStore(own_db_url)
    me = Owner(user_id="u4", org_id="o", realm="r")
    old, recent = await store.create_conversation(me), await store.create_conversation(me)
    for cid in (old, recent):
        await store.add_message(me, cid, "hello", "end_user")
        await store.add_message(me, cid, "hi", "assistant")

    async def age() -> None:
        async with engine.get_write_engine(own_db_url).begin() as conn:
            await conn.execute(
                text("UPDATE conversations SET updated_at = :at WHERE id = :id"),
                {"at": _stored_time(own_db_url, NOW - timedelta(days=400)), "id": old},
            )

    await runner.run(age())
    assert "conversations" not in await runner.run(prune(own_db_url, now=NOW))  # kept by default
    counted = await runner.run(
        prune(own_db_url, Retention(conversation_days=365), dry_run=True, now=NOW)
    )
    assert counted["conversations"] == 1
    await runner.run(prune(own_db_url, Retention(conversation_days=365), now=NOW))
    listed = [c["id"] for c in (await store.list_conversations(me)).items]
    assert listed == [recent]
    assert await _count(own_db_url, messages) == 2


def _stored_time(url: str, at: datetime) -> object:
    # as UTCDateTime stores it: ISO text on SQLite, a timestamptz on PostgreSQL
    return at.isoformat(timespec="microseconds") if engine.is_sqlite(url) else at


async def test_expired_reservations_of_ended_periods_go_live_ones_stay(own_db_url: str) -> None:
    ledger = UsageLedger(own_db_url)
    # of another key: a check on SQLite removes its own key's expired reservations
    gone = Claim("user", "u5-gone", "day", Decimal(100), Decimal(1))
    await ledger.reserve("run-old", [gone], ttl=60, now=NOW - timedelta(days=3))
    live = Claim("user", "u5", "day", Decimal(100), Decimal(1))
    await ledger.reserve("run-live", [live], ttl=600)
    done = await runner.run(prune(own_db_url, now=NOW))
    assert done["budget_reservations"] == 1
    r = budget_reservations.c
    assert await _count(own_db_url, budget_reservations, r.key == "u5") == 1
    assert await _count(own_db_url, budget_reservations, r.key == "u5-gone") == 0
    assert await ledger.reserved("user", "u5", "day") == Decimal(1)
    if not engine.is_sqlite(own_db_url):
        b = budget_totals.c
        assert done["budget_totals"] == 1  # the ended day's
        assert await _count(own_db_url, budget_totals, b.key == "u5") == 1  # today's


@pytest.mark.parametrize("field", ["ledger_days", "batch"])
def test_a_retention_must_be_a_whole_number(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Retention(**{field: -1})
    with pytest.raises(ValueError, match="batch"):
        Retention(batch=0)

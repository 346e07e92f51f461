"""hookwire.stores.ledger on SQLite and PostgreSQL: idempotent rows, exact money, totals,
summaries, and budget reservations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookwire.errors import BudgetExceeded, ConfigurationError, StoreError
from hookwire.stores import runner
from hookwire.stores.ledger import Claim, UsageLedger, UsageRecord, period_start
from hookwire.stores.ledger import connections as ledger_module

UTC = timezone.utc
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def uid() -> str:
    # The PostgreSQL database is shared by the session's tests: keep each test's keys apart.
    return f"u-{uuid.uuid4().hex[:10]}"


def rec(run_id: str | None = None, **kw: Any) -> UsageRecord:
    base: dict[str, Any] = {
        "run_id": run_id or uuid.uuid4().hex,
        "created_at": T0,
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "total_tokens": 150,
        "cost": Decimal("0.001"),
    }
    base.update(kw)
    return UsageRecord(**base)


def test_record_is_idempotent_by_run_id(db_url: str) -> None:
    ledger = UsageLedger(db_url)
    user = uid()
    first = rec("r1-" + user, user_id=user)
    again = rec("r1-" + user, user_id=user, prompt_tokens=999, total_tokens=1049)
    written = runner.run_sync(ledger.record([first, again]))
    assert written == [first]
    assert runner.run_sync(ledger.record([again])) == []
    rows = runner.run_sync(ledger.records(user_id=user))
    assert len(rows) == 1
    assert rows[0].prompt_tokens == 100
    # The totals count the run once too.
    assert runner.run_sync(ledger.spent("user", user, None)) == Decimal("0.001")


def test_row_round_trips(db_url: str) -> None:
    ledger = UsageLedger(db_url)
    user = uid()
    r = rec(
        user_id=user,
        org_id="o",
        agent="a",
        conversation_id="c",
        model="gpt-4o",
        provider="openai",
        cached_tokens=20,
        reasoning_tokens=10,
        correlation_id="corr",
        request_id="req",
        trace_id="t",
        source="manual",
        cost=Decimal("0.123456789012"),
    )
    runner.run_sync(ledger.record([r]))
    (back,) = runner.run_sync(ledger.records(run_id=r.run_id))
    assert back == r


def test_unknown_cost_is_null_not_zero(db_url: str) -> None:
    ledger = UsageLedger(db_url)
    user = uid()
    runner.run_sync(ledger.record([rec(user_id=user, cost=None, model="mystery")]))
    (row,) = runner.run_sync(ledger.summary(["user"], where={"user": user}))
    assert row["cost"] is None
    assert row["unknown_cost_calls"] == 1
    assert row["calls"] == 1


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.decimals(min_value=0, max_value=1000, places=12, allow_nan=False),
        min_size=1,
        max_size=20,
    )
)
def test_money_sums_are_exact(db_url: str, costs: list[Decimal]) -> None:
    ledger = UsageLedger(db_url)
    user = uid()
    runner.run_sync(ledger.record([rec(user_id=user, cost=c) for c in costs]))
    (row,) = runner.run_sync(ledger.summary(["user"], where={"user": user}))
    assert row["cost"] == sum(costs)
    assert runner.run_sync(ledger.spent("user", user, None)) == sum(costs)
    assert runner.run_sync(ledger.spent("user", user, "day", at=T0)) == sum(costs)


def test_money_is_rounded_to_twelve_places(db_url: str) -> None:
    ledger = UsageLedger(db_url)
    user = uid()
    runner.run_sync(ledger.record([rec(user_id=user, cost=Decimal("0.0000000000015"))]))
    (back,) = runner.run_sync(ledger.records(user_id=user))
    assert back.cost == Decimal("0.000000000002")  # half-even at the 12th place


def test_summary_groups_and_ranges(db_url: str) -> None:
    ledger = UsageLedger(db_url)
    org = uid()
    a, b = uid(), uid()
    day1 = T0
    day2 = T0 + timedelta(days=1)
    runner.run_sync(
        ledger.record(
            [
                rec(user_id=a, org_id=org, model="m1", created_at=day1, cost=Decimal("1")),
                rec(user_id=a, org_id=org, model="m2", created_at=day1, cost=Decimal("2")),
                rec(user_id=b, org_id=org, model="m1", created_at=day2, cost=Decimal("4")),
                rec(user_id=b, org_id=org, model="m1", created_at=day2, cost=None),
            ]
        )
    )
    by_user = runner.run_sync(ledger.summary(["user"], where={"org": org}))
    assert [(r["user"], r["calls"], r["cost"]) for r in by_user] == sorted(
        [(a, 2, Decimal(3)), (b, 2, Decimal(4))]
    )
    by_day_model = runner.run_sync(ledger.summary(("day", "model"), where={"org": org}))
    assert [(r["day"], r["model"], r["calls"]) for r in by_day_model] == [
        ("2026-11-23", "m1", 1),
        ("2026-11-23", "m2", 1),
        ("2026-11-24", "m1", 2),
    ]
    total = runner.run_sync(ledger.summary(where={"org": org}))
    assert len(total) == 1
    assert total[0]["calls"] == 4
    assert total[0]["prompt_tokens"] == 400
    assert total[0]["completion_tokens"] == 200
    assert total[0]["cost"] == Decimal(7)
    assert total[0]["unknown_cost_calls"] == 1
    only_day2 = runner.run_sync(
        ledger.summary(["org"], since=date(2026, 11, 24), where={"org": org})
    )
    assert only_day2[0]["calls"] == 2
    only_day1 = runner.run_sync(ledger.summary(["month"], until="2026-11-24", where={"org": org}))
    assert only_day1 == [
        {
            "month": "2026-11",
            "currency": "USD",
            "calls": 2,
            "prompt_tokens": 200,
            "completion_tokens": 100,
            "cached_tokens": None,
            "reasoning_tokens": None,
            "total_tokens": 300,
            "cost": Decimal(3),
            "unknown_cost_calls": 0,
            "estimated_calls": 0,
            "estimated_tokens": 0,
            "estimated_cost": None,
        }
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"by": ["weather"]}, "cannot group usage by 'weather'"),
        ({"by": ["user", "user"]}, "twice"),
        ({"since": "yesterday-ish"}, "ISO 8601"),
        ({"where": {"colour": "red"}}, "cannot filter"),
    ],
)
def test_summary_rejects_bad_arguments(tmp_path: Any, kwargs: dict[str, Any], message: str) -> None:
    ledger = UsageLedger(f"sqlite:///{tmp_path}/l.db")
    with pytest.raises(ConfigurationError, match=message):
        runner.run_sync(ledger.summary(**kwargs))


def test_totals_are_kept_per_period(db_url: str) -> None:
    ledger = UsageLedger(db_url)
    user = uid()
    runner.run_sync(
        ledger.record(
            [
                rec(user_id=user, created_at=T0, cost=Decimal("1")),
                rec(user_id=user, created_at=T0 + timedelta(days=1), cost=Decimal("2")),
                rec(user_id=user, created_at=T0 + timedelta(days=5), cost=Decimal("4")),
            ]
        )
    )
    spent = lambda period, at: runner.run_sync(ledger.spent("user", user, period, at=at))  # noqa: E731
    assert spent("day", T0) == 1
    assert spent("day", T0 + timedelta(days=1)) == 2
    assert spent("month", T0) == 7
    assert spent("month", T0 + timedelta(days=30)) == 0
    assert spent(None, T0) == 7


def test_reserve_refuses_at_the_limit_and_reservations_count(db_url: str) -> None:
    ledger = UsageLedger(db_url)
    user = uid()
    now = datetime.now(UTC)

    def claim(amount: str, limit: str = "1") -> list[Claim]:
        return [Claim("user", user, "day", Decimal(limit), Decimal(amount))]

    runner.run_sync(ledger.reserve("a-" + user, claim("0.6"), now=now))
    assert runner.run_sync(ledger.reserved("user", user, "day")) == Decimal("0.6")
    runner.run_sync(ledger.reserve("b-" + user, claim("0.6"), now=now))  # 0.6 < 1: admitted
    with pytest.raises(BudgetExceeded) as info:
        runner.run_sync(ledger.reserve("c-" + user, claim("0.1"), now=now))
    err = info.value
    assert err.scope == "user"
    assert err.key == user
    assert err.limit == Decimal(1)
    assert err.spent == Decimal("1.2")
    assert "daily budget" in str(err)
    # Settling run a with its real cost frees the rest of its reservation.
    runner.run_sync(ledger.record([rec("a-" + user, user_id=user, cost=Decimal("0.1"))]))
    assert runner.run_sync(ledger.reserved("user", user, "day")) == Decimal("0.6")
    runner.run_sync(ledger.release(["b-" + user]))
    assert runner.run_sync(ledger.reserved("user", user, "day")) == 0
    runner.run_sync(ledger.reserve("c-" + user, claim("0.1"), now=now))


def test_expired_reservations_stop_counting(db_url: str) -> None:
    ledger = UsageLedger(db_url)
    user = uid()
    past = datetime.now(UTC) - timedelta(hours=1)
    claims = [Claim("user", user, None, Decimal(1), Decimal(5))]
    runner.run_sync(ledger.reserve("old-" + user, claims, ttl=60, now=past))
    # An hour later the dead call's reservation no longer blocks the budget.
    runner.run_sync(ledger.reserve("new-" + user, claims, ttl=60))


@pytest.mark.parametrize("path", ["reserve", "reserve_sync", "areserve"])
def test_a_refused_check_reserves_nothing(db_url: str, path: str) -> None:
    ledger = UsageLedger(db_url)
    user, org = uid(), uid()
    runner.run_sync(ledger.record([rec(org_id=org, cost=Decimal(5))]))
    claims = [
        Claim("user", user, "month", Decimal(100), Decimal(1)),
        Claim("org", org, None, Decimal(5), Decimal(1)),
    ]
    checks: dict[str, Callable[[], Any]] = {
        "reserve": lambda: runner.run_sync(ledger.reserve("x-" + user, claims)),
        "reserve_sync": lambda: ledger.reserve_sync("x-" + user, claims),
        "areserve": lambda: asyncio.run(ledger.areserve("x-" + user, claims)),
    }
    with pytest.raises(BudgetExceeded, match="budget of org"):
        checks[path]()
    assert runner.run_sync(ledger.reserved("user", user, "month")) == 0


def test_the_sync_and_async_checks_hold_the_same_budget_as_reserve(db_url: str) -> None:
    # reserve_sync (sync code, no event loop on PostgreSQL) and areserve (the caller's own
    # loop) share the reservations of reserve: one budget, whichever path checks it.
    ledger = UsageLedger(db_url)
    user = uid()
    claims = [Claim("user", user, "day", Decimal(1), Decimal("0.4"))]
    ledger.reserve_sync("a-" + user, claims)
    asyncio.run(ledger.areserve("b-" + user, claims))
    runner.run_sync(ledger.reserve("c-" + user, claims))  # 0.8 < 1: admitted
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve_sync("d-" + user, claims)
    assert info.value.spent == Decimal("1.2")
    assert info.value.key == user
    with pytest.raises(BudgetExceeded, match="daily budget of user"):
        asyncio.run(ledger.areserve("e-" + user, claims))
    assert runner.run_sync(ledger.reserved("user", user, "day")) == Decimal("1.2")
    # Nothing to check, nothing done (and no connection opened).
    ledger.reserve_sync("f-" + user, [])
    asyncio.run(ledger.areserve("f-" + user, []))
    runner.run_sync(ledger.release(["a-" + user, "b-" + user, "c-" + user]))
    ledger.reserve_sync("d-" + user, claims)
    assert runner.run_sync(ledger.reserved("user", user, "day")) == Decimal("0.4")


def test_the_callers_loop_pool_is_closed_when_that_loop_ends(pg_database_url: str) -> None:
    ledger = UsageLedger(pg_database_url)
    user = uid()
    claims = [Claim("user", user, None, Decimal(10), Decimal("0.1"))]
    pools: list[Any] = []

    async def check() -> None:
        await ledger.areserve("a-" + user, claims)
        await ledger.areserve("b-" + user, claims)  # the same pool again
        key = (pg_database_url, id(asyncio.get_running_loop()))
        pools.append(await ledger_module._budget_pools[key][1])
        assert key in ledger_module._pool_closers

    asyncio.run(check())
    assert pools[0].is_closing()
    assert not [k for k in ledger_module._pool_closers if k[0] == pg_database_url]
    # A new loop gets a new pool, and the store loop's checks are untouched.
    asyncio.run(ledger.areserve("c-" + user, claims))
    runner.run_sync(ledger.reserve("d-" + user, claims))
    assert runner.run_sync(ledger.reserved("user", user, None)) == Decimal("0.4")


def test_dispose_budget_pools_closes_the_callers_loop_pool(pg_database_url: str) -> None:
    ledger = UsageLedger(pg_database_url)
    claims = [Claim("user", uid(), None, Decimal(10), Decimal("0.1"))]

    async def check() -> Any:
        await ledger.areserve(uuid.uuid4().hex, claims)
        key = (pg_database_url, id(asyncio.get_running_loop()))
        pool = await ledger_module._budget_pools[key][1]
        await ledger_module.dispose_budget_pools()
        assert key not in ledger_module._budget_pools
        assert key not in ledger_module._pool_closers
        return pool

    assert asyncio.run(check()).is_closing()


def test_a_sync_check_against_an_unreachable_server_is_a_store_error() -> None:
    ledger = UsageLedger("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    claims = [Claim("user", uid(), None, Decimal(10), Decimal("0.1"))]
    with pytest.raises(StoreError):
        ledger.reserve_sync("a", claims)
    with pytest.raises(StoreError):
        asyncio.run(ledger.areserve("a", claims))


def test_sync_check_connections_are_reused_and_closed(pg_database_url: str) -> None:
    ledger = UsageLedger(pg_database_url)
    claims = [Claim("user", uid(), None, Decimal(10), Decimal("0.1"))]
    ledger_module.close_sync_budget_connections()
    for _ in range(3):
        ledger.reserve_sync(uuid.uuid4().hex, claims)
    idle = ledger_module._sync_idle[pg_database_url]
    assert len(idle) == 1  # one thread, one connection, taken and given back each time
    conn = idle[0].connection  # kept as the cursor every check reuses
    ledger_module.close_sync_budget_connections()
    assert conn.closed
    assert not ledger_module._sync_idle
    ledger.reserve_sync(uuid.uuid4().hex, claims)  # reopens on demand


def test_period_start_keys() -> None:
    assert period_start("day", T0) == "2026-11-23"
    assert period_start("month", T0) == "2026-11"
    assert period_start(None, T0) == ""
    # Calendar periods are in UTC.
    late = datetime(2026, 11, 30, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert period_start("month", late) == "2026-12"


def test_spent_rejects_unknown_scope(tmp_path: Any) -> None:
    ledger = UsageLedger(f"sqlite:///{tmp_path}/l.db")
    with pytest.raises(ConfigurationError, match="scope"):
        runner.run_sync(ledger.spent("planet", "x"))


def test_bad_database_is_a_store_error(tmp_path: Any) -> None:
    from hookwire.errors import StoreError

    ledger = UsageLedger("postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(StoreError):
        runner.run_sync(ledger.summary(), timeout=30)


def test_budget_check_through_psycopg(pg_database_url: str) -> None:
    # postgresql+psycopg:// URLs check budgets through psycopg instead of asyncpg.
    url = pg_database_url.replace("postgresql+asyncpg", "postgresql+psycopg")
    ledger = UsageLedger(url)
    user = uid()
    claims = [Claim("user", user, "day", Decimal(1), Decimal("0.7"))]
    runner.run_sync(ledger.reserve("a-" + user, claims))
    runner.run_sync(ledger.reserve("b-" + user, claims))  # 0.7 used: still under 1
    with pytest.raises(BudgetExceeded):
        runner.run_sync(ledger.reserve("c-" + user, claims))
    assert runner.run_sync(ledger.reserved("user", user, "day")) == Decimal("1.4")


# -- PostgreSQL's running total of reservations (migration 0003_budget_totals) ----------------


def _reserved_columns(url: str, key: str) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """Per (period, period_start) of ``key``: ``budget_totals.reserved`` and the sum of the
    reservation rows it stands for."""
    from sqlalchemy import text

    from hookwire.stores import engine

    async def go() -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
        async with engine.get_engine(url).connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT t.period, t.period_start, t.reserved, "
                    "COALESCE((SELECT sum(r.amount) FROM budget_reservations r "
                    "WHERE r.scope = t.scope AND r.key = t.key AND r.period = t.period "
                    "AND r.period_start = t.period_start AND r.currency = t.currency), 0) "
                    "FROM budget_totals t WHERE t.key = :key"
                ),
                {"key": key},
            )
            return {(p, s): (Decimal(a), Decimal(b)) for p, s, a, b in rows}

    return runner.run_sync(go())


def _assert_total_matches_rows(url: str, key: str) -> None:
    for where, (column, rows) in _reserved_columns(url, key).items():
        assert column == rows, where


def test_the_reserved_total_follows_the_reservations(pg_database_url: str) -> None:
    url = pg_database_url
    ledger = UsageLedger(url)
    user, org = uid(), uid()
    now = datetime.now(UTC)

    def claims(amount: str, org_limit: str = "10") -> list[Claim]:
        # Given out of order: the ledger sorts them, so every check takes rows in one order.
        return [
            Claim("org", org, None, Decimal(org_limit), Decimal(amount)),
            Claim("user", user, "day", Decimal(1), Decimal(amount)),
        ]

    def check() -> None:
        _assert_total_matches_rows(url, user)
        _assert_total_matches_rows(url, org)

    ledger.reserve_sync("a-" + user, claims("0.3"))  # the first check creates the rows
    check()
    ledger.reserve_sync("a-" + user, claims("0.3"))  # the same run again: counted once
    asyncio.run(ledger.areserve("b-" + user, claims("0.3")))
    check()
    assert _reserved_columns(url, user)[("day", period_start("day", now))][0] == Decimal("0.6")
    # Refused by the user's daily budget (the second claim once sorted): the org's claim,
    # admitted first, is undone with it.
    runner.run_sync(ledger.reserve("c-" + user, claims("0.4")))  # 1.0: at the limit
    with pytest.raises(BudgetExceeded, match="daily budget of user") as info:
        ledger.reserve_sync("d-" + user, claims("0.2"))
    assert info.value.spent == 1
    check()
    assert _reserved_columns(url, org)[("all", "")][0] == 1
    # Refused by the org's budget (the first claim): nothing is reserved for the user.
    with pytest.raises(BudgetExceeded, match="budget of org"):
        ledger.reserve_sync("e-" + user, claims("0.05", org_limit="0.5"))
    check()
    runner.run_sync(ledger.record([rec("a-" + user, user_id=user, org_id=org, created_at=now)]))
    runner.run_sync(ledger.release(["b-" + user, "c-" + user, "never-reserved"]))
    check()
    assert {v[0] for v in _reserved_columns(url, user).values()} == {Decimal(0)}
    assert {v[0] for v in _reserved_columns(url, org).values()} == {Decimal(0)}


def test_a_refused_check_drops_its_keys_expired_reservations(pg_database_url: str) -> None:
    ledger = UsageLedger(pg_database_url)
    user = uid()
    past = datetime.now(UTC) - timedelta(hours=1)
    claims = [Claim("user", user, None, Decimal(1), Decimal(5))]
    ledger.reserve_sync("dead-" + user, claims, ttl=60, now=past)
    assert _reserved_columns(pg_database_url, user)[("all", "")][0] == 5
    ledger.reserve_sync("live-" + user, claims)  # over the limit only with the dead call's 5
    assert _reserved_columns(pg_database_url, user)[("all", "")] == (5, 5)
    assert runner.run_sync(ledger.reserved("user", user)) == 5


def test_record_drops_expired_reservations_from_the_totals(pg_database_url: str) -> None:
    ledger = UsageLedger(pg_database_url)
    user = uid()
    past = datetime.now(UTC) - timedelta(hours=1)
    claims = [Claim("user", user, "month", Decimal(100), Decimal(2))]
    ledger.reserve_sync("dead-" + user, claims, ttl=60, now=past)
    ledger.reserve_sync("live-" + user, claims)
    runner.run_sync(UsageLedger(pg_database_url).record([rec(user_id=uid())]))
    totals = _reserved_columns(pg_database_url, user)
    assert sorted(totals.values()) == [(0, 0), (2, 2)] or list(totals.values()) == [(2, 2)]
    assert runner.run_sync(ledger.reserved("user", user, "month")) == 2


@pytest.mark.timeout(60)
def test_a_budget_check_does_not_wait_for_a_ledger_write(pg_database_url: str) -> None:
    # A ledger write holds its usage_totals rows until its (synchronous) commit; the check
    # only reads them, so an LLM call that follows another does not wait for that commit.
    import threading

    import psycopg

    ledger = UsageLedger(pg_database_url)
    user = uid()
    claims = [Claim("user", user, "day", Decimal(10), Decimal("0.1"))]
    runner.run_sync(ledger.record([rec(user_id=user, created_at=datetime.now(UTC))]))
    ledger.reserve_sync(uuid.uuid4().hex, claims)
    with psycopg.connect(ledger_module.dsn(pg_database_url)) as writer:
        writer.execute("UPDATE usage_totals SET calls = calls + 1 WHERE key = %s", (user,))
        done = threading.Event()

        def check() -> None:
            ledger.reserve_sync(uuid.uuid4().hex, claims)
            done.set()

        thread = threading.Thread(target=check, daemon=True)
        thread.start()
        finished = done.wait(10)
        writer.rollback()
        thread.join(10)
    assert finished


@pytest.mark.timeout(120)
def test_concurrent_checks_of_overlapping_budgets_neither_deadlock_nor_overspend(
    pg_database_url: str,
) -> None:
    import random
    import threading

    ledger = UsageLedger(pg_database_url)
    org = uid()
    users = [uid(), uid()]
    limit, amount = Decimal("0.5"), Decimal("0.02")
    errors: list[BaseException] = []
    made: list[str] = []

    def worker(user: str) -> None:
        for _ in range(25):
            run = uuid.uuid4().hex
            claims = [
                Claim("user", user, "day", Decimal(1), amount),
                Claim("org", org, "day", limit, amount),
            ]
            random.shuffle(claims)
            try:
                ledger.reserve_sync(run, claims)
            except BudgetExceeded:
                continue
            except BaseException as exc:  # a deadlock would surface here
                errors.append(exc)
                return
            made.append(run)
            done = rec(run, user_id=user, org_id=org, cost=amount, created_at=datetime.now(UTC))
            runner.run_sync(ledger.record([done]))

    threads = [threading.Thread(target=worker, args=(u,)) for u in users for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(made) < 100  # the org's budget stopped some
    assert runner.run_sync(ledger.spent("org", org, "day")) <= limit + amount
    assert runner.run_sync(ledger.spent("org", org, "day")) == amount * len(made)
    _assert_total_matches_rows(pg_database_url, org)
    assert (
        _reserved_columns(pg_database_url, org)[("day", period_start("day", datetime.now(UTC)))][0]
        == 0
    )


def test_the_migration_counts_reservations_already_in_flight(pg_url: str) -> None:
    # A database at 0002 with calls in flight: 0003 starts the running totals from them, and
    # the downgrade puts 0002's check back.
    from sqlalchemy import text

    from hookwire.stores import engine

    def admin(sql: str) -> None:
        import asyncpg  # type: ignore[import-untyped]

        async def go() -> None:
            conn = await asyncpg.connect(ledger_module.dsn(pg_url))
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(go())

    name = f"hookwire_t_{uuid.uuid4().hex[:12]}"
    url = pg_url.rsplit("/", 1)[0] + "/" + name
    admin(f'CREATE DATABASE "{name}"')
    user = uid()
    try:
        runner.run_sync(engine.upgrade(url, "0002_ledger"), timeout=120)

        async def in_flight() -> None:
            async with engine.get_write_engine(url).begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO budget_reservations VALUES "
                        "('r1', 'user', :u, 'all', '', 'USD', 0.25, now() + interval '1 hour'),"
                        "('r2', 'user', :u, 'all', '', 'USD', 0.5, now() + interval '1 hour')"
                    ),
                    {"u": user},
                )

        runner.run_sync(in_flight())
        assert runner.run_sync(engine.upgrade(url), timeout=120) == engine.head_revision()
        assert _reserved_columns(url, user) == {("all", ""): (Decimal("0.75"), Decimal("0.75"))}
        ledger = UsageLedger(url)
        claims = [Claim("user", user, None, Decimal(1), Decimal("0.25"))]
        ledger.reserve_sync("r3", claims)
        with pytest.raises(BudgetExceeded):
            ledger.reserve_sync("r4", claims)
        runner.run_sync(ledger.release(["r1", "r2", "r3"]))
        assert _reserved_columns(url, user) == {("all", ""): (0, 0)}

        from alembic import command

        def down(conn: Any) -> None:
            command.downgrade(engine._alembic_config(conn), "0002_ledger")

        async def downgrade() -> list[str]:
            async with engine.get_write_engine(url).begin() as conn:
                await conn.run_sync(down)
                rows = await conn.execute(
                    text(
                        "SELECT pg_get_function_identity_arguments(oid) FROM pg_proc "
                        "WHERE proname = 'hookwire_reserve'"
                    )
                )
                return [r[0] for r in rows]

        (arguments,) = runner.run_sync(downgrade())
        assert arguments.startswith("p_run_id text, p_locks bigint[]")
        assert runner.run_sync(engine.upgrade(url), timeout=120) == engine.head_revision()
    finally:
        ledger_module.close_sync_budget_connections()
        runner.run_sync(engine.dispose_engines(), timeout=30)
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

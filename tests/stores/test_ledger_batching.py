"""hookwire.stores.ledger.batching: concurrent budget checks made together, on SQLite and
PostgreSQL (asyncpg, and psycopg through hookwire_reserve): each admitted or refused as the
one-by-one rule says, and a check whose caller stops waiting gives its reservation back."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookwire import CallbackManager
from hookwire.callbacks.accounting import AccountingCallbackHandler, Budget
from hookwire.errors import BudgetExceeded
from hookwire.stores import runner
from hookwire.stores.ledger import Claim, UsageLedger
from hookwire.stores.ledger.batching import Ask, Outcome

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(params=["default", "psycopg"])
def url(request: pytest.FixtureRequest, db_url: str) -> str:
    """The test's database, and on PostgreSQL also through psycopg (hookwire_reserve per
    check, in one statement)."""
    if request.param == "psycopg":
        if db_url.startswith("sqlite"):
            pytest.skip("PostgreSQL only")
        return db_url.replace("postgresql+asyncpg://", "postgresql+psycopg://")
    return db_url


class Gate:
    """Holds a ledger's batches until opened, counting them and their sizes (after a first
    check: its batcher is made then)."""

    def __init__(self, ledger: UsageLedger) -> None:
        self.sizes: list[int] = []
        #: The run ids in the order the batches took them (the order the checks arrived in).
        self.order: list[str] = []
        self.open = asyncio.Event()
        self.open.set()
        self.went = asyncio.Event()
        batcher = ledger._batcher  # type: ignore[attr-defined]
        inner: Callable[[list[Ask]], Awaitable[list[Outcome]]] = batcher._reserve_many

        async def held(asks: list[Ask]) -> list[Outcome]:
            self.sizes.append(len(asks))
            self.order += [a.run_id for a in asks]
            self.went.set()
            await self.open.wait()
            return await inner(asks)

        batcher._reserve_many = held


async def _warm(ledger: UsageLedger) -> None:
    # The schema check and the connection pool, so that the measured checks start together.
    await ledger.areserve(
        "warm-" + uuid.uuid4().hex, [Claim("user", "warm", None, Decimal(1), Decimal(0))]
    )


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait for work done in the background (a poll, not a timed assertion)."""
    for _ in range(2000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def _drained(ledger: UsageLedger) -> Callable[[], Awaitable[bool]]:
    """Whether no batch of this loop's checks is in flight (its cancelled checks given back)."""
    loop = asyncio.get_running_loop()

    async def done() -> bool:
        return not ledger._batcher._waiting.get(loop)  # type: ignore[attr-defined]

    return done


def _sequential(
    asks: list[tuple[int, Decimal]], limits: list[Decimal], org_limit: Decimal | None
) -> list[bool]:
    """The one-by-one rule: a call is admitted while every budget's spent plus reserved is
    under its limit, and then reserves its amount on each."""
    users = [Decimal(0)] * len(limits)
    org = Decimal(0)
    out = []
    for who, amount in asks:
        ok = users[who] < limits[who] and (org_limit is None or org < org_limit)
        out.append(ok)
        if ok:
            users[who] += amount
            org += amount
    return out


money = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("1"), places=3)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    asks=st.lists(st.tuples(st.integers(0, 2), money), min_size=1, max_size=40),
    limits=st.lists(money, min_size=3, max_size=3),
    org_limit=st.one_of(st.none(), money.map(lambda d: d * 3)),
)
def test_a_batch_admits_and_refuses_as_checks_one_by_one(
    url: str, asks: list[tuple[int, Decimal]], limits: list[Decimal], org_limit: Decimal | None
) -> None:
    if url.startswith("postgresql+psycopg"):
        # There checks of several budgets are batched per set of keys, and the batches of
        # different users run side by side: the org's row lock, not the arrival, orders them.
        org_limit = None
    tag = uuid.uuid4().hex[:10]
    users = [f"b-{tag}-{i}" for i in range(3)]
    org = f"o-{tag}"

    def claims(who: int, amount: Decimal) -> list[Claim]:
        out = [Claim("user", users[who], "day", limits[who], amount)]
        if org_limit is not None:
            out.append(Claim("org", org, None, org_limit, amount))
        return out

    async def check_all() -> tuple[list[Any], list[int], list[str]]:
        ledger = UsageLedger(url)
        await _warm(ledger)
        gate = Gate(ledger)
        outcomes = await asyncio.gather(
            *(ledger.areserve(f"{tag}-{i}", claims(*a)) for i, a in enumerate(asks)),
            return_exceptions=True,
        )
        return outcomes, gate.sizes, gate.order

    outcomes, sizes, order = asyncio.run(check_all())
    if not url.startswith("postgresql+psycopg"):
        # One transaction for all of them, in the order they were made.
        assert sizes == [len(asks)]
        assert order == [f"{tag}-{i}" for i in range(len(asks))]
    # (Through psycopg each check hops to the store loop on its own: they arrive there in
    # an order of their own, which is the order they are checked in.)
    assert sorted(order) == sorted(f"{tag}-{i}" for i in range(len(asks)))
    arrived = [int(run_id.rsplit("-", 1)[1]) for run_id in order]
    in_order = _sequential([asks[i] for i in arrived], limits, org_limit)
    expected = [False] * len(asks)
    for i, ok in zip(arrived, in_order, strict=True):
        expected[i] = ok
    assert [o is None for o in outcomes] == expected
    for o in outcomes:
        assert o is None or isinstance(o, BudgetExceeded), o
    ledger = UsageLedger(url)
    for i, user in enumerate(users):
        admitted = sum(
            (a for (who, a), ok in zip(asks, expected, strict=True) if ok and who == i),
            Decimal(0),
        )
        assert runner.run_sync(ledger.reserved("user", user, "day")) == admitted
    if org_limit is not None:
        admitted = sum((a for (_, a), ok in zip(asks, expected, strict=True) if ok), Decimal(0))
        assert runner.run_sync(ledger.reserved("org", org, None)) == admitted


def test_a_refusal_names_the_budget_and_what_it_has_used(url: str) -> None:
    user = f"r-{uuid.uuid4().hex[:10]}"
    claim = [Claim("user", user, "day", Decimal("1"), Decimal("0.6"))]

    async def two() -> list[Any]:
        ledger = UsageLedger(url)
        await _warm(ledger)
        return await asyncio.gather(
            *(ledger.areserve(f"{user}-{i}", claim) for i in range(3)), return_exceptions=True
        )

    first, second, third = asyncio.run(two())
    assert first is None and second is None  # 0.6 < 1: admitted, as one by one
    assert isinstance(third, BudgetExceeded)
    assert third.key == user
    assert third.spent == Decimal("1.2")
    assert "daily budget" in str(third)


def test_a_check_cancelled_while_its_batch_is_in_flight_gives_its_reservation_back(
    db_url: str,
) -> None:
    url = db_url
    user = f"c-{uuid.uuid4().hex[:10]}"
    claim = [Claim("user", user, "day", Decimal(100), Decimal("0.25"))]

    async def scenario() -> None:
        ledger = UsageLedger(url)
        await _warm(ledger)
        gate = Gate(ledger)
        gate.open.clear()
        tasks = [asyncio.create_task(ledger.areserve(f"{user}-{i}", claim)) for i in range(4)]
        await gate.went.wait()  # the batch has gone to the database, and waits there
        # Two more wait for the next batch; one of them is cancelled before it goes.
        late = [asyncio.create_task(ledger.areserve(f"{user}-late-{i}", claim)) for i in range(2)]
        await asyncio.sleep(0)
        tasks[1].cancel()
        late[0].cancel()
        gate.open.set()
        results = await asyncio.gather(*tasks, *late, return_exceptions=True)
        assert isinstance(results[1], asyncio.CancelledError)
        assert isinstance(results[4], asyncio.CancelledError)
        assert [r for i, r in enumerate(results) if i not in (1, 4)] == [None] * 4
        assert gate.sizes == [4, 1]  # the cancelled late check never went
        # The in-flight check's reservation was made, then given back.
        await _until(_drained(ledger))
        assert await runner.run(ledger.reserved("user", user, "day")) == Decimal("0.25") * 4

    asyncio.run(scenario())


@pytest.fixture
def pg_only(db_url: str) -> str:
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite checks are not bounded by check_timeout (bounded_by_timeout)")
    return db_url


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_batch_past_check_timeout_fails_open_or_closed_and_gives_back(
    pg_only: str, fail_open: bool, caplog: pytest.LogCaptureFixture
) -> None:
    user = f"t-{uuid.uuid4().hex[:10]}"
    ledger = UsageLedger(pg_only)
    await _warm(ledger)
    gate = Gate(ledger)
    gate.open.clear()  # the database takes longer than the check may
    h = AccountingCallbackHandler(
        store=ledger, user_id=user, budgets=Budget(100), check_timeout=0.2, fail_open=fail_open,
        budget_lease=0,
    )  # fmt: skip
    m = CallbackManager([h])
    with caplog.at_level(logging.ERROR, logger="hookwire"):
        if fail_open:
            await m.aon_llm_start(PROMPT, model="gpt-4o")
            assert "fail_open=True" in caplog.text
            assert "did not finish within 0.2 s" in caplog.text
        else:
            with pytest.raises(BudgetExceeded, match="could not be checked"):
                await m.aon_llm_start(PROMPT, model="gpt-4o")
    gate.open.set()
    # The batch ends after all: the reservation its caller gave up on is given back.
    assert gate.sizes == [1]

    await _until(_drained(ledger))
    assert await runner.run(ledger.reserved("user", user, "day")) == 0


async def test_a_key_whose_row_went_away_is_made_again_and_still_counted(pg_only: str) -> None:
    # The ledger makes a key's budget_totals row once and remembers it; a prune or a new
    # database at the same address can remove it behind the ledger's back.
    import asyncpg

    user = f"g-{uuid.uuid4().hex[:10]}"
    claim = [Claim("user", user, "day", Decimal("1"), Decimal("0.3"))]
    ledger = UsageLedger(pg_only)
    await _warm(ledger)

    async def batch(tag: str) -> list[Any]:
        return await asyncio.gather(
            *(ledger.areserve(f"{user}-{tag}-{i}", claim) for i in range(2)),
            return_exceptions=True,
        )

    assert await batch("a") == [None, None]
    conn = await asyncpg.connect(pg_only.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("DELETE FROM budget_totals WHERE key = $1", user)
        assert await batch("b") == [None, None]
        reserved = await conn.fetchval("SELECT reserved FROM budget_totals WHERE key = $1", user)
    finally:
        await conn.close()
    assert reserved == Decimal("0.6")  # the new batch's; the first's went with the row
    assert await runner.run(ledger.reserved("user", user, "day")) == Decimal("1.2")

"""The ledger in PostgreSQL.

A budget check is one call of the server-side ``hookwire_reserve`` (migration
``0003_budget_totals``): it adds the reservation to the key's running total in
``budget_totals`` (one row update, serialised per key by that row's lock), reads the key's
spent cost, and undoes it all if spent plus reserved was at the limit. The call is made where
the caller is (:mod:`.connections`): from sync code on a pooled psycopg connection, from an
event loop on an asyncpg pool of that loop.

Settling takes the reservations off that total in a transaction of its own, committed after
the ledger rows' (so a call always counts, at its reservation or its cost) and without waiting
for the WAL flush: a check waits at most for a settlement's row update, never for the ledger's
commit.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Hashable, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ...errors import BudgetExceeded
from .. import runner
from ..engine import get_write_engine
from ..schema import Money, budget_reservations, budget_totals, usage_ledger
from .batching import Ask, Outcome
from .budgets import (
    RESERVE_CALL,
    RESERVE_CALL_PYFORMAT,
    RESERVE_MANY_PYFORMAT,
    exceeded,
    keyed,
    reserve_args,
    reserve_many_args,
    within,
)
from .connections import budget_engine, budget_pool, psycopg_available, sync_give_back, sync_take
from .postgres_batch import reserve_batch, row_key
from .records import Claim
from .sql import BATCH, SQLUsageLedger, Statements

__all__ = ["SWEEP_EVERY", "PostgresUsageLedger"]

_UTC = timezone.utc

#: How often (seconds) ``record`` also removes expired reservations (of calls that never came
#: back); a refused check removes those of its own key at once.
SWEEP_EVERY = 60.0

_r = budget_reservations.c
_REMOVED = (_r.scope, _r.key, _r.period, _r.period_start, _r.currency, _r.amount)
_SETTLE = (
    delete(budget_reservations)
    .where(_r.run_id.in_(bindparam("run_ids", expanding=True)))
    .returning(*_REMOVED)
)
_b = budget_totals.c
_UNRESERVE = (
    update(budget_totals)
    .where(
        _b.scope == bindparam("s"),
        _b.key == bindparam("k"),
        _b.period == bindparam("p"),
        _b.period_start == bindparam("st"),
        _b.currency == bindparam("c"),
    )
    .values(reserved=_b.reserved - bindparam("amount", type_=Money()))
)
# Expired reservations. SKIP LOCKED: a reservation another writer holds is being settled by it.
_SWEEP = (
    delete(budget_reservations)
    .where(
        tuple_(_r.run_id, _r.scope, _r.key, _r.period).in_(
            select(_r.run_id, _r.scope, _r.key, _r.period)
            .where(_r.expires_at <= bindparam("now"))
            .with_for_update(skip_locked=True)
        )
    )
    .returning(*_REMOVED)
)

_Keyed = list[tuple[Claim, str]]


class PostgresUsageLedger(SQLUsageLedger):
    """The ledger in PostgreSQL (see the module)."""

    statements = Statements(pg_insert)
    # numeric(38, 12): 26 digits before the point.
    max_cost = Decimal(10**26 - 1)

    def __init__(self, url: str | None = None) -> None:
        super().__init__(url)
        self._swept_at = -SWEEP_EVERY
        #: The budget keys whose ``budget_totals`` row this process has made (postgres_batch).
        self._known_keys: set[tuple[str, str, str, str, str]] = set()
        self._direct_sync = psycopg_available()
        # asyncpg's own pool where the URL's driver is asyncpg, else the driver's connection
        # through a small SQLAlchemy engine
        asyncpg = self.url.startswith("postgresql+asyncpg")
        self._direct_async = asyncpg

    async def _settle_after_commit(self, run_ids: list[str]) -> None:
        """Remove the reservations of ``run_ids`` (and, now and then, the expired ones) and
        take them off ``budget_totals``: after the ledger rows' transaction, so that a check
        in between counts a call twice (reserved and spent) rather than not at all.

        A transaction that does not wait for the WAL flush: the rows it locks are the ones
        budget checks wait for. Lost in a crash, it leaves reservations that count until they
        expire (budget held back, never overspent)."""
        sweep = time.monotonic() - self._swept_at >= SWEEP_EVERY
        if not run_ids and not sweep:
            return
        removed: dict[tuple[str, str, str, str, str], Decimal] = defaultdict(Decimal)
        async with get_write_engine(self.url).begin() as conn:
            await conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
            results = [
                await conn.execute(_SETTLE, {"run_ids": run_ids[i : i + BATCH]})
                for i in range(0, len(run_ids), BATCH)
            ]
            if sweep:
                results.append(await conn.execute(_SWEEP, {"now": datetime.now(_UTC)}))
            for result in results:
                for scope, key, period, start, currency, amount in result:
                    removed[(scope, key, period, start, currency)] += amount
            if removed:
                # Sorted, so that settlements and checks take the rows' locks in one order.
                await conn.execute(
                    _UNRESERVE,
                    [
                        {"s": s, "k": k, "p": p, "st": st, "c": c, "amount": amount}
                        for (s, k, p, st, c), amount in sorted(removed.items())
                    ],
                )
        if sweep:
            self._swept_at = time.monotonic()

    # -- budgets ------------------------------------------------------------------------------

    def reserve_sync(
        self, run_id: str, claims: Sequence[Claim], ttl: float = 600.0,
        now: datetime | None = None, *, timeout: float | None = None,
    ) -> None:  # fmt: skip
        """:meth:`reserve` from sync code, without an event loop: the call runs in the
        caller's thread on a pooled psycopg connection (without psycopg, on the store loop).
        Same checks, same atomicity (the same server-side function and row locks), same
        ``BudgetExceeded``. ``timeout`` bounds connecting (libpq's ``connect_timeout``, which
        counts whole seconds, at least 2) and the server's work on the check
        (``statement_timeout``)."""
        if not claims:
            return
        if not self._direct_sync:
            runner.run_sync(self.reserve(run_id, claims, ttl, now), timeout)
            return
        if not self._schema_checked:
            runner.run_sync(self._ready(), timeout)
            self._schema_checked = True
        ordered, now, expires = keyed(claims, ttl, now)
        args = reserve_args(run_id, ordered, now, expires)
        try:
            cursor = sync_take(self.url, timeout)
            try:
                fetched = cursor.execute(RESERVE_CALL_PYFORMAT, args).fetchone()
            finally:
                sync_give_back(self.url, cursor)
        except Exception as exc:  # psycopg's errors (a missing function, a lost server)
            raise self._fail("checking a budget", exc) from exc
        self._check_refused(ordered, fetched[0], fetched[1])

    async def areserve(
        self, run_id: str, claims: Sequence[Claim], ttl: float = 600.0,
        now: datetime | None = None, *, timeout: float | None = None,
    ) -> None:  # fmt: skip
        """:meth:`reserve` from any event loop, without a hop to the store loop (asyncpg):
        the server-side function is called on an asyncpg pool of the caller's loop, closed
        when that loop shuts down. Through another driver it awaits ``reserve`` on the store
        loop. After ``timeout`` seconds the check is cancelled (``StoreError``)."""
        if not claims:
            return
        if not self._direct_async or runner.in_store_loop():
            await within(runner.run(self.reserve(run_id, claims, ttl, now)), timeout, self)
            return
        await within(self._areserve_here(run_id, claims, ttl, now), timeout, self)

    async def _areserve_here(
        self, run_id: str, claims: Sequence[Claim], ttl: float, now: datetime | None
    ) -> None:
        if not self._schema_checked:
            await runner.run(self._ready())
            self._schema_checked = True
        await self._batched(run_id, claims, ttl, now)

    def _batch_group(self, claims: _Keyed) -> Hashable:
        # Through asyncpg a batch locks all its keys' rows first, in order (see
        # .postgres_batch): any checks may share it. Through another driver it calls
        # hookwire_reserve per check, which locks a check's rows as it goes: checks of one
        # claim each share a batch (sorted by key, so taken in order), and a check of several
        # claims only with checks of the same keys.
        if self._direct_async or len(claims) == 1:
            return None
        return tuple(row_key(c, start) for c, start in claims)

    async def _reserve_many(self, asks: list[Ask]) -> list[Outcome]:
        try:
            if self._direct_async:
                pool = await budget_pool(self.url)
                async with pool.acquire() as conn:
                    if len(asks) == 1:  # one round trip
                        a = asks[0]
                        row = await conn.fetchrow(
                            RESERVE_CALL, *reserve_args(a.run_id, a.claims, a.now, a.expires)
                        )
                        answers = [(row["refused"], row["committed"])]
                    else:
                        return await reserve_batch(
                            conn, asks, min(a.now for a in asks), self._known_keys
                        )
                order = [0]
            else:
                # Sorted by key (stable: one key's checks keep their order), so that the rows
                # are locked in the order every other transaction locks them.
                order = sorted(range(len(asks)), key=lambda i: row_key(*asks[i].claims[0]))
                answers = await self._call_sqlalchemy(reserve_many_args([asks[i] for i in order]))
        except BudgetExceeded:
            raise
        except Exception as exc:  # SQLAlchemy's, the driver's (a missing function, a lost server)
            raise self._fail("checking a budget", exc) from exc
        outcomes: list[Outcome] = [None] * len(asks)
        for i, (refused, committed) in zip(order, answers, strict=True):
            if int(refused):
                outcomes[i] = exceeded(asks[i].claims[int(refused) - 1][0], Decimal(committed))
        return outcomes

    async def _call_sqlalchemy(self, args: tuple[Any, ...]) -> list[tuple[Any, Any]]:
        async with budget_engine(self.url).connect() as conn:
            raw = await conn.get_raw_connection()
            cursor = await raw.driver_connection.execute(  # type: ignore[union-attr]
                RESERVE_MANY_PYFORMAT, args
            )
            fetched = await cursor.fetchall()
        return [(row[0], row[1]) for row in fetched]

    @staticmethod
    def _check_refused(ordered: _Keyed, refused: Any, committed: Any) -> None:
        """Raise ``BudgetExceeded`` for the claim ``hookwire_reserve`` refused (1-based; 0:
        none)."""
        if int(refused):
            raise exceeded(ordered[int(refused) - 1][0], Decimal(committed))

    def _period_column(self, name: str) -> ColumnElement[Any]:
        fmt = "YYYY-MM-DD" if name == "day" else "YYYY-MM"
        created = usage_ledger.c.created_at
        return func.to_char(func.timezone("UTC", created), fmt).label(name)

"""The ledger in an SQLite file.

SQLite's ``BEGIN IMMEDIATE`` serialises every writer of the file, in any process: budget
checks sum their keys' spent and reserved cost and reserve in one such transaction (one for
all the checks of a batch, see :mod:`.batching`), and :meth:`~.api.UsageLedger.record`
settles reservations in the ledger rows' own transaction. The transactions run on the store
loop, without the handler's ``check_timeout`` (see
:attr:`SQLiteUsageLedger.bounded_by_timeout`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, func, select, tuple_
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from .. import runner
from ..engine import get_write_engine
from ..schema import MONEY_SCALE, budget_reservations, usage_ledger, usage_totals
from .batching import Ask, Outcome
from .budgets import exceeded
from .records import Claim, period_name
from .sql import BATCH, SQLUsageLedger, Statements

__all__ = ["SQLiteUsageLedger"]

_r = budget_reservations.c
_t = usage_totals.c
_SETTLE = delete(budget_reservations).where(_r.run_id.in_(bindparam("run_ids", expanding=True)))
_RESERVE = sqlite_insert(budget_reservations).on_conflict_do_nothing()
_EXPIRED = delete(budget_reservations).where(
    _r.expires_at <= bindparam("now"),
    tuple_(_r.scope, _r.key).in_(bindparam("keys", expanding=True)),
)
#: Keys read in one statement (5 parameters each, well under SQLite's limit).
_KEYS_AT_ONCE = 200
_KEY_COLUMNS = (_t.scope, _t.key, _t.period, _t.period_start, _t.currency)
_SPENT = select(*_KEY_COLUMNS, _t.cost).where(
    tuple_(*_KEY_COLUMNS).in_(bindparam("keys", expanding=True))
)
_R_KEY = (_r.scope, _r.key, _r.period, _r.period_start, _r.currency)
_RESERVED = (
    select(*_R_KEY, func.sum(_r.amount))
    .where(tuple_(*_R_KEY).in_(bindparam("keys", expanding=True)), _r.expires_at > bindparam("now"))
    .group_by(*_R_KEY)
)


def _key_of(c: Claim, start: str) -> tuple[str, str, str, str, str]:
    return (c.scope, c.key, period_name(c.period), start, c.currency)


class SQLiteUsageLedger(SQLUsageLedger):
    """The ledger in an SQLite file (see the module)."""

    statements = Statements(sqlite_insert)
    # Money is a 64-bit count of 10^-12 units on SQLite.
    max_cost = Decimal(2**63 - 1).scaleb(-MONEY_SCALE)
    # A check waits only for the file's write lock, bounded by SQLite's busy timeout; cancelled
    # while aiosqlite's thread runs its BEGIN IMMEDIATE, it could leave that connection
    # holding the lock, and every writer of the file waiting for it.
    bounded_by_timeout = False

    async def open(self) -> None:
        """Check the schema and connect once: the pool keeps the connection, and with it
        aiosqlite's thread, which could not be started at exit from Python 3.12 on."""
        await self._connect_once()

    async def _settle_in_transaction(self, conn: Any, run_ids: list[str]) -> None:
        for i in range(0, len(run_ids), BATCH):
            await conn.execute(_SETTLE, {"run_ids": run_ids[i : i + BATCH]})

    async def areserve(
        self, run_id: str, claims: Sequence[Claim], ttl: float = 600.0,
        now: datetime | None = None, *, timeout: float | None = None,
    ) -> None:  # fmt: skip
        """:meth:`reserve` from any event loop: the checks are coalesced on the caller's loop
        (see :mod:`.batching`), and each batch goes to the store loop in one hop (a hop per
        check cost more than the check, in thread switches). Not bounded by ``timeout``
        (see :attr:`bounded_by_timeout`)."""
        if claims:
            await self._batched(run_id, claims, ttl, now)

    async def _reserve_many(self, asks: list[Ask]) -> list[Outcome]:
        # On the store loop, where the file's engine lives; shielded, so that a batch the
        # asking loop no longer waits for still ends (see bounded_by_timeout).
        return await asyncio.shield(runner.run(self._reserve_here(asks)))

    async def _reserve_here(self, asks: list[Ask]) -> list[Outcome]:
        # Every check of the file takes its write lock, so all of a loop's checks share a
        # transaction (the default group), whatever their keys.
        await self._ready()
        now = min(a.now for a in asks)  # the earliest: counts the most reservations as live
        outcomes: list[Outcome] = []
        rows: list[dict[str, Any]] = []
        try:
            # BEGIN IMMEDIATE: the checks and the reservations hold SQLite's write lock, which
            # serialises them against every other writer of the file, in any process.
            async with get_write_engine(self.url).begin() as conn:
                committed = await self._committed_of(
                    conn, {_key_of(c, start) for a in asks for c, start in a.claims}, now
                )
                for a in asks:
                    refused: Outcome = None
                    for c, start in a.claims:
                        total = committed[_key_of(c, start)]
                        if total >= c.limit:
                            refused = exceeded(c, total)
                            break
                    outcomes.append(refused)
                    if refused is not None:
                        continue
                    for c, start in a.claims:
                        committed[_key_of(c, start)] += c.amount
                        rows.append(
                            {
                                "run_id": a.run_id,
                                "scope": c.scope,
                                "key": c.key,
                                "period": period_name(c.period),
                                "period_start": start,
                                "currency": c.currency,
                                "amount": c.amount,
                                "expires_at": a.expires,
                            }
                        )
                if rows:
                    await conn.execute(_RESERVE, rows)
                # Reservations of runs that never came back stop counting at expiry; remove
                # those of these keys now and then, so the table stays small.
                firsts = sorted({(a.claims[0][0].scope, a.claims[0][0].key) for a in asks})
                for i in range(0, len(firsts), BATCH):
                    await conn.execute(_EXPIRED, {"now": now, "keys": firsts[i : i + BATCH]})
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("checking a budget", exc) from exc
        return outcomes

    @staticmethod
    async def _committed_of(
        conn: Any, keys: set[tuple[str, str, str, str, str]], now: datetime
    ) -> dict[tuple[str, str, str, str, str], Decimal]:
        """Spent plus reserved of each key, read in the check's transaction."""
        committed = dict.fromkeys(keys, Decimal(0))
        ordered = sorted(keys)
        for i in range(0, len(ordered), _KEYS_AT_ONCE):
            chunk = ordered[i : i + _KEYS_AT_ONCE]
            for stmt in (_SPENT, _RESERVED):
                for *key, amount in await conn.execute(stmt, {"keys": chunk, "now": now}):
                    committed[tuple(key)] += amount or 0
        return committed

    def _period_column(self, name: str) -> ColumnElement[Any]:
        # created_at is fixed-width ISO 8601 text in UTC on SQLite.
        length = 10 if name == "day" else 7
        return func.substr(usage_ledger.c.created_at, 1, length).label(name)

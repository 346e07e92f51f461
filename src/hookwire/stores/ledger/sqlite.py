"""The ledger in an SQLite file.

SQLite's ``BEGIN IMMEDIATE`` serialises every writer of the file, in any process: a budget
check sums the key's spent and reserved cost and reserves in one such transaction, and
:meth:`~.api.UsageLedger.record` settles reservations in the ledger rows' own transaction.
Checks from sync code or another event loop run on the store loop, without the handler's
``check_timeout`` (see :attr:`SQLiteUsageLedger.bounded_by_timeout`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, func
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from ..engine import get_write_engine
from ..schema import MONEY_SCALE, budget_reservations, usage_ledger
from .budgets import exceeded
from .records import Claim, period_name
from .sql import BATCH, SQLUsageLedger, Statements

__all__ = ["SQLiteUsageLedger"]

_r = budget_reservations.c
_SETTLE = delete(budget_reservations).where(_r.run_id.in_(bindparam("run_ids", expanding=True)))


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
        await self._ready()
        try:
            async with get_write_engine(self.url).connect():
                pass
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("opening the database", exc) from exc

    async def _settle_in_transaction(self, conn: Any, run_ids: list[str]) -> None:
        for i in range(0, len(run_ids), BATCH):
            await conn.execute(_SETTLE, {"run_ids": run_ids[i : i + BATCH]})

    async def _reserve(
        self, run_id: str, ordered: list[tuple[Claim, str]], now: datetime, expires: datetime
    ) -> None:
        try:
            # BEGIN IMMEDIATE: the check and the reservation hold SQLite's write lock, which
            # serialises them against every other writer of the file, in any process.
            async with get_write_engine(self.url).begin() as conn:
                for c, start in ordered:
                    row = (
                        await conn.execute(
                            self._committed(c.scope, c.key, c.period, start, c.currency, now)
                        )
                    ).one()
                    committed = self._committed_total(row)
                    if committed >= c.limit:
                        raise exceeded(c, committed)
                await conn.execute(
                    sqlite_insert(budget_reservations)
                    .values(
                        [
                            {
                                "run_id": run_id,
                                "scope": c.scope,
                                "key": c.key,
                                "period": period_name(c.period),
                                "period_start": start,
                                "currency": c.currency,
                                "amount": c.amount,
                                "expires_at": expires,
                            }
                            for c, start in ordered
                        ]
                    )
                    .on_conflict_do_nothing()
                )
                # Reservations of runs that never came back stop counting at expiry; remove
                # those of these keys now and then, so the table stays small.
                await conn.execute(
                    delete(budget_reservations).where(
                        _r.expires_at <= now,
                        _r.scope == ordered[0][0].scope,
                        _r.key == ordered[0][0].key,
                    )
                )
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("checking a budget", exc) from exc

    def _period_column(self, name: str) -> ColumnElement[Any]:
        # created_at is fixed-width ISO 8601 text in UTC on SQLite.
        length = 10 if name == "day" else 7
        return func.substr(usage_ledger.c.created_at, 1, length).label(name)

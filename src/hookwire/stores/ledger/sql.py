"""The ledger on SQLAlchemy Core: what SQLite and PostgreSQL share (writing rows and totals,
reading totals, summaries and rows); each backend adds its budget check and how it settles
reservations."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Table, and_, case, func, literal, select
from sqlalchemy.exc import SQLAlchemyError

from ..._logonce import LogOnce
from ...errors import ConfigurationError
from .. import runner
from ..engine import get_engine, get_write_engine
from ..schema import budget_reservations, usage_ledger, usage_totals
from ..sqlstore import SQLStore
from . import rollups
from .api import UsageLedger
from .batching import Ask, Outcome, ReserveBatcher
from .budgets import keyed
from .records import (
    ESTIMATED,
    PERIODS,
    SCOPES,
    Claim,
    UsageRecord,
    ledger_key,
    period_name,
    period_start,
    row_of,
)
from .rollups import DAY_MONTH_SCOPES, Read

__all__ = ["BATCH", "SQLUsageLedger", "Statements"]

_UTC = timezone.utc
#: At most this many rows go into one statement.
BATCH = 500


#: The sums each ``usage_totals`` row keeps, in the table's order: calls, prompt, completion,
#: cost (0 to 3, every call); total, cached, cached calls, reasoning, reasoning calls (4 to 8,
#: calls not estimated), calls without a known price (9); estimated calls, their prompt,
#: completion and total tokens, cost and priced calls (10 to 15).
_TOTALS = tuple(c.name for c in usage_totals.columns if not c.primary_key)
#: Totals kept per day and month only: per model, per provider, and of every call (key
#: ``""``), for summaries (budgets read the ``SCOPES``).
_DAY_MONTH = ("day", "month")


class Statements:
    """The statements every write runs, built once per dialect (``insert``: the dialect's
    ``insert``, for its ``ON CONFLICT``) so SQLAlchemy compiles each only once (a fresh
    ``insert().on_conflict...`` per batch costs a millisecond to build)."""

    def __init__(self, insert: Callable[[Any], Any]) -> None:
        self.insert = insert
        self.insert_ledger = (
            insert(usage_ledger)
            .on_conflict_do_nothing(index_elements=["run_id"])
            .returning(usage_ledger.c.run_id)
        )
        upsert = insert(usage_totals)
        t = usage_totals.c
        self.upsert_totals = upsert.on_conflict_do_update(
            index_elements=["scope", "key", "period", "period_start", "currency"],
            set_={name: t[name] + upsert.excluded[name] for name in _TOTALS},
        )


def _same_key(
    table: Table, scope: str, key: str, period: str | None, start: str, currency: str
) -> list[ColumnElement[bool]]:
    """The conditions on ``table``'s rows of one budget key (scope, key, period, currency)."""
    c = table.c
    return [
        c.scope == scope,
        c.key == key,
        c.period == period_name(period),
        c.period_start == start,
        c.currency == currency,
    ]


def _money(value: Any) -> Decimal:
    # The sums are typed Money, so both databases hand back a Decimal.
    return Decimal(0) if value is None else Decimal(value)


class SQLUsageLedger(SQLStore, UsageLedger):
    """The ledger in a SQL database (an implementation's base: it adds the budget check,
    ``_reserve``, the ``_period_column`` and how reservations are settled)."""

    statements: ClassVar[Statements]
    #: Whether :meth:`summary` reads ``usage_totals`` where they cover the question (see
    #: ``hookwire.stores.ledger.rollups``); false: it always sums the ledger's rows.
    summaries_from_totals: bool = True
    #: The largest cost the backend's cost column holds.
    max_cost: ClassVar[Decimal]

    def __init__(self, url: str | None = None) -> None:
        super().__init__(url)
        self._schema_checked = False
        self._cost_log = LogOnce()
        self._batcher: ReserveBatcher | None = None

    # -- writing ------------------------------------------------------------------------------

    async def record(
        self, records: Sequence[UsageRecord], release: Iterable[str] = ()
    ) -> list[UsageRecord]:
        release = list(release)
        if not records and not release:
            return []
        records = [self._storable(r) for r in records]
        await self._ready()
        written: list[UsageRecord] = []
        done = [r.run_id for r in records] + release
        try:
            async with get_write_engine(self.url).begin() as conn:
                for i in range(0, len(records), BATCH):
                    chunk = records[i : i + BATCH]
                    written.extend(await self._insert_rows(conn, chunk))
                if written:
                    await self._add_totals(conn, written)
                await self._settle_in_transaction(conn, done)
            await self._settle_after_commit(done)
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("writing usage", exc) from exc
        return written

    def _storable(self, record: UsageRecord) -> UsageRecord:
        """``record``, with its cost unknown (``None``) if the column cannot hold it.

        A cost out of range (a server reporting 3.7e12 tokens) or not a number would make the
        database refuse the row: kept this way the call counts, with its tokens, among the
        calls of unknown cost (``unknown_cost_calls``), never at a wrong cost."""
        cost = record.cost
        if cost is None or (cost.is_finite() and abs(cost) <= self.max_cost):
            return record
        self._cost_log(
            "hookwire: %s: the cost %s of run %s is beyond what the ledger holds (%s at "
            "most); the call is recorded with its cost unknown (further such rows are logged "
            "at debug level)",
            self,
            cost,
            record.run_id,
            self.max_cost,
        )
        return dataclasses.replace(record, cost=None)

    async def _settle_in_transaction(self, conn: Any, run_ids: list[str]) -> None:
        """Remove the reservations of ``run_ids`` in the ledger rows' transaction."""

    async def _settle_after_commit(self, run_ids: list[str]) -> None:
        """Remove the reservations of ``run_ids`` once the ledger rows are committed."""

    async def _insert_rows(self, conn: Any, chunk: Sequence[UsageRecord]) -> list[UsageRecord]:
        # One row per run even within the batch: the first record of a run wins.
        by_run: dict[str, UsageRecord] = {}
        for r in chunk:
            by_run.setdefault(r.run_id, r)
        result = await conn.execute(
            self.statements.insert_ledger, [row_of(r) for r in by_run.values()]
        )
        inserted = {row[0] for row in result}
        return [r for r in by_run.values() if r.run_id in inserted]

    async def _add_totals(self, conn: Any, rows: Sequence[UsageRecord]) -> None:
        sums: dict[tuple[str, str, str, str, str], list[Any]] = {}

        def add(key: tuple[str, str, str, str, str], r: UsageRecord) -> None:
            # calls, prompt, completion and cost count every call (budgets read them); the
            # other sums keep an estimated call (ESTIMATED) apart, as summaries show it
            s = sums.get(key)
            if s is None:
                s = sums[key] = [0, 0, 0, Decimal(0), *([0] * 10), Decimal(0), 0]
            s[0] += 1
            s[1] += r.prompt_tokens
            s[2] += r.completion_tokens
            if r.cost is not None:
                s[3] += r.cost
            if r.source == ESTIMATED:
                s[9] += 1
                s[10] += 1
                s[11] += r.prompt_tokens
                s[12] += r.completion_tokens
                s[13] += r.total_tokens
                if r.cost is not None:
                    s[14] += r.cost
                    s[15] += 1
                return
            if r.cost is None:
                s[9] += 1
            s[4] += r.total_tokens
            if r.cached_tokens is not None:
                s[5] += r.cached_tokens
                s[6] += 1
            if r.reasoning_tokens is not None:
                s[7] += r.reasoning_tokens
                s[8] += 1

        for r in rows:
            starts = {p: period_start(p, r.created_at) for p in PERIODS}
            for scope, column in SCOPES.items():
                key = getattr(r, column)
                if key is None:
                    continue
                for period in PERIODS:
                    add((scope, key, period_name(period), starts[period], r.currency), r)
            for scope, field in DAY_MONTH_SCOPES.items():
                key = "" if field is None else getattr(r, field)
                if key is None:
                    continue
                for period in _DAY_MONTH:
                    add((scope, key, period, starts[period], r.currency), r)
        if not sums:
            return
        values = [
            {
                "scope": scope,
                "key": key,
                "period": period,
                "period_start": start,
                "currency": currency,
                **dict(zip(_TOTALS, s, strict=True)),
            }
            # Sorted, so that concurrent writers take the rows' locks in the same order.
            for (scope, key, period, start, currency), s in sorted(sums.items())
        ]
        await conn.execute(self.statements.upsert_totals, values)

    # -- budgets ------------------------------------------------------------------------------

    @staticmethod
    def _committed(
        scope: str, key: str, period: str | None, start: str, currency: str, now: datetime
    ) -> Any:
        """One statement (so one snapshot) summing the spent and the reserved of a key."""
        t, r = usage_totals.c, budget_reservations.c
        key_of = (scope, key, period, start, currency)
        spent = (
            select(func.coalesce(func.sum(t.cost), 0))
            .where(*_same_key(usage_totals, *key_of))
            .scalar_subquery()
        )
        reserved = (
            select(func.coalesce(func.sum(r.amount), 0))
            .where(*_same_key(budget_reservations, *key_of), r.expires_at > now)
            .scalar_subquery()
        )
        return select(spent.label("spent"), reserved.label("reserved"))

    async def reserve(
        self, run_id: str, claims: Sequence[Claim], ttl: float = 600.0, now: datetime | None = None
    ) -> None:
        if not claims:
            return
        await self._ready()
        await self._batched(run_id, claims, ttl, now)

    async def _batched(
        self, run_id: str, claims: Sequence[Claim], ttl: float, now: datetime | None
    ) -> None:
        """Check and reserve in the next transaction of the checks of this loop (see
        :mod:`.batching`)."""
        batcher = self._batcher
        if batcher is None:
            batcher = self._batcher = ReserveBatcher(
                self._reserve_many, self._give_back, self._batch_group
            )
        await batcher.reserve(run_id, *keyed(claims, ttl, now))

    async def _give_back(self, run_ids: list[str]) -> None:
        """Release the reservations of checks whose callers stopped waiting (on the store
        loop, where ``record`` runs)."""
        await runner.run(self.release(run_ids))

    def _batch_group(self, claims: list[tuple[Claim, str]]) -> Hashable:
        """Which checks may share a transaction: all of them by default (a backend whose
        transactions wait for each other's locks says otherwise)."""
        return None

    @abc.abstractmethod
    async def _reserve_many(self, asks: list[Ask]) -> Sequence[Outcome]:
        """Check and reserve the calls of a batch in one transaction, in order, each as its
        own check would (see :mod:`.batching`)."""

    @staticmethod
    def _committed_total(row: Any) -> Decimal:
        """Spent plus reserved, from a row of :meth:`_committed`."""
        return _money(row.spent) + _money(row.reserved)

    async def spent(
        self,
        scope: str,
        key: str,
        period: str | None = None,
        *,
        currency: str = "USD",
        at: datetime | None = None,
    ) -> Decimal:
        if scope not in SCOPES:
            raise ConfigurationError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        key = ledger_key(key)
        await self._ready()
        start = period_start(period, at or datetime.now(_UTC))
        t = usage_totals.c
        try:
            async with get_engine(self.url).connect() as conn:
                value = (
                    await conn.execute(
                        select(t.cost).where(
                            *_same_key(usage_totals, scope, key, period, start, currency)
                        )
                    )
                ).scalar()
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("reading a total", exc) from exc
        return value if value is not None else Decimal(0)

    async def reserved(self, scope: str, key: str, period: str | None = None) -> Decimal:
        key = ledger_key(key)
        await self._ready()
        now = datetime.now(_UTC)
        try:
            async with get_engine(self.url).connect() as conn:
                row = (
                    await conn.execute(
                        self._committed(scope, key, period, period_start(period, now), "USD", now)
                    )
                ).one()
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("reading reservations", exc) from exc
        return _money(row.reserved)

    # -- reading ------------------------------------------------------------------------------

    @abc.abstractmethod
    def _period_column(self, name: str) -> ColumnElement[Any]:
        """The ledger's ``day`` (``YYYY-MM-DD``) or ``month`` (``YYYY-MM``) in UTC, labelled
        ``name``."""

    def _group_column(self, name: str) -> ColumnElement[Any]:
        c = usage_ledger.c
        if name in SCOPES:
            return c[SCOPES[name]].label(name)
        if name in ("model", "provider"):
            return c[name].label(name)
        return self._period_column(name)

    async def summary(
        self,
        by: Sequence[str] | str = (),
        *,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        groups, start, end, filters = rollups.arguments(by, since, until, where)
        how = rollups.plan(groups, start, end, filters) if self.summaries_from_totals else None

        def fetch(conn: Any, read: Read) -> list[dict[str, Any]]:
            if read.scope is None:
                stmt = self._ledger_sums(read.groups, read.piece.first, read.piece.last, filters)
            else:
                stmt = self._totals_sums(read)
            return [{str(k): v for k, v in row._mapping.items()} for row in conn.execute(stmt)]

        await self._ready()
        try:
            async with get_engine(self.url).connect() as conn:
                return await conn.run_sync(
                    lambda sync: rollups.summarise(
                        groups, start, end, how, lambda read: fetch(sync, read)
                    )
                )
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("summarising usage", exc) from exc

    def _ledger_sums(
        self,
        groups: Sequence[str],
        start: datetime | None,
        end: datetime | None,
        filters: Mapping[str, str],
    ) -> Any:
        """The ledger's sums over ``start <= created_at < end``, grouped."""
        c = usage_ledger.c
        cols = [self._group_column(g) for g in groups]
        # An estimated call's figures are an upper bound: summed apart from the known ones.
        estimated = c.source == ESTIMATED

        def known(col: Any) -> ColumnElement[Any]:
            return func.sum(case((estimated, None), else_=col))

        conditions: list[ColumnElement[bool]] = []
        if start is not None:
            conditions.append(c.created_at >= start)
        if end is not None:
            conditions.append(c.created_at < end)
        for name, value in filters.items():
            conditions.append(c[SCOPES.get(name, name)] == value)
        return (
            select(
                *cols,
                c.currency,
                func.count().label("calls"),
                known(c.prompt_tokens).label("prompt_tokens"),
                known(c.completion_tokens).label("completion_tokens"),
                known(c.cached_tokens).label("cached_tokens"),
                func.count(case((estimated, None), else_=c.cached_tokens)).label("cached_calls"),
                known(c.reasoning_tokens).label("reasoning_tokens"),
                func.count(case((estimated, None), else_=c.reasoning_tokens)).label(
                    "reasoning_calls"
                ),
                known(c.total_tokens).label("total_tokens"),
                known(c.cost).label("cost"),
                (func.count() - func.count(case((estimated, None), else_=c.cost))).label(
                    "unknown_cost_calls"
                ),
                func.count(case((estimated, 1))).label("estimated_calls"),
                func.sum(case((estimated, c.total_tokens))).label("estimated_tokens"),
                func.sum(case((estimated, c.cost))).label("estimated_cost"),
                func.count(case((estimated, c.cost))).label("estimated_priced_calls"),
            )
            .where(and_(literal(True), *conditions))
            .group_by(*cols, c.currency)
        )

    @staticmethod
    def _totals_sums(read: Read) -> Any:
        """The sums of the ``usage_totals`` rows ``read`` names, grouped as it says."""
        t = usage_totals.c
        piece = read.piece
        cols: list[ColumnElement[Any]] = []
        for g in read.groups:
            if g in ("day", "month"):
                length = 10 if g == "day" else 7
                start = (
                    t.period_start if piece.period == g else func.substr(t.period_start, 1, length)
                )
                cols.append(start.label(g))
            else:
                cols.append(t.key.label(g))
        conditions = [t.scope == read.scope, t.period == piece.period]
        if read.key is not None:
            conditions.append(t.key == read.key)
        if piece.first is not None:
            conditions.append(t.period_start >= piece.first)
        if piece.last is not None:
            conditions.append(t.period_start < piece.last)
        return (
            select(
                *cols,
                t.currency,
                *(func.sum(t[name]).label(name) for name in _TOTALS),
            )
            .where(*conditions)
            .group_by(*cols, t.currency)
        )

    async def records(
        self, *, run_id: str | None = None, user_id: str | None = None, limit: int = 1000
    ) -> list[UsageRecord]:
        c = usage_ledger.c
        stmt = select(usage_ledger).order_by(c.seq).limit(limit)
        if run_id is not None:
            stmt = stmt.where(c.run_id == run_id)
        if user_id is not None:
            stmt = stmt.where(c.user_id == ledger_key(user_id))
        await self._ready()
        try:
            async with get_engine(self.url).connect() as conn:
                result = await conn.execute(stmt)
                return [
                    UsageRecord(**{k: v for k, v in row._mapping.items() if k != "seq"})
                    for row in result
                ]
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("reading usage", exc) from exc

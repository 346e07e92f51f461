"""The ledger on SQLAlchemy Core: what SQLite and PostgreSQL share (writing rows and totals,
reading totals, summaries and rows); each backend adds its budget check and how it settles
reservations."""

from __future__ import annotations

import abc
import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Table, and_, case, func, literal, select
from sqlalchemy.exc import SQLAlchemyError

from ..._logonce import LogOnce
from ...errors import ConfigurationError, StoreError
from ..engine import ensure_schema, get_engine, get_write_engine, redact, resolve_url
from ..schema import budget_reservations, usage_ledger, usage_totals
from .api import UsageLedger
from .budgets import keyed
from .records import (
    ESTIMATED,
    GROUP_KEYS,
    PERIODS,
    SCOPES,
    Claim,
    UsageRecord,
    as_utc,
    ledger_key,
    period_name,
    period_start,
    row_of,
)

__all__ = ["BATCH", "SQLUsageLedger", "Statements"]

_UTC = timezone.utc
#: At most this many rows go into one statement.
BATCH = 500


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
            set_={
                "calls": t.calls + upsert.excluded.calls,
                "prompt_tokens": t.prompt_tokens + upsert.excluded.prompt_tokens,
                "completion_tokens": t.completion_tokens + upsert.excluded.completion_tokens,
                "cost": t.cost + upsert.excluded.cost,
            },
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


class SQLUsageLedger(UsageLedger):
    """The ledger in a SQL database (an implementation's base: it adds the budget check,
    ``_reserve``, the ``_period_column`` and how reservations are settled)."""

    statements: ClassVar[Statements]
    #: The largest cost the backend's cost column holds.
    max_cost: ClassVar[Decimal]

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)
        self._schema_checked = False
        self._cost_log = LogOnce()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r})"

    async def _ready(self) -> None:
        try:
            await ensure_schema(self.url)
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("opening the database", exc) from exc

    def _fail(self, doing: str, exc: Exception) -> StoreError:
        return StoreError(f"{doing} in {redact(self.url)} failed: {exc}")

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
        sums: dict[tuple[str, str, str, str, str], list[Any]] = defaultdict(
            lambda: [0, 0, 0, Decimal(0)]
        )
        for r in rows:
            for scope, column in SCOPES.items():
                key = getattr(r, column)
                if key is None:
                    continue
                for period in PERIODS:
                    start = period_start(period, r.created_at)
                    s = sums[(scope, key, period_name(period), start, r.currency)]
                    s[0] += 1
                    s[1] += r.prompt_tokens
                    s[2] += r.completion_tokens
                    if r.cost is not None:
                        s[3] += r.cost
        if not sums:
            return
        values = [
            {
                "scope": scope,
                "key": key,
                "period": period,
                "period_start": start,
                "currency": currency,
                "calls": s[0],
                "prompt_tokens": s[1],
                "completion_tokens": s[2],
                "cost": s[3],
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
        await self._reserve(run_id, *keyed(claims, ttl, now))

    @abc.abstractmethod
    async def _reserve(
        self, run_id: str, claims: list[tuple[Claim, str]], now: datetime, expires: datetime
    ) -> None:
        """Check and reserve :func:`~.budgets.keyed` claims, atomically."""

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
        groups = [by] if isinstance(by, str) else list(by)
        for g in groups:
            if g not in GROUP_KEYS:
                raise ConfigurationError(
                    f"cannot group usage by {g!r}; choose from {', '.join(GROUP_KEYS)}"
                )
        if len(set(groups)) != len(groups):
            raise ConfigurationError(f"by={groups!r} names a group twice")
        start = as_utc(since, "since")
        end = as_utc(until, "until")
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
        for name, value in (where or {}).items():
            if name in SCOPES:
                key = ledger_key(value) if isinstance(value, str) else value
                conditions.append(c[SCOPES[name]] == key)
            elif name in ("model", "provider"):
                conditions.append(c[name] == value)
            else:
                raise ConfigurationError(
                    f"cannot filter usage by {name!r}; choose from user, org, agent, model, "
                    "provider"
                )
        stmt = (
            select(
                *cols,
                c.currency,
                func.count().label("calls"),
                func.coalesce(known(c.prompt_tokens), 0).label("prompt_tokens"),
                func.coalesce(known(c.completion_tokens), 0).label("completion_tokens"),
                known(c.cached_tokens).label("cached_tokens"),
                known(c.reasoning_tokens).label("reasoning_tokens"),
                func.coalesce(known(c.total_tokens), 0).label("total_tokens"),
                known(c.cost).label("cost"),
                (func.count() - func.count(case((estimated, None), else_=c.cost))).label(
                    "unknown_cost_calls"
                ),
                func.count(case((estimated, 1))).label("estimated_calls"),
                func.coalesce(func.sum(case((estimated, c.total_tokens))), 0).label(
                    "estimated_tokens"
                ),
                func.sum(case((estimated, c.cost))).label("estimated_cost"),
            )
            .where(and_(literal(True), *conditions))
            .group_by(*cols, c.currency)
            .order_by(*cols, c.currency)
        )
        await self._ready()
        try:
            async with get_engine(self.url).connect() as conn:
                result = await conn.execute(stmt)
                rows = [{str(k): v for k, v in row._mapping.items()} for row in result]
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("summarising usage", exc) from exc
        for row in rows:
            for k in ("calls", "prompt_tokens", "completion_tokens", "total_tokens"):
                row[k] = int(row[k])
            for k in ("cached_tokens", "reasoning_tokens"):
                row[k] = None if row[k] is None else int(row[k])
            for k in ("unknown_cost_calls", "estimated_calls", "estimated_tokens"):
                row[k] = int(row[k])
        return rows

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

"""Retention: what ``hookwire db prune`` deletes, table by table, on a live database.

=========================  ===========================================  ==================
table                      a row goes when                              default
=========================  ===========================================  ==================
``usage_ledger``           its call is older than ``ledger_days``       400 days
``usage_totals`` (day)     its day is older than ``day_totals_days``    400 days
``usage_totals`` (month)   its month is older than ``month_totals``     25 months
``usage_totals`` (all)     never: all-time budgets and sums read it     kept
``conversations``          its last activity (``updated_at``) is older  kept (0)
                           than ``conversation_days``; its messages
                           go with it
``budget_reservations``    expired, of a day or month that has ended    always
                           (on SQLite: every expired one)
``budget_totals``          of a day or month that has ended             always
=========================  ===========================================  ==================

A retention of 0 keeps every row of its table. What a budget in force reads is never deleted,
whatever the retention: the totals and reservations of the current day and month and of the
one before (a call that began before midnight settles after it), and the all-time totals.
Budgets read ``usage_totals``, not the ledger, so pruning the ledger changes no budget; what it
changes is what ``hookwire costs`` can say of the pruned time: whole days and months come from
the totals as long as those are kept, a part of a day (``--since 14:00``) from the ledger's rows.

Rows go in batches (``batch`` rows, each batch its own short transaction, by primary key), so
writers and budget checks wait at most for one batch, never for the whole prune. On SQLite a
conversation's messages go with it (``ON DELETE CASCADE`` with foreign keys on, as every
hookwire connection has them); batches of conversations are smaller, as each carries its
messages.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, func, select, tuple_

from . import engine
from .schema import budget_reservations, budget_totals, conversations, usage_ledger, usage_totals

__all__ = ["Retention", "prune"]

_UTC = timezone.utc


@dataclasses.dataclass(frozen=True)
class Retention:
    """How long ``hookwire db prune`` keeps each table's rows (0: for ever). See the module."""

    #: Days of ``usage_ledger`` rows kept (by their call's ``created_at``).
    ledger_days: int = 400
    #: Days of per-day ``usage_totals`` rows kept (at least today's and yesterday's).
    day_totals_days: int = 400
    #: Months of per-month ``usage_totals`` rows kept (at least this month's and the last).
    month_totals: int = 25
    #: Days a conversation is kept after its last activity (0: conversations are kept).
    conversation_days: int = 0
    #: Rows deleted per transaction (conversations: a fiftieth, at least 1, as each carries
    #: its messages).
    batch: int = 5000

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or value < 0 or (field.name == "batch" and not value):
                what = (
                    "rows, at least 1"
                    if field.name == "batch"
                    else "days or months, 0 to keep every row"
                )
                raise ValueError(
                    f"Retention.{field.name} must be a whole number of {what}, not {value!r}"
                )


@dataclasses.dataclass(frozen=True)
class _Step:
    name: str
    table: Table
    keys: tuple[Any, ...]
    where: ColumnElement[bool]
    batch: int


def _month_back(now: datetime, months: int) -> str:
    index = now.year * 12 + now.month - 1 - months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _steps(retention: Retention, now: datetime, sqlite: bool) -> list[_Step]:
    now = now.astimezone(_UTC)
    # the period in force and the one before it are kept whatever the retention
    day_floor = (now - timedelta(days=1)).strftime("%Y-%m-%d")
    month_floor = _month_back(now, 1)
    steps: list[_Step] = []
    t, r, b = usage_totals.c, budget_reservations.c, budget_totals.c
    total_keys = (t.scope, t.key, t.period, t.period_start, t.currency)
    if retention.ledger_days:
        cut = now - timedelta(days=retention.ledger_days)
        steps.append(
            _Step(
                "usage_ledger",
                usage_ledger,
                (usage_ledger.c.seq,),
                usage_ledger.c.created_at < cut,
                retention.batch,
            )
        )
    if retention.day_totals_days:
        cut_day = min((now - timedelta(days=retention.day_totals_days)).strftime("%Y-%m-%d"),
                      day_floor)  # fmt: skip
        where = (t.period == "day") & (t.period_start < cut_day)
        steps.append(_Step("usage_totals (day)", usage_totals, total_keys, where, retention.batch))
    if retention.month_totals:
        cut_month = min(_month_back(now, retention.month_totals), month_floor)
        where = (t.period == "month") & (t.period_start < cut_month)
        steps.append(
            _Step("usage_totals (month)", usage_totals, total_keys, where, retention.batch)
        )
    if retention.conversation_days:
        cut = now - timedelta(days=retention.conversation_days)
        steps.append(
            _Step(
                "conversations",
                conversations,
                (conversations.c.id,),
                conversations.c.updated_at < cut,
                max(1, retention.batch // 50),
            )
        )
    ended = ((r.period == "day") & (r.period_start < day_floor)) | (
        (r.period == "month") & (r.period_start < month_floor)
    )
    # SQLite sums the reservations themselves: an expired one counts for nothing. PostgreSQL
    # keeps their sum in budget_totals, which checks of a period in force read: there only
    # those of ended periods go, with their periods' totals (the ledger sweeps the others).
    steps.append(
        _Step(
            "budget_reservations",
            budget_reservations,
            (r.run_id, r.scope, r.key, r.period),
            (r.expires_at <= now) if sqlite else ((r.expires_at <= now) & ended),
            retention.batch,
        )
    )
    if not sqlite:
        ended_totals = ((b.period == "day") & (b.period_start < day_floor)) | (
            (b.period == "month") & (b.period_start < month_floor)
        )
        steps.append(
            _Step(
                "budget_totals",
                budget_totals,
                (b.scope, b.key, b.period, b.period_start, b.currency),
                ended_totals,
                retention.batch,
            )
        )
    return steps


def _batch_delete(step: _Step) -> Any:
    chosen = select(*step.keys).where(step.where).limit(step.batch)
    if len(step.keys) == 1:
        return delete(step.table).where(step.keys[0].in_(chosen.scalar_subquery()))
    return delete(step.table).where(tuple_(*step.keys).in_(chosen))


async def prune(
    url: str | None = None,
    retention: Retention | None = None,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> dict[str, int]:
    """Delete the rows ``retention`` lets go (see the module), batch by batch; with
    ``dry_run``, only count them. Returns the rows per table (``usage_totals`` per period),
    in the order they are deleted. Run it on the stores' loop (``hookwire.stores.runner``)."""
    retention = retention or Retention()
    now = now or datetime.now(_UTC)
    url = engine.resolve_url(url)
    await engine.ensure_schema(url)
    counts: dict[str, int] = {}
    for step in _steps(retention, now, engine.is_sqlite(url)):
        if dry_run:
            async with engine.get_engine(url).connect() as conn:
                query = select(func.count()).select_from(step.table).where(step.where)
                counts[step.name] = int((await conn.execute(query)).scalar_one())
            continue
        done = 0
        statement = _batch_delete(step)
        while True:
            async with engine.get_write_engine(url).begin() as conn:
                deleted = (await conn.execute(statement)).rowcount
            done += deleted
            if deleted < step.batch:
                break
        counts[step.name] = done
    return counts

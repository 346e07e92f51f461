"""Spend against budgets, for the dashboard's cost view.

Budgets are enforced by the handlers that hold them (``AccountingCallbackHandler(budgets=)``);
the database keeps what was spent, not the limits. So ``hookwire ui --budget`` is told the
limits to show, written ``SCOPE[:KEY]=LIMIT[/PERIOD]``: ``user=5/month`` (every user, 5 a
month), ``org:acme=100/day``, ``agent=20`` (a month by default; ``/all`` for all time).
For each, :func:`spend_against` gives the spent amount, what remains, and the burn rate: the
spend per day so far in the period, and where it ends the period at that rate.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import ConfigurationError

__all__ = ["BudgetLine", "parse_budget", "period_bounds", "spend_against"]

_SPEC = re.compile(r"^(user|org|agent)(?::([^=]+))?=([0-9.]+)(?:/(day|month|all))?$")
_UTC = timezone.utc


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """A budget the dashboard shows: ``limit`` per ``period`` for ``scope`` (one ``key``, or
    every key of the scope when ``None``)."""

    scope: str
    key: str | None
    limit: Decimal
    period: str = "month"
    currency: str = "USD"


def parse_budget(text: str) -> BudgetLine:
    """A :class:`BudgetLine` from ``SCOPE[:KEY]=LIMIT[/PERIOD]`` (see the module)."""
    match = _SPEC.match(text.strip())
    try:
        limit = Decimal(match.group(3)) if match else None
    except InvalidOperation:
        limit = None
    if match is None or limit is None or not limit.is_finite() or limit <= 0:
        raise ConfigurationError(
            f"{text!r} is not a budget; write SCOPE[:KEY]=LIMIT[/PERIOD], such as user=5/month, "
            "org:acme=100/day or agent=20 (scopes: user, org, agent; periods: day, month, all)"
        )
    return BudgetLine(match.group(1), match.group(2), limit, match.group(4) or "month")


def period_bounds(period: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    """The start and end of the period containing ``now`` (``None``: unbounded)."""
    now = now.astimezone(_UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    if period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        days = calendar.monthrange(start.year, start.month)[1]
        return start, start + timedelta(days=days)
    return None, None


async def spend_against(
    ledger: Any, budget: BudgetLine, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Rows of spend against ``budget`` (one per key it covers that spent anything, or the one
    key it names), most spent first: ``scope``, ``key``, ``period``, ``limit``, ``spent``,
    ``remaining``, ``used`` (a fraction), ``per_day`` and ``projected`` (at the end of the
    period, at this rate; ``None`` for all time)."""
    now = now or datetime.now(_UTC)
    start, end = period_bounds(budget.period, now)
    if budget.key is not None:
        spent_by_key = {
            budget.key: await ledger.spent(
                budget.scope,
                budget.key,
                None if budget.period == "all" else budget.period,
                currency=budget.currency,
                at=now,
            )
        }
    else:
        rows = await ledger.summary(budget.scope, since=start)
        spent_by_key = {
            str(r[budget.scope]): r["cost"] or Decimal(0)
            for r in rows
            if r.get(budget.scope) is not None and r["currency"] == budget.currency
        }
    out = []
    for key, spent in spent_by_key.items():
        per_day = projected = None
        if start is not None and end is not None:
            elapsed = max((now - start).total_seconds() / 86400, 1 / 24)
            per_day = spent / Decimal(str(elapsed))
            projected = per_day * Decimal(str((end - start).total_seconds() / 86400))
        out.append(
            {
                "scope": budget.scope,
                "key": key,
                "period": budget.period,
                "currency": budget.currency,
                "limit": budget.limit,
                "spent": spent,
                "remaining": budget.limit - spent,
                "used": float(spent / budget.limit),
                "per_day": per_day,
                "projected": projected,
            }
        )
    out.sort(key=lambda r: r["spent"], reverse=True)
    return out

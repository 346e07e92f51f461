"""Budget checks, the ledger's side: the order claims are checked in, the error a spent budget
raises, and the arguments of the server-side ``hookwire_reserve`` (PostgreSQL).

A check reserves each claim's worst-case cost for the call's run; the reservation counts
until the run is recorded or released, or for ``ttl`` seconds at most (a process that died
mid-call). Leases (a handler reserving for several calls at once) are the handler's: to the
ledger a lease is one more run id.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ...errors import BudgetExceeded, StoreError
from .records import Claim, ledger_key, period_name, period_start

if TYPE_CHECKING:
    from .batching import Ask

__all__ = [
    "RESERVE_CALL",
    "RESERVE_CALL_PYFORMAT",
    "RESERVE_MANY",
    "RESERVE_MANY_PYFORMAT",
    "exceeded",
    "keyed",
    "reserve_args",
    "reserve_many_args",
    "timed_out",
    "within",
]

_UTC = timezone.utc

# The claims go as one JSON text: psycopg adapts a str in C, where its array adaptation is
# Python code that cost more than the rest of the check on the client.
# A batch of checks (``batching``) in one statement, so one transaction and one round trip:
# the function runs once per call, in the arrays' order (a function scan yields its rows in
# order, and the nested loop calls the function for each as it comes), and each call sees
# the reservations the calls before it made (the function is volatile).
_MANY = (
    "SELECT r.refused, r.committed FROM unnest({}::text[], {}::jsonb[], {}::timestamptz[], "
    "{}::timestamptz[]) WITH ORDINALITY AS a(run_id, claims, now, expires, n) "
    "CROSS JOIN LATERAL hookwire_reserve(a.run_id, a.claims, a.now, a.expires) AS r "
    "ORDER BY a.n"
)
#: A batch of checks through asyncpg: one answer per call, in order.
RESERVE_MANY = _MANY.format("$1", "$2", "$3", "$4")
#: A batch of checks through psycopg.
RESERVE_MANY_PYFORMAT = _MANY.format("%s", "%s::text[]", "%s", "%s")
#: The check through asyncpg (``$n`` parameters).
RESERVE_CALL = "SELECT refused, committed FROM hookwire_reserve($1, $2::jsonb, $3, $4)"
#: The check through psycopg (``%s`` parameters).
RESERVE_CALL_PYFORMAT = (
    "SELECT refused, committed FROM hookwire_reserve(%s::text, %s::jsonb, %s::timestamptz, "
    "%s::timestamptz)"
)


def timed_out(ledger: object, timeout: float) -> StoreError:
    """The error of a budget check that took longer than ``timeout`` seconds."""
    return StoreError(
        f"the budget check on {ledger!r} did not finish within {timeout} s; the database may "
        "be overloaded, locked or unreachable (check_timeout= sets the bound)"
    )


# asyncio.timeout (3.11+) bounds an await without a task of its own; wait_for needs one.
_timeout = getattr(asyncio, "timeout", None)


async def within(step: Awaitable[None], timeout: float | None, ledger: object) -> None:
    """Await a budget check's ``step``, cancelled after ``timeout`` seconds (``None``: no
    bound) with :func:`timed_out`'s ``StoreError``."""
    if timeout is None:
        await step
        return
    try:
        if _timeout is not None:
            async with _timeout(timeout):
                await step
        else:  # pragma: no cover - Python 3.10
            await asyncio.wait_for(step, timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise timed_out(ledger, timeout) from None


def exceeded(c: Claim, committed: Decimal) -> BudgetExceeded:
    """The error of a check refused by ``c``'s budget, ``committed`` being spent + reserved."""
    what = {"day": "daily ", "month": "monthly "}.get(c.period or "", "")
    return BudgetExceeded(
        f"the {what}budget of {c.scope} {c.key!r} is spent: {committed.normalize():f} of "
        f"{c.limit} {c.currency} used or reserved by calls in flight; the LLM call was not "
        "made (raise the Budget's limit, or wait for the next period)",
        scope=c.scope,
        key=c.key,
        limit=c.limit,
        spent=committed,
        period=c.period,
    )


def keyed(
    claims: Sequence[Claim], ttl: float, now: datetime | None
) -> tuple[list[tuple[Claim, str]], datetime, datetime]:
    """The claims with their period keys, in the one order every check takes them, the time
    of the check, and when its reservations expire."""
    now = now or datetime.now(_UTC)
    expires = now + timedelta(seconds=ttl)
    # One order for everyone (the order of the totals' primary key, which ``record``
    # follows too), so that two checks never wait for each other's rows.
    ordered = sorted(
        (
            (
                c if ledger_key(c.key) == c.key else replace(c, key=ledger_key(c.key)),
                period_start(c.period, now),
            )
            for c in claims
        ),
        key=lambda cs: (
            cs[0].scope,
            cs[0].key,
            period_name(cs[0].period),
            cs[1],
            cs[0].currency,
        ),
    )
    return ordered, now, expires


def reserve_args(
    run_id: str, claims: list[tuple[Claim, str]], now: datetime, expires: datetime
) -> tuple[Any, ...]:
    """The arguments of ``hookwire_reserve`` for :func:`keyed` claims."""
    return (run_id, _encoded(claims), now, expires)


def reserve_many_args(asks: Sequence[Ask]) -> tuple[Any, ...]:
    """The arguments of :data:`RESERVE_MANY` for a batch of checks (in that order)."""
    return (
        [a.run_id for a in asks],
        [_encoded(a.claims) for a in asks],
        [a.now for a in asks],
        [a.expires for a in asks],
    )


def _encoded(claims: list[tuple[Claim, str]]) -> str:
    return json.dumps(
        [
            {
                "scope": c.scope,
                "key": c.key,
                "period": period_name(c.period),
                "period_start": s,
                "currency": c.currency,
                # Decimal as its exact text: PostgreSQL reads it back as numeric.
                "lim": str(c.limit),
                "amount": str(c.amount),
            }
            for c, s in claims
        ]
    )

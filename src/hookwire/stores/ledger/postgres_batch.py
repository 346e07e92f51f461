"""A batch of budget checks in one PostgreSQL transaction, on an asyncpg connection.

``hookwire_reserve`` checks one call; run once per call of a batch it costs the server about
0.5 ms a call, and more for calls of one key (each updates the key's ``budget_totals`` row
again, and every update leaves one more row version for the next to walk): 300 ms for 500
calls. Here a batch locks each of its keys' rows once, in the one order every check and
settlement takes them (so that no two transactions wait for each other), reads the keys'
spent cost after holding the locks (a settlement commits the ledger rows first, then takes
the reservations off: whoever holds the lock sees both or neither), admits or refuses the
calls in order as ``hookwire_reserve`` would, one after another, and writes the admitted
calls' reservations and the totals' new sums in one statement.

A key's ``budget_totals`` row is made (committed, before the transaction) only the first time
this process meets the key, not in every batch: with 1,000 users that statement was a fifth
of a batch's time. A row gone since (a prune, a new database at the same address) is found
missing by the lock; the transaction is then given up, the rows made, and the batch run again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from .batching import Ask, Outcome
from .budgets import exceeded
from .records import Claim, period_name

__all__ = ["reserve_batch", "row_key"]

_Key = tuple[str, str, str, str, str]

_KEYS = "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY"
_MATCH = "(x.scope, x.key, x.period, x.period_start, x.currency) = (k.s, k.k, k.p, k.st, k.c)"
# Committed before the batch's transaction: a row another transaction is inserting would
# otherwise be waited for out of order.
_ENSURE = (
    "INSERT INTO budget_totals (scope, key, period, period_start, currency, reserved) "
    f"SELECT k.s, k.k, k.p, k.st, k.c, 0 FROM {_KEYS} AS k(s, k, p, st, c, n) ORDER BY k.n "
    "ON CONFLICT DO NOTHING"
)
# The locks in the keys' order (sorted in Python, as every check and settlement sorts them):
# each key's row is looked up and locked as the keys come, by its whole key (a subquery per
# key, which no plan can turn into a scan of the table, with or without statistics).
_LOCK = (
    f"SELECT k.n, x.reserved FROM {_KEYS} AS k(s, k, p, st, c, n) CROSS JOIN LATERAL "
    "(SELECT b.reserved FROM budget_totals b WHERE b.scope = k.s AND b.key = k.k "
    "AND b.period = k.p AND b.period_start = k.st AND b.currency = k.c FOR UPDATE) x "
    "ORDER BY k.n"
)
# One lookup per key, by its whole key (a scalar subquery: no plan can scan the table or hash
# it, with or without statistics; migration 0008 gives either index the whole key).
_SPENT = (
    "SELECT k.n, (SELECT x.cost FROM usage_totals x WHERE x.scope = k.s AND x.key = k.k "
    "AND x.period = k.p AND x.period_start = k.st AND x.currency = k.c) "
    f"FROM {_KEYS} AS k(s, k, p, st, c, n)"
)
# Reservations of calls that never came back, on keys the batch refuses a call for (as
# hookwire_reserve does); SKIP LOCKED: a reservation being settled is the settler's.
_SWEEP = (
    "WITH gone AS (DELETE FROM budget_reservations r WHERE (r.run_id, r.scope, r.key, r.period)"
    " IN (SELECT x.run_id, x.scope, x.key, x.period FROM budget_reservations x "
    f"JOIN {_KEYS} AS k(s, k, p, st, c, n) ON {_MATCH} WHERE x.expires_at <= $6 "
    "FOR UPDATE OF x SKIP LOCKED) "
    "RETURNING r.scope, r.key, r.period, r.period_start, r.currency, r.amount) "
    "SELECT scope, key, period, period_start, currency, sum(amount) FROM gone "
    "GROUP BY scope, key, period, period_start, currency"
)
# The admitted calls' reservations, and the keys' totals moved by them and by the swept
# reservations ($9..$14), in one statement. A run checked twice keeps its first reservation
# (counted once): only the new rows are added. Every key's row is locked (_LOCK found them all),
# so the upsert only ever updates.
_RESERVE_ADD = (
    "WITH new AS (INSERT INTO budget_reservations "
    "(run_id, scope, key, period, period_start, currency, amount, expires_at) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
    " $7::numeric[], $8::timestamptz[]) ON CONFLICT DO NOTHING "
    "RETURNING scope, key, period, period_start, currency, amount), "
    "moved AS (SELECT * FROM new UNION ALL SELECT * FROM unnest($9::text[], $10::text[], "
    "$11::text[], $12::text[], $13::text[], $14::numeric[])) "
    "INSERT INTO budget_totals AS x (scope, key, period, period_start, currency, reserved) "
    "SELECT scope, key, period, period_start, currency, sum(amount) FROM moved "
    "GROUP BY scope, key, period, period_start, currency "
    "ON CONFLICT (scope, key, period, period_start, currency) "
    "DO UPDATE SET reserved = x.reserved + excluded.reserved"
)
#: Keys whose row this process has made, per ledger: at most this many (then forgotten).
KNOWN_MAX = 100_000


def row_key(c: Claim, start: str) -> _Key:
    """The claim's row of ``budget_totals``, in the table's key order."""
    return (c.scope, c.key, period_name(c.period), start, c.currency)


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(col) for col in zip(*rows, strict=True)]


def _walk(asks: Sequence[Ask], committed: dict[_Key, Decimal]) -> list[Outcome]:
    """Admit or refuse each call in order, as one-by-one checks would."""
    running = dict(committed)
    outcomes: list[Outcome] = []
    for a in asks:
        refused: Outcome = None
        for c, start in a.claims:
            total = running[row_key(c, start)]
            if total >= c.limit:
                refused = exceeded(c, total)
                break
        outcomes.append(refused)
        if refused is None:
            for c, start in a.claims:
                running[row_key(c, start)] += c.amount
    return outcomes


class _RowMissing(Exception):
    """A key's ``budget_totals`` row was not there to lock."""


async def reserve_batch(
    conn: Any, asks: Sequence[Ask], now: datetime, known: set[_Key]
) -> list[Outcome]:
    """Check and reserve ``asks`` in order, in one transaction on the asyncpg connection
    ``conn`` (see the module); ``now``: the check's time, for expired reservations;
    ``known``: the keys whose rows this process has made (updated here)."""
    keys = sorted({row_key(c, start) for a in asks for c, start in a.claims})
    columns = _columns(keys)
    new = [k for k in keys if k not in known]
    if new:
        await _ensure(conn, new, known)
    try:
        return await _reserve(conn, asks, now, keys, columns)
    except _RowMissing:
        known.clear()
        await _ensure(conn, keys, known)
        return await _reserve(conn, asks, now, keys, columns)


async def _ensure(conn: Any, keys: list[_Key], known: set[_Key]) -> None:
    await conn.execute(_ENSURE, *_columns(keys))
    if len(known) + len(keys) > KNOWN_MAX:
        known.clear()
    known.update(keys)


async def _reserve(
    conn: Any, asks: Sequence[Ask], now: datetime, keys: list[_Key], columns: list[list[Any]]
) -> list[Outcome]:
    async with conn.transaction():
        # A reservation lost in a server crash only frees budget early.
        await conn.execute("SET LOCAL synchronous_commit TO OFF")
        committed = dict.fromkeys(keys, Decimal(0))
        locked = await conn.fetch(_LOCK, *columns)
        if len(locked) < len(keys):
            raise _RowMissing  # rolls back: nothing was written
        for n, reserved in locked:
            committed[keys[n - 1]] += reserved
        for n, cost in await conn.fetch(_SPENT, *columns):
            committed[keys[n - 1]] += cost or 0
        outcomes = _walk(asks, committed)
        swept: list[tuple[Any, ...]] = []
        refused = sorted(
            {row_key(*_refusing(a, o)) for a, o in zip(asks, outcomes, strict=True) if o}
        )
        if refused:
            for *key, amount in await conn.fetch(_SWEEP, *_columns(refused), now):
                committed[tuple(key)] -= amount
                swept.append((*key, -amount))
            outcomes = _walk(asks, committed)
        rows = [
            (a.run_id, *row_key(c, start), c.amount, a.expires)
            for a, o in zip(asks, outcomes, strict=True)
            if o is None
            for c, start in a.claims
        ]
        if rows or swept:
            await conn.execute(
                _RESERVE_ADD, *(_columns(rows) or [[]] * 8), *(_columns(swept) or [[]] * 6)
            )
    return outcomes


def _refusing(a: Ask, outcome: Outcome) -> tuple[Claim, str]:
    """The claim of ``a`` that refused it."""
    assert outcome is not None
    for c, start in a.claims:
        if (c.scope, c.key, c.period) == (outcome.scope, outcome.key, outcome.period):
            return c, start
    return a.claims[0]

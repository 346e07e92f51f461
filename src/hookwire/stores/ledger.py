"""The usage ledger: one row per LLM call, running totals, and budget reservations.

:class:`UsageLedger` is the store behind ``AccountingCallbackHandler`` and ``hookwire costs``.
All its methods are coroutines meant to run on the store loop (``hookwire.stores.runner``).

- :meth:`UsageLedger.record` writes rows in one transaction. It is idempotent by ``run_id``: a
  row whose run is already in the ledger is skipped, so a call is never counted twice. In the
  same transaction it adds the new rows to ``usage_totals``, and removes the budget
  reservations of their runs (the reservation is *settled* into the real cost): on SQLite in
  that transaction, on PostgreSQL in a second one right after it (see below).
- :meth:`UsageLedger.reserve` checks budgets and reserves a call's worst-case cost, atomically
  across processes. On PostgreSQL it is one call of the server-side ``hookwire_reserve``
  (migration ``0003_budget_totals``): it adds the reservation to the key's running total in
  ``budget_totals`` (one row update, serialised per key by that row's lock), reads the key's
  spent cost, and undoes it all if spent plus reserved was at the limit. Settling takes the
  reservations off that total in a transaction of its own, committed after the ledger rows'
  (so a call always counts, at its reservation or its cost) and without waiting for the WAL
  flush: a check waits at most for a settlement's row update, never for the ledger's commit.
  SQLite's ``BEGIN IMMEDIATE`` serialises every writer of the file, and the check sums the
  key's reservations.
  :meth:`UsageLedger.reserve_sync` and :meth:`UsageLedger.areserve` do the same from where
  the caller is, for the inline budget check: on PostgreSQL, the sync one calls the
  server-side function on a pooled psycopg connection (no event loop involved) and the async
  one on an asyncpg pool of the caller's own event loop (closed when that loop shuts down);
  on SQLite both run ``reserve`` on the store loop.
- :meth:`UsageLedger.summary` groups the ledger by user, org, agent, model, provider, day or
  month over a time range.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    delete,
    func,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable

from ..errors import BudgetExceeded, ConfigurationError, StoreError
from . import engine as _engine
from . import runner
from .schema import Money, budget_reservations, budget_totals, usage_ledger, usage_totals

__all__ = [
    "GROUP_KEYS",
    "PERIODS",
    "SCOPES",
    "Claim",
    "UsageLedger",
    "UsageRecord",
    "close_sync_budget_connections",
    "dispose_budget_pools",
    "period_start",
]

#: What a budget or a total can be kept for, and the ledger column holding its key.
SCOPES: Final[dict[str, str]] = {"user": "user_id", "org": "org_id", "agent": "agent"}
#: Budget periods: a calendar day or month in UTC, or ``None`` for all time.
PERIODS: Final = ("day", "month", None)
#: What ``summary(by=...)`` can group by.
GROUP_KEYS: Final = ("user", "org", "agent", "model", "provider", "day", "month")

_UTC = timezone.utc
_BATCH = 500


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One LLM call as the ledger keeps it. ``cost`` is ``None`` when the price is unknown."""

    run_id: str
    created_at: datetime
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost: Decimal | None = None
    currency: str = "USD"
    user_id: str | None = None
    org_id: str | None = None
    agent: str | None = None
    conversation_id: str | None = None
    model: str | None = None
    provider: str | None = None
    correlation_id: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    source: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        """The row as a dict (``cost`` stays a ``Decimal``)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Claim:
    """One budget to check for one call: the scope's key, its limit, and what to reserve."""

    scope: str
    key: str
    period: str | None
    limit: Decimal
    amount: Decimal
    currency: str = "USD"


def period_start(period: str | None, at: datetime) -> str:
    """The key of the period containing ``at`` (UTC): ``2026-11-23``, ``2026-11``, or ``""``."""
    at = at.astimezone(_UTC)
    if period == "day":
        return at.strftime("%Y-%m-%d")
    if period == "month":
        return at.strftime("%Y-%m")
    return ""


def _period_name(period: str | None) -> str:
    return period or "all"


def _as_utc(value: datetime | date | str | None, what: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError(
                f"{what} must be an ISO 8601 date or datetime such as 2026-11-23 or "
                f"2026-11-23T08:00:00Z, not {value!r}"
            ) from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=_UTC)
    raise ConfigurationError(f"{what} must be a datetime, a date or an ISO 8601 string")


_FIELDS: tuple[str, ...] = tuple(UsageRecord.__slots__)


def _row(r: UsageRecord) -> dict[str, Any]:
    # dataclasses.asdict deep-copies every value; the ledger's values are all immutable.
    return {f: getattr(r, f) for f in _FIELDS}


class _Statements:
    """The statements every write runs, built once per dialect so SQLAlchemy compiles each
    only once (a fresh ``insert().on_conflict...`` per batch costs a millisecond to build)."""

    def __init__(self, dialect: str) -> None:
        ins = sqlite_insert if dialect == "sqlite" else pg_insert
        self.insert_ledger = (
            ins(usage_ledger)
            .on_conflict_do_nothing(index_elements=["run_id"])
            .returning(usage_ledger.c.run_id)
        )
        upsert = ins(usage_totals)
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
        r = budget_reservations.c
        settle = delete(budget_reservations).where(
            r.run_id.in_(bindparam("run_ids", expanding=True))
        )
        removed = (r.scope, r.key, r.period, r.period_start, r.currency, r.amount)
        # PostgreSQL keeps budget_totals: what is removed is taken off it.
        self.settle: Executable = settle if dialect == "sqlite" else settle.returning(*removed)
        b = budget_totals.c
        self.unreserve = (
            update(budget_totals)
            .where(
                b.scope == bindparam("s"),
                b.key == bindparam("k"),
                b.period == bindparam("p"),
                b.period_start == bindparam("st"),
                b.currency == bindparam("c"),
            )
            .values(reserved=b.reserved - bindparam("amount", type_=Money()))
        )
        # Expired reservations (PostgreSQL's record only). SKIP LOCKED: a reservation another
        # writer holds is being settled by it.
        expired = (
            select(r.run_id, r.scope, r.key, r.period)
            .where(r.expires_at <= bindparam("now"))
            .with_for_update(skip_locked=True)
        )
        self.sweep = (
            delete(budget_reservations)
            .where(tuple_(r.run_id, r.scope, r.key, r.period).in_(expired))
            .returning(*removed)
        )


_STATEMENTS: dict[str, _Statements] = {}


def _statements(dialect: str) -> _Statements:
    found = _STATEMENTS.get(dialect)
    if found is None:
        found = _STATEMENTS[dialect] = _Statements(dialect)
    return found


def _exceeded(c: Claim, committed: Decimal) -> BudgetExceeded:
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


# The claims go as one JSON text: psycopg adapts a str in C, where its array adaptation is
# Python code that cost more than the rest of the check on the client.
_RESERVE_CALL = "SELECT refused, committed FROM hookwire_reserve($1, $2::jsonb, $3, $4)"
_RESERVE_CALL_PYFORMAT = (
    "SELECT refused, committed FROM hookwire_reserve(%s::text, %s::jsonb, %s::timestamptz, "
    "%s::timestamptz)"
)
#: How often (seconds) ``record`` also removes expired reservations (of calls that never came
#: back); a refused check removes those of its own key at once.
_SWEEP_EVERY = 60.0

_budget_engines: dict[tuple[str, int], tuple[asyncio.AbstractEventLoop, AsyncEngine]] = {}
_budget_pools: dict[tuple[str, int], tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
_pool_closers: dict[tuple[str, int], AsyncIterator[None]] = {}


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _close_with_loop(key: tuple[str, int], pool: Any) -> AsyncIterator[None]:
    """Closes ``pool`` when its event loop shuts down: ``asyncio.run`` (and ``Runner.close``)
    finalise the loop's live async generators, which runs this one's ``finally``."""
    try:
        yield
    finally:
        found = _budget_pools.get(key)
        f = found[1] if found is not None else None
        if f is not None and f.done() and f.exception() is None and f.result() is pool:
            del _budget_pools[key]
        _pool_closers.pop(key, None)
        try:
            await asyncio.wait_for(pool.close(), 5.0)
        except Exception:  # a lost server or a stuck connection: drop the sockets instead
            pool.terminate()


def _budget_engine(url: str) -> AsyncEngine:
    """A small pool for budget checks through a driver other than asyncpg: autocommit (the
    server-side function is the whole transaction), no ping or reset per checkout."""
    loop = asyncio.get_running_loop()
    key = (url, id(loop))
    found = _budget_engines.get(key)
    if found is not None and found[0] is loop:
        return found[1]
    engine = create_async_engine(
        url,
        isolation_level="AUTOCOMMIT",
        pool_size=4,
        max_overflow=16,
        pool_pre_ping=False,
        pool_reset_on_return=None,
    )
    _budget_engines[key] = (loop, engine)
    return engine


async def _keep_session(conn: Any) -> None:
    """The pool's reset on release: none. A check leaves nothing in its session (one
    autocommit statement; its locks and settings are transaction-scoped), and
    asyncpg's default reset is one more round trip per check."""


async def _budget_pool(url: str) -> Any:
    """asyncpg's own pool for budget checks (one prepared call per check, no ORM layer), one
    per database and event loop."""
    import asyncpg  # type: ignore[import-untyped]

    loop = asyncio.get_running_loop()
    key = (url, id(loop))
    found = _budget_pools.get(key)
    if found is None or found[0] is not loop:
        future: asyncio.Future[Any] = loop.create_future()
        _budget_pools[key] = (loop, future)
        try:
            pool = await asyncpg.create_pool(_dsn(url), min_size=0, max_size=8, reset=_keep_session)
        except BaseException as exc:
            del _budget_pools[key]
            future.set_exception(exc)
            future.exception()  # retrieved: the caller gets it below
            raise
        if not runner.in_store_loop():
            # An app's loop ends (asyncio.run returns) without telling us: tie the pool's
            # life to the loop's, so that it is closed there, on its own loop.
            closer = _close_with_loop(key, pool)
            await closer.__anext__()
            _pool_closers[key] = closer
        future.set_result(pool)
        return pool
    return await asyncio.shield(found[1])


async def dispose_budget_pools() -> None:
    """Close the budget-check pools opened on the running loop (for tests and shutdown)."""
    loop = asyncio.get_running_loop()
    for key in [k for k, (lp, _) in _budget_pools.items() if lp is loop]:
        closer = _pool_closers.pop(key, None)
        if closer is not None:
            await closer.aclose()  # type: ignore[attr-defined]
            continue
        _, future = _budget_pools.pop(key)
        if future.done() and future.exception() is None:
            await future.result().close()
    for key in [k for k, (lp, _) in _budget_engines.items() if lp is loop]:
        await _budget_engines.pop(key)[1].dispose()


# Sync budget checks: idle psycopg connections per database, shared by all threads (a check
# takes one for its single statement and gives it back). Each is kept as a cursor on it, reused
# by every check (a cursor per statement is a fifth of the check's client time).
_MAX_IDLE = 8
_sync_lock = threading.Lock()
_sync_idle: dict[str, list[Any]] = {}
_sync_open: list[Any] = []
_sync_pid = os.getpid()
_sync_inherited: list[Any] = []


def _sync_take(url: str) -> Any:
    global _sync_pid
    with _sync_lock:
        if os.getpid() != _sync_pid:
            # A forked child shares its parent's sockets: it must neither use nor close them
            # (closing would end the parent's sessions). Keep them referenced, never touched.
            _sync_inherited.extend(_sync_open)
            _sync_open.clear()
            _sync_idle.clear()
            _sync_pid = os.getpid()
        idle = _sync_idle.get(url)
        if idle:
            return idle.pop()
    import psycopg

    # autocommit: the server-side function is the whole transaction; prepare_threshold=0:
    # the one statement is prepared on first use and reused by every later check.
    conn = psycopg.connect(_dsn(url), autocommit=True, prepare_threshold=0, connect_timeout=10)
    cursor = conn.cursor()
    with _sync_lock:
        _sync_open.append(cursor)
    return cursor


_IDLE_IN_SESSION = 0  # psycopg.pq.TransactionStatus.IDLE: no transaction left open


def _sync_give_back(url: str, cursor: Any) -> None:
    conn = cursor.connection
    ok = not conn.closed and conn.pgconn.transaction_status == _IDLE_IN_SESSION
    with _sync_lock:
        idle = _sync_idle.setdefault(url, [])
        if ok and len(idle) < _MAX_IDLE and os.getpid() == _sync_pid:
            idle.append(cursor)
            return
        if cursor in _sync_open:
            _sync_open.remove(cursor)
    conn.close()


def close_sync_budget_connections() -> None:
    """Close the idle connections of sync budget checks (also done at interpreter exit)."""
    with _sync_lock:
        if os.getpid() != _sync_pid:
            return
        cursors = [c for idle in _sync_idle.values() for c in idle]
        _sync_idle.clear()
        for c in cursors:
            if c in _sync_open:
                _sync_open.remove(c)
    for c in cursors:
        c.connection.close()


atexit.register(close_sync_budget_connections)


def _psycopg_available() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


class UsageLedger:
    """The ledger in the database at ``url`` (``hookwire.stores.engine.resolve_url`` rules:
    SQLite ``./hookwire.db`` by default, PostgreSQL by URL)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = _engine.resolve_url(url)
        self._sqlite = _engine.is_sqlite(self.url)
        self._insert = sqlite_insert if self._sqlite else pg_insert
        self._stmts = _statements("sqlite" if self._sqlite else "postgresql")
        self._schema_checked = False
        self._swept_at = -_SWEEP_EVERY
        self._direct_sync = not self._sqlite and _psycopg_available()
        self._direct_async = self.url.startswith("postgresql+asyncpg")

    def __repr__(self) -> str:
        return f"UsageLedger({_engine.redact(self.url)!r})"

    async def _ready(self) -> None:
        try:
            await _engine.ensure_schema(self.url)
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("opening the database", exc) from exc

    def _fail(self, doing: str, exc: Exception) -> StoreError:
        return StoreError(f"{doing} in {_engine.redact(self.url)} failed: {exc}")

    # -- writing ------------------------------------------------------------------------------

    async def record(
        self, records: Sequence[UsageRecord], release: Iterable[str] = ()
    ) -> list[UsageRecord]:
        """Write ``records`` (skipping runs already in the ledger) and remove the budget
        reservations of their runs and of the runs in ``release``, in one transaction.
        Returns the records that were new."""
        release = list(release)
        if not records and not release:
            return []
        await self._ready()
        written: list[UsageRecord] = []
        done = [r.run_id for r in records] + release
        try:
            async with _engine.get_write_engine(self.url).begin() as conn:
                for i in range(0, len(records), _BATCH):
                    chunk = records[i : i + _BATCH]
                    written.extend(await self._insert_rows(conn, chunk))
                if written:
                    await self._add_totals(conn, written)
                if self._sqlite:
                    for i in range(0, len(done), _BATCH):
                        await conn.execute(self._stmts.settle, {"run_ids": done[i : i + _BATCH]})
            if not self._sqlite:
                await self._settle_pg(done)
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("writing usage", exc) from exc
        return written

    async def _insert_rows(self, conn: Any, chunk: Sequence[UsageRecord]) -> list[UsageRecord]:
        # One row per run even within the batch: the first record of a run wins.
        by_run: dict[str, UsageRecord] = {}
        for r in chunk:
            by_run.setdefault(r.run_id, r)
        result = await conn.execute(self._stmts.insert_ledger, [_row(r) for r in by_run.values()])
        inserted = {row[0] for row in result}
        return [r for r in by_run.values() if r.run_id in inserted]

    async def _settle_pg(self, run_ids: list[str]) -> None:
        """Remove the reservations of ``run_ids`` (and, now and then, the expired ones) and
        take them off ``budget_totals``: after the ledger rows' transaction, so that a check
        in between counts a call twice (reserved and spent) rather than not at all.

        A transaction that does not wait for the WAL flush: the rows it locks are the ones
        budget checks wait for. Lost in a crash, it leaves reservations that count until they
        expire (budget held back, never overspent)."""
        sweep = time.monotonic() - self._swept_at >= _SWEEP_EVERY
        if not run_ids and not sweep:
            return
        removed: dict[tuple[str, str, str, str, str], Decimal] = defaultdict(Decimal)
        async with _engine.get_write_engine(self.url).begin() as conn:
            await conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
            results = [
                await conn.execute(self._stmts.settle, {"run_ids": run_ids[i : i + _BATCH]})
                for i in range(0, len(run_ids), _BATCH)
            ]
            if sweep:
                results.append(await conn.execute(self._stmts.sweep, {"now": datetime.now(_UTC)}))
            for result in results:
                for scope, key, period, start, currency, amount in result:
                    removed[(scope, key, period, start, currency)] += amount
            if removed:
                # Sorted, so that settlements and checks take the rows' locks in one order.
                await conn.execute(
                    self._stmts.unreserve,
                    [
                        {"s": s, "k": k, "p": p, "st": st, "c": c, "amount": amount}
                        for (s, k, p, st, c), amount in sorted(removed.items())
                    ],
                )
        if sweep:
            self._swept_at = time.monotonic()

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
                    s = sums[(scope, key, _period_name(period), start, r.currency)]
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
        await conn.execute(self._stmts.upsert_totals, values)

    # -- budgets ------------------------------------------------------------------------------

    def _committed(
        self, scope: str, key: str, period: str | None, start: str, currency: str, now: datetime
    ) -> Any:
        """One statement (so one snapshot) summing the spent and the reserved of a key."""
        t, r = usage_totals.c, budget_reservations.c
        spent = (
            select(func.coalesce(func.sum(t.cost), 0))
            .where(
                t.scope == scope,
                t.key == key,
                t.period == _period_name(period),
                t.period_start == start,
                t.currency == currency,
            )
            .scalar_subquery()
        )
        reserved = (
            select(func.coalesce(func.sum(r.amount), 0))
            .where(
                r.scope == scope,
                r.key == key,
                r.period == _period_name(period),
                r.period_start == start,
                r.currency == currency,
                r.expires_at > now,
            )
            .scalar_subquery()
        )
        return select(spent.label("spent"), reserved.label("reserved"))

    @staticmethod
    def _money(value: Any) -> Decimal:
        # The sums are typed Money, so both databases hand back a Decimal.
        return Decimal(0) if value is None else Decimal(value)

    async def reserve(
        self, run_id: str, claims: Sequence[Claim], ttl: float = 600.0, now: datetime | None = None
    ) -> None:
        """Check every claim's budget and reserve its amount for ``run_id``, atomically.

        Raises ``BudgetExceeded`` (and reserves nothing) if some scope's spent plus reserved
        cost is at or over its limit. A reservation counts until its run is recorded or
        released, or for ``ttl`` seconds at most (a process that died mid-call).
        """
        if not claims:
            return
        await self._ready()
        keyed, now, expires = self._keyed(claims, ttl, now)
        if not self._sqlite:
            await self._reserve_pg(run_id, keyed, now, expires)
            return
        try:
            # BEGIN IMMEDIATE: the check and the reservation hold SQLite's write lock, which
            # serialises them against every other writer of the file, in any process.
            async with _engine.get_write_engine(self.url).begin() as conn:
                for c, start in keyed:
                    row = (
                        await conn.execute(
                            self._committed(c.scope, c.key, c.period, start, c.currency, now)
                        )
                    ).one()
                    committed = self._money(row.spent) + self._money(row.reserved)
                    if committed >= c.limit:
                        raise _exceeded(c, committed)
                await conn.execute(
                    self._insert(budget_reservations)
                    .values(
                        [
                            {
                                "run_id": run_id,
                                "scope": c.scope,
                                "key": c.key,
                                "period": _period_name(c.period),
                                "period_start": start,
                                "currency": c.currency,
                                "amount": c.amount,
                                "expires_at": expires,
                            }
                            for c, start in keyed
                        ]
                    )
                    .on_conflict_do_nothing()
                )
                # Reservations of runs that never came back stop counting at expiry; remove
                # those of these keys now and then, so the table stays small.
                r = budget_reservations.c
                await conn.execute(
                    delete(budget_reservations).where(
                        r.expires_at <= now,
                        r.scope == keyed[0][0].scope,
                        r.key == keyed[0][0].key,
                    )
                )
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("checking a budget", exc) from exc

    @staticmethod
    def _keyed(
        claims: Sequence[Claim], ttl: float, now: datetime | None
    ) -> tuple[list[tuple[Claim, str]], datetime, datetime]:
        now = now or datetime.now(_UTC)
        expires = now + timedelta(seconds=ttl)
        # One order for everyone (the order of the totals' primary key, which ``record``
        # follows too), so that two checks never wait for each other's rows.
        keyed = sorted(
            ((c, period_start(c.period, now)) for c in claims),
            key=lambda cs: (
                cs[0].scope,
                cs[0].key,
                _period_name(cs[0].period),
                cs[1],
                cs[0].currency,
            ),
        )
        return keyed, now, expires

    def reserve_sync(
        self, run_id: str, claims: Sequence[Claim], ttl: float = 600.0, now: datetime | None = None
    ) -> None:
        """:meth:`reserve` from sync code, without an event loop on PostgreSQL.

        Same checks, same atomicity (the same server-side function and row locks), same
        ``BudgetExceeded``; the call runs in the caller's thread on a pooled psycopg
        connection. On SQLite (or without psycopg) it runs ``reserve`` on the store loop.
        """
        if not claims:
            return
        if not self._direct_sync:
            runner.run_sync(self.reserve(run_id, claims, ttl, now))
            return
        if not self._schema_checked:
            runner.run_sync(self._ready())
            self._schema_checked = True
        keyed, now, expires = self._keyed(claims, ttl, now)
        args = self._reserve_args(run_id, keyed, now, expires)
        try:
            cursor = _sync_take(self.url)
            try:
                fetched = cursor.execute(_RESERVE_CALL_PYFORMAT, args).fetchone()
            finally:
                _sync_give_back(self.url, cursor)
        except Exception as exc:  # psycopg's errors (a missing function, a lost server)
            raise self._fail("checking a budget", exc) from exc
        refused = int(fetched[0])
        if refused:
            raise _exceeded(keyed[refused - 1][0], Decimal(fetched[1]))

    async def areserve(
        self, run_id: str, claims: Sequence[Claim], ttl: float = 600.0, now: datetime | None = None
    ) -> None:
        """:meth:`reserve` from any event loop, without a hop to the store loop on PostgreSQL
        (asyncpg): the server-side function is called on an asyncpg pool of the caller's loop,
        closed when that loop shuts down. Elsewhere it awaits ``reserve`` on the store loop.
        """
        if not claims:
            return
        if not self._direct_async or runner.in_store_loop():
            await runner.run(self.reserve(run_id, claims, ttl, now))
            return
        if not self._schema_checked:
            await runner.run(self._ready())
            self._schema_checked = True
        keyed, now, expires = self._keyed(claims, ttl, now)
        await self._reserve_pg(run_id, keyed, now, expires)

    @staticmethod
    def _reserve_args(
        run_id: str, keyed: list[tuple[Claim, str]], now: datetime, expires: datetime
    ) -> tuple[Any, ...]:
        claims = json.dumps(
            [
                {
                    "scope": c.scope,
                    "key": c.key,
                    "period": _period_name(c.period),
                    "period_start": s,
                    "currency": c.currency,
                    # Decimal as its exact text: PostgreSQL reads it back as numeric.
                    "lim": str(c.limit),
                    "amount": str(c.amount),
                }
                for c, s in keyed
            ]
        )
        return (run_id, claims, now, expires)

    async def _reserve_pg(
        self,
        run_id: str,
        keyed: list[tuple[Claim, str]],
        now: datetime,
        expires: datetime,
    ) -> None:
        args = self._reserve_args(run_id, keyed, now, expires)
        try:
            if self.url.startswith("postgresql+asyncpg"):
                pool = await _budget_pool(self.url)
                async with pool.acquire() as conn:
                    row = await conn.fetchrow(_RESERVE_CALL, *args)
            else:
                async with _budget_engine(self.url).connect() as conn:
                    raw = await conn.get_raw_connection()
                    cursor = await raw.driver_connection.execute(  # type: ignore[union-attr]
                        _RESERVE_CALL_PYFORMAT, args
                    )
                    fetched = await cursor.fetchone()
                    row = {"refused": fetched[0], "committed": fetched[1]}
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("checking a budget", exc) from exc
        except Exception as exc:  # the driver's own errors (a missing function, a lost server)
            raise self._fail("checking a budget", exc) from exc
        refused = int(row["refused"])
        if refused:
            raise _exceeded(keyed[refused - 1][0], Decimal(row["committed"]))

    async def release(self, run_ids: Iterable[str]) -> None:
        """Remove the reservations of runs that ended without a ledger row (failed calls)."""
        await self.record([], release=run_ids)

    async def spent(
        self,
        scope: str,
        key: str,
        period: str | None = None,
        *,
        currency: str = "USD",
        at: datetime | None = None,
    ) -> Decimal:
        """The recorded cost of ``scope`` ``key`` in the period containing ``at`` (now)."""
        if scope not in SCOPES:
            raise ConfigurationError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        await self._ready()
        start = period_start(period, at or datetime.now(_UTC))
        t = usage_totals.c
        try:
            async with _engine.get_engine(self.url).connect() as conn:
                value = (
                    await conn.execute(
                        select(t.cost).where(
                            t.scope == scope,
                            t.key == key,
                            t.period == _period_name(period),
                            t.period_start == start,
                            t.currency == currency,
                        )
                    )
                ).scalar()
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("reading a total", exc) from exc
        return value if value is not None else Decimal(0)

    async def reserved(self, scope: str, key: str, period: str | None = None) -> Decimal:
        """The cost reserved now by calls in flight for ``scope`` ``key`` (for tests and
        monitoring)."""
        await self._ready()
        now = datetime.now(_UTC)
        try:
            async with _engine.get_engine(self.url).connect() as conn:
                row = (
                    await conn.execute(
                        self._committed(scope, key, period, period_start(period, now), "USD", now)
                    )
                ).one()
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("reading reservations", exc) from exc
        return self._money(row.reserved)

    # -- reading ------------------------------------------------------------------------------

    def _group_column(self, name: str) -> ColumnElement[Any]:
        c = usage_ledger.c
        if name in SCOPES:
            return c[SCOPES[name]].label(name)
        if name in ("model", "provider"):
            return c[name].label(name)
        length = 10 if name == "day" else 7
        if self._sqlite:
            # created_at is fixed-width ISO 8601 text in UTC on SQLite.
            return func.substr(c.created_at, 1, length).label(name)
        fmt = "YYYY-MM-DD" if name == "day" else "YYYY-MM"
        return func.to_char(func.timezone("UTC", c.created_at), fmt).label(name)

    async def summary(
        self,
        by: Sequence[str] | str = (),
        *,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Calls, tokens and cost, grouped by ``by`` (any of ``user``, ``org``, ``agent``,
        ``model``, ``provider``, ``day``, ``month``) and currency, over ``since <= time <
        until``; ``where`` keeps only rows whose ``user``/``org``/``agent``/``model``/
        ``provider`` has the given value.

        Each row: the group's keys, ``currency``, ``calls``, ``prompt_tokens``,
        ``completion_tokens``, ``cached_tokens``, ``reasoning_tokens``, ``total_tokens``,
        ``cost`` (the sum of the known costs, ``None`` if none is known) and
        ``unknown_cost_calls`` (calls whose price was unknown).
        """
        groups = [by] if isinstance(by, str) else list(by)
        for g in groups:
            if g not in GROUP_KEYS:
                raise ConfigurationError(
                    f"cannot group usage by {g!r}; choose from {', '.join(GROUP_KEYS)}"
                )
        if len(set(groups)) != len(groups):
            raise ConfigurationError(f"by={groups!r} names a group twice")
        start = _as_utc(since, "since")
        end = _as_utc(until, "until")
        c = usage_ledger.c
        cols = [self._group_column(g) for g in groups]
        conditions: list[ColumnElement[bool]] = []
        if start is not None:
            conditions.append(c.created_at >= start)
        if end is not None:
            conditions.append(c.created_at < end)
        for name, value in (where or {}).items():
            if name in SCOPES:
                conditions.append(c[SCOPES[name]] == value)
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
                func.coalesce(func.sum(c.prompt_tokens), 0).label("prompt_tokens"),
                func.coalesce(func.sum(c.completion_tokens), 0).label("completion_tokens"),
                func.sum(c.cached_tokens).label("cached_tokens"),
                func.sum(c.reasoning_tokens).label("reasoning_tokens"),
                func.coalesce(func.sum(c.total_tokens), 0).label("total_tokens"),
                func.sum(c.cost).label("cost"),
                (func.count() - func.count(c.cost)).label("unknown_cost_calls"),
            )
            .where(and_(literal(True), *conditions))
            .group_by(*cols, c.currency)
            .order_by(*cols, c.currency)
        )
        await self._ready()
        try:
            async with _engine.get_engine(self.url).connect() as conn:
                result = await conn.execute(stmt)
                rows = [{str(k): v for k, v in row._mapping.items()} for row in result]
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("summarising usage", exc) from exc
        for row in rows:
            for k in ("calls", "prompt_tokens", "completion_tokens", "total_tokens"):
                row[k] = int(row[k])
            for k in ("cached_tokens", "reasoning_tokens"):
                row[k] = None if row[k] is None else int(row[k])
            row["unknown_cost_calls"] = int(row["unknown_cost_calls"])
        return rows

    async def records(
        self, *, run_id: str | None = None, user_id: str | None = None, limit: int = 1000
    ) -> list[UsageRecord]:
        """Ledger rows, oldest first (optionally of one run or one user)."""
        c = usage_ledger.c
        stmt = select(usage_ledger).order_by(c.seq).limit(limit)
        if run_id is not None:
            stmt = stmt.where(c.run_id == run_id)
        if user_id is not None:
            stmt = stmt.where(c.user_id == user_id)
        await self._ready()
        try:
            async with _engine.get_engine(self.url).connect() as conn:
                result = await conn.execute(stmt)
                return [
                    UsageRecord(**{k: v for k, v in row._mapping.items() if k != "seq"})
                    for row in result
                ]
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("reading usage", exc) from exc

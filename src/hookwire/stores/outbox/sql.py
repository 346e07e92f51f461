"""The outbox on SQLAlchemy Core, for SQLite and PostgreSQL alike; each backend names its
``insert`` (for ``ON CONFLICT``) and whether a claim may skip rows other relays hold.

A claim is one write transaction: the oldest due rows of the sink (on PostgreSQL ``FOR
UPDATE SKIP LOCKED``, so relays in several processes take different rows without waiting
for each other; on SQLite ``BEGIN IMMEDIATE`` makes claims take turns), less the rows whose
key has an earlier pending row outside the claim (held by another relay, or waiting for its
next attempt): those would overtake it. The rows kept get the relay's lease: written into
them (``claimed_until``), or on PostgreSQL, for a relay's :meth:`~SQLOutbox.take`, the claim's
transaction held open until the relay has marked them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from ...errors import StoreError
from ..engine import get_engine, get_write_engine
from ..schema import outbox
from ..sqlstore import SQLStore
from .api import Claim, Outbox
from .records import DEAD, DELIVERED, PENDING, Delivery, OutboxEvent

__all__ = ["BATCH", "SQLOutbox"]

_UTC = timezone.utc
#: At most this many rows go into one statement.
BATCH = 500

_o = outbox.c
_SEQS: BindParameter[Any] = bindparam("seqs", expanding=True)


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(_UTC)


#: The outbox's insert, for the driver's executemany (see ``SQLOutbox.enqueue``).
_INSERT = (
    'INSERT INTO outbox (event_id, sink, "key", event, created_at, body, available_at, state, '
    "attempts) VALUES ({}, {}, {}, {}, {}, {}, {}, 'pending', 0) "
    "ON CONFLICT (event_id, sink) DO NOTHING"
)


#: The same for PostgreSQL, from one array per column, in the arrays' order (the order of
#: ``seq``, which is each key's delivery order).
_INSERT_ARRAYS = (
    'INSERT INTO outbox (event_id, sink, "key", event, created_at, body, available_at, state, '
    "attempts) SELECT e, s, k, n, c, b, a, 'pending', 0 FROM unnest({}::text[], {}::text[], "
    "{}::text[], {}::text[], {}::timestamptz[], {}::text[], {}::timestamptz[]) "
    "WITH ORDINALITY AS u(e, s, k, n, c, b, a, i) ORDER BY i "
    "ON CONFLICT (event_id, sink) DO NOTHING"
)
#: Parameter styles of PostgreSQL's drivers (arrays bind as one value).
_ARRAY_STYLES = frozenset({"numeric_dollar", "format", "pyformat"})


def _placeholders(paramstyle: str, n: int) -> list[str]:
    if paramstyle == "qmark":
        return ["?"] * n
    if paramstyle in ("numeric_dollar",):
        return [f"${i}" for i in range(1, n + 1)]
    if paramstyle in ("format", "pyformat"):
        return ["%s"] * n
    raise StoreError(f"the database driver's parameter style {paramstyle!r} is not supported")


#: Due rows of a sink, in order: sink, now, now; the limit; the lock clause.
_CLAIM = (
    'SELECT seq, event_id, sink, "key", event, created_at, body, attempts FROM outbox '
    "WHERE sink = {} AND state = 'pending' AND available_at <= {} "
    "AND (claimed_until IS NULL OR claimed_until < {}) ORDER BY seq LIMIT {}{}"
)
#: Rows per ``UPDATE`` (SQLite binds at most 32,766 values; PostgreSQL gets one array).
_UPDATE_BATCH = 5000


def _in_list(
    paramstyle: str, column: str, values: Sequence[Any], first: int
) -> tuple[str, list[Any]]:
    """``column`` is one of ``values``, and its parameters; ``first`` is the number of its
    first placeholder. PostgreSQL gets one array (``= ANY``), so its statement stays the same
    whatever the count."""
    if paramstyle == "numeric_dollar":
        return f"{column} = ANY(${first})", [list(values)]
    if paramstyle in ("format", "pyformat"):
        return f"{column} = ANY(%s)", [list(values)]
    marks = ",".join(_placeholders(paramstyle, len(values)))
    return f"{column} IN ({marks})", list(values)


def _not_in_seqs(paramstyle: str, seqs: Sequence[int], first: int) -> tuple[str, list[Any]]:
    """``seq`` is none of ``seqs`` (as ``_in_list``). On PostgreSQL a subquery, which it
    hashes: ``<> ALL`` of an array compares each row with every element (26 ms against 6 ms
    for a claim of 2,000 rows, EXPLAIN ANALYZE)."""
    if paramstyle == "numeric_dollar":
        return f"seq NOT IN (SELECT unnest(${first}::bigint[]))", [list(seqs)]
    if paramstyle in ("format", "pyformat"):
        return "seq NOT IN (SELECT unnest(%s::bigint[]))", [list(seqs)]
    marks = ",".join(_placeholders(paramstyle, len(seqs)))
    return f"seq NOT IN ({marks})", list(seqs)


def _parse_time(value: Any) -> datetime:
    # SQLite keeps UTCDateTime as ISO 8601 text; PostgreSQL's driver gives datetimes.
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=_UTC)  # type: ignore[no-any-return]
    return value  # type: ignore[no-any-return]


class SQLOutbox(SQLStore, Outbox):
    """The outbox in a SQL database (an implementation's base: it may set
    :attr:`skip_locked` and :meth:`stamp`)."""

    #: Whether claims lock rows and skip those other relays hold (PostgreSQL).
    skip_locked: ClassVar[bool] = False

    async def open(self) -> None:
        """Check the schema and connect once, so the pool has a connection at exit."""
        await self._connect_once()

    async def _write(self, doing: str, statements: Callable[[Any], Any]) -> Any:
        await self._ready()
        try:
            async with get_write_engine(self.url).begin() as conn:
                return await statements(conn)
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail(doing, exc) from exc

    # -- the app's side -----------------------------------------------------------------------

    async def enqueue(self, events: Sequence[OutboxEvent], sinks: Sequence[str]) -> None:
        if not events or not sinks:
            return
        stamp = self.stamp
        now = stamp(datetime.now(_UTC))
        rows = [
            (e.event_id, sink, e.key, e.event, stamp(e.created_at), e.body.decode(), now)
            for e in events
            for sink in sinks
        ]

        async def go(conn: Any) -> None:
            style = conn.dialect.paramstyle
            if style in _ARRAY_STYLES:
                # PostgreSQL: one statement for the whole batch, a column an array.
                columns = [list(c) for c in zip(*rows, strict=True)]
                sql = _INSERT_ARRAYS.format(*_placeholders(style, 7))
                await conn.exec_driver_sql(sql, tuple(columns))
                return
            # The driver's own executemany of one plain statement: SQLAlchemy's per-row
            # parameter processing cost more than the insert (10,000 rows/s against 40,000
            # on SQLite, measured with bench/export.py); the values are bound, never spliced.
            sql = _INSERT.format(*_placeholders(style, 7))
            for i in range(0, len(rows), BATCH):
                await conn.exec_driver_sql(sql, rows[i : i + BATCH])

        await self._write("writing events to the outbox", go)

    def stamp(self, when: datetime) -> Any:
        """``when`` as the driver binds it for a ``UTCDateTime`` column (here: as is)."""
        return when

    # -- the relay's side ---------------------------------------------------------------------

    async def claim(
        self, sink: str, relay: str, limit: int, lease: float, now: datetime | None = None
    ) -> list[Delivery]:
        now = _now(now)
        at, until = self.stamp(now), self.stamp(now + timedelta(seconds=lease))

        async def go(conn: Any) -> list[Delivery]:
            kept = await self._claimable(conn, sink, limit, at)
            if kept:
                await _set(
                    conn,
                    [d.seq for d in kept],
                    "claimed_until = {}, claimed_by = {}",
                    (until, relay),
                )
            return kept

        claimed: list[Delivery] = await self._write("claiming outbox rows", go)
        return claimed

    async def take(self, sink: str, relay: str, limit: int, lease: float) -> Claim:
        if not self.skip_locked:
            return await super().take(sink, relay, limit, lease)
        # The claim's transaction is the lease: its row locks keep other relays off the rows
        # until it ends, and a relay that dies ends it (its connection closes; one that hangs
        # is cut off by the server after ``lease`` seconds idle). Each row is then written
        # once, when marked, where a written lease cost a second row write (bench/README.md).
        await self._ready()
        try:
            conn = await get_write_engine(self.url).connect()
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("claiming outbox rows", exc) from exc
        try:
            await conn.begin()
            await conn.exec_driver_sql(
                f"SET LOCAL idle_in_transaction_session_timeout = {max(1, int(lease * 1000))}"
            )
            kept = await self._claimable(conn, sink, limit, self.stamp(_now(None)))
            if kept:
                return _HeldClaim(self, kept, conn)
            await conn.rollback()
        except (SQLAlchemyError, OSError) as exc:
            await conn.close()
            raise self._fail("claiming outbox rows", exc) from exc
        except BaseException:
            await conn.close()
            raise
        await conn.close()
        return Claim(self, [])

    async def _claimable(self, conn: Any, sink: str, limit: int, at: Any) -> list[Delivery]:
        """The rows a claim of ``sink`` takes, in a write transaction on ``conn`` (see the
        module): locked, on PostgreSQL."""
        # Plain statements through the driver, like ``enqueue``: SQLAlchemy's compiling of
        # a few hundred bound seqs, and its per-row processing, cost more than the query.
        lock = " FOR UPDATE SKIP LOCKED" if self.skip_locked else ""
        style = conn.dialect.paramstyle
        m = _placeholders(style, 3)
        found = (
            await conn.exec_driver_sql(_CLAIM.format(*m, int(limit), lock), (sink, at, at))
        ).all()
        if not found:
            return []
        mine = [r[0] for r in found]
        keys = sorted({r[3] for r in found})
        # The first pending row outside the claim, per key: rows after it must wait. Only
        # rows before the claim's last can be such a row (an index range, not the key's
        # whole backlog).
        m = _placeholders(style, 2)
        key_in, key_args = _in_list(style, '"key"', keys, 3)
        seq_out, seq_args = _not_in_seqs(style, mine, 3 + len(key_args))
        blocking = (
            'SELECT "key", MIN(seq) FROM outbox WHERE sink = {} AND seq < {} AND '
            "state = 'pending' AND {} AND {} GROUP BY \"key\""
        ).format(*m, key_in, seq_out)
        first_outside = dict(
            (await conn.exec_driver_sql(blocking, (sink, mine[-1], *key_args, *seq_args))).all()
        )
        kept = (
            [r for r in found if r[3] not in first_outside or r[0] < first_outside[r[3]]]
            if first_outside
            else found
        )
        parse = _parse_time
        return [
            Delivery(seq, event_id, sink_, key, event, parse(created), body.encode(), attempts)
            for seq, event_id, sink_, key, event, created, body, attempts in kept
        ]

    def _delivered(self, now: datetime | None) -> tuple[str, tuple[Any, ...]]:
        return (
            "state = 'delivered', attempts = attempts + 1, delivered_at = {}, claimed_until = NULL",
            (self.stamp(_now(now)),),
        )

    def _failed(
        self, error: str, retry_at: datetime, now: datetime | None
    ) -> tuple[str, tuple[Any, ...]]:
        return (
            "attempts = attempts + 1, available_at = {}, failing_since = "
            "COALESCE(failing_since, {}), last_error = {}, claimed_until = NULL",
            (self.stamp(retry_at), self.stamp(_now(now)), error),
        )

    def _dead(
        self, error: str, response: str | None, now: datetime | None
    ) -> tuple[str, tuple[Any, ...]]:
        return (
            "state = 'dead', attempts = attempts + 1, failing_since = "
            "COALESCE(failing_since, {}), last_error = {}, response = {}, claimed_until = NULL",
            (self.stamp(_now(now)), error, response),
        )

    async def _update(
        self, doing: str, seqs: Sequence[int], assignments: str, values: Sequence[Any]
    ) -> None:
        """``UPDATE outbox SET <assignments>`` on the rows ``seqs``, in a transaction of its
        own (see ``_set``)."""
        if not seqs:
            return

        async def go(conn: Any) -> None:
            await _set(conn, seqs, assignments, values)

        await self._write(doing, go)

    async def delivered(self, seqs: Sequence[int], now: datetime | None = None) -> None:
        await self._update("marking outbox rows delivered", seqs, *self._delivered(now))

    async def failed(
        self, seqs: Sequence[int], error: str, retry_at: datetime, now: datetime | None = None
    ) -> None:
        await self._update("marking outbox rows failed", seqs, *self._failed(error, retry_at, now))

    async def dead(
        self,
        seqs: Sequence[int],
        error: str,
        response: str | None = None,
        now: datetime | None = None,
    ) -> None:
        await self._update("marking outbox rows dead", seqs, *self._dead(error, response, now))

    async def release(self, seqs: Sequence[int]) -> None:
        await self._update("giving outbox rows back", seqs, "claimed_until = NULL", ())

    async def _failing_since(self, conn: Any, seqs: Sequence[int]) -> dict[int, datetime]:
        query = select(_o.seq, _o.failing_since).where(
            _o.seq.in_(_SEQS), _o.failing_since.is_not(None)
        )
        rows = (await conn.execute(query, {"seqs": list(seqs)})).all()
        return {r.seq: r.failing_since for r in rows}

    async def failing_since(self, seqs: Sequence[int]) -> dict[int, datetime]:
        if not seqs:
            return {}
        await self._ready()
        try:
            async with get_engine(self.url).connect() as conn:
                return await self._failing_since(conn, seqs)
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("reading the outbox", exc) from exc

    # -- operators ----------------------------------------------------------------------------

    async def status(self, now: datetime | None = None) -> list[dict[str, Any]]:
        now = _now(now)
        query = (
            select(
                _o.sink,
                _o.state,
                (_o.attempts > 0).label("failed_before"),
                func.count(),
                func.min(_o.created_at),
            )
            .group_by(_o.sink, _o.state, "failed_before")
            .order_by(_o.sink)
        )
        await self._ready()
        try:
            async with get_engine(self.url).connect() as conn:
                found = (await conn.execute(query)).all()
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("reading the outbox", exc) from exc
        out: dict[str, dict[str, Any]] = {}
        for sink, state, failed_before, count, oldest in found:
            row = out.setdefault(
                sink,
                {"sink": sink, PENDING: 0, DELIVERED: 0, "failing": 0, DEAD: 0, "lag": 0.0},
            )
            row[state] += count
            if state == PENDING:
                if failed_before:
                    row["failing"] += count
                if oldest.tzinfo is None:
                    oldest = oldest.replace(tzinfo=_UTC)
                row["lag"] = max(row["lag"], (now - oldest).total_seconds())
        return [out[s] for s in sorted(out)]

    async def replay(
        self,
        *,
        sink: str | None = None,
        dead_only: bool = False,
        since: datetime | None = None,
        now: datetime | None = None,
    ) -> int:
        states = [DEAD] if dead_only else [DEAD, DELIVERED]
        conditions: list[ColumnElement[bool]] = [_o.state.in_(states)]
        if sink is not None:
            conditions.append(_o.sink == sink)
        if since is not None:
            conditions.append(_o.created_at >= since)
        statement = (
            update(outbox)
            .where(and_(*conditions))
            .values(
                state=PENDING,
                attempts=0,
                available_at=_now(now),
                claimed_until=None,
                claimed_by=None,
                failing_since=None,
                last_error=None,
                response=None,
                delivered_at=None,
            )
        )

        async def go(conn: Any) -> int:
            count: int = (await conn.execute(statement)).rowcount
            return count

        replayed: int = await self._write("replaying outbox rows", go)
        return replayed

    async def purge(self, before: datetime, *, dead: bool = False) -> int:
        gone = and_(_o.state == DELIVERED, _o.delivered_at < before)
        if dead:
            gone = or_(gone, and_(_o.state == DEAD, _o.failing_since < before))
        statement = delete(outbox).where(gone)

        async def go(conn: Any) -> int:
            count: int = (await conn.execute(statement)).rowcount
            return count

        purged: int = await self._write("purging outbox rows", go)
        return purged

    async def rows(
        self, *, sink: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        query = select(outbox).order_by(_o.seq).limit(limit)
        if sink is not None:
            query = query.where(_o.sink == sink)
        if state is not None:
            query = query.where(_o.state == state)
        await self._ready()
        try:
            async with get_engine(self.url).connect() as conn:
                return [dict(r._mapping) for r in (await conn.execute(query)).all()]
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("reading the outbox", exc) from exc


async def _set(conn: Any, seqs: Sequence[int], assignments: str, values: Sequence[Any]) -> None:
    """``UPDATE outbox SET <assignments>`` on the rows ``seqs``, on ``conn``; ``assignments``
    holds one ``{}`` per value, for the driver's placeholder."""
    style = conn.dialect.paramstyle
    for i in range(0, len(seqs), _UPDATE_BATCH):
        chunk = list(seqs[i : i + _UPDATE_BATCH])
        seq_in, seq_args = _in_list(style, "seq", chunk, len(values) + 1)
        sql = f"UPDATE outbox SET {assignments} WHERE {seq_in}"
        await conn.exec_driver_sql(
            sql.format(*_placeholders(style, len(values))), (*values, *seq_args)
        )


class _HeldClaim(Claim):
    """A claim whose transaction is still open on ``conn`` (``SQLOutbox.take``): its marks
    are written in it, and :meth:`close` commits them and ends the lease."""

    def __init__(self, store: SQLOutbox, rows: list[Delivery], conn: Any) -> None:
        super().__init__(store, rows)
        self._box = store
        self._conn = conn

    async def _mark(self, doing: str, seqs: Sequence[int], change: tuple[str, Any]) -> None:
        if not seqs:
            return
        try:
            await _set(self._conn, seqs, *change)
        except (SQLAlchemyError, OSError) as exc:
            raise self._box._fail(doing, exc) from exc

    async def delivered(self, seqs: Sequence[int], now: datetime | None = None) -> None:
        await self._mark("marking outbox rows delivered", seqs, self._box._delivered(now))

    async def failed(
        self, seqs: Sequence[int], error: str, retry_at: datetime, now: datetime | None = None
    ) -> None:
        change = self._box._failed(error, retry_at, now)
        await self._mark("marking outbox rows failed", seqs, change)

    async def dead(self, seqs: Sequence[int], error: str, response: str | None = None) -> None:
        await self._mark("marking outbox rows dead", seqs, self._box._dead(error, response, None))

    async def failing_since(self, seqs: Sequence[int]) -> dict[int, datetime]:
        if not seqs:
            return {}
        try:
            return await self._box._failing_since(self._conn, seqs)
        except (SQLAlchemyError, OSError) as exc:
            raise self._box._fail("reading the outbox", exc) from exc

    async def close(self, commit: bool = True) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if commit:
                await conn.commit()
        except (SQLAlchemyError, OSError) as exc:
            raise self._box._fail("marking outbox rows", exc) from exc
        finally:
            await conn.close()  # without a commit, a rollback: the rows are free again

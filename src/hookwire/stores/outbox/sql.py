"""The outbox on SQLAlchemy Core, for SQLite and PostgreSQL alike; each backend names its
``insert`` (for ``ON CONFLICT``) and whether a claim may skip rows other relays hold.

A claim is one write transaction: the oldest due rows of the sink (on PostgreSQL ``FOR
UPDATE SKIP LOCKED``, so relays in several processes take different rows without waiting
for each other; on SQLite ``BEGIN IMMEDIATE`` makes claims take turns), less the rows whose
key has an earlier pending row outside the claim (held by another relay, or waiting for its
next attempt): those would overtake it. The rows kept get the relay's lease."""

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
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from ...errors import StoreError
from ..engine import ensure_schema, get_engine, get_write_engine, redact, resolve_url
from ..schema import UTCDateTime, outbox
from .api import Outbox
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


def _placeholders(paramstyle: str, n: int) -> list[str]:
    if paramstyle == "qmark":
        return ["?"] * n
    if paramstyle in ("numeric_dollar",):
        return [f"${i}" for i in range(1, n + 1)]
    if paramstyle in ("format", "pyformat"):
        return ["%s"] * n
    raise StoreError(f"the database driver's parameter style {paramstyle!r} is not supported")


def _when(now: datetime | None) -> Any:
    # Typed as the column, so SQLite stores it in the column's own format.
    return literal(_now(now), UTCDateTime())


class SQLOutbox(Outbox):
    """The outbox in a SQL database (an implementation's base: it may set
    :attr:`skip_locked` and :meth:`stamp`)."""

    #: Whether claims lock rows and skip those other relays hold (PostgreSQL).
    skip_locked: ClassVar[bool] = False

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r})"

    def _fail(self, doing: str, exc: Exception) -> StoreError:
        return StoreError(f"{doing} in {redact(self.url)} failed: {exc}")

    async def _ready(self) -> None:
        try:
            await ensure_schema(self.url)
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("opening the database", exc) from exc

    async def open(self) -> None:
        """Check the schema and connect once, so the pool has a connection at exit."""
        await self._ready()
        try:
            async with get_write_engine(self.url).connect():
                pass
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("opening the database", exc) from exc

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
            # The driver's own executemany of one plain statement: SQLAlchemy's per-row
            # parameter processing cost more than the insert (10,000 rows/s against 40,000
            # on SQLite, measured with bench/export.py); the values are bound, never spliced.
            sql = _INSERT.format(*_placeholders(conn.dialect.paramstyle, 7))
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
        due = (
            select(_o.seq, _o.event_id, _o.sink, _o.key, _o.event, _o.created_at, _o.body)
            .add_columns(_o.attempts)
            .where(
                _o.sink == sink,
                _o.state == PENDING,
                _o.available_at <= now,
                or_(_o.claimed_until.is_(None), _o.claimed_until < now),
            )
            .order_by(_o.seq)
            .limit(limit)
        )
        if self.skip_locked:
            due = due.with_for_update(skip_locked=True)

        async def go(conn: Any) -> list[Delivery]:
            found = (await conn.execute(due)).all()
            if not found:
                return []
            mine = {r.seq for r in found}
            keys = sorted({r.key for r in found})
            # The first pending row outside the claim, per key: rows after it must wait. Only
            # rows before the claim's last can be such a row (an index range, not the key's
            # whole backlog).
            blocking = (
                select(_o.key, func.min(_o.seq))
                .where(
                    _o.sink == sink,
                    _o.key.in_(keys),
                    _o.state == PENDING,
                    _o.seq < found[-1].seq,
                    _o.seq.not_in(sorted(mine)),
                )
                .group_by(_o.key)
            )
            first_outside = dict((await conn.execute(blocking)).all())
            kept = [r for r in found if r.key not in first_outside or r.seq < first_outside[r.key]]
            if kept:
                until = now + timedelta(seconds=lease)
                await conn.execute(
                    update(outbox)
                    .where(_o.seq.in_(_SEQS))
                    .values(claimed_until=until, claimed_by=relay),
                    {"seqs": [r.seq for r in kept]},
                )
            return [
                Delivery(
                    r.seq,
                    r.event_id,
                    r.sink,
                    r.key,
                    r.event,
                    r.created_at,
                    r.body.encode("utf-8"),
                    r.attempts,
                )
                for r in kept
            ]

        claimed: list[Delivery] = await self._write("claiming outbox rows", go)
        return claimed

    async def _update(self, doing: str, seqs: Sequence[int], **values: Any) -> None:
        if not seqs:
            return
        statement = update(outbox).where(_o.seq.in_(_SEQS)).values(**values)

        async def go(conn: Any) -> None:
            for i in range(0, len(seqs), BATCH):
                await conn.execute(statement, {"seqs": list(seqs[i : i + BATCH])})

        await self._write(doing, go)

    async def delivered(self, seqs: Sequence[int], now: datetime | None = None) -> None:
        await self._update(
            "marking outbox rows delivered",
            seqs,
            state=DELIVERED,
            attempts=_o.attempts + 1,
            delivered_at=_now(now),
            claimed_until=None,
        )

    async def failed(
        self, seqs: Sequence[int], error: str, retry_at: datetime, now: datetime | None = None
    ) -> None:
        await self._update(
            "marking outbox rows failed",
            seqs,
            attempts=_o.attempts + 1,
            available_at=retry_at,
            failing_since=func.coalesce(_o.failing_since, _when(now)),
            last_error=error,
            claimed_until=None,
        )

    async def dead(
        self,
        seqs: Sequence[int],
        error: str,
        response: str | None = None,
        now: datetime | None = None,
    ) -> None:
        await self._update(
            "marking outbox rows dead",
            seqs,
            state=DEAD,
            attempts=_o.attempts + 1,
            failing_since=func.coalesce(_o.failing_since, _when(now)),
            last_error=error,
            response=response,
            claimed_until=None,
        )

    async def release(self, seqs: Sequence[int]) -> None:
        await self._update("giving outbox rows back", seqs, claimed_until=None)

    async def failing_since(self, seqs: Sequence[int]) -> dict[int, datetime]:
        if not seqs:
            return {}
        await self._ready()
        query = select(_o.seq, _o.failing_since).where(
            _o.seq.in_(_SEQS), _o.failing_since.is_not(None)
        )
        try:
            async with get_engine(self.url).connect() as conn:
                rows = (await conn.execute(query, {"seqs": list(seqs)})).all()
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("reading the outbox", exc) from exc
        return {r.seq: r.failing_since for r in rows}

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

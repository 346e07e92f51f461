"""The conversation store of a PostgreSQL database through asyncpg: groups of messages and
whole-conversation reads go to the asyncpg connection SQLAlchemy's pool hands out, with
statements written for them; everything else through SQLAlchemy Core
(:class:`~.sql.SQLConversationStore`).

Through SQLAlchemy's async adapter each statement costs several greenlet switches and round
trips; a group of messages here is one statement, and so its own transaction, committed
synchronously in one round trip. A few groups are in flight at once, so their commits
overlap.

The statements are put together from fixed column names (``MESSAGE_SELECT`` and the like);
values always go as ``$n`` parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from sqlalchemy.util import greenlet_spawn

from ..engine import before_dispose, get_engine
from .api import Owner
from .ownership import OwnerRow, Row, Touch
from .reading import (
    DETAIL_FIELDS,
    MESSAGE_SELECT,
    finish_read,
    fresh,
    gc_paused,
    head_select,
    reuse_cached,
)
from .sql import SQLConversationStore
from .validation import check_lookup_id

__all__ = ["PostgresConversationStore"]

logger = logging.getLogger("hookwire")


# Decoding a timestamptz makes asyncpg build a timedelta and add it to a datetime, about
# three times the cost of parsing the same time from ISO text with fromisoformat (which on
# Python 3.10 does not take PostgreSQL's "+00" offset). The text is in UTC and ISO form: the
# read sets TimeZone and DateStyle for its own transaction.
_PG_TIME_AS_TEXT = sys.version_info >= (3, 11)
_PG_DETAIL_SELECT = ", ".join(
    "metadata::text"
    if f == "metadata"
    else "message_time::text"
    if f == "message_time" and _PG_TIME_AS_TEXT
    else f
    for f in DETAIL_FIELDS
)
_PG_READ_BEGIN = (
    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
    "SET LOCAL TimeZone TO 'UTC'; SET LOCAL DateStyle TO 'ISO'"
)
# A conversation's messages ($2: the seq to read on from), ordered by the columns of
# ix_messages_conversation_seq, which only that index gives (see sql._message_range, the
# pages' range): with ``conversation_id = $1 ... ORDER BY seq`` the planner, given the
# statistics of a grown table, walked pk_messages and filtered out every other conversation's
# rows. The conversation is also a closed range of the first column, not an equality (which
# would drop the column from the order again): it keeps the estimate of the rows read that of
# an equality, where the row values alone would be estimated as a ninth of the table, which
# without a LIMIT could be planned as a sequential scan. The range is read through the index
# in its order, or (as the planner mostly prefers for a long conversation) through a bitmap
# of it, then sorted.
_PG_DETAILS = (
    f"SELECT {_PG_DETAIL_SELECT} FROM messages "
    "WHERE conversation_id >= $1 AND conversation_id <= $1 "
    "AND (conversation_id, seq) > ($1, $2) ORDER BY conversation_id, seq"
)
_PG_HEAD = head_select(counted=False, placeholder="$1")
_PG_HEAD_COUNTED = head_select(counted=True, placeholder="$1")


# A group's rows go to the server as one JSON text ($1: an array of the rows, one object each,
# in the order the callers queued them): asyncpg's encoding of an array per column cost the
# store loop more CPU than the rest of a group's Python work.
_PG_RECORDS = (
    "ROWS FROM (json_to_recordset($1::json) AS ("
    "id varchar, conversation_id varchar, parent_message_id varchar, sender varchar, "
    "text text, message_time timestamptz, created_at timestamptz, metadata jsonb, "
    "correlation_id varchar, request_id varchar, run_id varchar, model varchar, "
    "prompt_tokens int, completion_tokens int, total_tokens int)) "
    f"WITH ORDINALITY AS v({MESSAGE_SELECT}, n)"
)
# Messages of one conversation ($2), stored only if it still has the owner it was checked
# against ($3 to $6): all or nothing, so a stale cached owner inserts no row. Each statement is
# its own transaction: one round trip, committed synchronously.
_PG_OWNED = (
    "SELECT EXISTS (SELECT 1 FROM conversations WHERE id = $2 AND user_id = $3 "
    "AND org_id = $4 AND realm = $5 AND is_anonymous = $6)"
)
_PG_INSERT_ONE = (
    f"INSERT INTO messages ({MESSAGE_SELECT}) SELECT {MESSAGE_SELECT} FROM {_PG_RECORDS} "
    f"WHERE v.conversation_id = $2 AND ({_PG_OWNED}) ORDER BY v.n"
)
# The same, with the conversation's state ($8, or NULL) and updated_at ($7) set in the same
# statement: one round trip for the whole group. It holds the conversation's row lock until
# the commit has reached the disk, so it is used only when nothing else of this store waits
# for that lock (see _PGTx.write); its value is the number of rows inserted.
_PG_INSERT_ONE_TOUCH = (
    f"WITH ok AS ({_PG_OWNED} AS ok), "
    f"ins AS (INSERT INTO messages ({MESSAGE_SELECT}) SELECT {MESSAGE_SELECT} FROM {_PG_RECORDS} "
    "WHERE v.conversation_id = $2 AND (SELECT ok FROM ok) ORDER BY v.n RETURNING 1), "
    "upd AS (UPDATE conversations SET state = COALESCE($8, state), "
    "updated_at = GREATEST(updated_at, $7::timestamptz) WHERE id = $2 AND (SELECT ok FROM ok)) "
    "SELECT count(*) FROM ins"
)
# Messages of several conversations, each row joined with its conversation's owner ($3 to
# $7, one per conversation), and stored only if every row joins ($2: how many there are).
_PG_INSERT = (
    f"WITH v AS MATERIALIZED (SELECT v.* FROM {_PG_RECORDS} "
    "JOIN unnest($3::varchar[], $4::varchar[], $5::varchar[], $6::varchar[], $7::bool[]) "
    "AS o(id, user_id, org_id, realm, is_anonymous) ON o.id = v.conversation_id "
    # a probe of the primary key per conversation (see _PG_TOUCH): a join may be a hash join
    # over every conversation
    "CROSS JOIN LATERAL (SELECT 1 FROM conversations c WHERE c.id = o.id "
    "AND c.user_id = o.user_id AND c.org_id = o.org_id AND c.realm = o.realm "
    "AND c.is_anonymous = o.is_anonymous LIMIT 1) AS c) "
    f"INSERT INTO messages ({MESSAGE_SELECT}) SELECT {MESSAGE_SELECT} "
    "FROM v WHERE (SELECT count(*) FROM v) = $2 ORDER BY v.n"
)

# A state change goes into the message transaction. Otherwise, when other groups of this store
# are in flight, the conversation's updated_at is moved forward right after the commit, in a
# transaction of its own that does not wait for the disk: a row lock held until a synchronous
# commit would make every writer of a conversation wait for the previous writer's fsync, and a
# lost updated_at (a server crash in that instant) is harmless, unlike a lost message.
# (one conversation, $1, per statement: see _PG_TOUCH)
_PG_STATE = "UPDATE conversations SET state = $2 WHERE id = $1 AND state <> $2"
# The same in one round trip and one statement, so its own transaction: set_config(...,
# true) lasts to the end of that transaction, and the server reads synchronous_commit when it
# commits (the CTE is evaluated first, by the uncorrelated EXISTS).
# One conversation ($2) per statement, by equality on its key: a statement prepared while the
# table was small keeps its plan (PostgreSQL's generic plan) until the table is analysed
# again, and for ``id = ANY($2)`` that plan is a sequential scan (7 ms at 50,000
# conversations, for each group), where an equality's is the primary key's index.
_PG_TOUCH = (
    "WITH no_wait AS (SELECT set_config('synchronous_commit', 'off', true)) "
    "UPDATE conversations SET updated_at = GREATEST(updated_at, $1::timestamptz) "
    "WHERE id = $2 AND EXISTS (SELECT 1 FROM no_wait)"
)


def _probe(table: str, columns: str) -> str:
    """The rows of ``table`` whose ``id`` is in the array ``$1``: one probe of the unique
    index on ``id`` per element (see _PG_TOUCH for why not ``id = ANY($1)``)."""
    return (
        f"SELECT {', '.join(f'r.{c}' for c in columns.split(', '))} "
        "FROM unnest($1::varchar[]) AS k(id) CROSS JOIN LATERAL "
        f"(SELECT {columns} FROM {table} WHERE id = k.id LIMIT 1) AS r"
    )


_PG_OWNERS = _probe("conversations", "id, realm, org_id, user_id, is_anonymous")
_PG_PARENTS = _probe("messages", "id, conversation_id")
_PG_TAKEN = _probe("messages", "id")


class _PGTx:
    """The statements of one group on an asyncpg connection."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.touch_later: tuple[list[str], _dt.datetime] | None = None

    async def write(
        self, rows: list[Row], items: list[Touch], now: _dt.datetime, alone: bool
    ) -> bool:
        """Insert the rows and update their conversations; ``False`` (nothing written) if a
        conversation's owner is not the one it was checked against. ``alone``: no other group
        of this store is being written, so this one may hold its conversation's row lock
        until its commit is durable (one round trip instead of two)."""
        data = orjson.dumps(rows).decode()
        if len(items) == 1:
            cid, state, o = items[0]
            owner = (cid, o.user_id, o.org_id, o.realm, bool(o.is_anonymous))
            if alone or state is not None:
                # A state change holds the row lock over the commit in any case.
                inserted = await self.raw.fetchval(_PG_INSERT_ONE_TOUCH, data, *owner, now, state)
                return bool(inserted == len(rows))
            status = await self.raw.execute(_PG_INSERT_ONE, data, *owner)
            if int(status.rsplit(" ", 1)[-1]) != len(rows):
                return False
            self.touch_later = ([cid], now)
            return True
        args = (
            data,
            len(rows),
            [i[0] for i in items],
            [i[2].user_id for i in items],
            [i[2].org_id for i in items],
            [i[2].realm for i in items],
            [bool(i[2].is_anonymous) for i in items],
        )
        if any(i[1] is not None for i in items):
            # a state change goes into the same transaction as the messages
            async with self.raw.transaction():
                status = await self.raw.execute(_PG_INSERT, *args)
                if int(status.rsplit(" ", 1)[-1]) != len(rows):
                    return False
                await self.raw.executemany(
                    _PG_STATE, [(i[0], i[1]) for i in items if i[1] is not None]
                )
        else:
            status = await self.raw.execute(_PG_INSERT, *args)
            if int(status.rsplit(" ", 1)[-1]) != len(rows):
                return False
        self.touch_later = ([i[0] for i in items], now)
        return True

    async def touch(self) -> None:
        if self.touch_later is None:
            return
        ids, now = self.touch_later
        try:
            if len(ids) == 1:
                await self.raw.execute(_PG_TOUCH, now, ids[0])
            else:  # one implicit transaction, pipelined: one round trip
                await self.raw.executemany(_PG_TOUCH, [(now, cid) for cid in ids])
        except Exception as exc:  # the messages are committed; only the list order lags
            logger.debug("hookwire: refreshing conversations.updated_at failed: %r", exc)
            with contextlib.suppress(Exception):
                await self.raw.execute("ROLLBACK")

    async def owners(self, ids: list[str]) -> dict[str, Any]:
        rows = await self.raw.fetch(_PG_OWNERS, ids)
        return {r[0]: OwnerRow(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows}

    async def parents(self, ids: list[str]) -> dict[str, str]:
        rows = await self.raw.fetch(_PG_PARENTS, ids)
        return {r[0]: r[1] for r in rows}

    async def taken(self, ids: list[str]) -> set[str]:
        rows = await self.raw.fetch(_PG_TAKEN, ids)
        return {r[0] for r in rows}


_LEND_TRIES = 32


def _lend(pool: Any) -> Any:
    """A live connection of ``pool`` (in SQLAlchemy's greenlet context, where the pool may
    open, close or reopen connections)."""
    for _ in range(_LEND_TRIES):
        fairy = pool.connect()
        if not fairy.driver_connection.is_closed():
            break
        # closed by the server while it waited in the pool (a restart, an admin): a new one
        fairy.invalidate()
        fairy.close()
    return fairy


def _give_back(fairy: Any) -> None:
    if fairy.driver_connection.is_closed():  # lost: the pool must not lend it again
        fairy.invalidate()
    fairy.close()


# While groups keep coming, the writer keeps its connections checked out between them (at
# most _PARK_MAX per engine, shared by the stores of a URL): a checkout and return through the
# pool each group cost the store loop about a fifth of its CPU per message. A connection not
# used for _PARK_SECONDS goes back to the pool (and dispose_engines takes them back first).
_PARK_SECONDS = 0.2
_PARK_MAX = 4
_parked: dict[Any, list[Any]] = {}  # engine -> idle lent connections (store loop only)
_parked_used: set[int] = set()
_park_timer: list[asyncio.TimerHandle] = []


@asynccontextmanager
async def _pg_connection(url: str) -> AsyncIterator[Any]:
    """An asyncpg connection of the engine's pool for one group: a parked one, or one
    straight from the pool, not through ``AsyncEngine.connect()``, whose connection objects,
    events and extra greenlet switches cost more CPU than a one-row group's statement."""
    engine = get_engine(url)
    spare = _parked.get(engine)
    fairy: Any = spare.pop() if spare else None
    if fairy is not None and fairy.driver_connection.is_closed():
        await greenlet_spawn(_give_back, fairy)
        fairy = None
    if fairy is None:
        fairy = await greenlet_spawn(_lend, engine.sync_engine.pool)
    _parked_used.add(id(engine))
    try:
        yield fairy.driver_connection
    except BaseException:
        await greenlet_spawn(_give_back, fairy)
        raise
    spare = _parked.setdefault(engine, [])
    if len(spare) >= _PARK_MAX or fairy.driver_connection.is_closed():
        await greenlet_spawn(_give_back, fairy)
        return
    spare.append(fairy)
    if not _park_timer:
        loop = asyncio.get_running_loop()
        _park_timer.append(loop.call_later(_PARK_SECONDS, _sweep_parked, loop))


def _sweep_parked(loop: asyncio.AbstractEventLoop) -> None:
    _park_timer.clear()
    for engine in list(_parked):
        if id(engine) in _parked_used:
            continue
        task = loop.create_task(_unpark(engine))
        _sweeps.add(task)
        task.add_done_callback(_sweeps.discard)
    _parked_used.clear()
    if any(_parked.values()):
        _park_timer.append(loop.call_later(_PARK_SECONDS, _sweep_parked, loop))


_sweeps: set[asyncio.Task[None]] = set()


async def _unpark(engine: Any) -> None:
    """Give ``engine``'s parked connections back to its pool."""
    for fairy in _parked.pop(engine, []):
        with contextlib.suppress(Exception):
            await greenlet_spawn(_give_back, fairy)


before_dispose(_unpark)


class PostgresConversationStore(SQLConversationStore):
    """Chat history in PostgreSQL through asyncpg (see the module)."""

    max_inflight = 4

    @asynccontextmanager
    async def _open_tx(self, committed: list[Callable[[], None]]) -> AsyncIterator[Any]:
        async with _pg_connection(self.url) as raw:
            tx = _PGTx(raw)
            # No transaction around the group: the lookups are reads whose answers the insert
            # re-checks (owner join, foreign keys, primary key), and the write is one
            # all-or-nothing statement (or a transaction of its own, with a state change).
            yield tx
            # before acknowledging, so that a caller who lists conversations next sees it
            await tx.touch()
            for fn in committed:
                fn()

    async def get_conversation_details(
        self, owner: Owner | None, conversation_id: str
    ) -> dict[str, Any]:
        conversation_id = check_lookup_id(conversation_id)
        self._check_fork()
        return await self._on_loop(self._details(owner, conversation_id))

    async def _details(self, owner: Owner | None, conversation_id: str) -> dict[str, Any]:
        cache = self._messages
        entry = cache.get(conversation_id)
        async with get_engine(self.url).connect() as conn:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            # One snapshot for the conversation and its messages (see _PG_DETAILS). Times
            # come as ISO text in UTC (see _PG_DETAIL_SELECT).
            await raw.execute(_PG_READ_BEGIN)
            try:
                head = await raw.fetchrow(
                    _PG_HEAD_COUNTED if entry is not None else _PG_HEAD, conversation_id
                )
                created, count, base, last = reuse_cached(
                    head, owner, conversation_id, cache, entry
                )
                # The collector is paused while the rows arrive too: tens of thousands of
                # new objects would trigger collections that scan them over and over.
                with gc_paused():
                    rows = await raw.fetch(_PG_DETAILS, conversation_id, last)
                    if count is not None and len(base) + len(rows) != count:
                        base, last = [], 0
                        rows = await raw.fetch(_PG_DETAILS, conversation_id, 0)
            except BaseException:
                with contextlib.suppress(Exception):
                    await raw.execute("ROLLBACK")
                raise
            await raw.execute("COMMIT")
        details, msgs = finish_read(head, conversation_id, cache, created, last, base, rows, False)
        with gc_paused():
            details["messages"] = fresh(msgs, parse_time=_PG_TIME_AS_TEXT)
        return details


def _after_fork_in_child() -> None:
    # The parked connections are the parent's.
    _parked.clear()
    _parked_used.clear()
    _park_timer.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

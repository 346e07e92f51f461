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
from ..schema import conversations
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
# How a write moves a conversation's updated_at ($now) forward: only once it lags by more
# than $every seconds. updated_at is in the list indexes, so an update that changes it cannot
# be HOT; one that changes only the count and the state stays on its page (fillfactor 80)
# and adds no index entry, and the table and its indexes do not bloat with every message.
_ADVANCE = (
    "CASE WHEN {now} > updated_at + {every} * interval '1 second' THEN {now} ELSE updated_at END"
)
# The insert, with the conversation's count, state ($8, or NULL) and updated_at ($7) set in
# the same statement (the count must commit with its messages); its value is the number of
# rows inserted. It holds the conversation's row lock until its commit is durable: two groups
# of one conversation in flight at once write one after the other.
_PG_INSERT_ONE = (
    f"WITH ok AS ({_PG_OWNED} AS ok), "
    f"ins AS (INSERT INTO messages ({MESSAGE_SELECT}) SELECT {MESSAGE_SELECT} FROM {_PG_RECORDS} "
    "WHERE v.conversation_id = $2 AND (SELECT ok FROM ok) ORDER BY v.n RETURNING 1), "
    "upd AS (UPDATE conversations SET state = COALESCE($8, state), "
    "message_count = message_count + (SELECT count(*) FROM ins), "
    f"updated_at = {_ADVANCE.format(now='$7::timestamptz', every='$9::float8')} "
    "WHERE id = $2 AND (SELECT ok FROM ok)) "
    "SELECT count(*) FROM ins"
)
# Messages of several conversations, each row joined with its conversation's owner ($3 to
# $7, one per conversation), and stored only if every row joins ($2: how many there are);
# _PG_COUNT then updates each conversation in the same transaction.
_PG_INSERT = (
    f"WITH v AS MATERIALIZED (SELECT v.* FROM {_PG_RECORDS} "
    "JOIN unnest($3::varchar[], $4::varchar[], $5::varchar[], $6::varchar[], $7::bool[]) "
    "AS o(id, user_id, org_id, realm, is_anonymous) ON o.id = v.conversation_id "
    # a probe of the primary key per conversation: a join may be a hash join over every
    # conversation
    "CROSS JOIN LATERAL (SELECT 1 FROM conversations c WHERE c.id = o.id "
    "AND c.user_id = o.user_id AND c.org_id = o.org_id AND c.realm = o.realm "
    "AND c.is_anonymous = o.is_anonymous LIMIT 1) AS c) "
    f"INSERT INTO messages ({MESSAGE_SELECT}) SELECT {MESSAGE_SELECT} "
    "FROM v WHERE (SELECT count(*) FROM v) = $2 ORDER BY v.n"
)
# Each conversation of that group, in the insert's transaction: its count ($2 more), its state
# ($3, or NULL) and its updated_at ($4). One conversation ($1) per statement, by equality on
# its key: a statement prepared while the table was small keeps its generic plan, and for
# ``id = ANY(...)`` or a join that plan may be a sequential scan; an equality's is the primary
# key's index.
_PG_COUNT = (
    "UPDATE conversations SET message_count = message_count + $2, state = COALESCE($3, state), "
    f"updated_at = {_ADVANCE.format(now='$4::timestamptz', every='$5::float8')} WHERE id = $1"
)


def _probe(table: str, columns: str) -> str:
    """The rows of ``table`` whose ``id`` is in the array ``$1``: one probe of the unique
    index on ``id`` per element (see _PG_COUNT for why not ``id = ANY($1)``)."""
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

    def __init__(self, raw: Any, every: float) -> None:
        self.raw = raw
        self.every = every

    async def write(
        self, rows: list[Row], items: list[Touch], now: _dt.datetime, alone: bool
    ) -> bool:
        """Insert the rows and update their conversations (count, state, updated_at);
        ``False`` (nothing written) if a conversation's owner is not the one it was checked
        against."""
        data = orjson.dumps(rows).decode()
        if len(items) == 1:
            cid, state, o, _ = items[0]
            owner = (cid, o.user_id, o.org_id, o.realm, bool(o.is_anonymous))
            inserted = await self.raw.fetchval(_PG_INSERT_ONE, data, *owner, now, state, self.every)
            return bool(inserted == len(rows))
        args = (
            data,
            len(rows),
            [i[0] for i in items],
            [i[2].user_id for i in items],
            [i[2].org_id for i in items],
            [i[2].realm for i in items],
            [bool(i[2].is_anonymous) for i in items],
        )
        # items come sorted by conversation id: concurrent groups lock rows in one order
        counts = [(cid, n, state, now, self.every) for cid, state, _, n in items]
        async with self.raw.transaction():
            status = await self.raw.execute(_PG_INSERT, *args)
            if int(status.rsplit(" ", 1)[-1]) != len(rows):
                return False
            await self.raw.executemany(_PG_COUNT, counts)
        return True

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
    #: Seconds a conversation's ``updated_at`` may lag its last message: a write moves it
    #: only when it is older than that, so most writes of a busy conversation are HOT
    #: updates (no new index entry, no bloat). 0: every write moves it, and every write adds
    #: an entry to each of the table's indexes, which then grow with every message (on
    #: 100,000 conversations, 126 MB of index for a million messages). A minute keeps the
    #: list's order right for any conversation idle for longer (its next message moves it to
    #: the top) and costs at most one index entry per conversation and minute.
    touch_every: float = 60.0

    @staticmethod
    def _user_column() -> Any:
        # ix_conversations_user_updated is in the "C" collation (see migration 0004)
        return conversations.c.user_id.collate("C")

    @asynccontextmanager
    async def _open_tx(self, committed: list[Callable[[], None]]) -> AsyncIterator[Any]:
        async with _pg_connection(self.url) as raw:
            tx = _PGTx(raw, self.touch_every)
            # No transaction around the group: the lookups are reads whose answers the insert
            # re-checks (owner join, foreign keys, primary key), and the write is one
            # all-or-nothing statement (a transaction of its own for several conversations).
            yield tx
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

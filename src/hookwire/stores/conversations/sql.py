"""The conversation store on SQLAlchemy Core, for every SQL database hookwire accepts.

:class:`SQLConversationStore` implements all of :class:`~.api.ConversationStore` once, in
SQLAlchemy Core, on the store loop of ``hookwire.stores.runner``; messages go through the
group commit of :class:`~.batching.LoopBatcher`. In-memory SQLite and psycopg use it as it
is; the SQLite-file and asyncpg stores replace its hot paths (writing messages, reading whole
conversations) with their drivers' own, where SQLAlchemy's layers cost more than the work.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import and_, delete, func, insert, literal, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ...errors import HookwireError, StoreError
from .. import runner
from ..engine import (
    ensure_schema,
    get_engine,
    get_write_engine,
    is_sqlite,
    redact,
    resolve_url,
    schema_ready,
)
from ..schema import conversations, messages
from .api import ConversationStore, Owner, Page
from .batching import LoopBatcher, Pending, settle_all
from .cursors import (
    decode_conversation_cursor,
    decode_message_cursor,
    encode_conversation_cursor,
    encode_message_cursor,
)
from .ownership import OwnerCache, Row, StaleCacheError, Touch, plan
from .reading import CONVERSATION_FIELDS, DETAIL_FIELDS, MESSAGE_COLUMNS, MessageCache
from .validation import (
    check_limit,
    check_lookup_id,
    check_name,
    check_state,
    conversation_row,
    id_taken,
    message_row,
    not_found,
)

__all__ = ["SQLConversationStore"]

T = TypeVar("T")

_UTC = _dt.timezone.utc

_CONV_COLUMNS = tuple(conversations.c[f] for f in CONVERSATION_FIELDS)
_MSG_COLUMNS = tuple(messages.c[f] for f in MESSAGE_COLUMNS)


def _owner_clause(owner: Any) -> Any:
    """The conversation belongs to ``owner`` (an :class:`Owner`, or a row of its columns)."""
    c = conversations.c
    return and_(
        c.user_id == owner.user_id,
        c.org_id == owner.org_id,
        c.realm == owner.realm,
        c.is_anonymous == bool(owner.is_anonymous),
    )


def _conv_dict(row: Any) -> dict[str, Any]:
    # plain str keys (SQLAlchemy's are a str subclass, which JSON encoders refuse)
    d = dict(zip((*CONVERSATION_FIELDS, "message_count"), row, strict=True))
    d["is_anonymous"] = bool(d["is_anonymous"])
    return d


_SEQ_MAX = 2**63 - 1


def _message_range(conversation_id: str, after: int | None, sqlite: bool) -> tuple[Any, ...]:
    """A page of a conversation's messages (after ``seq`` ``after``), ordered by the columns
    of ``ix_messages_conversation_seq``.

    On PostgreSQL the page is a range of row values of that index, from ``(conversation_id,
    after)`` to the conversation's end: only that index gives the order, so the plan is a
    seek into it whatever the statistics. With ``conversation_id = $1`` the planner drops the
    column from the order (it is constant) and may walk ``pk_messages`` in ``seq`` order,
    filtering out every other conversation's rows: it did, with the statistics of a grown
    table, for the first and last pages. SQLite seeks the index with the equality (its row
    values would seek the conversation only, and filter its rows up to the page)."""
    m = messages.c
    start = 0 if after is None else after
    if sqlite:
        return (m.conversation_id == conversation_id, m.seq > start)
    key = tuple_(m.conversation_id, m.seq)
    cid = literal(conversation_id, m.conversation_id.type)
    return (
        key > tuple_(cid, literal(start, m.seq.type)),
        key <= tuple_(cid, literal(_SEQ_MAX, m.seq.type)),
    )


async def _nothing() -> None:
    return None


class CoreTx:
    """The write statements of a group on a SQLAlchemy connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def write(
        self, rows: list[Row], items: list[Touch], now: _dt.datetime, alone: bool
    ) -> bool:
        """Insert ``rows`` and touch their conversations; ``False`` if an owner changed."""
        await self.conn.execute(insert(messages), rows)
        c = conversations.c
        count = 0
        for cid, st, o, n in items:
            result = await self.conn.execute(
                update(conversations)
                .where(c.id == cid, _owner_clause(o))
                .values(
                    updated_at=now,
                    state=func.coalesce(st, c.state),
                    message_count=c.message_count + n,
                )
            )
            count += result.rowcount
        return count == len(items)

    async def owners(self, ids: list[str]) -> dict[str, Any]:
        """The owner rows of the conversations ``ids`` that exist."""
        c = conversations.c
        result = await self.conn.execute(
            select(c.id, c.realm, c.org_id, c.user_id, c.is_anonymous).where(c.id.in_(ids))
        )
        return {r.id: r for r in result}

    async def parents(self, ids: list[str]) -> dict[str, str]:
        """The conversation of each message of ``ids`` that exists."""
        m = messages.c
        result = await self.conn.execute(select(m.id, m.conversation_id).where(m.id.in_(ids)))
        return {r.id: r.conversation_id for r in result}

    async def taken(self, ids: list[str]) -> set[str]:
        """Which message ids of ``ids`` are used already."""
        m = messages.c
        return set((await self.conn.execute(select(m.id).where(m.id.in_(ids)))).scalars())


class SQLConversationStore(ConversationStore):
    """Chat history in any SQL database, through SQLAlchemy Core (see the module)."""

    #: How many groups of messages may be written at once.
    max_inflight = 1

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)
        self._cache = OwnerCache()
        self._messages = MessageCache()
        self._schema_ok = False
        self._batcher = LoopBatcher(
            self.url, self._write_batch, self._cache.clear, self.max_inflight
        )
        self._start()

    def _start(self) -> None:
        """Make what the process needs (again in a forked child)."""
        self._pid = os.getpid()
        self._batcher.restart()
        #: ``enqueue(owner, row, explicit_id, state)``: queue a validated message for group
        #: commit; its id once committed (chosen once: the writer of this store)
        self._enqueue: Callable[
            [Owner | None, dict[str, Any], bool, str | None], Awaitable[str]
        ] = self._batcher.add

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            self._start()  # forked: the parent's threads are not here

    async def _ready(self) -> None:
        self._check_fork()
        if not self._schema_ok:
            # A new store of a database this process already checked need not hop to the
            # store loop and back for it: under load, those two thread switches cost more
            # than some reads.
            if not schema_ready(self.url, runner.get_loop()):
                await runner.run(self._guard(_nothing()))
            self._schema_ok = True

    def _ready_sync(self, timeout: float | None) -> None:
        """:meth:`_ready` for sync code (checks the schema on the store loop, once)."""
        self._check_fork()
        if not self._schema_ok:
            runner.run_sync(self._guard(_nothing()), timeout)
            self._schema_ok = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r})"

    # Every public coroutine runs its body on the store loop.
    async def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return await runner.run(self._guard(coro))

    def _failed(self, exc: Exception) -> StoreError:
        """A database's own error (SQLAlchemy's, or a driver's on the fast paths), named."""
        return StoreError(f"the database {redact(self.url)} failed: {exc}")

    async def _guard(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            await ensure_schema(self.url)
            return await coro
        except (HookwireError, ValueError):
            raise
        except OSError as exc:
            raise StoreError(f"cannot reach the database {redact(self.url)}: {exc}") from exc
        except Exception as exc:
            # SQLAlchemy's errors, and the driver's own on the fast paths (asyncpg, sqlite3)
            raise self._failed(exc) from exc
        finally:
            coro.close()

    # -- conversations ------------------------------------------------------------------------

    async def create_conversation(
        self, owner: Owner, *, exist_ok: bool = False, **fields: Any
    ) -> str:
        row = conversation_row(owner, **fields)
        return await self._on_loop(self._create(owner, row, exist_ok))

    async def _create(self, owner: Owner, row: dict[str, Any], exist_ok: bool) -> str:
        engine = get_write_engine(self.url)
        if exist_ok:
            async with engine.connect() as conn:
                if await self._is_ours(conn, owner, row["id"]):
                    return str(row["id"])
        now = _dt.datetime.now(_UTC)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    insert(conversations), [{**row, "created_at": now, "updated_at": now}]
                )
        except IntegrityError:
            if exist_ok:
                # created meanwhile by another writer: fine if it is ours
                async with engine.connect() as conn:
                    if await self._is_ours(conn, owner, row["id"]):
                        return str(row["id"])
                raise not_found(row["id"]) from None
            raise id_taken(row["id"]) from None
        return str(row["id"])

    async def _is_ours(self, conn: AsyncConnection, owner: Owner, conversation_id: str) -> bool:
        """Whether the conversation exists and is ``owner``'s (``not_found`` if another's)."""
        found = await self._owner_row(conn, conversation_id)
        if found is not None and not owner.sees(found):
            raise not_found(conversation_id)
        return found is not None

    @staticmethod
    async def _owner_row(conn: AsyncConnection, conversation_id: str) -> Any:
        c = conversations.c
        result = await conn.execute(
            select(c.id, c.realm, c.org_id, c.user_id, c.is_anonymous).where(
                c.id == conversation_id
            )
        )
        return result.first()

    async def _visible(
        self, conn: AsyncConnection, owner: Owner | None, conversation_id: str
    ) -> Any:
        found = await self._owner_row(conn, conversation_id)
        if found is None or (owner is not None and not owner.sees(found)):
            raise not_found(conversation_id)
        return found

    async def rename_conversation(
        self, owner: Owner | None, conversation_id: str, name: str
    ) -> None:
        await self._update(owner, conversation_id, {"name": check_name(name)})

    async def set_conversation_state(
        self, owner: Owner | None, conversation_id: str, state: str
    ) -> None:
        await self._update(owner, conversation_id, {"state": check_state(state)})

    async def _update(
        self, owner: Owner | None, conversation_id: Any, values: dict[str, Any]
    ) -> None:
        conversation_id = check_lookup_id(conversation_id)
        values = {**values, "updated_at": _dt.datetime.now(_UTC)}
        stmt = update(conversations).where(conversations.c.id == conversation_id).values(values)
        if owner is not None:
            stmt = stmt.where(_owner_clause(owner))

        async def go() -> None:
            async with get_write_engine(self.url).begin() as conn:
                result = await conn.execute(stmt)
                if result.rowcount != 1:
                    raise not_found(conversation_id)

        await self._on_loop(go())

    async def delete_conversation(self, owner: Owner | None, conversation_id: str) -> int:
        conversation_id = check_lookup_id(conversation_id)

        async def go() -> int:
            self._cache.forget(conversation_id)
            self._messages.drop(conversation_id)
            async with get_write_engine(self.url).begin() as conn:
                await self._visible(conn, owner, conversation_id)
                count = (
                    await conn.execute(
                        select(func.count()).where(messages.c.conversation_id == conversation_id)
                    )
                ).scalar_one()
                # Replies point at their parents; unlink before the cascade so no database
                # has to order the deletes itself.
                await conn.execute(
                    update(messages)
                    .where(messages.c.conversation_id == conversation_id)
                    .where(messages.c.parent_message_id.is_not(None))
                    .values(parent_message_id=None)
                )
                await conn.execute(
                    delete(messages).where(messages.c.conversation_id == conversation_id)
                )
                await conn.execute(
                    delete(conversations).where(conversations.c.id == conversation_id)
                )
                return int(count)

        return await self._on_loop(go())

    async def get_conversation(self, owner: Owner | None, conversation_id: str) -> dict[str, Any]:
        conversation_id = check_lookup_id(conversation_id)

        async def go() -> dict[str, Any]:
            async with get_engine(self.url).begin() as conn:
                return await self._conversation(conn, owner, conversation_id)

        return await self._on_loop(go())

    async def _conversation(
        self, conn: AsyncConnection, owner: Owner | None, conversation_id: str
    ) -> dict[str, Any]:
        stmt = select(*_CONV_COLUMNS, conversations.c.message_count).where(
            conversations.c.id == conversation_id
        )
        if owner is not None:
            stmt = stmt.where(_owner_clause(owner))
        row = (await conn.execute(stmt)).first()
        if row is None:
            raise not_found(conversation_id)
        return _conv_dict(row)

    async def get_conversation_details(
        self, owner: Owner | None, conversation_id: str
    ) -> dict[str, Any]:
        conversation_id = check_lookup_id(conversation_id)

        async def go() -> dict[str, Any]:
            async with get_engine(self.url).begin() as conn:
                details = await self._conversation(conn, owner, conversation_id)
                result = await conn.execute(
                    select(*(messages.c[k] for k in DETAIL_FIELDS))
                    .where(messages.c.conversation_id == conversation_id)
                    .order_by(messages.c.seq)
                )
                details["messages"] = [
                    dict(zip(DETAIL_FIELDS, r, strict=True)) for r in result.all()
                ]
                details["message_count"] = len(details["messages"])
                return details

        return await self._on_loop(go())

    @staticmethod
    def _user_column() -> Any:
        """The column ``list_conversations(user_id=...)`` compares, as its index has it."""
        return conversations.c.user_id

    async def list_conversations(
        self,
        owner: Owner | None,
        *,
        limit: int = 50,
        cursor: str | None = None,
        user_id: str | None = None,
    ) -> Page:
        limit = check_limit(limit)
        after = decode_conversation_cursor(cursor)
        c = conversations.c
        stmt = select(*_CONV_COLUMNS, conversations.c.message_count)
        if owner is not None:
            stmt = stmt.where(_owner_clause(owner))
        if user_id is not None:
            stmt = stmt.where(self._user_column() == user_id)
        if after is not None:
            at, last_id = after
            # A row value in the index's column order: PostgreSQL seeks to it (an index
            # condition), where the equivalent OR is a filter over every row above the page.
            stmt = stmt.where(
                tuple_(c.updated_at, c.id)
                < tuple_(literal(at, c.updated_at.type), literal(last_id, c.id.type))
            )
        stmt = stmt.order_by(c.updated_at.desc(), c.id.desc()).limit(limit + 1)

        async def go() -> Page:
            async with get_engine(self.url).begin() as conn:
                rows = (await conn.execute(stmt)).all()
            items = [_conv_dict(r) for r in rows[:limit]]
            next_cursor = None
            if len(rows) > limit:
                last = items[-1]
                next_cursor = encode_conversation_cursor(last["updated_at"], last["id"])
            return Page(items, next_cursor)

        return await self._on_loop(go())

    async def get_messages(
        self,
        owner: Owner | None,
        conversation_id: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        conversation_id = check_lookup_id(conversation_id)
        limit = check_limit(limit)
        after = decode_message_cursor(cursor)

        async def go() -> Page:
            async with get_engine(self.url).begin() as conn:
                await self._visible(conn, owner, conversation_id)
                result = await conn.execute(
                    select(messages.c.seq, *_MSG_COLUMNS)
                    .where(*_message_range(conversation_id, after, is_sqlite(self.url)))
                    .order_by(messages.c.conversation_id, messages.c.seq)
                    .limit(limit + 1)
                )
                keys = ("seq", *MESSAGE_COLUMNS)
                rows = result.all()
            items = [dict(zip(keys, r, strict=True)) for r in rows[:limit]]
            next_cursor = None
            if len(rows) > limit:
                next_cursor = encode_message_cursor(items[-1]["seq"])
            for item in items:
                del item["seq"]
            return Page(items, next_cursor)

        return await self._on_loop(go())

    # -- messages -----------------------------------------------------------------------------

    async def add_message(
        self, owner: Owner | None, conversation_id: str, text: str, sender: str, **fields: Any
    ) -> str:
        row, state = message_row(conversation_id, text, sender, **fields)
        await self._ready()
        return await self._enqueue(owner, row, fields.get("message_id") is not None, state)

    def add_message_sync(
        self, owner: Owner | None, *args: Any, timeout: float | None = 60.0, **fields: Any
    ) -> str:
        """:meth:`add_message` for sync code. After ``timeout`` the message is withdrawn
        (nothing is stored), or, if a transaction has already taken it, that transaction is
        waited for up to ``timeout`` more: it is not left to commit after the call failed."""
        row, state = message_row(*args, **fields)
        self._ready_sync(timeout)
        explicit = fields.get("message_id") is not None
        return runner.run_sync(self._batcher.add_within(timeout, owner, row, explicit, state))

    async def _write_batch(self, batch: Sequence[Pending], trust_cache: bool, alone: bool) -> None:
        """One group's transaction (for the batcher): look up what the cache does not know,
        apply the ownership rule, write, and settle the callers once committed."""
        now = _dt.datetime.now(_UTC)
        cache = self._cache
        committed: list[Callable[[], None]] = []
        async with self._open_tx(committed) as tx:
            owners, missing_c, parents, missing_p, explicit = cache.known(batch, trust_cache)
            if missing_c:
                owners.update(await tx.owners(missing_c))
            if missing_p:
                parents.update(await tx.parents(missing_p))
            taken = await tx.taken(explicit) if explicit else set()
            results, rows, items = plan(batch, owners, parents, taken, now)
            # The write also checks that each conversation still has the owner it was checked
            # against (a cached owner may be stale if another process deleted it).
            if rows and not await tx.write(rows, items, now, alone):
                raise StaleCacheError

            def acknowledge() -> None:
                # runs once the transaction is committed, and only then
                cache.learn(owners, results)
                settle_all(results)

            committed.append(acknowledge)

    @asynccontextmanager
    async def _open_tx(self, committed: list[Callable[[], None]]) -> AsyncIterator[Any]:
        """A write transaction; once it is committed, the functions the body put in
        ``committed`` are called."""
        async with get_write_engine(self.url).begin() as conn:
            yield CoreTx(conn)
        for fn in committed:
            fn()

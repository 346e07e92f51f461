"""Conversations and their messages, in the database of ``hookwire.stores.engine``.

:class:`ConversationStore` is the storage behind ``ChatHistoryCallbackHandler``; its methods
are coroutines and may be awaited from any event loop (they run on the store loop of
``hookwire.stores.runner``). Every method takes the :class:`Owner` it acts for: a conversation
whose owner (user, org, realm, anonymity) differs is reported as ``ConversationNotFound``,
exactly as one that does not exist, so its existence is not revealed. ``owner=None`` means
operator access (the ``hookwire history`` CLI) and sees every conversation.

Writes are transactions. Messages written concurrently are committed in groups: while one
transaction commits, the messages that arrive queue up and go into the next one, each caller
still getting its own result (its id, or its own error) once its group is committed. This is
what makes many writers fast on SQLite, where transactions are serialised, and cheap on
PostgreSQL; a message is acknowledged (its ``add_message`` returns) only once it is durable.

Records come back as plain dicts (JSON-friendly, what the CLI prints):

conversation
    ``id``, ``name``, ``state``, ``realm``, ``org_id``, ``user_id``, ``is_anonymous``,
    ``agent_title``, ``model``, ``created_at``, ``updated_at`` (aware UTC datetimes),
    ``metadata``, ``correlation_id``, ``request_id``, ``message_count``
message (``get_messages``)
    ``id``, ``conversation_id``, ``parent_message_id``, ``sender``, ``text``,
    ``message_time``, ``created_at``, ``metadata``, ``correlation_id``, ``request_id``,
    ``run_id``, ``model``, ``prompt_tokens``, ``completion_tokens``, ``total_tokens``
message (``get_conversation_details``)
    the fields in :data:`DETAIL_FIELDS`: ``id``, ``parent_message_id``, ``sender``,
    ``text``, ``message_time``, ``metadata``, ``run_id``, ``model`` and the token counts
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import datetime as _dt
import gc
import logging
import os
import re
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeVar

import orjson
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util import greenlet_spawn

from ..errors import (
    ConversationNotFound,
    HookwireError,
    InvalidInputError,
    InvalidMessageTimeError,
    InvalidMetadataError,
    InvalidNameError,
    InvalidSenderError,
    ParentMessageError,
    StoreError,
)
from ..ids import new_id
from . import runner
from .engine import (
    before_dispose,
    ensure_schema,
    get_engine,
    get_write_engine,
    json_loads,
    redact,
    resolve_url,
    schema_ready,
)
from .schema import CONVERSATION_STATES, SENDERS, conversations, has_lone_surrogate, messages

__all__ = [
    "DETAIL_FIELDS",
    "MAX_NAME_LENGTH",
    "ConversationStore",
    "Owner",
    "Page",
    "check_metadata",
    "check_name",
    "check_sender",
    "check_state",
    "parse_message_time",
]

logger = logging.getLogger("hookwire")

T = TypeVar("T")

#: The longest conversation name accepted, in characters.
MAX_NAME_LENGTH = 255
#: The longest id accepted from a caller.
MAX_ID_LENGTH = 64
#: At most this many messages go into one transaction.
MAX_BATCH = 512

_UTC = _dt.timezone.utc
_SENDERS = frozenset(SENDERS)
_STATES = frozenset(CONVERSATION_STATES)


# -- owners and pages -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a store call acts for. A conversation is visible only to its exact owner."""

    user_id: str
    org_id: str = ""
    realm: str = ""
    is_anonymous: bool = False

    def sees(self, row: Any) -> bool:
        """Whether a conversation row (with the owner columns) belongs to this owner."""
        return (
            row.user_id == self.user_id
            and row.org_id == self.org_id
            and row.realm == self.realm
            and bool(row.is_anonymous) == self.is_anonymous
        )


@dataclass(slots=True)
class Page:
    """One page of results; pass ``next_cursor`` back as ``cursor`` for the next (``None``:
    this was the last page)."""

    items: list[dict[str, Any]]
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


# -- validation (every rule raises a named error saying what is accepted) ---------------------


def check_sender(sender: Any) -> str:
    """``sender`` if it is one of ``end_user``, ``assistant``, ``system``, ``tool``."""
    if not isinstance(sender, str) or sender not in _SENDERS:
        raise InvalidSenderError(
            f"sender {sender!r} is not allowed; use one of {', '.join(SENDERS)}"
        )
    return sender


def check_state(state: Any) -> str:
    """``state`` if it is a conversation state (``normal``, ``human-intervention``)."""
    if not isinstance(state, str) or state not in _STATES:
        raise InvalidInputError(
            f"conversation_state {state!r} is not a state; use one of "
            f"{', '.join(CONVERSATION_STATES)}"
        )
    return state


def check_name(name: Any) -> str:
    """``name`` stripped, if it is a non-empty string of at most ``MAX_NAME_LENGTH``."""
    if not isinstance(name, str):
        raise InvalidNameError(f"a conversation name must be a string, not {type(name).__name__}")
    stripped = name.strip()
    if not stripped:
        raise InvalidNameError("a conversation name cannot be empty or only spaces")
    if len(stripped) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"a conversation name can have at most {MAX_NAME_LENGTH} characters, "
            f"this one has {len(stripped)}; shorten it"
        )
    if "\x00" in stripped:
        raise InvalidNameError("a conversation name cannot contain NUL characters")
    if has_lone_surrogate(stripped):
        raise InvalidNameError(
            "a conversation name cannot contain lone surrogates (text that is not valid "
            "Unicode, such as '\\ud800'); decode the text with errors='replace' first"
        )
    return stripped


def parse_message_time(value: Any) -> _dt.datetime:
    """An aware UTC datetime from a datetime (naive ones are taken as UTC), an ISO 8601
    string (``2023-05-15T14:30:00Z``), or ``None`` (now)."""
    if value is None:
        return _dt.datetime.now(_UTC)
    if isinstance(value, _dt.datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = _dt.datetime.fromisoformat(text)
        except ValueError:
            raise InvalidMessageTimeError(
                f"message_time {value!r} is not an ISO 8601 time; use for example "
                "'2023-05-15T14:30:00Z' or a datetime"
            ) from None
    else:
        raise InvalidMessageTimeError(
            f"message_time must be a datetime or an ISO 8601 string, not "
            f"{type(value).__name__} ({value!r})"
        )
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=_UTC)
    try:
        return parsed.astimezone(_UTC)
    except OverflowError:
        raise InvalidMessageTimeError(
            f"message_time {value!r} is out of range once converted to UTC"
        ) from None


def check_metadata(value: Any) -> Any:
    """``value`` if it can be stored as JSON (any JSON value: object, list, string, ...)."""
    if value is None:
        return None
    try:
        encoded = orjson.dumps(value)
    except TypeError as exc:
        raise InvalidMetadataError(
            f"metadata must be JSON (dicts with string keys, lists, strings, numbers, "
            f"booleans, None): {exc}"
        ) from None
    if b"\\u0000" in encoded:
        raise InvalidMetadataError("metadata cannot contain NUL characters (\\u0000)")
    # What is stored is what is read back: tuples become lists, datetimes ISO strings.
    return orjson.loads(encoded)


def _check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise InvalidInputError(f"message_text must be a string, not {type(text).__name__}")
    if "\x00" in text:
        raise InvalidInputError(
            "message_text cannot contain NUL characters (PostgreSQL cannot store them)"
        )
    if has_lone_surrogate(text):
        raise InvalidInputError(
            "message_text cannot contain lone surrogates (text that is not valid Unicode, "
            "such as '\\ud800', which no database can store as UTF-8); decode the text "
            "with errors='replace' first"
        )
    return text


def _check_id(value: Any, what: str) -> str:
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_ID_LENGTH
        or "\x00" in value
        or has_lone_surrogate(value)
    ):
        raise InvalidInputError(
            f"{what} must be a non-empty string of at most {MAX_ID_LENGTH} characters, "
            f"not {value!r}"
        )
    return value


def _check_tokens(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**31 - 1:
        raise InvalidInputError(f"{what} must be a non-negative integer, not {value!r}")
    return value


def _opt_str(value: Any, what: str, limit: int = 255) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or len(value) > limit
        or "\x00" in value
        or has_lone_surrogate(value)
    ):
        raise InvalidInputError(
            f"{what} must be a string of at most {limit} characters, without NUL characters "
            "or lone surrogates"
        )
    return value


def _not_found(conversation_id: str) -> ConversationNotFound:
    return ConversationNotFound(
        f"conversation {conversation_id!r} not found (it does not exist, or belongs to another "
        "user, org or realm); create it with create_conversation() or check the id"
    )


# -- the store --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    owner: Owner | None
    row: dict[str, Any]
    explicit_id: bool
    state: str | None
    settle: Callable[[str | BaseException], None] = field(repr=False)
    #: the caller's event loop when it is another thread's, and ``settle`` run on it
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    settle_local: Callable[[str | BaseException], None] | None = field(default=None, repr=False)


_CONV_COLUMNS = (
    conversations.c.id,
    conversations.c.name,
    conversations.c.state,
    conversations.c.realm,
    conversations.c.org_id,
    conversations.c.user_id,
    conversations.c.is_anonymous,
    conversations.c.agent_title,
    conversations.c.model,
    conversations.c.created_at,
    conversations.c.updated_at,
    conversations.c.metadata,
    conversations.c.correlation_id,
    conversations.c.request_id,
)

_MSG_COLUMNS = (
    messages.c.id,
    messages.c.conversation_id,
    messages.c.parent_message_id,
    messages.c.sender,
    messages.c.text,
    messages.c.message_time,
    messages.c.created_at,
    messages.c.metadata,
    messages.c.correlation_id,
    messages.c.request_id,
    messages.c.run_id,
    messages.c.model,
    messages.c.prompt_tokens,
    messages.c.completion_tokens,
    messages.c.total_tokens,
)


def _owner_clause(owner: Owner | None) -> Any:
    if owner is None:
        return None
    return and_(
        conversations.c.user_id == owner.user_id,
        conversations.c.org_id == owner.org_id,
        conversations.c.realm == owner.realm,
        conversations.c.is_anonymous == owner.is_anonymous,
    )


def _conv_dict(row: Any) -> dict[str, Any]:
    # plain str keys (SQLAlchemy's are a str subclass, which JSON encoders refuse)
    d = dict(zip((*_CONV_FIELDS, "message_count"), row, strict=True))
    d["is_anonymous"] = bool(d["is_anonymous"])
    return d


def _message_row(
    conversation_id: Any,
    text: Any,
    sender: Any,
    *,
    parent_message_id: Any = None,
    message_time: Any = None,
    metadata: Any = None,
    message_id: Any = None,
    correlation_id: Any = None,
    request_id: Any = None,
    run_id: Any = None,
    model: Any = None,
    prompt_tokens: Any = None,
    completion_tokens: Any = None,
    total_tokens: Any = None,
    conversation_state: Any = None,
) -> tuple[dict[str, Any], str | None]:
    """The validated row of a new message, and the conversation state to set (if any)."""
    row = {
        "id": new_id() if message_id is None else _check_id(message_id, "message_id"),
        "conversation_id": _check_lookup_id(conversation_id),
        "parent_message_id": None
        if parent_message_id is None
        else _check_id(parent_message_id, "parent_message_id"),
        "sender": check_sender(sender),
        "text": _check_text(text),
        "message_time": parse_message_time(message_time),
        "metadata": check_metadata(metadata),
        "correlation_id": _opt_str(correlation_id, "correlation_id"),
        "request_id": _opt_str(request_id, "request_id"),
        "run_id": _opt_str(run_id, "run_id", 64),
        "model": _opt_str(model, "model"),
        "prompt_tokens": _check_tokens(prompt_tokens, "prompt_tokens"),
        "completion_tokens": _check_tokens(completion_tokens, "completion_tokens"),
        "total_tokens": _check_tokens(total_tokens, "total_tokens"),
    }
    state = None if conversation_state is None else check_state(conversation_state)
    return row, state


async def _nothing() -> None:
    return None


def _sqlite_file(url: str) -> str | None:
    """The file of an SQLite URL (``None`` for in-memory databases and other backends)."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


class ConversationStore:
    """Chat history in one database (``url`` as for ``hookwire.stores.engine.resolve_url``).

    Use :meth:`for_url` to share one store (and its write queue) per database in a process.
    """

    _shared: ClassVar[dict[str, ConversationStore]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)
        self._pending: list[_Pending] = []
        self._drainers = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[str] = set()
        self._max_inflight = 4 if self.url.startswith("postgresql+asyncpg") else 1
        self._cache = _Cache()
        self._messages = _MessageCache()
        self._schema_ok = False
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        # messages waiting on a caller's loop to be handed to the store loop together (a
        # forked child starts without the parent's)
        self._outbox: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        self._writer: _SQLiteWriter | None = None
        self._reader: _SQLiteReader | None = None
        path = _sqlite_file(self.url)
        if path is not None:
            self._writer = _SQLiteWriter(path, self.url, self._cache)
            self._reader = _sqlite_reader(path)

    async def _ready(self) -> None:
        if self._pid != os.getpid():
            self._start()  # forked: the parent's threads are not here
        if not self._schema_ok:
            # A new store of a database this process already checked need not hop to the
            # store loop and back for it: under load, those two thread switches cost more
            # than some reads.
            if not schema_ready(self.url, runner.get_loop()):
                await runner.run(self._guard(_nothing()))
            self._schema_ok = True

    @classmethod
    def for_url(cls, url: str | None = None) -> ConversationStore:
        """The process-wide store of the database ``url`` names."""
        resolved = resolve_url(url)
        with cls._shared_lock:
            store = cls._shared.get(resolved)
            if store is None:
                store = cls._shared[resolved] = cls(resolved)
            return store

    def __repr__(self) -> str:
        return f"ConversationStore({redact(self.url)!r})"

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
        self,
        owner: Owner,
        *,
        conversation_id: str | None = None,
        name: str | None = None,
        state: str = "normal",
        agent_title: str | None = None,
        model: str | None = None,
        metadata: Any = None,
        correlation_id: str | None = None,
        request_id: str | None = None,
        exist_ok: bool = False,
    ) -> str:
        """Create a conversation for ``owner``; returns its id (``conversation_id`` or a new
        UUID). With ``exist_ok``, an existing conversation of the same owner is kept as is;
        an id already used by anyone else raises ``InvalidInputError``."""
        row = {
            "id": new_id()
            if conversation_id is None
            else _check_id(conversation_id, "conversation_id"),
            "realm": owner.realm,
            "org_id": owner.org_id,
            "user_id": owner.user_id,
            "is_anonymous": owner.is_anonymous,
            "name": None if name is None else check_name(name),
            "agent_title": _opt_str(agent_title, "agent_title"),
            "state": check_state(state),
            "model": _opt_str(model, "model"),
            "metadata": check_metadata(metadata),
            "correlation_id": _opt_str(correlation_id, "correlation_id"),
            "request_id": _opt_str(request_id, "request_id"),
        }
        return await self._on_loop(self._create(owner, row, exist_ok))

    async def _create(self, owner: Owner, row: dict[str, Any], exist_ok: bool) -> str:
        engine = get_write_engine(self.url)
        if exist_ok:
            async with engine.connect() as conn:
                found = await self._owner_row(conn, row["id"])
                if found is not None and owner.sees(found):
                    return str(row["id"])
                if found is not None:
                    raise _not_found(row["id"])
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
                    found = await self._owner_row(conn, row["id"])
                if found is not None and owner.sees(found):
                    return str(row["id"])
                raise _not_found(row["id"]) from None
            raise InvalidInputError(
                f"a conversation with id {row['id']!r} cannot be created: the id is taken; "
                "leave conversation_id out to get a new one"
            ) from None
        return str(row["id"])

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
            raise _not_found(conversation_id)
        return found

    async def rename_conversation(
        self, owner: Owner | None, conversation_id: str, name: str
    ) -> None:
        """Give the conversation a new name (stripped, 1 to ``MAX_NAME_LENGTH`` characters)."""
        await self._update(owner, conversation_id, {"name": check_name(name)})

    async def set_conversation_state(
        self, owner: Owner | None, conversation_id: str, state: str
    ) -> None:
        """Set the conversation's state (``normal``, ``human-intervention``)."""
        await self._update(owner, conversation_id, {"state": check_state(state)})

    async def _update(
        self, owner: Owner | None, conversation_id: Any, values: dict[str, Any]
    ) -> None:
        conversation_id = _check_lookup_id(conversation_id)
        values = {**values, "updated_at": _dt.datetime.now(_UTC)}
        stmt = update(conversations).where(conversations.c.id == conversation_id).values(values)
        clause = _owner_clause(owner)
        if clause is not None:
            stmt = stmt.where(clause)

        async def go() -> None:
            async with get_write_engine(self.url).begin() as conn:
                result = await conn.execute(stmt)
                if result.rowcount != 1:
                    raise _not_found(conversation_id)

        await self._on_loop(go())

    async def delete_conversation(self, owner: Owner | None, conversation_id: str) -> int:
        """Delete the conversation and all its messages; returns how many messages went."""
        conversation_id = _check_lookup_id(conversation_id)

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
        """The conversation's fields and ``message_count`` (without the messages)."""
        conversation_id = _check_lookup_id(conversation_id)

        async def go() -> dict[str, Any]:
            async with get_engine(self.url).begin() as conn:
                return await self._conversation(conn, owner, conversation_id)

        return await self._on_loop(go())

    async def _conversation(
        self, conn: AsyncConnection, owner: Owner | None, conversation_id: str
    ) -> dict[str, Any]:
        count = (
            select(func.count())
            .where(messages.c.conversation_id == conversations.c.id)
            .scalar_subquery()
        )
        stmt = select(*_CONV_COLUMNS, count.label("message_count")).where(
            conversations.c.id == conversation_id
        )
        clause = _owner_clause(owner)
        if clause is not None:
            stmt = stmt.where(clause)
        row = (await conn.execute(stmt)).first()
        if row is None:
            raise _not_found(conversation_id)
        return _conv_dict(row)

    async def get_conversation_details(
        self, owner: Owner | None, conversation_id: str
    ) -> dict[str, Any]:
        """The conversation (as :meth:`get_conversation`) with ``messages``: every message in
        the order it was stored, each with its ``parent_message_id``. One consistent snapshot."""
        conversation_id = _check_lookup_id(conversation_id)
        if self._pid != os.getpid():
            self._start()  # forked: the parent's threads are not here
        reader = self._reader
        if reader is not None:
            await self._ready()
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(
                    reader.pool, reader.details, owner, conversation_id, self._messages
                )
            except (HookwireError, ValueError):
                raise
            except Exception as exc:
                raise self._failed(exc) from exc
        # (the other paths check the schema on the store loop, in _on_loop)
        if self.url.startswith("postgresql+asyncpg"):
            return await self._on_loop(self._pg_details(owner, conversation_id))

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

    def get_conversation_details_sync(
        self, owner: Owner | None, conversation_id: str, timeout: float | None = 60.0
    ) -> dict[str, Any]:
        """:meth:`get_conversation_details` for sync code. An SQLite file whose schema this
        process has checked is read in the calling thread: the hops to the store loop and a
        reader thread and back cost about 0.17 ms, more than reading a short conversation."""
        conversation_id = _check_lookup_id(conversation_id)
        if self._pid != os.getpid():
            self._start()  # forked: the parent's threads are not here
        reader = self._reader
        if (
            reader is None
            or runner.in_store_loop()  # run_sync names the mistake
            or not (self._schema_ok or schema_ready(self.url, runner.get_loop()))
        ):
            return runner.run_sync(self.get_conversation_details(owner, conversation_id), timeout)
        self._schema_ok = True
        try:
            return reader.details(owner, conversation_id, self._messages)
        except (HookwireError, ValueError):
            raise
        except Exception as exc:
            raise self._failed(exc) from exc

    async def _pg_details(self, owner: Owner | None, conversation_id: str) -> dict[str, Any]:
        cache = self._messages
        entry = cache.get(conversation_id)
        select = f"SELECT {_PG_DETAIL_SELECT} FROM messages WHERE conversation_id = $1"
        async with get_engine(self.url).connect() as conn:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            # One snapshot for the conversation and its messages. The messages are read in
            # the order of the (conversation_id, seq) index: with the statistics of a table
            # that just grew, the planner may otherwise pick a bitmap scan and a sort, which
            # for 10,000 messages costs the server twice as long. Times come as ISO text in
            # UTC (see _PG_DETAIL_SELECT).
            await raw.execute(_PG_READ_BEGIN)
            try:
                head = await raw.fetchrow(_pg_head(counted=entry is not None), conversation_id)
                if head is None or (owner is not None and not owner.sees(_owner_of(head))):
                    cache.drop(conversation_id)
                    raise _not_found(conversation_id)
                created, count = head[9], head[len(_CONV_FIELDS)]
                base: list[Any] = []
                last = 0
                if entry is not None and entry[0] == created:
                    base, last = entry[2], entry[1]
                # The collector is paused while the rows arrive too: tens of thousands of
                # new objects would trigger collections that scan them over and over.
                with _gc_paused():
                    rows = await raw.fetch(
                        select + " AND seq > $2 ORDER BY seq", conversation_id, last
                    )
                    if count is not None and len(base) + len(rows) != count:
                        base, last = [], 0
                        rows = await raw.fetch(select + " ORDER BY seq", conversation_id)
            except BaseException:
                with contextlib.suppress(Exception):
                    await raw.execute("ROLLBACK")
                raise
            await raw.execute("COMMIT")
        msgs = base + rows if base else list(rows)
        details = _conv_from_tuple((*head[: len(_CONV_FIELDS)], len(msgs)), sqlite=False)
        cache.put(conversation_id, created, _last_seq(head, last), msgs)
        with _gc_paused():
            details["messages"] = _fresh(msgs, parse_time=_PG_TIME_AS_TEXT)
        return details

    async def list_conversations(
        self,
        owner: Owner | None,
        *,
        limit: int = 50,
        cursor: str | None = None,
        user_id: str | None = None,
    ) -> Page:
        """The owner's conversations, most recently updated first, ``limit`` a page.

        ``user_id`` filters by user (operator access, ``owner=None``, only)."""
        limit = _check_limit(limit)
        after = _decode_conv_cursor(cursor)
        count = (
            select(func.count())
            .where(messages.c.conversation_id == conversations.c.id)
            .scalar_subquery()
        )
        c = conversations.c
        stmt = select(*_CONV_COLUMNS, count.label("message_count"))
        clause = _owner_clause(owner)
        if clause is not None:
            stmt = stmt.where(clause)
        if user_id is not None:
            stmt = stmt.where(c.user_id == user_id)
        if after is not None:
            at, last_id = after
            stmt = stmt.where(or_(c.updated_at < at, and_(c.updated_at == at, c.id < last_id)))
        stmt = stmt.order_by(c.updated_at.desc(), c.id.desc()).limit(limit + 1)

        async def go() -> Page:
            async with get_engine(self.url).begin() as conn:
                rows = (await conn.execute(stmt)).all()
            items = [_conv_dict(r) for r in rows[:limit]]
            next_cursor = None
            if len(rows) > limit:
                last = items[-1]
                next_cursor = _encode_conv_cursor(last["updated_at"], last["id"])
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
        """The conversation's messages in order, ``limit`` a page."""
        conversation_id = _check_lookup_id(conversation_id)
        limit = _check_limit(limit)
        after = _decode_msg_cursor(cursor)

        async def go() -> Page:
            async with get_engine(self.url).begin() as conn:
                await self._visible(conn, owner, conversation_id)
                stmt = select(messages.c.seq, *_MSG_COLUMNS).where(
                    messages.c.conversation_id == conversation_id
                )
                if after is not None:
                    stmt = stmt.where(messages.c.seq > after)
                result = await conn.execute(stmt.order_by(messages.c.seq).limit(limit + 1))
                keys = ("seq", *_INSERT_COLUMNS)
                rows = result.all()
            items = [dict(zip(keys, r, strict=True)) for r in rows[:limit]]
            next_cursor = None
            if len(rows) > limit:
                next_cursor = _encode_msg_cursor(items[-1]["seq"])
            for item in items:
                del item["seq"]
            return Page(items, next_cursor)

        return await self._on_loop(go())

    # -- messages -----------------------------------------------------------------------------

    async def add_message(
        self,
        owner: Owner | None,
        conversation_id: str,
        text: str,
        sender: str,
        *,
        parent_message_id: str | None = None,
        message_time: Any = None,
        metadata: Any = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
        request_id: str | None = None,
        run_id: str | None = None,
        model: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        total_tokens: int | None = None,
        conversation_state: str | None = None,
    ) -> str:
        """Store a message; returns its id once it is committed.

        ``parent_message_id`` must be a message of the same conversation. With
        ``conversation_state``, the conversation's state is set in the same transaction.
        """
        row, state = _message_row(
            conversation_id,
            text,
            sender,
            parent_message_id=parent_message_id,
            message_time=message_time,
            metadata=metadata,
            message_id=message_id,
            correlation_id=correlation_id,
            request_id=request_id,
            run_id=run_id,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=total_tokens,
            conversation_state=conversation_state,
        )
        await self._ready()
        writer = self._writer
        if writer is None:
            if runner.in_store_loop():
                return await self._enqueue(owner, row, message_id is not None, state)
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[str] = loop.create_future()
            item = _Pending(owner, row, message_id is not None, state, _settler(waiter, loop))
            item.loop, item.settle_local = loop, _settler(waiter, None)
            self._hand_over(loop, item)
            return await asyncio.shield(waiter)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        writer.submit(_Pending(owner, row, message_id is not None, state, _settler(future, loop)))
        return await future

    def add_message_sync(
        self,
        owner: Owner | None,
        conversation_id: str,
        text: str,
        sender: str,
        *,
        timeout: float | None = 60.0,
        **fields: Any,
    ) -> str:
        """:meth:`add_message` for sync code (and handlers' background workers)."""
        if self._pid != os.getpid():
            self._start()
        writer = self._writer
        if writer is None:
            return runner.run_sync(
                self.add_message(owner, conversation_id, text, sender, **fields), timeout
            )
        row, state = _message_row(conversation_id, text, sender, **fields)
        if not self._schema_ok:
            runner.run_sync(self._guard(_nothing()), timeout)
            self._schema_ok = True
        done: concurrent.futures.Future[str] = concurrent.futures.Future()

        def settle(outcome: str | BaseException) -> None:
            if isinstance(outcome, BaseException):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)

        writer.submit(_Pending(owner, row, fields.get("message_id") is not None, state, settle))
        try:
            return done.result(timeout)
        except TimeoutError:
            raise StoreError(
                f"storing the message in {redact(self.url)} did not finish within {timeout} s; "
                "another process may hold the database's write lock"
            ) from None

    async def _enqueue(
        self, owner: Owner | None, row: dict[str, Any], explicit: bool, state: str | None
    ) -> str:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        self._accept([_Pending(owner, row, explicit, state, _settler(future, None))])
        return await asyncio.shield(future)

    # Messages sent from another event loop reach the store loop in one hop per loop
    # iteration, not one each: the writers a committed group wakes up send their next
    # messages in the same iteration, and those then go into one group again. One hop per
    # message would let the first of them start a group of its own, and split the rest.
    def _hand_over(self, loop: asyncio.AbstractEventLoop, item: _Pending) -> None:
        box = self._outbox.get(loop)
        if box is None:
            box = self._outbox[loop] = []
            loop.call_soon(self._ship, loop)
        box.append(item)

    def _ship(self, loop: asyncio.AbstractEventLoop) -> None:
        items = self._outbox.pop(loop, None)
        if not items:
            return
        try:
            runner.get_loop().call_soon_threadsafe(self._accept, items)
        except RuntimeError as exc:  # the store loop is gone (the interpreter is exiting)
            for item in items:
                _fail(item, exc, self.url)

    def _accept(self, items: list[_Pending]) -> None:
        """Queue messages for the next group (on the store loop)."""
        self._pending.extend(items)
        if self._drainers < self._max_inflight:
            self._drainers += 1
            task = asyncio.get_running_loop().create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Pending]:
        # A message whose parent is in a group not committed yet waits for that group.
        batch: list[_Pending] = []
        keep: list[_Pending] = []
        inflight = self._inflight
        for p in self._pending:
            if len(batch) < MAX_BATCH and p.row["parent_message_id"] not in inflight:
                batch.append(p)
            else:
                keep.append(p)
        self._pending = keep
        for p in batch:
            inflight.add(p.row["id"])
        return batch

    async def _drain(self) -> None:
        # Group commit: everything queued while transactions run goes into the next one; on
        # PostgreSQL a few groups are in flight at once, so their commits overlap.
        try:
            while self._pending:
                batch = self._take()
                if not batch:
                    return
                try:
                    await self._drain_one(batch)
                finally:
                    for p in batch:
                        self._inflight.discard(p.row["id"])
        finally:
            self._drainers -= 1

    async def _drain_one(self, batch: list[_Pending]) -> None:
        try:
            await self._write_batch(batch)
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc, self.url)
                return
            # One bad message must not fail its neighbours: retry them one by one.
            for item in batch:
                try:
                    await self._write_batch([item], trust_cache=False)
                except Exception as one:
                    _fail(item, one, self.url)

    async def _write_batch(self, batch: Sequence[_Pending], trust_cache: bool = True) -> None:
        try:
            await self._write_batch_once(batch, trust_cache)
        except Exception:
            if not trust_cache:
                raise
            # A stale cached owner, or a conversation or parent deleted by another process
            # (a constraint failure): look everything up again before giving up on the group.
            self._cache.clear()
            await self._write_batch_once(batch, False)

    async def _write_batch_once(self, batch: Sequence[_Pending], trust_cache: bool) -> None:
        now = _dt.datetime.now(_UTC)
        cache = self._cache
        committed: list[Callable[[], None]] = []
        async with _open_tx(self.url, committed) as tx:
            owners, missing_c, parents, missing_p, explicit = cache.known(batch, trust_cache)
            if missing_c:
                owners.update(await tx.owners(missing_c))
            if missing_p:
                parents.update(await tx.parents(missing_p))
            taken = await tx.taken(explicit) if explicit else set()
            results, rows, items = _plan(batch, owners, parents, taken, now)
            # The write also checks that each conversation still has the owner it was checked
            # against (a cached owner may be stale if another process deleted it).
            if rows and not await tx.write(rows, items, now, self._drainers <= 1):
                raise _StaleCacheError

            def acknowledge() -> None:
                # runs once the transaction is committed, and only then
                cache.learn(owners, results)
                _settle_all(results)

            committed.append(acknowledge)


def _settle_all(results: list[tuple[_Pending, str | BaseException]]) -> None:
    """Give each caller its outcome; callers on the same other loop are woken once."""
    elsewhere: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for p, outcome in results:
        if p.loop is None or p.settle_local is None:
            p.settle(outcome)
        else:
            elsewhere.setdefault(p.loop, []).append((p.settle_local, outcome))
    for loop, calls in elsewhere.items():
        # a closed loop (RuntimeError) has nobody waiting any more
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_run_settles, calls)


def _run_settles(calls: list[tuple[Callable[[str | BaseException], None], Any]]) -> None:
    for settle, outcome in calls:
        settle(outcome)


def _settler(
    future: asyncio.Future[str], loop: asyncio.AbstractEventLoop | None
) -> Callable[[str | BaseException], None]:
    """A function that resolves ``future`` with an id or an exception, from any thread when
    ``loop`` is given."""

    def settle_here(outcome: str | BaseException) -> None:
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    if loop is None:
        return settle_here

    def settle_there(outcome: str | BaseException) -> None:
        # a closed loop (RuntimeError) has nobody waiting any more
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle_here, outcome)

    return settle_there


class _StaleCacheError(Exception):
    """A cached conversation owner no longer matches the database."""


_CACHE_LIMIT = 100_000


class _Cache:
    """Owners of conversations and conversations of messages this process has seen.

    Both never change, so steady writing needs no lookups. A cached entry can only go stale
    when another process deletes the row: the write then fails a check (the owner-checking
    update, or a foreign key) and the group is retried with fresh lookups.
    """

    def __init__(self) -> None:
        self.owners: dict[str, Any] = {}
        self.parents: dict[str, str] = {}

    def clear(self) -> None:
        self.owners.clear()
        self.parents.clear()

    def known(
        self, batch: Sequence[_Pending], trust: bool
    ) -> tuple[dict[str, Any], list[str], dict[str, str], list[str], list[str]]:
        conv_ids = {p.row["conversation_id"] for p in batch}
        wanted = {p.row["parent_message_id"] for p in batch} - {None}
        owners: dict[str, Any] = {}
        parents: dict[str, str] = {}
        if trust:
            for cid in conv_ids:
                hit = self.owners.get(cid)
                if hit is not None:
                    owners[cid] = hit
            for mid in wanted:
                hit_c = self.parents.get(mid)
                if hit_c is not None:
                    parents[mid] = hit_c
        explicit = [p.row["id"] for p in batch if p.explicit_id]
        return (
            owners,
            sorted(conv_ids - owners.keys()),
            parents,
            sorted(wanted - parents.keys()),
            explicit,
        )

    def learn(
        self, owners: dict[str, Any], results: list[tuple[_Pending, str | BaseException]]
    ) -> None:
        if len(self.parents) > _CACHE_LIMIT or len(self.owners) > _CACHE_LIMIT:
            self.clear()
        self.owners.update(owners)
        for p, outcome in results:
            if not isinstance(outcome, BaseException) and not p.explicit_id:
                # generated ids are unique: only a deletion can make this stale
                self.parents[outcome] = p.row["conversation_id"]

    def forget(self, conversation_id: str) -> None:
        self.owners.pop(conversation_id, None)


def _plan(
    batch: Sequence[_Pending],
    owners: dict[str, Any],
    parents: dict[str, str],
    taken: set[str],
    now: _dt.datetime,
) -> tuple[
    list[tuple[_Pending, str | BaseException]],
    list[dict[str, Any]],
    list[tuple[str, str | None, Any]],
]:
    """Each message's outcome, the rows to insert, and the conversations to touch."""
    results: list[tuple[_Pending, str | BaseException]] = []
    rows: list[dict[str, Any]] = []
    touched: dict[str, str | None] = {}
    for p in batch:
        outcome = _admit(p, owners, parents, taken)
        results.append((p, outcome))
        if isinstance(outcome, BaseException):
            continue
        row = p.row
        cid = row["conversation_id"]
        taken.add(row["id"])
        parents[row["id"]] = cid
        row["created_at"] = now
        rows.append(row)
        if p.state is not None or cid not in touched:
            touched[cid] = p.state if p.state is not None else touched.get(cid)
    items = [(cid, st, owners[cid]) for cid, st in sorted(touched.items())]
    return results, rows, items


def _admit(
    p: _Pending, owners: dict[str, Any], parents: dict[str, str], taken: set[str]
) -> str | BaseException:
    """The message's id if it may be stored, else the error its caller gets."""
    row = p.row
    cid = row["conversation_id"]
    found = owners.get(cid)
    if found is None or (p.owner is not None and not p.owner.sees(found)):
        return _not_found(cid)
    parent = row["parent_message_id"]
    if parent is not None and parents.get(parent) != cid:
        return ParentMessageError(
            f"parent message {parent!r} is not a message of conversation {cid!r}; pass the id "
            "send_message returned for a message of this conversation, or None"
        )
    if row["id"] in taken:
        return InvalidInputError(
            f"a message with id {row['id']!r} already exists; leave message_id out to get a new one"
        )
    return str(row["id"])


# -- the write path, per driver -------------------------------------------------------------
#
# A group of messages is one transaction of five statements. Through SQLAlchemy's async
# adapters each statement costs several hops between threads or round trips; on the drivers
# hookwire knows (aiosqlite, asyncpg) the same statements go to the driver connection that
# SQLAlchemy's pool hands out, which is what makes group commit pay off. Other drivers use
# SQLAlchemy Core throughout.

_INSERT_COLUMNS = (
    "id",
    "conversation_id",
    "parent_message_id",
    "sender",
    "text",
    "message_time",
    "created_at",
    "metadata",
    "correlation_id",
    "request_id",
    "run_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
)
_MSG_SELECT = ", ".join(_INSERT_COLUMNS)
#: What get_conversation_details gives for each message (get_messages gives every column):
#: the fields a conversation view needs, since reading a long conversation is mostly the cost
#: of making Python objects of its values.
DETAIL_FIELDS = (
    "id",
    "parent_message_id",
    "sender",
    "text",
    "message_time",
    "metadata",
    "run_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
)
_OWNER_SELECT = "id, realm, org_id, user_id, is_anonymous"


@dataclass(frozen=True, slots=True)
class _OwnerRow:
    id: str
    realm: str
    org_id: str
    user_id: str
    is_anonymous: bool


def _iso(value: _dt.datetime) -> str:
    return value.isoformat(timespec="microseconds")


def _dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class _SQLiteTx:
    """The write statements on a plain ``sqlite3`` connection (the SQLite writer thread)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def owners(self, ids: list[str]) -> dict[str, Any]:
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(
            f"SELECT {_OWNER_SELECT} FROM conversations WHERE id IN ({marks})", ids
        ).fetchall()
        return {r[0]: _OwnerRow(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows}

    def parents(self, ids: list[str]) -> dict[str, str]:
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(
            f"SELECT id, conversation_id FROM messages WHERE id IN ({marks})", ids
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def taken(self, ids: list[str]) -> set[str]:
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(f"SELECT id FROM messages WHERE id IN ({marks})", ids).fetchall()
        return {r[0] for r in rows}

    def insert(self, rows: list[dict[str, Any]]) -> None:
        marks = ",".join("?" * len(_INSERT_COLUMNS))
        self.conn.executemany(
            f"INSERT INTO messages ({_MSG_SELECT}) VALUES ({marks})",
            [
                (
                    r["id"],
                    r["conversation_id"],
                    r["parent_message_id"],
                    r["sender"],
                    r["text"],
                    _iso(r["message_time"]),
                    _iso(r["created_at"]),
                    _dumps(r["metadata"]),
                    r["correlation_id"],
                    r["request_id"],
                    r["run_id"],
                    r["model"],
                    r["prompt_tokens"],
                    r["completion_tokens"],
                    r["total_tokens"],
                )
                for r in rows
            ],
        )

    def touch(self, items: list[tuple[str, str | None, Any]], now: _dt.datetime) -> int:
        at = _iso(now)
        cursor = self.conn.executemany(
            "UPDATE conversations SET updated_at = ?, state = COALESCE(?, state) "
            "WHERE id = ? AND user_id = ? AND org_id = ? AND realm = ? AND is_anonymous = ?",
            [
                (at, st, cid, o.user_id, o.org_id, o.realm, bool(o.is_anonymous))
                for cid, st, o in items
            ],
        )
        return int(cursor.rowcount)


def _sqlite_connect(path: str, detect_types: int = 0) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        timeout=30.0,
        detect_types=detect_types,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


_IDLE_SECONDS = 30.0


class _SQLiteWriter:
    """One thread that writes a SQLite database's messages, a group per transaction.

    Through aiosqlite every statement is a round trip between threads, and with the GIL
    shared those add up to milliseconds per message. Here a whole group (``BEGIN
    IMMEDIATE`` ... ``COMMIT``) runs in the writer thread, and each caller's loop (or thread)
    is woken once, when its message is committed. ``BEGIN IMMEDIATE`` with a busy timeout
    makes writers in other processes queue instead of failing.
    """

    def __init__(self, path: str, url: str, cache: _Cache) -> None:
        self.path = path
        self.url = url
        self.cache = cache
        self._items: collections.deque[_Pending] = collections.deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, item: _Pending) -> None:
        self._items.append(item)
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="hookwire-sqlite-writer", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        items = self._items
        while True:
            if not self._wake.wait(_IDLE_SECONDS):
                # idle: let the thread go (submit starts another), unless work just came
                with self._start_lock:
                    if not items:
                        self._thread = None
                        if conn is not None:
                            conn.close()
                        return
            self._wake.clear()
            while items:
                batch = [items.popleft() for _ in range(min(len(items), MAX_BATCH))]
                try:
                    if conn is None:
                        conn = _sqlite_connect(self.path)
                    self._process(conn, batch)
                except Exception as exc:  # never let the writer thread die
                    for item in batch:
                        _fail(item, exc, self.url)
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            conn.close()
                    conn = None

    def _process(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        try:
            self._write(conn, batch, True)
            return
        except Exception:
            self.cache.clear()
        try:
            self._write(conn, batch, False)
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc, self.url)
                return
            # One bad message must not fail its neighbours: retry them one by one.
            for item in batch:
                try:
                    self._write(conn, [item], False)
                except Exception as one:
                    _fail(item, one, self.url)

    def _write(self, conn: sqlite3.Connection, batch: list[_Pending], trust: bool) -> None:
        now = _dt.datetime.now(_UTC)
        tx = _SQLiteTx(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            owners, missing_c, parents, missing_p, explicit = self.cache.known(batch, trust)
            if missing_c:
                owners.update(tx.owners(missing_c))
            if missing_p:
                parents.update(tx.parents(missing_p))
            taken = tx.taken(explicit) if explicit else set()
            results, rows, items = _plan(batch, owners, parents, taken, now)
            if rows:
                tx.insert(rows)
                if tx.touch(items, now) != len(items):
                    raise _StaleCacheError
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        self.cache.learn(owners, results)
        for p, outcome in results:
            p.settle(outcome)


class _MessageCache:
    """The messages of recently read conversations, so that reading one again fetches only
    what is new.

    Messages never change once stored (only a whole conversation is deleted), so a cached
    list stays true; it is keyed by the conversation's id and creation time, and each read
    checks the conversation's message count in the same transaction: anything unexpected (a
    message committed out of order by another process, a conversation deleted and created
    again) makes it read the whole conversation again. Metadata is kept as JSON text and
    decoded for every read, so callers get objects of their own: the cache keeps the rows as
    the driver returned them (tuples and records; on SQLite a run's values as a list, which
    nothing changes).
    """

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[str, tuple[Any, int, list[Any]]] = (
            collections.OrderedDict()
        )
        self._size = 0

    def get(self, conversation_id: str) -> tuple[Any, int, list[Any]] | None:
        with self._lock:
            entry = self._entries.get(conversation_id)
            if entry is not None:
                self._entries.move_to_end(conversation_id)
            return entry

    def put(self, conversation_id: str, created: Any, last_seq: int, msgs: list[Any]) -> None:
        with self._lock:
            old = self._entries.pop(conversation_id, None)
            if old is not None:
                self._size -= len(old[2])
            if len(msgs) > self.limit:
                return
            self._entries[conversation_id] = (created, last_seq, msgs)
            self._size += len(msgs)
            while self._size > self.limit and self._entries:
                _, dropped = self._entries.popitem(last=False)
                self._size -= len(dropped[2])

    def drop(self, conversation_id: str) -> None:
        with self._lock:
            old = self._entries.pop(conversation_id, None)
            if old is not None:
                self._size -= len(old[2])


_gc_lock = threading.Lock()
_gc_pausers = 0


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a conversation's rows become objects (a few
    tens of milliseconds for 10,000 messages). The rows and dicts hold no cycles, and the
    collections that tens of thousands of new objects trigger would scan them over and over:
    about a fifth of the time of reading a long conversation. Reads that overlap (threads, or
    tasks awaiting the database) share one pause, which ends with the last of them. The
    collector is left alone if something else has turned it off."""
    global _gc_pausers
    with _gc_lock:
        paused = _gc_pausers > 0 or gc.isenabled()
        if paused:
            _gc_pausers += 1
            gc.disable()
    try:
        yield
    finally:
        if paused:
            with _gc_lock:
                _gc_pausers -= 1
                if not _gc_pausers:
                    gc.enable()


def _fresh(rows: list[Any], parse_time: bool) -> list[dict[str, Any]]:
    """Message dicts, new for each read, from cached rows (``DETAIL_FIELDS``;
    metadata as JSON text, times as ISO text when ``parse_time``, else asyncpg's datetimes)."""
    if not parse_time:
        return _build(rows, _aware)
    try:
        return _build(rows, _dt.datetime.fromisoformat)
    except ValueError:
        # PostgreSQL's infinite times, which asyncpg writes for the first and last datetimes
        return _build(rows, _time_from_text)


_MAX_TIME = _dt.datetime.max.replace(tzinfo=_UTC)
_MIN_TIME = _dt.datetime.min.replace(tzinfo=_UTC)


def _time_from_text(text: str) -> _dt.datetime:
    if text == "infinity":
        return _MAX_TIME
    if text == "-infinity":
        return _MIN_TIME
    return _dt.datetime.fromisoformat(text)


# Dict displays over unpacked rows: about twice as fast as dict(zip(...)) per row, which is
# most of the cost of reading a long conversation. The keys are DETAIL_FIELDS. Metadata is
# JSON text, or on SQLite a bare number already (numeric affinity), or None. ``time_of``
# makes the message time from the stored one (ISO text, or asyncpg's datetime).
def _build(rows: list[Any], time_of: Callable[[Any], _dt.datetime]) -> list[dict[str, Any]]:
    loads = orjson.loads
    return [
        {
            "id": i,
            "parent_message_id": parent,
            "sender": sender,
            "text": text,
            "message_time": time_of(at),
            "metadata": loads(meta) if meta.__class__ is str else meta,
            "run_id": run,
            "model": model,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": total,
        }
        for i, parent, sender, text, at, meta, run, model, prompt, completion, total in rows
    ]


def _aware(at: _dt.datetime) -> _dt.datetime:
    # asyncpg gives PostgreSQL's infinite times as naive datetimes
    return at if at.tzinfo is not None else at.replace(tzinfo=_UTC)


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
    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL enable_bitmapscan TO off; "
    "SET LOCAL TimeZone TO 'UTC'; SET LOCAL DateStyle TO 'ISO'"
)


# How an SQLite read fetches a conversation's messages. Python's sqlite3 (3.11) releases and
# retakes the GIL around sqlite3_column_type for every cell it fetches, about 700
# instructions a cell and a third of a long read's time. A column with a converter
# (detect_types=PARSE_COLNAMES, named "name [type]") is fetched as bytes with the GIL held
# instead: half the cost for a NULL, a little less for text (but an empty text comes as None,
# so only columns that are never empty, and the message text, which the build mends, come
# through converters; the sender as one shared string of the four it can be), and the
# columns of a run (run_id, model, token counts), NULL for most messages that are not a
# model's answer, come as one cell: NULL, or a JSON array of the five. Metadata stays as
# SQLite gives it: a number stored with numeric affinity is a real whose text form would
# round it. Converters are registered process-wide, under names of hookwire's own.
class _SharedSenders(dict[bytes, str]):
    def __missing__(self, key: bytes) -> str:
        return key.decode()  # not one of SENDERS (a database written by other code)


sqlite3.register_converter("hookwire_text", bytes.decode)
sqlite3.register_converter("hookwire_json", orjson.loads)
sqlite3.register_converter(
    "hookwire_sender", _SharedSenders({s.encode(): s for s in SENDERS}).__getitem__
)
_SQLITE_DETAIL_SELECT = (
    'id AS "id [hookwire_text]", parent_message_id AS "p [hookwire_text]", '
    'sender AS "s [hookwire_sender]", text AS "t [hookwire_text]", '
    'message_time AS "at [hookwire_text]", metadata, '
    "CASE WHEN run_id IS NULL AND model IS NULL AND prompt_tokens IS NULL "
    "AND completion_tokens IS NULL AND total_tokens IS NULL THEN NULL "
    "ELSE json_array(run_id, model, prompt_tokens, completion_tokens, total_tokens) "
    'END AS "run [hookwire_json]"'
)
# Without SQLite's JSON functions (built in since 3.38, an option before), the run's
# columns come one by one, as SQLite gives them, and so does the text (any may be empty).
_SQLITE_DETAIL_SELECT_NO_JSON = (
    'id AS "id [hookwire_text]", parent_message_id AS "p [hookwire_text]", '
    'sender AS "s [hookwire_sender]", text, message_time AS "at [hookwire_text]", '
    "metadata, run_id, model, prompt_tokens, completion_tokens, total_tokens"
)


def _sqlite_has_json(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT json_array(1)").fetchone()
    except sqlite3.OperationalError:
        return False
    return True


#: A message's run columns when it came from no run.
_NO_RUN: Final = (None, None, None, None, None)


def _build_sqlite(rows: list[Any]) -> list[dict[str, Any]]:
    """Message dicts from rows of ``_SQLITE_DETAIL_SELECT`` (as :func:`_build`; an empty
    text came through its converter as None)."""
    loads = orjson.loads
    parse = _dt.datetime.fromisoformat
    return [
        {
            "id": i,
            "parent_message_id": parent,
            "sender": sender,
            "text": text or "",
            "message_time": parse(at),
            "metadata": loads(meta) if meta.__class__ is str else meta,
            "run_id": r[0],
            "model": r[1],
            "prompt_tokens": r[2],
            "completion_tokens": r[3],
            "total_tokens": r[4],
        }
        for i, parent, sender, text, at, meta, run in rows
        # A one-item loop is an assignment in a comprehension (CPython compiles it as one).
        for r in (run or _NO_RUN,)
    ]


class _SQLiteReader:
    """Reads of whole conversations on plain ``sqlite3`` connections in worker threads.

    One per database file and process (:func:`_sqlite_reader`), shared by its stores: a new
    store then starts no thread and opens no connection (with SQLite's schema and page
    cache to load again), about 1.5 ms of a cold read. A kept connection is as fresh as a
    new one: each read is its own transaction, so it sees every commit made before it (WAL
    mode: one snapshot per read, whoever the writer). A connection is opened again when the
    file at the path is no longer the one it opened (deleted, or replaced by another).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self.pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="hookwire-sqlite")
        self.json = True

    def conn(self) -> sqlite3.Connection:
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        try:
            st = os.stat(self.path)
            file: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            file = None  # gone: a connection opens (or fails) as a new store's would
        if conn is not None and (file is None or file != local.file):
            local.conn = None
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            conn = None
        if conn is None:
            conn = _sqlite_connect(self.path, sqlite3.PARSE_COLNAMES)
            self.json = _sqlite_has_json(conn)
            if file is None:
                st = os.stat(self.path)
                file = (st.st_dev, st.st_ino)
            local.conn, local.file = conn, file
        return conn

    def details(
        self, owner: Owner | None, conversation_id: str, cache: _MessageCache
    ) -> dict[str, Any]:
        with _gc_paused():
            return self._details(owner, conversation_id, cache)

    def _details(
        self, owner: Owner | None, conversation_id: str, cache: _MessageCache
    ) -> dict[str, Any]:
        conn = self.conn()
        entry = cache.get(conversation_id)
        columns = _SQLITE_DETAIL_SELECT if self.json else _SQLITE_DETAIL_SELECT_NO_JSON
        select = f"SELECT {columns} FROM messages WHERE conversation_id = ?"
        conn.execute("BEGIN")
        try:
            head = conn.execute(
                _sqlite_head(counted=entry is not None), (conversation_id,)
            ).fetchone()
            if head is None or (owner is not None and not owner.sees(_owner_of(head))):
                cache.drop(conversation_id)
                raise _not_found(conversation_id)
            created, count = head[9], head[len(_CONV_FIELDS)]
            base: list[Any] = []
            last = 0
            if entry is not None and entry[0] == created:
                base, last = entry[2], entry[1]
            rows = conn.execute(
                select + " AND seq > ? ORDER BY seq", (conversation_id, last)
            ).fetchall()
            if count is not None and len(base) + len(rows) != count:
                base, last = [], 0
                rows = conn.execute(select + " ORDER BY seq", (conversation_id,)).fetchall()
        finally:
            conn.execute("COMMIT")
        msgs = base + rows if base else rows
        details = _conv_from_tuple((*head[: len(_CONV_FIELDS)], len(msgs)), sqlite=True)
        cache.put(conversation_id, created, _last_seq(head, last), msgs)
        details["messages"] = _build_sqlite(msgs) if self.json else _fresh(msgs, parse_time=True)
        return details


_readers: dict[str, _SQLiteReader] = {}
_readers_lock = threading.Lock()


def _sqlite_reader(path: str) -> _SQLiteReader:
    """The process's reader of the SQLite file ``path``."""
    with _readers_lock:
        reader = _readers.get(path)
        if reader is None:
            reader = _readers[path] = _SQLiteReader(path)
        return reader


_CONV_FIELDS = (
    "id",
    "name",
    "state",
    "realm",
    "org_id",
    "user_id",
    "is_anonymous",
    "agent_title",
    "model",
    "created_at",
    "updated_at",
    "metadata",
    "correlation_id",
    "request_id",
)
_CONV_SELECT = ", ".join(f"c.{f}" for f in _CONV_FIELDS)


# The head of a whole-conversation read: the conversation, the count of its messages (only
# to check cached messages: the count of a snapshot's messages is the number it reads, so a
# read without them skips it) and its last message's seq, which the cache keeps (selected
# with each message, it would cost a column more per row).
def _sqlite_head(counted: bool) -> str:
    count = (
        "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)" if counted else "NULL"
    )
    last = "(SELECT max(seq) FROM messages m WHERE m.conversation_id = c.id)"
    return f"SELECT {_CONV_SELECT}, {count}, {last} FROM conversations c WHERE c.id = ?"


def _last_seq(head: Sequence[Any], cached: int) -> int:
    """The seq of the last message a read saw: the head's, or the cached one's."""
    last = head[len(_CONV_FIELDS) + 1]
    return cached if last is None else int(last)


def _pg_head(counted: bool) -> str:
    return _sqlite_head(counted).replace("?", "$1")


def _owner_of(row: Sequence[Any]) -> _OwnerRow:
    return _OwnerRow(row[0], row[3], row[4], row[5], bool(row[6]))


def _conv_from_tuple(row: Sequence[Any], sqlite: bool) -> dict[str, Any]:
    d = dict(zip(_CONV_FIELDS, row[: len(_CONV_FIELDS)], strict=True))
    d["is_anonymous"] = bool(d["is_anonymous"])
    if sqlite:
        d["created_at"] = _dt.datetime.fromisoformat(d["created_at"])
        d["updated_at"] = _dt.datetime.fromisoformat(d["updated_at"])
        if d["metadata"] is not None:
            d["metadata"] = json_loads(d["metadata"])
    d["message_count"] = int(row[len(_CONV_FIELDS)])
    return d


# A group's rows go to the server as one JSON text ($1: an array of the rows, one object each,
# in the order the callers queued them): asyncpg's encoding of an array per column cost the
# store loop more CPU than the rest of a group's Python work.
_PG_RECORDS = (
    "ROWS FROM (json_to_recordset($1::json) AS ("
    "id varchar, conversation_id varchar, parent_message_id varchar, sender varchar, "
    "text text, message_time timestamptz, created_at timestamptz, metadata jsonb, "
    "correlation_id varchar, request_id varchar, run_id varchar, model varchar, "
    "prompt_tokens int, completion_tokens int, total_tokens int)) "
    f"WITH ORDINALITY AS v({_MSG_SELECT}, n)"
)
# Messages of one conversation ($2), stored only if it still has the owner it was checked
# against ($3 to $6): all or nothing, so a stale cached owner inserts no row. Each statement is
# its own transaction: one round trip, committed synchronously.
_PG_OWNED = (
    "SELECT EXISTS (SELECT 1 FROM conversations WHERE id = $2 AND user_id = $3 "
    "AND org_id = $4 AND realm = $5 AND is_anonymous = $6)"
)
_PG_INSERT_ONE = (
    f"INSERT INTO messages ({_MSG_SELECT}) SELECT {_MSG_SELECT} FROM {_PG_RECORDS} "
    f"WHERE v.conversation_id = $2 AND ({_PG_OWNED}) ORDER BY v.n"
)
# The same, with the conversation's state ($8, or NULL) and updated_at ($7) set in the same
# statement: one round trip for the whole group. It holds the conversation's row lock until
# the commit has reached the disk, so it is used only when nothing else of this store waits
# for that lock (see _PGTx.write); its value is the number of rows inserted.
_PG_INSERT_ONE_TOUCH = (
    f"WITH ok AS ({_PG_OWNED} AS ok), "
    f"ins AS (INSERT INTO messages ({_MSG_SELECT}) SELECT {_MSG_SELECT} FROM {_PG_RECORDS} "
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
    "JOIN conversations c ON c.id = o.id AND c.user_id = o.user_id AND c.org_id = o.org_id "
    "AND c.realm = o.realm AND c.is_anonymous = o.is_anonymous) "
    f"INSERT INTO messages ({_MSG_SELECT}) SELECT {_MSG_SELECT} "
    "FROM v WHERE (SELECT count(*) FROM v) = $2 ORDER BY v.n"
)

# A state change goes into the message transaction. Otherwise, when other groups of this store
# are in flight, the conversation's updated_at is moved forward right after the commit, in a
# transaction of its own that does not wait for the disk: a row lock held until a synchronous
# commit would make every writer of a conversation wait for the previous writer's fsync, and a
# lost updated_at (a server crash in that instant) is harmless, unlike a lost message.
_PG_STATE = (
    "UPDATE conversations AS c SET state = v.state "
    "FROM unnest($1::varchar[], $2::varchar[]) AS v(id, state) "
    "WHERE c.id = v.id AND v.state IS NOT NULL AND v.state <> c.state"
)
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:@+=/-]{1,64}").fullmatch
_PG_TOUCH = (
    "UPDATE conversations SET updated_at = GREATEST(updated_at, $1::timestamptz) "
    "WHERE id = ANY($2::varchar[])"
)


class _PGTx:
    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.touch_later: tuple[list[str], _dt.datetime] | None = None

    async def write(
        self,
        rows: list[dict[str, Any]],
        items: list[tuple[str, str | None, Any]],
        now: _dt.datetime,
        alone: bool,
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
                await self.raw.execute(_PG_STATE, [i[0] for i in items], [i[1] for i in items])
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
            if all(_PLAIN_ID(i) for i in ids):
                # one round trip: the values are our own time and ids made only of
                # characters that need no escaping (checked above)
                listed = ", ".join(f"'{i}'" for i in ids)
                await self.raw.execute(
                    "BEGIN; SET LOCAL synchronous_commit TO OFF; "
                    "UPDATE conversations SET updated_at = GREATEST(updated_at, "
                    f"'{now.isoformat()}'::timestamptz) WHERE id IN ({listed}); COMMIT"
                )
            else:
                async with self.raw.transaction():
                    await self.raw.execute("SET LOCAL synchronous_commit TO OFF")
                    await self.raw.execute(_PG_TOUCH, now, ids)
        except Exception as exc:  # the messages are committed; only the list order lags
            logger.debug("hookwire: refreshing conversations.updated_at failed: %r", exc)
            with contextlib.suppress(Exception):
                await self.raw.execute("ROLLBACK")

    async def owners(self, ids: list[str]) -> dict[str, Any]:
        rows = await self.raw.fetch(
            f"SELECT {_OWNER_SELECT} FROM conversations WHERE id = ANY($1::varchar[])", ids
        )
        return {r[0]: _OwnerRow(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows}

    async def parents(self, ids: list[str]) -> dict[str, str]:
        rows = await self.raw.fetch(
            "SELECT id, conversation_id FROM messages WHERE id = ANY($1::varchar[])", ids
        )
        return {r[0]: r[1] for r in rows}

    async def taken(self, ids: list[str]) -> set[str]:
        rows = await self.raw.fetch("SELECT id FROM messages WHERE id = ANY($1::varchar[])", ids)
        return {r[0] for r in rows}


class _CoreTx:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def write(
        self,
        rows: list[dict[str, Any]],
        items: list[tuple[str, str | None, Any]],
        now: _dt.datetime,
        alone: bool,
    ) -> bool:
        await self.insert(rows)
        return await self.touch(items, now) == len(items)

    async def owners(self, ids: list[str]) -> dict[str, Any]:
        c = conversations.c
        result = await self.conn.execute(
            select(c.id, c.realm, c.org_id, c.user_id, c.is_anonymous).where(c.id.in_(ids))
        )
        return {r.id: r for r in result}

    async def parents(self, ids: list[str]) -> dict[str, str]:
        m = messages.c
        result = await self.conn.execute(select(m.id, m.conversation_id).where(m.id.in_(ids)))
        return {r.id: r.conversation_id for r in result}

    async def taken(self, ids: list[str]) -> set[str]:
        m = messages.c
        return set((await self.conn.execute(select(m.id).where(m.id.in_(ids)))).scalars())

    async def insert(self, rows: list[dict[str, Any]]) -> None:
        await self.conn.execute(insert(messages), rows)

    async def touch(self, items: list[tuple[str, str | None, Any]], now: _dt.datetime) -> int:
        c = conversations.c
        count = 0
        for cid, st, o in items:
            result = await self.conn.execute(
                update(conversations)
                .where(
                    c.id == cid,
                    c.user_id == o.user_id,
                    c.org_id == o.org_id,
                    c.realm == o.realm,
                    c.is_anonymous == bool(o.is_anonymous),
                )
                .values(updated_at=now, state=func.coalesce(st, c.state))
            )
            count += result.rowcount
        return count


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


@asynccontextmanager
async def _open_tx(url: str, committed: list[Callable[[], None]]) -> AsyncIterator[Any]:
    """A write transaction on ``url``; once it is committed, the functions the body put in
    ``committed`` are called."""
    if url.startswith("postgresql+asyncpg"):
        async with _pg_connection(url) as raw:
            tx = _PGTx(raw)
            # No transaction around the group: the lookups are reads whose answers the insert
            # re-checks (owner join, foreign keys, primary key), and the write is one
            # all-or-nothing statement (or a transaction of its own, with a state change).
            yield tx
            # before acknowledging, so that a caller who lists conversations next sees it
            await tx.touch()
            for fn in committed:
                fn()
    else:
        async with get_write_engine(url).begin() as conn:
            yield _CoreTx(conn)
        for fn in committed:
            fn()


def _fail(item: _Pending, exc: BaseException, url: str) -> None:
    if isinstance(exc, (StoreError, ValueError)):
        item.settle(exc)
        return
    logger.debug("hookwire: writing a message to %s failed", redact(url), exc_info=exc)
    error = StoreError(f"the message could not be stored in {redact(url)}: {exc}")
    error.__cause__ = exc
    item.settle(error)


def _check_lookup_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"conversation_id must be a non-empty string, not {value!r}")
    return value


def _check_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise InvalidInputError(f"limit must be an integer from 1 to 10000, not {limit!r}")
    return limit


def _encode_conv_cursor(at: _dt.datetime, conversation_id: str) -> str:
    import base64

    raw = orjson.dumps([at.isoformat(timespec="microseconds"), conversation_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_conv_cursor(cursor: Any) -> tuple[_dt.datetime, str] | None:
    import base64
    import binascii

    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, cid = orjson.loads(raw)
        return _dt.datetime.fromisoformat(at), str(cid)
    except (TypeError, ValueError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidInputError(
            f"cursor {cursor!r} is not a cursor list_conversations returned; pass its "
            "next_cursor, or None for the first page"
        ) from None


def _encode_msg_cursor(seq: int) -> str:
    return f"m{seq}"


def _decode_msg_cursor(cursor: Any) -> int | None:
    if cursor is None:
        return None
    if isinstance(cursor, str) and cursor.startswith("m") and cursor[1:].isdigit():
        return int(cursor[1:])
    raise InvalidInputError(
        f"cursor {cursor!r} is not a cursor get_messages returned; pass its next_cursor, "
        "or None for the first page"
    )


def _after_fork_in_child() -> None:
    # Threads do not survive fork: the child starts with fresh stores (new writer threads,
    # new reader pools) instead of waiting forever on the parent's, and without the pauses of
    # the collector that the parent's reads had in progress.
    global _gc_lock, _gc_pausers, _readers_lock
    ConversationStore._shared = {}
    _readers.clear()  # their threads and connections are the parent's
    _readers_lock = threading.Lock()
    _parked.clear()  # the parent's connections
    _parked_used.clear()
    _park_timer.clear()
    ConversationStore._shared_lock = threading.Lock()
    _gc_lock = threading.Lock()
    if _gc_pausers:
        _gc_pausers = 0
        gc.enable()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

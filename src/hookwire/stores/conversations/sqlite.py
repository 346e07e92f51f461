"""The conversation store of an SQLite file: messages written on the store worker of
``hookwire._workers`` on a plain ``sqlite3`` connection, whole conversations read on plain
connections in the thread that asks; everything else through SQLAlchemy Core
(:class:`~.sql.SQLConversationStore`).

Through aiosqlite every statement is a hop between threads, and with the GIL shared those add
up to milliseconds per message. Here a whole group of messages is one ``BEGIN IMMEDIATE`` ...
``COMMIT`` on the worker (:class:`~.batching.SQLiteWriter`), and a read is one transaction in
the caller's thread (sync code) or in its event loop's default executor. ``BEGIN IMMEDIATE``
with a busy timeout makes writers in other processes queue instead of failing.

The statements are put together from fixed column names and ``?`` marks (one per value);
values always go as parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import functools
import os
import sqlite3
import threading
from typing import Any, Final

import orjson
from sqlalchemy.engine import make_url

from ..._workers import at_loop_exit
from ...errors import HookwireError
from .. import runner
from ..engine import SQLITE_BUSY_SECONDS, SQLITE_PRAGMAS, schema_ready
from ..schema import SENDERS
from .api import Owner
from .batching import Pending, SQLiteWriter
from .ownership import OwnerRow, Row, StaleCacheError, Touch, plan
from .reading import (
    MESSAGE_COLUMNS,
    MESSAGE_SELECT,
    MessageCache,
    finish_read,
    fresh,
    gc_paused,
    head_select,
    reuse_cached,
)
from .sql import SQLConversationStore
from .validation import check_lookup_id, conversation_row, id_taken, message_row, not_found

__all__ = ["SCHEMA_WAIT", "SQLiteConversationStore", "sqlite_file"]

#: Seconds a new store waits for a new (or older) file's schema to be set up.
SCHEMA_WAIT = 10.0

_UTC = _dt.timezone.utc


def sqlite_file(url: str) -> str | None:
    """The file of an SQLite URL (``None`` for in-memory databases)."""
    database = make_url(url).database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def _iso(value: _dt.datetime) -> str:
    return value.isoformat(timespec="microseconds")


def _dumps(value: Any) -> str | bytes | None:
    if value is None:
        return None
    encoded = orjson.dumps(value)
    # A column declared JSON has numeric affinity: SQLite would turn the text of a bare
    # number into a number of its own (3.0 into 3). A BLOB keeps the text as it is.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return encoded
    return encoded.decode()


_CONVERSATION_INSERT = (
    "INSERT INTO conversations (id, realm, org_id, user_id, is_anonymous, name, agent_title, "
    "state, model, metadata, correlation_id, request_id, created_at, updated_at) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_OWNER_SELECT = "SELECT id, realm, org_id, user_id, is_anonymous FROM conversations WHERE id IN "
_INSERT = f"INSERT INTO messages ({MESSAGE_SELECT}) VALUES ({','.join('?' * len(MESSAGE_COLUMNS))})"


def _marks(ids: list[str]) -> str:
    """``(?,?,...)``: one parameter mark per id."""
    return "(" + ",".join("?" * len(ids)) + ")"


class _SQLiteTx:
    """The write statements on a plain ``sqlite3`` connection (on the store worker)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def owners(self, ids: list[str]) -> dict[str, Any]:
        rows = self.conn.execute(_OWNER_SELECT + _marks(ids), ids).fetchall()
        return {r[0]: OwnerRow(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows}

    def parents(self, ids: list[str]) -> dict[str, str]:
        rows = self.conn.execute(
            "SELECT id, conversation_id FROM messages WHERE id IN " + _marks(ids), ids
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def taken(self, ids: list[str]) -> set[str]:
        rows = self.conn.execute("SELECT id FROM messages WHERE id IN " + _marks(ids), ids)
        return {r[0] for r in rows.fetchall()}

    def insert(self, rows: list[Row]) -> None:
        self.conn.executemany(
            _INSERT,
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

    def create(self, row: dict[str, Any], now: _dt.datetime) -> None:
        at = _iso(now)
        self.conn.execute(
            _CONVERSATION_INSERT,
            (
                row["id"],
                row["realm"],
                row["org_id"],
                row["user_id"],
                bool(row["is_anonymous"]),
                row["name"],
                row["agent_title"],
                row["state"],
                row["model"],
                _dumps(row["metadata"]),
                row["correlation_id"],
                row["request_id"],
                at,
                at,
            ),
        )

    def touch(self, items: list[Touch], now: _dt.datetime) -> int:
        at = _iso(now)
        cursor = self.conn.executemany(
            "UPDATE conversations SET updated_at = ?, state = COALESCE(?, state), "
            "message_count = message_count + ? "
            "WHERE id = ? AND user_id = ? AND org_id = ? AND realm = ? AND is_anonymous = ?",
            [
                (at, st, n, cid, o.user_id, o.org_id, o.realm, bool(o.is_anonymous))
                for cid, st, o, n in items
            ],
        )
        return int(cursor.rowcount)


def _sqlite_connect(path: str, detect_types: int = 0) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        timeout=SQLITE_BUSY_SECONDS,
        detect_types=detect_types,
    )
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    return conn


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
_DETAIL_COLUMNS = (
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
_DETAIL_COLUMNS_NO_JSON = (
    'id AS "id [hookwire_text]", parent_message_id AS "p [hookwire_text]", '
    'sender AS "s [hookwire_sender]", text, message_time AS "at [hookwire_text]", '
    "metadata, run_id, model, prompt_tokens, completion_tokens, total_tokens"
)


_DETAIL_SELECT = f"SELECT {_DETAIL_COLUMNS} FROM messages WHERE conversation_id = ?"
_DETAIL_SELECT_NO_JSON = f"SELECT {_DETAIL_COLUMNS_NO_JSON} FROM messages WHERE conversation_id = ?"
_HEAD = head_select(counted=False, placeholder="?")
_HEAD_COUNTED = head_select(counted=True, placeholder="?")


def _sqlite_has_json(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT json_array(1)").fetchone()
    except sqlite3.OperationalError:
        return False
    return True


#: A message's run columns when it came from no run.
_NO_RUN: Final = (None, None, None, None, None)


def _build_sqlite(rows: list[Any]) -> list[dict[str, Any]]:
    """Message dicts from rows of ``_DETAIL_COLUMNS`` (as :func:`_build`; an empty
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
            "metadata": loads(meta) if meta.__class__ is str or meta.__class__ is bytes else meta,
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
    """Reads of whole conversations on plain ``sqlite3`` connections, in the thread that asks.

    One per database file and process (:func:`_sqlite_reader`), shared by its stores: a new
    store then opens no connection (with SQLite's schema and page cache to load again),
    about 1.5 ms of a cold read. A kept connection is as fresh as a new one: each read is its
    own transaction, so it sees every commit made before it (WAL mode: one snapshot per read,
    whoever the writer). A connection is opened again when the file at the path is no longer
    the one it opened (deleted, or replaced by another).

    Connections are lent, one per read at a time, from a few kept idle (not one per thread:
    the threads that read are the app's, and a connection left in a thread that ended would
    never be closed); all are closed at exit.
    """

    #: Idle connections kept for the next reads; more are opened while reads overlap.
    KEEP = 2

    def __init__(self, path: str) -> None:
        self.path = path
        self._idle: list[tuple[sqlite3.Connection, tuple[int, int]]] = []
        self._lock = threading.Lock()
        self.json = True

    def _file(self) -> tuple[int, int] | None:
        try:
            return _file_id(self.path)
        except OSError:
            return None  # gone: a connection opens (or fails) as a new store's would

    def _take(self) -> tuple[sqlite3.Connection, tuple[int, int]]:
        file = self._file()
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn, opened = self._idle.pop()
            if file is not None and file == opened:
                return conn, opened
            _close(conn)  # the file it read is not the one at the path any more
        conn = _sqlite_connect(self.path, sqlite3.PARSE_COLNAMES)
        try:
            self.json = _sqlite_has_json(conn)
            return conn, file if file is not None else _file_id(self.path)
        except BaseException:
            _close(conn)
            raise

    def _give_back(self, conn: sqlite3.Connection, file: tuple[int, int]) -> None:
        with self._lock:
            if len(self._idle) < self.KEEP:
                self._idle.append((conn, file))
                return
        _close(conn)

    def close(self) -> None:
        """Close the idle connections (a read lends itself a new one)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            _close(conn)

    def details(
        self, owner: Owner | None, conversation_id: str, cache: MessageCache
    ) -> dict[str, Any]:
        conn, file = self._take()
        try:
            with gc_paused():
                details = self._details(conn, owner, conversation_id, cache)
        except BaseException:
            _close(conn)  # in an unknown state: not lent again
            raise
        self._give_back(conn, file)
        return details

    def _details(
        self,
        conn: sqlite3.Connection,
        owner: Owner | None,
        conversation_id: str,
        cache: MessageCache,
    ) -> dict[str, Any]:
        entry = cache.get(conversation_id)
        select = _DETAIL_SELECT if self.json else _DETAIL_SELECT_NO_JSON
        conn.execute("BEGIN")
        try:
            head = conn.execute(
                _HEAD_COUNTED if entry is not None else _HEAD, (conversation_id,)
            ).fetchone()
            created, count, base, last = reuse_cached(head, owner, conversation_id, cache, entry)
            after = select + " AND seq > ? ORDER BY seq"
            rows = conn.execute(after, (conversation_id, last)).fetchall()
            if count is not None and len(base) + len(rows) != count:
                base, last = [], 0
                rows = conn.execute(select + " ORDER BY seq", (conversation_id,)).fetchall()
        finally:
            conn.execute("COMMIT")
        details, msgs = finish_read(head, conversation_id, cache, created, last, base, rows, True)
        details["messages"] = _build_sqlite(msgs) if self.json else fresh(msgs, parse_time=True)
        return details


def _close(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.close()


def _file_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


_readers: dict[str, _SQLiteReader] = {}
_readers_lock = threading.Lock()


def _sqlite_reader(path: str) -> _SQLiteReader:
    """The process's reader of the SQLite file ``path``."""
    with _readers_lock:
        reader = _readers.get(path)
        if reader is None:
            reader = _readers[path] = _SQLiteReader(path)
        return reader


async def _close_readers() -> None:
    for reader in list(_readers.values()):
        reader.close()


at_loop_exit(_close_readers)


class SQLiteConversationStore(SQLConversationStore):
    """Chat history in an SQLite file (see the module): messages through the store's writer
    queue, whole conversations through the process's reader of the file."""

    def _start(self) -> None:
        super()._start()
        path = sqlite_file(self.url)
        if path is None:
            raise ValueError(f"{self.url!r} names no SQLite file; use SQLConversationStore")
        self._writer = SQLiteWriter(
            self.url, lambda: _sqlite_connect(path), self._write_group, self._cache.clear
        )
        self._reader = _sqlite_reader(path)
        self._enqueue = self._writer.add
        # Set up a new (or older) file's schema now, while threads can still be started:
        # SQLAlchemy's aiosqlite connections need one each, and a store first used at exit
        # (a script that records and ends) gets none on Python 3.12. Errors are the first
        # call's to report.
        if not runner.in_store_loop() and not schema_ready(self.url, runner.get_loop()):
            with contextlib.suppress(Exception):
                self._ready_sync(SCHEMA_WAIT)

    async def create_conversation(
        self, owner: Owner, *, exist_ok: bool = False, **fields: Any
    ) -> str:
        """As :meth:`SQLConversationStore.create_conversation`, written by the store's writer
        queue on its plain connection: in turn with the messages, and with no aiosqlite
        connection to open (which needs a thread of its own, refused at exit on 3.12)."""
        row = conversation_row(owner, **fields)
        await self._ready()
        try:
            return await self._writer.call(
                functools.partial(self._create_conversation, owner, row, exist_ok)
            )
        except (HookwireError, ValueError):
            raise
        except Exception as exc:
            raise self._failed(exc) from exc

    def _create_conversation(
        self, owner: Owner, row: dict[str, Any], exist_ok: bool, conn: sqlite3.Connection
    ) -> str:
        tx = _SQLiteTx(conn)
        cid = str(row["id"])
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = tx.owners([cid]).get(cid)  # under the write lock: nobody creates it now
            if found is None:
                tx.create(row, _dt.datetime.now(_UTC))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        if found is None:
            return cid
        if not exist_ok:
            raise id_taken(cid)
        if not owner.sees(found):
            raise not_found(cid)
        return cid

    def add_message_sync(
        self, owner: Owner | None, *args: Any, timeout: float | None = 60.0, **fields: Any
    ) -> str:
        """:meth:`add_message` for sync code: the message goes to the writer queue from the
        calling thread, without a hop to the store loop."""
        self._check_fork()
        row, state = message_row(*args, **fields)
        self._ready_sync(timeout)
        explicit = fields.get("message_id") is not None
        return self._writer.add_sync(owner, row, explicit, state, timeout)

    def _write_group(self, conn: sqlite3.Connection, batch: list[Pending], trust: bool) -> None:
        """One group's transaction on the store worker (``SQLConversationStore._write_batch``
        on a plain connection: the same steps, without a hop per statement)."""
        now = _dt.datetime.now(_UTC)
        tx = _SQLiteTx(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            owners, missing_c, parents, missing_p, explicit = self._cache.known(batch, trust)
            if missing_c:
                owners.update(tx.owners(missing_c))
            if missing_p:
                parents.update(tx.parents(missing_p))
            taken = tx.taken(explicit) if explicit else set()
            results, rows, items = plan(batch, owners, parents, taken, now)
            if rows:
                tx.insert(rows)
                if tx.touch(items, now) != len(items):
                    raise StaleCacheError
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        self._cache.learn(owners, results)
        for p, outcome in results:
            p.settle(outcome)

    async def get_conversation_details(
        self, owner: Owner | None, conversation_id: str
    ) -> dict[str, Any]:
        conversation_id = check_lookup_id(conversation_id)
        await self._ready()
        reader = self._reader
        loop = asyncio.get_running_loop()
        try:
            # In the caller loop's default executor: a read blocks for as long as it takes,
            # and the store loop serves every other store of the process meanwhile.
            return await loop.run_in_executor(
                None, reader.details, owner, conversation_id, self._messages
            )
        except (HookwireError, ValueError):
            raise
        except Exception as exc:
            raise self._failed(exc) from exc

    def get_conversation_details_sync(
        self, owner: Owner | None, conversation_id: str, timeout: float | None = 60.0
    ) -> dict[str, Any]:
        """:meth:`get_conversation_details` for sync code. Once this process has checked the
        file's schema, it is read in the calling thread: the hops to the store loop and an
        executor thread and back cost about 0.17 ms, more than reading a short conversation."""
        conversation_id = check_lookup_id(conversation_id)
        self._check_fork()
        if runner.in_store_loop() or not (  # run_sync names the mistake
            self._schema_ok or schema_ready(self.url, runner.get_loop())
        ):
            return runner.run_sync(self.get_conversation_details(owner, conversation_id), timeout)
        self._schema_ok = True
        try:
            return self._reader.details(owner, conversation_id, self._messages)
        except (HookwireError, ValueError):
            raise
        except Exception as exc:
            raise self._failed(exc) from exc


# Connections inherited through fork stay the parent's: kept referenced, neither used nor
# closed (closing one could end the parent's WAL session on the file).
_INHERITED: list[_SQLiteReader] = []


def _after_fork_in_child() -> None:
    global _readers_lock
    _INHERITED.extend(_readers.values())
    _readers.clear()
    _readers_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

"""Group commit: messages written concurrently are committed together, each caller still
getting its own outcome (its id, or its own error) once its group is durable.

Two mechanisms, one per way a backend writes:

- :class:`LoopBatcher`, per store, on the store loop (``hookwire.stores.runner``): while one
  group's transaction commits, the messages that arrive queue up and go into the next group;
  a few groups may be in flight at once (PostgreSQL), so their commits overlap.
- :class:`SQLiteWriter`, per SQLite store: a queue of ``hookwire._workers`` whose worker
  writes a whole group per transaction on a plain ``sqlite3`` connection, and wakes each
  caller's loop (or thread) once, when its message is committed.

Both keep the same rules: a group holds at most :data:`MAX_BATCH` messages; a group that
fails is retried once with fresh lookups (a cached owner may be stale), then message by
message, so one bad message never fails its neighbours. The write itself (lookups, the
ownership rule, the statements) is the backend's, passed in as a function.

A caller that stops waiting (a sync call's timeout, a cancelled task) withdraws its message
(:meth:`Pending.withdraw`) unless a transaction has already taken it in
(:meth:`Pending.take`, called by the write once it holds the database's lock, right before
the insert): a message is then either committed for a caller who gets its id, or never
written. A sync caller whose message was already taken waits for that transaction to end
(:func:`wait_sync`, :meth:`LoopBatcher.add_within`), and only if even that does not finish
in time gets a ``StoreError`` naming the message id to send it again with, which the store
refuses to store twice.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..._workers import BackgroundQueue, at_loop_exit
from ...errors import StoreError
from .. import runner
from ..engine import redact

if TYPE_CHECKING:
    from .api import Owner

__all__ = [
    "MAX_BATCH",
    "STORE_WORKER",
    "Attempts",
    "Job",
    "LoopBatcher",
    "Pending",
    "SQLiteConnection",
    "SQLiteWriter",
    "fail",
    "settle_all",
    "settle_future",
    "settler",
    "unsettled_error",
    "wait_sync",
    "withdrawn_error",
]

logger = logging.getLogger("hookwire")

#: At most this many messages go into one transaction.
MAX_BATCH = 512

Settle = Callable[[str | BaseException], None]


# What a caller and a write agree on, under one lock: a message is taken into a transaction
# or withdrawn by its caller, never both.
_QUEUED, _TAKEN, _WITHDRAWN = 0, 1, 2
_CLAIM = threading.Lock()


@dataclass(slots=True)
class Pending:
    """A validated message waiting for its group, and how to tell its caller the outcome."""

    owner: Owner | None
    row: dict[str, Any]
    explicit_id: bool
    state: str | None
    settle: Settle = field(repr=False)
    #: the caller's event loop when it is another thread's, and ``settle`` run on it
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    settle_local: Settle | None = field(default=None, repr=False)
    claim: int = field(default=_QUEUED, repr=False)

    def take(self) -> bool:
        """Take the message into the transaction being written (again, on a retry of its
        group); ``False`` if its caller withdrew it: it is then not written."""
        with _CLAIM:
            if self.claim == _WITHDRAWN:
                return False
            self.claim = _TAKEN
            return True

    def withdraw(self) -> bool:
        """The caller stops waiting: withdraw the message unless a transaction has taken
        it; whether it was withdrawn (and so will never be stored)."""
        with _CLAIM:
            if self.claim == _TAKEN:
                return False
            self.claim = _WITHDRAWN
            return True


def withdrawn_error(url: str, timeout: float | None) -> StoreError:
    """What a caller whose message was withdrawn after ``timeout`` is told."""
    return StoreError(
        f"storing the message in {redact(url)} did not finish within {timeout} s, so it was "
        "withdrawn: nothing was stored, and sending it again stores it once (the database "
        "may be locked by another process, or unreachable)"
    )


def unsettled_error(url: str, timeout: float | None, message_id: str) -> StoreError:
    """What a caller is told whose message was being committed when even the second wait of
    ``timeout`` ran out."""
    return StoreError(
        f"storing the message in {redact(url)} did not finish within {timeout} s, and it was "
        f"already being committed: it may be stored, as message {message_id!r}. Send it again "
        f"with message_id={message_id!r}: an id is stored once (a second one is refused with "
        "InvalidInputError, which then means it was stored)"
    )


def wait_sync(
    item: Pending, done: concurrent.futures.Future[str], timeout: float | None, url: str
) -> str:
    """Wait for ``item``'s outcome from sync code: its id, or its error; after ``timeout``,
    withdraw it, or if a transaction has it, wait up to ``timeout`` more for that one."""
    try:
        return done.result(timeout)
    except concurrent.futures.TimeoutError:  # not the builtin TimeoutError before 3.11
        if item.withdraw():
            raise withdrawn_error(url, timeout) from None
    try:
        return done.result(timeout)
    except concurrent.futures.TimeoutError:
        raise unsettled_error(url, timeout, str(item.row["id"])) from None


def _resolve(future: asyncio.Future[str] | concurrent.futures.Future[str], outcome: Any) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def settle_future(done: concurrent.futures.Future[str]) -> Settle:
    """A function that resolves ``done`` (a thread's future) with an id or an exception."""
    return functools.partial(_resolve, done)


@dataclass(slots=True)
class Job:
    """Other work for a writer's connection (creating a conversation), taking its turn
    between the groups of messages; ``run(conn)`` gives the outcome ``settle`` is told."""

    run: Callable[[sqlite3.Connection], str]
    settle: Settle = field(repr=False)


def settler(future: asyncio.Future[str], loop: asyncio.AbstractEventLoop | None) -> Settle:
    """A function that resolves ``future`` with an id or an exception, from any thread when
    ``loop`` is given."""

    settle_here = functools.partial(_resolve, future)
    if loop is None:
        return settle_here

    def settle_there(outcome: str | BaseException) -> None:
        # a closed loop (RuntimeError) has nobody waiting any more
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle_here, outcome)

    return settle_there


def settle_all(results: list[tuple[Pending, str | BaseException]]) -> None:
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


def _run_settles(calls: list[tuple[Settle, Any]]) -> None:
    for settle, outcome in calls:
        settle(outcome)


def fail(item: Pending, exc: BaseException, url: str) -> None:
    """Give ``item``'s caller the error its write ended with (a database's own, named)."""
    if isinstance(exc, (StoreError, ValueError)):
        item.settle(exc)
        return
    logger.debug("hookwire: writing a message to %s failed", redact(url), exc_info=exc)
    error = StoreError(f"the message could not be stored in {redact(url)}: {exc}")
    error.__cause__ = exc
    item.settle(error)


class Attempts:
    """The writes that commit a group, in order, for a writer that blocks or one that awaits.

    Iterating gives ``(items, trust_cache)`` to write in one transaction (which settles its
    callers once committed); after one fails, :meth:`failed` decides what comes next: the
    same items again with fresh lookups (a cached owner may be stale, or a conversation or
    parent was deleted by another process), then message by message, so one bad message
    never fails its neighbours; a message that fails alone gets its own error.
    """

    def __init__(self, batch: list[Pending], forget: Callable[[], None], url: str) -> None:
        self._forget = forget
        self._url = url
        self._next: collections.deque[tuple[list[Pending], bool]] = collections.deque(
            [(batch, True)]
        )
        self._current: tuple[list[Pending], bool] = (batch, True)

    def __iter__(self) -> Attempts:
        return self

    def __next__(self) -> tuple[list[Pending], bool]:
        if not self._next:
            raise StopIteration
        self._current = self._next.popleft()
        return self._current

    def failed(self, exc: BaseException) -> None:
        """The last write given failed with ``exc``."""
        items, trusted = self._current
        if trusted:
            self._forget()
            self._next.append((items, False))
        elif len(items) == 1:
            fail(items[0], exc, self._url)
        else:
            self._next.extend(([item], False) for item in items)


#: ``write(batch, trust_cache, alone)``: one group's transaction (``alone``: no other group of
#: the store is being written).
AsyncWrite = Callable[[Sequence[Pending], bool, bool], Awaitable[None]]


class LoopBatcher:
    """One store's group commit on the store loop.

    ``write`` writes a group in one transaction and settles its callers once it is committed;
    ``forget`` clears the store's cached lookups; ``max_inflight`` groups may be written at
    once.
    """

    def __init__(
        self, url: str, write: AsyncWrite, forget: Callable[[], None], max_inflight: int
    ) -> None:
        self.url = url
        self._write = write
        self._forget = forget
        self.max_inflight = max_inflight
        self._pending: list[Pending] = []
        self.drainers = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[str] = set()
        self.restart()

    def restart(self) -> None:
        """Forget the messages waiting on callers' loops (a forked child has none of them)."""
        # messages waiting on a caller's loop to be handed to the store loop together
        self._outbox: dict[asyncio.AbstractEventLoop, list[Pending]] = {}

    async def add(
        self, owner: Owner | None, row: dict[str, Any], explicit: bool, state: str | None
    ) -> str:
        """Queue a message for the next group; its id once that group is committed."""
        loop = asyncio.get_running_loop()
        if runner.in_store_loop():
            future: asyncio.Future[str] = loop.create_future()
            item = Pending(owner, row, explicit, state, settler(future, None))
            self._accept([item])
            return await _withdrawn_if_cancelled(item, future)
        waiter: asyncio.Future[str] = loop.create_future()
        item = Pending(owner, row, explicit, state, settler(waiter, loop))
        item.loop, item.settle_local = loop, settler(waiter, None)
        self._hand_over(loop, item)
        return await _withdrawn_if_cancelled(item, waiter)

    async def add_within(
        self,
        timeout: float | None,
        owner: Owner | None,
        row: dict[str, Any],
        explicit: bool,
        state: str | None,
    ) -> str:
        """:meth:`add` for a sync caller, run on the store loop, that waits ``timeout``: then
        the message is withdrawn, or if a transaction has it, waited for ``timeout`` more."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        item = Pending(owner, row, explicit, state, settler(future, None))
        self._accept([item])
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except (TimeoutError, asyncio.TimeoutError):  # one class from 3.11 on
            if item.withdraw():
                future.cancel()
                raise withdrawn_error(self.url, timeout) from None
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except (TimeoutError, asyncio.TimeoutError):
            future.cancel()  # nobody waits for its outcome now
            raise unsettled_error(self.url, timeout, str(item.row["id"])) from None

    # Messages sent from another event loop reach the store loop in one hop per loop
    # iteration, not one each: the writers a committed group wakes up send their next
    # messages in the same iteration, and those then go into one group again. One hop per
    # message would let the first of them start a group of its own, and split the rest.
    def _hand_over(self, loop: asyncio.AbstractEventLoop, item: Pending) -> None:
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
                fail(item, exc, self.url)

    def _accept(self, items: list[Pending]) -> None:
        """Queue messages for the next group (on the store loop)."""
        self._pending.extend(items)
        if self.drainers < self.max_inflight:
            self.drainers += 1
            task = asyncio.get_running_loop().create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[Pending]:
        # A message whose parent is in a group not committed yet waits for that group.
        batch: list[Pending] = []
        keep: list[Pending] = []
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
        # Group commit: everything queued while transactions run goes into the next one.
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
            self.drainers -= 1

    async def _drain_one(self, batch: list[Pending]) -> None:
        attempts = Attempts(batch, self._forget, self.url)
        for items, trust in attempts:
            try:
                await self._write(items, trust, self.drainers <= 1)
            except Exception as exc:
                attempts.failed(exc)


async def _withdrawn_if_cancelled(item: Pending, future: asyncio.Future[str]) -> str:
    # A caller cancelled before its message was taken withdraws it; once taken, the
    # transaction goes on and commits it (pass message_id= to send such a message again).
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        item.withdraw()
        future.cancel()  # nobody waits for its outcome now (an error would go unretrieved)
        raise


#: ``write(conn, batch, trust_cache)``: one group's transaction on the writer's connection,
#: settling its callers once it is committed.
SyncWrite = Callable[[sqlite3.Connection, list[Pending], bool], None]

# Store writes get a worker of their own: a group commit waits on the disk (and on other
# processes holding SQLite's write lock, up to the busy timeout), and on the shared worker that
# would hold up every background handler of the process (FileLog, OTel) behind it.
STORE_WORKER = "hookwire-store"


class SQLiteConnection:
    """A plain ``sqlite3`` connection opened on first use, by whoever uses it first (the
    store worker), and closed when the store goes or the process ends."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._conn: sqlite3.Connection | None = None
        #: held while the connection is used (the exit hook closes it only when it is not)
        self.in_use = threading.RLock()
        _OPEN.add(self)

    def get(self) -> sqlite3.Connection:
        """The connection, opened now if it is not open."""
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        """Close the connection (the next :meth:`get` opens another)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def close_if_idle(self) -> None:
        """:meth:`close`, unless a write that outlived the exit drain still uses it."""
        if self.in_use.acquire(blocking=False):
            try:
                self.close()
            finally:
                self.in_use.release()


# Every writer's connection, closed at exit after the queues are drained.
_OPEN: weakref.WeakSet[SQLiteConnection] = weakref.WeakSet()


async def _close_all() -> None:
    for holder in list(_OPEN):
        holder.close_if_idle()


at_loop_exit(_close_all)

# Connections inherited through fork stay the parent's: kept referenced, neither used nor
# closed (closing one could end the parent's WAL session on the file).
_INHERITED: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    for holder in list(_OPEN):
        if holder._conn is not None:
            _INHERITED.append(holder._conn)
            holder._conn = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SQLiteWriter:
    """A SQLite database's messages written on the store worker, a group per transaction.

    Through aiosqlite every statement is a round trip between threads, and with the GIL
    shared those add up to milliseconds per message. Here a whole group runs in one
    ``handle`` call of a :class:`~hookwire._workers.BackgroundQueue` (``write``, on a
    connection ``connect`` opens there), and each caller's loop (or thread) is woken once,
    when its message is committed.
    """

    def __init__(
        self,
        url: str,
        connect: Callable[[], sqlite3.Connection],
        write: SyncWrite,
        forget: Callable[[], None],
    ) -> None:
        self.url = url
        self._write = write
        self._forget = forget
        self._conn = SQLiteConnection(connect)
        # No linger: a group is whatever queued while the previous one committed, and a
        # lone sync writer must not wait for company. No bound of its own: every item has
        # a caller waiting for it, so the callers bound the queue.
        self._queue: BackgroundQueue[Pending | Job] = BackgroundQueue(
            f"history writer {redact(url)}",
            self._handle,
            maxsize=1 << 30,
            linger=0.0,
            max_batch=MAX_BATCH,
            worker=STORE_WORKER,
        )
        # The holder, not the writer: a finalizer referencing the writer would keep it alive.
        finalizer = weakref.finalize(self, self._conn.close)
        finalizer.atexit = False  # at exit, _close_all runs after the queues are drained

    async def add(
        self, owner: Owner | None, row: dict[str, Any], explicit: bool, state: str | None
    ) -> str:
        """Queue a message from an event loop; its id once its group is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        item = Pending(owner, row, explicit, state, settler(future, loop))
        await self._queue.aput(item)
        return await _withdrawn_if_cancelled(item, future)

    def add_sync(
        self,
        owner: Owner | None,
        row: dict[str, Any],
        explicit: bool,
        state: str | None,
        timeout: float | None,
    ) -> str:
        """Queue a message from sync code and wait for its commit (see :func:`wait_sync`:
        after ``timeout`` it is withdrawn unless a transaction has it)."""
        done: concurrent.futures.Future[str] = concurrent.futures.Future()
        item = Pending(owner, row, explicit, state, settle_future(done))
        self._queue.put(item)
        return wait_sync(item, done, timeout, self.url)

    async def call(self, run: Callable[[sqlite3.Connection], str]) -> str:
        """``run(conn)`` on the writer's connection, in turn with the messages queued before."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        await self._queue.aput(Job(run, settler(future, loop)))
        return await future

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every message queued so far is written; False if ``timeout`` ran out."""
        return self._queue.flush(timeout)

    def _handle(self, batch: list[Pending | Job]) -> None:
        group: list[Pending] = []
        with self._conn.in_use:
            for item in batch:
                if isinstance(item, Job):
                    self._write_group(group)
                    group = []
                    self._run(item)
                else:
                    group.append(item)
            self._write_group(group)

    def _write_group(self, group: list[Pending]) -> None:
        if not group:
            return
        try:
            self._process(self._conn.get(), group)
        except BaseException as exc:
            # Every caller gets an outcome; a connection that failed is not trusted again.
            for item in group:
                fail(item, exc, self.url)
            self._conn.close()
            if not isinstance(exc, Exception):
                raise  # SystemExit and the like: the queue counts and logs them

    def _run(self, job: Job) -> None:
        try:
            outcome = job.run(self._conn.get())
        except BaseException as exc:
            job.settle(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            job.settle(outcome)

    def _process(self, conn: sqlite3.Connection, batch: list[Pending]) -> None:
        attempts = Attempts(batch, self._forget, self.url)
        for items, trust in attempts:
            try:
                self._write(conn, items, trust)
            except Exception as exc:
                attempts.failed(exc)

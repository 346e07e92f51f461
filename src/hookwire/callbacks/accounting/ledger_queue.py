"""The ledger's queue: usage rows and budget releases recorded in the background, in batches.

Accounting has no writer of its own. Every handler writing to one ledger (``UsageLedger``
objects are shared per URL by ``UsageLedger.for_url``) puts its rows on the same
``hookwire._workers.BackgroundQueue``, whose ``handle(batch)`` records up to 1,000 of them in
one transaction on the store loop: what makes the ledger fast is rows written many per
transaction, so one queue per ledger (not per handler) gathers the most rows per write. The
handler builds a row in ``on_llm_end`` (pricing is cached: about a microsecond) and only
appends it; the budget check stays inline, in ``on_llm_start``. ``on_llm_end`` itself is not
put in the background (``run_in_background``): building the row is cheaper than a hop, and
what it does besides must happen before the call returns (the run that ``call_accounting``
pairs with, a lease's call ending before the lease's release is queued behind its row).

The queue's batches are handled on a worker of their own name (``hookwire-ledger``): a
database that cannot take the rows now (restarting, locked) is retried with a backoff inside
``handle``, keeping the rows and their order, and that wait must not hold up the other
queues of the shared worker (log files, conversation stores). A batch that fails otherwise
is written row by row, so that a row the database refuses itself (too long, out of range) is
dropped alone (counted, logged once) and never holds up the rows behind it (``failure_kind``
tells the two apart). While the database is down the queue keeps at most
``HOOKWIRE_LEDGER_MAX_PENDING`` rows (:data:`MAXSIZE`); beyond that a row is dropped and
counted at once, so that an outage bounds both the memory held and the app's wait.

Fork, exit and failure are the shared mechanism's: a forked child starts with an empty queue
(the parent's rows are the parent's to write), and the queues are drained at exit within
``hookwire._workers.EXIT_TIMEOUT`` on every Python. One thing is ours: from Python 3.12 on,
atexit runs after the interpreter refuses new threads, and aiosqlite needs one per connection.
So the ledger is opened (``UsageLedger.open``: a pooled connection) as soon as the queue is
made, and the first row waits for that open (a bounded wait, once per process and ledger): a
script that records a call and exits then has a connection to write its rows with (a forked
child's first row opens the ledger anew, on the child's own loop). The handler's own exit hook
only gives its budget leases back, before that drain, which writes the releases too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import os
import sqlite3
import threading
import time
from typing import Final

from ..._logonce import LogOnce
from ..._workers import BackgroundQueue, past_exit_deadline
from ...errors import ConfigurationError, StoreError
from ...stores import runner
from ...stores.ledger import UsageLedger, UsageRecord

__all__ = ["Failure", "LedgerQueue", "failure_kind", "ledger_queue", "max_pending"]

logger = logging.getLogger("hookwire")

#: Rows (and releases) written per transaction at most.
BATCH: Final = 1000
#: Items queued at most, by default (``HOOKWIRE_LEDGER_MAX_PENDING`` sets it). A row takes
#: about 0.5 to 1 KB (1.04 KB measured with tracemalloc for a row with six ids), so at most
#: about 100 MB are held while the database is down.
MAXSIZE: Final = 100_000
#: Seconds a row waits for room in a full queue while the database is taking rows (then it is
#: dropped and counted); while writes fail, or one has been running longer than this, a row
#: that finds the queue full is dropped at once: the app's call never waits for an outage.
PUT_WAIT: Final = 1.0
#: Seconds one write may take before it is given up and retried (a database that stopped
#: answering): rows are idempotent by run id, so a write that did commit is not counted twice.
WRITE_TIMEOUT: Final = 30.0
#: Seconds the first row waits for the ledger to be open (see the module).
OPEN_WAIT: Final = 5.0

Item = UsageRecord | str  # a row to write, or the run id of a reservation to release

# By the ledger's id: a queue holds its ledger, so both live as long as the process (as the
# ledger of a URL does in ``UsageLedger.for_url``), and ids are not reused meanwhile.
_QUEUES: dict[int, LedgerQueue] = {}
_QUEUES_LOCK = threading.Lock()


# In a forked child, the parent's open is the parent's: the child's first row opens anew.
_OPEN_AGAIN: concurrent.futures.Future[None] = concurrent.futures.Future()


def _after_fork_in_child() -> None:
    for queue in _QUEUES.values():
        queue._opening = _OPEN_AGAIN


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def max_pending() -> int:
    """The bound of a ledger's queue: ``HOOKWIRE_LEDGER_MAX_PENDING``, else :data:`MAXSIZE`."""
    raw = os.environ.get("HOOKWIRE_LEDGER_MAX_PENDING", "").strip()
    if not raw:
        return MAXSIZE
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigurationError(
            f"HOOKWIRE_LEDGER_MAX_PENDING must be a positive number of usage rows, not {raw!r}"
        )
    return value


def ledger_queue(ledger: UsageLedger) -> LedgerQueue:
    """The queue of ``ledger``, shared by every handler that writes to it."""
    with _QUEUES_LOCK:
        if id(ledger) not in _QUEUES:
            _QUEUES[id(ledger)] = LedgerQueue(ledger)
        return _QUEUES[id(ledger)]


class LedgerQueue:
    """Rows and releases for one ledger, recorded in order, in batches, in the background."""

    def __init__(self, ledger: UsageLedger) -> None:
        self.ledger = ledger
        #: Rows the database refused (dropped, logged once).
        self.refused = 0
        #: Whether the last write failed (its rows are kept and retried).
        self.failing = False
        self._failures = 0
        self._resume = 0  # items of the batch in hand already written (or refused) one by one
        self._writing_since: float | None = None
        self._refused_log = LogOnce()
        self._full_log = LogOnce()
        self._stop = threading.Event()
        self._queue: BackgroundQueue[Item] = BackgroundQueue(
            f"ledger {ledger!r}",
            self._write,
            maxsize=max_pending(),
            # The caller's next budget check, often right after a call's end, then meets
            # neither this write on the database nor its Python for the GIL.
            linger=0.01,
            max_batch=BATCH,
            worker="hookwire-ledger",
        )
        self._opening: concurrent.futures.Future[None] | None = self._open()

    @property
    def dropped(self) -> int:
        """Rows lost: refused by the database, or finding the queue full during an outage."""
        return self.refused + self._queue.dropped

    def _open(self) -> concurrent.futures.Future[None]:
        return asyncio.run_coroutine_threadsafe(self.ledger.open(), runner.get_loop())

    def put(self, item: Item) -> None:
        """Queue a row to write, or the run id of a reservation to release."""
        if self._opening is not None:
            self._wait_open()
        if not self._queue.offer(item, 0.0 if self._stalled() else PUT_WAIT):
            self._full()

    def _stalled(self) -> bool:
        since = self._writing_since
        return self.failing or (since is not None and time.monotonic() - since > PUT_WAIT)

    def _full(self) -> None:
        self._full_log(
            "hookwire: %s is not taking usage rows and its queue is full (%d rows, "
            "HOOKWIRE_LEDGER_MAX_PENDING); rows are dropped and counted until it takes them "
            "again",
            self.ledger,
            self._queue.pending,
        )

    def _wait_open(self) -> None:
        if runner.in_store_loop():
            return  # a release from the loop itself: waiting would block the open
        opening, self._opening = self._opening, None
        if opening is _OPEN_AGAIN:
            opening = self._open()  # in a forked child: on its own loop, its own connection
        try:
            assert opening is not None
            opening.result(OPEN_WAIT)
        except Exception as exc:  # the write reports it (and retries)
            logger.debug("hookwire: opening %s ahead of its rows failed: %r", self.ledger, exc)

    @property
    def pending(self) -> int:
        """Items queued and not yet written (or dropped)."""
        return self._queue.pending

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until what was queued before is written; ``False`` if ``timeout`` ran out
        (or if called on the store loop itself with rows still queued)."""
        if runner.in_store_loop():
            return self.pending == 0  # waiting here would block the write itself
        return self._queue.flush(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        """:meth:`flush` for async code, without blocking the caller's event loop."""
        if runner.in_store_loop():
            return self.pending == 0  # waiting here would block the write itself
        return await self._queue.aflush(timeout)

    async def settle(self, timeout: float) -> None:
        """:meth:`flush` for async code, without blocking the caller's event loop."""
        if self.pending:
            await asyncio.get_running_loop().run_in_executor(None, self.flush, timeout)

    def give_up(self, timeout: float) -> None:
        """Stop retrying for up to ``timeout`` seconds: the rows queued now that cannot be
        written are dropped (logged); rows queued later are retried again."""
        self._stop.set()
        try:
            self._queue.flush(timeout)
        finally:
            self._stop.clear()

    # -- on the ledger's worker ---------------------------------------------------------------

    def _write(self, batch: list[Item]) -> None:
        records = [b for b in batch if isinstance(b, UsageRecord)]
        releases = [b for b in batch if isinstance(b, str)]
        delay = 0.05
        self._writing_since = time.monotonic()
        try:
            while True:
                try:
                    try:
                        runner.run_sync(
                            self.ledger.record(records, release=releases), WRITE_TIMEOUT
                        )
                    except Exception as exc:
                        if failure_kind(exc) is Failure.UNAVAILABLE:
                            raise
                        # Something in the batch is refused (or fails in a way we cannot
                        # tell): write it row by row, so that only such a row is lost.
                        self._one_by_one(batch)
                except Exception as exc:
                    if self._stop.is_set() or past_exit_deadline():
                        self._give_up(batch)
                        break
                    self._failed(len(batch), exc)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                break
        finally:
            self._writing_since = None
        if self.failing:
            logger.warning("hookwire: %s takes usage rows again", self.ledger)
        self.failing = False
        self._failures = 0
        self._full_log.reset()

    def _failed(self, n: int, exc: Exception) -> None:
        # Keep the rows and try again: the database may be restarting, locked or full.
        self.failing = True
        self._failures += 1
        if self._failures == 1:
            logger.error(
                "hookwire: could not write %d usage row(s) to %s; retrying "
                "(further failures are logged at debug level)",
                n,
                self.ledger,
                exc_info=exc,
            )
        else:
            logger.debug("hookwire: writing to %s failed again: %r", self.ledger, exc)

    def _one_by_one(self, batch: list[Item]) -> None:
        """Write ``batch`` an item at a time, dropping the items the database refuses; raise
        (keeping them all for a retry) as soon as it looks unavailable."""
        for item in batch[self._resume :]:
            try:
                if isinstance(item, UsageRecord):
                    runner.run_sync(self.ledger.record([item]), WRITE_TIMEOUT)
                else:
                    runner.run_sync(self.ledger.release([item]), WRITE_TIMEOUT)
            except Exception as exc:
                kind = failure_kind(exc)
                if kind is Failure.UNAVAILABLE or (kind is Failure.UNKNOWN and not self._answers()):
                    raise
                self._refused(item, exc)
            self._resume += 1
        self._resume = 0

    def _answers(self) -> bool:
        """Whether the database answers a read (so an error no rule names was this row's)."""
        try:
            runner.run_sync(self.ledger.records(limit=1), WRITE_TIMEOUT)
        except Exception:
            return False
        return True

    def _refused(self, item: Item, exc: Exception) -> None:
        if not isinstance(item, UsageRecord):
            logger.debug(
                "hookwire: %s could not release reservation %s: %r", self.ledger, item, exc
            )
            return
        self.refused += 1
        self._refused_log(
            "hookwire: %s refuses a usage row (%s); it was dropped and counted, the rows "
            "behind it are written (further refused rows are logged at debug level): %r",
            self.ledger,
            exc,
            item,
        )

    def _give_up(self, batch: list[Item]) -> None:
        lost = sum(1 for b in batch[self._resume :] if isinstance(b, UsageRecord))
        self._resume = 0
        self.refused += lost
        logger.error(
            "hookwire: %s refused writes until the accounting was closed (or the process's "
            "exit ran out of time); %d queued usage row(s) lost",
            self.ledger,
            lost,
        )


class Failure(enum.Enum):
    """Why a write failed, as far as the error says."""

    #: The database cannot take rows now (down, unreachable, locked, full): keep and retry.
    UNAVAILABLE = "unavailable"
    #: The database (or the driver, binding a value) refuses the data itself.
    REFUSED = "refused"
    #: Neither rule applies: a row alone failing so, while the database answers, is refused.
    UNKNOWN = "unknown"


# SQLSTATE classes: 08 connection, 40 rollback (serialization, deadlock), 53 insufficient
# resources (disk full, too many connections), 57 operator intervention (shutdown), 58 I/O;
# 55P03 a lock not available. 22 data exception, 23 integrity constraint violation.
_UNAVAILABLE_STATES = ("08", "40", "53", "57", "58")
_REFUSED_STATES = ("22", "23")


def failure_kind(exc: BaseException) -> Failure:
    """Classify a failed write by its chain of causes (the store's error, SQLAlchemy's, the
    driver's)."""
    from sqlalchemy.exc import (
        DataError,
        DBAPIError,
        DisconnectionError,
        IntegrityError,
        InterfaceError,
        OperationalError,
    )
    from sqlalchemy.exc import (
        TimeoutError as PoolTimeout,
    )

    refused = False
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 16:
        chain.append(seen)
        seen = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__
    for link in chain:
        sqlstate = getattr(link, "sqlstate", None) or getattr(link, "pgcode", None)
        if isinstance(sqlstate, str):
            if sqlstate[:2] in _UNAVAILABLE_STATES or sqlstate == "55P03":
                return Failure.UNAVAILABLE
            if sqlstate[:2] in _REFUSED_STATES:
                refused = True
        if isinstance(link, DBAPIError) and link.connection_invalidated:
            return Failure.UNAVAILABLE
        if isinstance(
            link,
            (
                OperationalError,
                InterfaceError,
                DisconnectionError,
                PoolTimeout,
                OSError,
                TimeoutError,
                asyncio.TimeoutError,
                sqlite3.OperationalError,
                sqlite3.InterfaceError,
            ),
        ):
            return Failure.UNAVAILABLE
        if isinstance(
            link, (DataError, IntegrityError, ArithmeticError, TypeError, ValueError, KeyError)
        ):
            refused = True
    if refused:
        return Failure.REFUSED
    if len(chain) == 1 and isinstance(exc, StoreError):
        return Failure.UNAVAILABLE  # a timeout of the store loop: nothing more to go on
    return Failure.UNKNOWN

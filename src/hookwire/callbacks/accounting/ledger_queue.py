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
queues of the shared worker (log files, conversation stores). A row the database refuses
itself (too long, out of range) is dropped alone (logged): the batch is written row by row.

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
import logging
import os
import threading
from typing import Final

from ..._workers import BackgroundQueue
from ...stores import runner
from ...stores.ledger import UsageLedger, UsageRecord

__all__ = ["LedgerQueue", "ledger_queue"]

logger = logging.getLogger("hookwire")

#: Rows (and releases) written per transaction at most.
BATCH: Final = 1000
#: Items queued at most; a put waits for room beyond that (usage is money: never dropped).
MAXSIZE: Final = 100_000
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
        #: Rows the database refused (dropped, logged).
        self.dropped = 0
        #: Whether the last write failed (its rows are kept and retried).
        self.failing = False
        self._failures = 0
        self._stop = threading.Event()
        self._queue: BackgroundQueue[Item] = BackgroundQueue(
            f"ledger {ledger!r}",
            self._write,
            maxsize=MAXSIZE,
            # The caller's next budget check, often right after a call's end, then meets
            # neither this write on the database nor its Python for the GIL.
            linger=0.01,
            max_batch=BATCH,
            worker="hookwire-ledger",
        )
        self._opening: concurrent.futures.Future[None] | None = self._open()

    def _open(self) -> concurrent.futures.Future[None]:
        return asyncio.run_coroutine_threadsafe(self.ledger.open(), runner.get_loop())

    def put(self, item: Item) -> None:
        """Queue a row to write, or the run id of a reservation to release."""
        if self._opening is not None:
            self._wait_open()
        self._queue.put(item)

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

    def stop(self) -> None:
        """Stop retrying: rows that cannot be written from now on are dropped (logged)."""
        self._stop.set()

    # -- on the ledger's worker ---------------------------------------------------------------

    def _write(self, batch: list[Item]) -> None:
        records = [b for b in batch if isinstance(b, UsageRecord)]
        releases = [b for b in batch if isinstance(b, str)]
        delay = 0.05
        while True:
            try:
                runner.run_sync(self.ledger.record(records, release=releases))
            except Exception as exc:
                if _is_data_error(exc):
                    # The database refuses some row itself (retrying cannot help): write the
                    # batch row by row and drop only the rows it refuses.
                    self._one_by_one(batch)
                elif self._stop.is_set():
                    self._give_up(batch)
                else:
                    self._failed(len(batch), exc)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 5.0)
                    continue
            self.failing = False
            return

    def _failed(self, n: int, exc: Exception) -> None:
        # Keep the rows and try again: the database may be restarting or locked.
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
        for item in batch:
            try:
                if isinstance(item, UsageRecord):
                    runner.run_sync(self.ledger.record([item]))
                else:
                    runner.run_sync(self.ledger.release([item]))
            except Exception as exc:
                if not _is_data_error(exc):
                    raise
                self.dropped += 1
                logger.error(
                    "hookwire: %s dropped a usage row the database refuses (%s): %r",
                    self.ledger,
                    exc,
                    item,
                )

    def _give_up(self, batch: list[Item]) -> None:
        self.dropped += sum(1 for b in batch if isinstance(b, UsageRecord))
        logger.error(
            "hookwire: the accounting was closed while %s refused writes; %d queued usage "
            "row(s) lost",
            self.ledger,
            len(batch),
        )


def _is_data_error(exc: BaseException) -> bool:
    """Whether the database refused the data itself (too long, out of range, a constraint),
    as opposed to failing to take it now (a lost connection, a lock)."""
    from sqlalchemy.exc import DataError, IntegrityError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (DataError, IntegrityError)):
            return True
        # PostgreSQL drivers say it with the SQLSTATE: class 22 is "data exception", class 23
        # "integrity constraint violation".
        sqlstate = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate[:2] in ("22", "23"):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False

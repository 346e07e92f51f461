"""The ledger writer: usage rows and budget releases written in batches, off the caller's path.

The handler's thread only appends to a queue; the rows are written on the store loop (its
database connections), 1,000 at a time, kept and retried while the database cannot take them,
and written one by one when it refuses some row itself (the refused row alone is dropped and
logged). A forked child starts with an empty queue: the parent's rows are the parent's to write.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import weakref
from typing import Final

from ...stores import runner
from ...stores.ledger import UsageLedger, UsageRecord

__all__ = ["LedgerWriter"]

logger = logging.getLogger("hookwire")

_BATCH: Final = 1000
#: Seconds between a row's end of call and the start of its write (``flush`` waits for it).
_WRITE_DELAY: Final = 0.01

_WRITERS: weakref.WeakSet[LedgerWriter] = weakref.WeakSet()


def _writers_after_fork() -> None:
    for writer in list(_WRITERS):
        writer._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_writers_after_fork)


class LedgerWriter:
    """Batches ledger writes on the store loop; the caller's thread only appends.

    An item is a ``UsageRecord`` to write or a run id whose budget reservation to release;
    items are written in the order they were submitted."""

    def __init__(self, ledger: UsageLedger, name: str) -> None:
        self.ledger = ledger
        self.name = name
        self._reset_after_fork()
        _WRITERS.add(self)

    def _reset_after_fork(self) -> None:
        # Also the initial state. In a forked child the parent's queued rows are the parent's
        # to write (it goes on), its drain was scheduled on a loop the child does not have, and
        # its lock may have been held by a thread the child does not have: start empty.
        self._pending: collections.deque[UsageRecord | str] = collections.deque()
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._scheduled = False
        self._submitted = 0
        self._written = 0
        self._failures = 0
        self.dropped = 0
        #: Whether the last write failed (the rows are kept and retried).
        self.failing = False
        self._stopped = False

    def submit(self, item: UsageRecord | str) -> None:
        """Queue a row to write, or the run id of a reservation to release (never blocks)."""
        with self._lock:
            self._pending.append(item)
            self._submitted += 1
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            asyncio.run_coroutine_threadsafe(self._drain(), runner.get_loop())

    async def _drain(self) -> None:
        # Start a little later: the caller's next budget check, often right after a call's
        # end, then meets neither this write on the server nor its Python for the GIL.
        await asyncio.sleep(_WRITE_DELAY)
        delay = 0.05
        while True:
            with self._lock:
                n = min(len(self._pending), _BATCH)
                batch = [self._pending.popleft() for _ in range(n)]
                if not batch:
                    self._scheduled = False
                    self._done.notify_all()
                    return
            records = [b for b in batch if isinstance(b, UsageRecord)]
            releases = [b for b in batch if isinstance(b, str)]
            try:
                await self.ledger.record(records, release=releases)
            except Exception as exc:
                if _is_data_error(exc):
                    # The database refuses some row itself (retrying cannot help): write the
                    # batch row by row and drop only the rows it refuses.
                    await self._one_by_one(batch)
                    with self._lock:
                        self._written += len(batch)
                        self._done.notify_all()
                    continue
                # Keep the rows and try again: the database may be restarting or locked.
                self._failures += 1
                if self._stopped:
                    self._give_up(batch)
                    continue
                with self._lock:
                    self._pending.extendleft(reversed(batch))
                self.failing = True
                if self._failures == 1:
                    logger.error(
                        "hookwire: %s could not write %d usage row(s) to %s; retrying "
                        "(further failures are logged at debug level)",
                        self.name,
                        len(batch),
                        self.ledger,
                        exc_info=exc,
                    )
                else:
                    logger.debug("hookwire: %s write failed again: %r", self.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.05
            self.failing = False
            with self._lock:
                self._written += len(batch)
                self._done.notify_all()

    async def _one_by_one(self, batch: list[UsageRecord | str]) -> None:
        for item in batch:
            try:
                if isinstance(item, UsageRecord):
                    await self.ledger.record([item])
                else:
                    await self.ledger.release([item])
            except Exception as exc:
                if not _is_data_error(exc):
                    raise
                self.dropped += 1
                logger.error(
                    "hookwire: %s dropped a usage row the database refuses (%s): %r",
                    self.name,
                    exc,
                    item,
                )

    def stop(self) -> None:
        """Stop retrying: rows that cannot be written from now on are dropped (logged)."""
        self._stopped = True
        if self.failing:
            # The writer is waiting to retry, with its rows back in the queue: drop them now.
            self._give_up([])

    def _give_up(self, batch: list[UsageRecord | str]) -> None:
        with self._lock:
            rest = list(self._pending)
            self._pending.clear()
            lost = len(batch) + len(rest)
            if not lost:
                return
            self._written += lost
            self.dropped += sum(1 for b in [*batch, *rest] if isinstance(b, UsageRecord))
            self._done.notify_all()
        logger.error(
            "hookwire: %s was closed while %s refused writes; %d queued usage row(s) lost",
            self.name,
            self.ledger,
            lost,
        )

    @property
    def pending(self) -> int:
        """Items queued and not yet written (or dropped)."""
        return self._submitted - self._written

    async def settle(self, timeout: float) -> None:
        """Wait (without blocking the event loop) until what was queued before is written,
        or ``timeout`` seconds pass."""
        target = self._submitted
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Polled: the writer runs on the store loop, which may be another thread's loop than
        # the caller's, and an asyncio.Event serves one loop only.
        while self._written < target and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until what was queued before is written; ``False`` if ``timeout`` ran out
        (or if called on the store loop itself with rows still queued)."""
        if runner.in_store_loop():
            return self.pending == 0  # waiting here would block the writer itself
        with self._lock:
            target = self._submitted
            return self._done.wait_for(lambda: self._written >= target, timeout)


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

"""Concurrent budget checks coalesced: the checks that arrive while one is in flight are
reserved together, in the next transaction.

Checked one by one, a burst of calls with a budget queues for the database: every check is a
transaction of its own, and those of one key wait for each other (SQLite's write lock,
PostgreSQL's row lock on the key's total), so 1,000 concurrent calls took 3.4 s on SQLite and
0.74 s on PostgreSQL where the calls alone took 0.15 s. Here a check goes to the database at
once when none of its group is in flight; the checks of the group that arrive meanwhile wait,
then go together in one transaction, one round trip.

In that transaction each call is admitted or refused as a check of its own would be, in the
order the calls arrived: admitted while the key's spent plus reserved cost (counting the
calls of the batch admitted before it) is under the limit. So the spend still passes the limit
by one call's worst case at most, as with one-by-one checks.

A caller that stops waiting (cancelled, or past its ``check_timeout``) does not stop the
transaction (the other calls of its batch wait for it): its reservation, if made, is given
back as soon as the batch is done.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ...errors import BudgetExceeded
from .records import Claim

__all__ = ["MAX_BATCH", "Ask", "Outcome", "ReserveBatcher"]

logger = logging.getLogger("hookwire")

#: The most calls one transaction reserves for (the rest wait for the next one).
MAX_BATCH = 1000

_RUNNING: set[asyncio.Task[None]] = set()

#: What a batch answers for one call: ``None`` (reserved) or the error that refused it.
Outcome = BudgetExceeded | None


@dataclass(slots=True, eq=False)
class Ask:
    """One call's check waiting for, or in, a batch: its run, its claims in the order every
    check takes them (with their period keys: ``budgets.keyed``), the time of the check and
    when its reservation expires."""

    run_id: str
    claims: list[tuple[Claim, str]]
    now: datetime
    expires: datetime
    future: asyncio.Future[None]


#: Reserve for a batch in one transaction; one outcome per ask, in order.
ReserveMany = Callable[[list[Ask]], Awaitable[Sequence[Outcome]]]


class ReserveBatcher:
    """The checks of one ledger, coalesced per event loop and per group.

    ``reserve_many`` makes a batch's reservations in one transaction; ``release`` gives back
    those of runs whose callers stopped waiting; ``group`` says which checks may share a
    transaction (``None`` for all of them): checks of different groups run side by side.
    """

    def __init__(
        self,
        reserve_many: ReserveMany,
        release: Callable[[list[str]], Awaitable[None]],
        group: Callable[[list[tuple[Claim, str]]], Hashable],
    ) -> None:
        self._reserve_many = reserve_many
        self._release = release
        self._group = group
        # Per event loop (a PostgreSQL check runs on its caller's loop), the checks waiting
        # in each group; a group is there while its transactions are in flight.
        self._waiting: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[Hashable, deque[Ask]]
        ] = weakref.WeakKeyDictionary()

    async def reserve(
        self, run_id: str, claims: list[tuple[Claim, str]], now: datetime, expires: datetime
    ) -> None:
        """Check and reserve one call's claims, in the next transaction of its group; raises
        ``BudgetExceeded`` (nothing reserved) as a check of its own would."""
        loop = asyncio.get_running_loop()
        groups = self._waiting.get(loop)
        if groups is None:
            groups = self._waiting[loop] = {}
        ask = Ask(run_id, claims, now, expires, loop.create_future())
        key = self._group(claims)
        queue = groups.get(key)
        if queue is None:
            queue = groups[key] = deque()
            # Started at the loop's next turn: the checks made in this turn go together.
            task = loop.create_task(self._drain(groups, key, queue))
            _RUNNING.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(_RUNNING.discard)
        queue.append(ask)
        await ask.future

    async def _drain(
        self, groups: dict[Hashable, deque[Ask]], key: Hashable, queue: deque[Ask]
    ) -> None:
        """Run a group's transactions until no check of it waits."""
        batch: list[Ask] = []
        try:
            while queue:
                batch = []
                while queue and len(batch) < MAX_BATCH:
                    ask = queue.popleft()
                    if not ask.future.done():  # else its caller stopped waiting
                        batch.append(ask)
                if batch:
                    await self._run(batch)
                batch = []
        finally:
            del groups[key]
            # Cancelled (the loop is closing): no transaction will answer these.
            for ask in (*batch, *queue):
                ask.future.cancel()

    async def _run(self, batch: list[Ask]) -> None:
        try:
            outcomes = await self._reserve_many(batch)
        except Exception as exc:  # the database's (StoreError): every check of the batch
            for ask in batch:
                if not ask.future.done():
                    ask.future.set_exception(exc)
            return
        gone: list[str] = []
        for ask, outcome in zip(batch, outcomes, strict=True):
            if ask.future.done():  # cancelled meanwhile
                if outcome is None:
                    gone.append(ask.run_id)
            elif outcome is None:
                ask.future.set_result(None)
            else:
                ask.future.set_exception(outcome)
        if gone:
            try:
                await self._release(gone)
            except Exception as exc:
                # They count until they expire (reservation_ttl): budget held back, not spent.
                logger.warning(
                    "hookwire: could not give back the reservations of %d cancelled budget "
                    "check(s) (%r); they count until they expire",
                    len(gone),
                    exc,
                )

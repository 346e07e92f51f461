"""What an outbox does: :class:`Outbox`, the interface every backend implements.

``Outbox(url)`` gives the implementation registered for the URL's backend in
:data:`backends` (``hookwire.stores.outbox``): SQLite and PostgreSQL. The coroutines run on
the store loop (``hookwire.stores.runner``).

A row is one event for one sink. The app's worker :meth:`~Outbox.enqueue` s events; a relay
:meth:`~Outbox.claim` s the rows it may deliver now (a lease: a relay that dies gives them
back when it runs out), then marks each :meth:`~Outbox.delivered`, :meth:`~Outbox.failed`
(tried again later) or :meth:`~Outbox.dead`. A relay goes through :meth:`~Outbox.take`,
whose :class:`Claim` marks the rows it holds: by default with those same calls; on
PostgreSQL the claim's transaction stays open until the claim is closed, its row locks being
the lease, so each row is written once (when marked) instead of twice.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..registry import Store, StoreRegistry
from .records import Delivery, OutboxEvent

__all__ = ["Claim", "Outbox", "backends"]


class Claim:
    """Rows a relay holds (:meth:`Outbox.take`): ``rows``, and how it marks them. Marks take
    effect when the claim is closed with ``commit=True`` (at once, for this default claim,
    which marks through ``store``); :meth:`close` must be called once the rows are marked."""

    def __init__(self, store: Outbox, rows: list[Delivery]) -> None:
        self.store = store
        self.rows = rows

    async def delivered(self, seqs: Sequence[int], now: datetime | None = None) -> None:
        """As :meth:`Outbox.delivered`."""
        await self.store.delivered(seqs, now)

    async def failed(
        self, seqs: Sequence[int], error: str, retry_at: datetime, now: datetime | None = None
    ) -> None:
        """As :meth:`Outbox.failed`."""
        await self.store.failed(seqs, error, retry_at, now)

    async def dead(self, seqs: Sequence[int], error: str, response: str | None = None) -> None:
        """As :meth:`Outbox.dead`."""
        await self.store.dead(seqs, error, response)

    async def failing_since(self, seqs: Sequence[int]) -> dict[int, datetime]:
        """As :meth:`Outbox.failing_since`."""
        return await self.store.failing_since(seqs)

    async def close(self, commit: bool = True) -> None:
        """Make the marks final (``commit``), or give the rows not marked back: here they
        stay leased until the lease runs out, as a relay that died would leave them."""


class Outbox(Store):
    """The outbox in one database (``url`` as for ``hookwire.stores.engine.resolve_url``:
    SQLite ``./hookwire.db`` by default, PostgreSQL by URL)."""

    #: Which class serves a URL, by backend (registered in ``hookwire.stores.outbox``).
    backends = StoreRegistry["Outbox"]("outbox")

    async def open(self) -> None:
        """Get the database ready ahead of the first write (nothing to do by default)."""

    @abc.abstractmethod
    async def enqueue(self, events: Sequence[OutboxEvent], sinks: Sequence[str]) -> None:
        """Add one row per event and sink, in one transaction, in the order given (an event
        already there for a sink is left as it is)."""

    @abc.abstractmethod
    async def claim(
        self, sink: str, relay: str, limit: int, lease: float, now: datetime | None = None
    ) -> list[Delivery]:
        """Up to ``limit`` pending rows of ``sink`` that are due, in order, that no other
        relay holds, and whose key has no earlier row still pending outside them (so a key's
        events go out in order, across relays); held by ``relay`` for ``lease`` seconds."""

    async def take(self, sink: str, relay: str, limit: int, lease: float) -> Claim:
        """:meth:`claim`, for a relay that marks the rows through the :class:`Claim` and then
        closes it."""
        return Claim(self, await self.claim(sink, relay, limit, lease))

    @abc.abstractmethod
    async def delivered(self, seqs: Sequence[int], now: datetime | None = None) -> None:
        """Mark the rows delivered."""

    @abc.abstractmethod
    async def failed(
        self, seqs: Sequence[int], error: str, retry_at: datetime, now: datetime | None = None
    ) -> None:
        """Count a failed attempt of the rows, to be tried again from ``retry_at``."""

    @abc.abstractmethod
    async def dead(
        self,
        seqs: Sequence[int],
        error: str,
        response: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Give the rows up (the receiver refused them, or they failed for too long), keeping
        the ``error`` and the receiver's ``response``."""

    @abc.abstractmethod
    async def release(self, seqs: Sequence[int]) -> None:
        """Give back claimed rows that were not attempted (due again at once)."""

    @abc.abstractmethod
    async def failing_since(self, seqs: Sequence[int]) -> dict[int, datetime]:
        """When each of the rows that have failed before first failed."""

    @abc.abstractmethod
    async def status(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Per sink: ``sink``, ``pending``, ``delivered``, ``failing`` (pending rows that
        failed at least once), ``dead`` and ``lag`` (seconds since the oldest pending row was
        written; 0.0 when none is)."""

    @abc.abstractmethod
    async def replay(
        self,
        *,
        sink: str | None = None,
        dead_only: bool = False,
        since: datetime | None = None,
        now: datetime | None = None,
    ) -> int:
        """Make rows pending again (all of ``sink``'s, or every sink's), as new: the dead ones
        only with ``dead_only``, else the delivered and dead ones; only those written at or
        after ``since``. Returns how many."""

    @abc.abstractmethod
    async def purge(self, before: datetime, *, dead: bool = False) -> int:
        """Delete the rows delivered before ``before`` (and with ``dead``, the dead rows
        that first failed before it); returns how many. Replays cannot bring them back."""

    @abc.abstractmethod
    async def rows(
        self, *, sink: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Outbox rows, in order, as dicts of their columns (for tests and the CLI)."""


backends = Outbox.backends

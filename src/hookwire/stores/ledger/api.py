"""What a usage ledger does: :class:`UsageLedger`, the interface every backend implements.

``UsageLedger(url)`` gives the implementation registered for the URL's backend in
:data:`backends` (as ``pathlib.Path()`` gives a ``PosixPath``): SQLite and PostgreSQL have
their own. Any other implementation is a subclass of :class:`UsageLedger`, passed to
``AccountingCallbackHandler(store=)`` or registered for a scheme.

The coroutines run on the store loop (``hookwire.stores.runner``: callers wrap them in
``runner.run`` / ``runner.run_sync``); :meth:`UsageLedger.reserve_sync` and
:meth:`UsageLedger.areserve` are called where the caller is, for the inline budget check.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from .. import runner
from ..registry import Store, StoreRegistry
from .budgets import within
from .records import Claim, UsageRecord

__all__ = ["UsageLedger", "backends"]


class UsageLedger(Store):
    """The usage ledger in one database: one row per LLM call, running totals, and budget
    reservations (``url`` as for ``hookwire.stores.engine.resolve_url``: SQLite
    ``./hookwire.db`` by default, PostgreSQL by URL)."""

    #: Which class serves a URL, by backend (registered in ``hookwire.stores.ledger``).
    backends = StoreRegistry["UsageLedger"]("usage ledger")

    #: Whether a budget check's ``timeout`` applies: false for a store whose check must not be
    #: cancelled half-way, and cannot wait on a silent network (SQLite, a local file).
    bounded_by_timeout: ClassVar[bool] = True

    # -- writing ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Get the database ready ahead of the first write (nothing to do by default).

        The background queue of ``hookwire.callbacks.accounting`` calls it when it is made,
        so that what a write needs that cannot be had at interpreter exit (a thread, from
        Python 3.12 on) is there by then."""

    @abc.abstractmethod
    async def record(
        self, records: Sequence[UsageRecord], release: Iterable[str] = ()
    ) -> list[UsageRecord]:
        """Write ``records`` (skipping runs already in the ledger: it is idempotent by
        ``run_id``), add them to the running totals, and remove the budget reservations of
        their runs and of the runs in ``release`` (the reservation is *settled* into the real
        cost). Returns the records that were new."""

    async def release(self, run_ids: Iterable[str]) -> None:
        """Remove the reservations of runs that ended without a ledger row (failed calls)."""
        await self.record([], release=run_ids)

    # -- budgets ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def reserve(
        self, run_id: str, claims: Sequence[Claim], ttl: float = 600.0, now: datetime | None = None
    ) -> None:
        """Check every claim's budget and reserve its amount for ``run_id``, atomically
        across processes.

        Raises ``BudgetExceeded`` (and reserves nothing) if some scope's spent plus reserved
        cost is at or over its limit. A reservation counts until its run is recorded or
        released, or for ``ttl`` seconds at most (a process that died mid-call).
        """

    def reserve_sync(
        self, run_id: str, claims: Sequence[Claim], ttl: float = 600.0,
        now: datetime | None = None, *, timeout: float | None = None,
    ) -> None:  # fmt: skip
        """:meth:`reserve` from sync code (here: on the store loop, waiting for it).

        ``timeout``: seconds the check may take; after them it is cancelled and ``StoreError``
        raised (a database that takes connections and never answers). Ignored where
        :attr:`bounded_by_timeout` is false."""
        if claims:
            bound = timeout if self.bounded_by_timeout else None
            runner.run_sync(self.reserve(run_id, claims, ttl, now), bound)

    async def areserve(
        self, run_id: str, claims: Sequence[Claim], ttl: float = 600.0,
        now: datetime | None = None, *, timeout: float | None = None,
    ) -> None:  # fmt: skip
        """:meth:`reserve` from any event loop (here: on the store loop, awaiting it), within
        ``timeout`` seconds as :meth:`reserve_sync`."""
        if claims:
            bound = timeout if self.bounded_by_timeout else None
            await within(runner.run(self.reserve(run_id, claims, ttl, now)), bound, self)

    @abc.abstractmethod
    async def spent(
        self,
        scope: str,
        key: str,
        period: str | None = None,
        *,
        currency: str = "USD",
        at: datetime | None = None,
    ) -> Decimal:
        """The recorded cost of ``scope`` ``key`` in the period containing ``at`` (now)."""

    @abc.abstractmethod
    async def reserved(self, scope: str, key: str, period: str | None = None) -> Decimal:
        """The cost reserved now by calls in flight for ``scope`` ``key`` (for tests and
        monitoring)."""

    # -- reading ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def summary(
        self,
        by: Sequence[str] | str = (),
        *,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Calls, tokens and cost, grouped by ``by`` (any of ``user``, ``org``, ``agent``,
        ``model``, ``provider``, ``day``, ``month``) and currency, over ``since <= time <
        until``; ``where`` keeps only rows whose ``user``/``org``/``agent``/``model``/
        ``provider`` has the given value.

        Each row: the group's keys, ``currency``, ``calls``, ``prompt_tokens``,
        ``completion_tokens``, ``cached_tokens``, ``reasoning_tokens``, ``total_tokens``,
        ``cost`` (the sum of the known costs, ``None`` if none is known),
        ``unknown_cost_calls`` (calls whose price or usage was unknown), and of those whose
        provider sent no usage (``source`` ``estimated``): ``estimated_calls``,
        ``estimated_tokens`` and ``estimated_cost`` (their upper bound, what budgets charged;
        ``None`` if none is priced). The token sums are of the calls with known usage.
        """

    @abc.abstractmethod
    async def records(
        self, *, run_id: str | None = None, user_id: str | None = None, limit: int = 1000
    ) -> list[UsageRecord]:
        """Ledger rows, oldest first (optionally of one run or one user)."""


backends = UsageLedger.backends


def _implementation(module: str, name: str) -> Callable[[str], type[UsageLedger]]:
    """A builder that imports ``name`` from ``module`` when a URL of its backend is first used.

    Named by string because the implementations import this module (they subclass
    ``UsageLedger``): the import graph stays one-way, and the package can register them here
    without importing SQLAlchemy for ``hookwire costs`` on SQLite, which never builds one.
    """

    def build(url: str) -> type[UsageLedger]:
        cls: type[UsageLedger] = getattr(importlib.import_module(module, __package__), name)
        return cls

    return build


# The one place a URL's backend is matched with its implementation.
backends.register("sqlite", _implementation(".sqlite", "SQLiteUsageLedger"))
backends.register("postgresql", _implementation(".postgres", "PostgresUsageLedger"))

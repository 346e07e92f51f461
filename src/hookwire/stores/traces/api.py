"""What a trace store does: :class:`TraceStore`, the interface every backend implements.

``TraceStore(url)`` gives the implementation registered for the URL's backend in
:data:`backends` (SQLite and PostgreSQL share :class:`~.sql.SQLTraceStore`). The coroutines
run on the store loop (``hookwire.stores.runner``: callers wrap them in ``runner.run`` /
``runner.run_sync``). What is written are span patches (``hookwire.stores.traces.spans``);
what is read are dicts of the ``spans`` columns, pages of them keyed by ``(started_at,
span_id)``, newest first for runs, oldest first within a trace.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..conversations import Page
from ..registry import Store, StoreRegistry

__all__ = ["RunFilter", "TraceStore", "backends"]


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs (root spans) a list shows: each field set narrows it.

    ``since <= started_at < until``; ``min_cost``: at least this cost; ``search``: text found
    (case-insensitively) in the run's input or output preview."""

    user_id: str | None = None
    model: str | None = None
    agent: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_cost: Decimal | None = None
    search: str | None = None


class TraceStore(Store):
    """Spans of runs, LLM calls, tool calls, memory operations, retries and errors in one
    database (``url`` as for ``hookwire.stores.engine.resolve_url``: SQLite ``./hookwire.db``
    by default, PostgreSQL by URL)."""

    #: Which class serves a URL, by backend (registered in ``hookwire.stores.traces``).
    backends = StoreRegistry["TraceStore"]("trace store")

    async def open(self) -> None:
        """Get the database ready ahead of the first write (nothing to do by default)."""

    # -- writing ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def record(self, patches: Sequence[Mapping[str, Any]]) -> None:
        """Merge span patches into the stored spans in one transaction (a span's start and
        end may come in different calls; see ``hookwire.stores.traces.spans``)."""

    @abc.abstractmethod
    async def prune(self, *, before: datetime | None = None, max_spans: int | None = None) -> int:
        """Delete the spans (and contents) of traces whose root started before ``before``,
        then, with ``max_spans``, spans whose run was never stored (oldest first) and then the
        oldest whole traces until at most that many spans are left. Returns the number of
        spans deleted."""

    # -- reading ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def runs(
        self, where: RunFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        """Root spans (runs, and calls made outside any run), newest first, a page at a
        time (keyset: pass ``next_cursor`` back as ``cursor``)."""

    @abc.abstractmethod
    async def children(
        self,
        trace_id: str,
        parent_id: str | None = None,
        *,
        limit: int = 200,
        cursor: str | None = None,
    ) -> Page:
        """The spans of ``trace_id`` directly under ``parent_id`` (``None``: its roots),
        oldest first, a page at a time; each has ``children`` (how many spans are under it),
        so a tree opens one level at a time."""

    @abc.abstractmethod
    async def span(self, span_id: str) -> dict[str, Any] | None:
        """One span with its whole ``input`` and ``output`` (decoded JSON), or ``None``."""

    @abc.abstractmethod
    async def health(self, since: datetime) -> dict[str, Any]:
        """How the spans that ended from ``since``'s hour on went, from the per-hour rollups
        (``hookwire.stores.traces.rollups``): ``kinds`` (spans by kind and status),
        ``errors`` (by error type), ``retries``, ``llm`` (the LLM calls: ``calls``,
        ``errors``, ``latency_p50``/``p95``/``p99`` and ``ttft_p50``/``p95``/``p99`` in ms)
        and ``series``: the same per ``hour``, oldest first."""

    @abc.abstractmethod
    async def usage(self, since: datetime) -> list[dict[str, Any]]:
        """The LLM calls that ended from ``since``'s hour on, per UTC ``day`` (ISO date),
        ``model`` and ``currency``: ``calls``, tokens by kind (``input_tokens``,
        ``output_tokens``, ``cached_tokens``, ``reasoning_tokens``) and ``cost``."""

    @abc.abstractmethod
    async def rebuild_rollups(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> int:
        """Recount the per-hour rollups from ``since``'s hour to before ``until``'s (``None``:
        all) from the stored spans; returns the spans counted. Writing and pruning keep them;
        this is for spans loaded into the tables some other way."""

    @abc.abstractmethod
    async def count(self) -> int:
        """How many spans are stored."""


backends = TraceStore.backends

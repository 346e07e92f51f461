"""Per-hour rollups of the spans that ended: what the health and cost views read instead of
the spans themselves, so that they answer in the same time at any table size.

A span is counted once, when a write first sees it ended (status ``ok`` or ``error``): the
writer reads the stored status of the spans of its batch (by key, in its transaction), folds
each patch into it as the upsert will (``hookwire.stores.traces.spans.merge``), and adds what
ended to ``span_rollups`` (spans, tokens by kind, cost, summed latency) and ``span_latency``
(how many latencies, and times to first token, fell in each bucket), keyed by the hour the
span started. Buckets are logarithmic, :data:`BUCKETS_PER_DOUBLING` to each doubling of
milliseconds (a value is known to within 4.4 %), so histograms of any hours add up into
percentiles of them all (:func:`quantile`), which samples could not.

:func:`rebuild` recounts a range of hours from the spans (the migration's backfill,
``hookwire traces rebuild-rollups``, and pruning, which rebuilds the hours it deleted from);
it is sync, for Alembic's connection and for ``AsyncConnection.run_sync`` alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, delete, or_, select
from sqlalchemy.engine import Connection

from ..schema import span_latency, span_rollups, spans

__all__ = [
    "BUCKETS_PER_DOUBLING",
    "ENDED",
    "READ_COLUMNS",
    "Rollup",
    "Upserts",
    "bucket",
    "bucket_value",
    "hour_of",
    "hours_between",
    "quantile",
    "rebuild",
]

#: Histogram buckets to each doubling of milliseconds.
BUCKETS_PER_DOUBLING: Final = 8
#: The smallest latency told apart (ms): anything below shares its bucket.
_FLOOR_MS: Final = 0.001
#: The statuses of a span that ended.
ENDED: Final = frozenset({"ok", "error"})
#: The ``spans`` columns a rollup is made of (read back for the spans of a batch).
READ_COLUMNS: Final = (
    "span_id",
    "kind",
    "status",
    "started_at",
    "error_type",
    "model",
    "currency",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost",
    "latency_ms",
    "ttft_ms",
)
_TOKENS: Final = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")
_SUMS: Final = ("spans", *_TOKENS, "cost", "latency_ms")
_KEY: Final = ("hour", "kind", "status", "error_type", "model", "currency")
_UTC = timezone.utc
#: Spans read per query while rebuilding (a keyset page).
_REBUILD_PAGE: Final = 50_000


def bucket(ms: float) -> int:
    """The histogram bucket of a duration in milliseconds."""
    return math.floor(BUCKETS_PER_DOUBLING * math.log2(max(ms, _FLOOR_MS)))


def bucket_value(b: int) -> float:
    """The duration a bucket stands for: the geometric middle of its bounds."""
    return float(2 ** ((b + 0.5) / BUCKETS_PER_DOUBLING))


def hour_of(at: datetime) -> datetime:
    """The UTC hour ``at`` falls in."""
    at = at.replace(tzinfo=_UTC) if at.tzinfo is None else at.astimezone(_UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def quantile(histogram: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0 to 1) of a histogram of buckets, by nearest rank (``None``
    when empty); rounded to 0.1 ms."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = min(total, max(1, math.ceil(q * total)))
    seen = 0
    for b in sorted(histogram):
        seen += histogram[b]
        if seen >= rank:
            return round(bucket_value(b), 1)
    return None  # pragma: no cover - the ranks add up to total


class Rollup:
    """Sums and histograms of ended spans, gathered in memory before one write."""

    __slots__ = ("buckets", "sums")

    def __init__(self) -> None:
        self.sums: dict[tuple[Any, ...], list[Any]] = {}
        self.buckets: dict[tuple[datetime, str, str, int], int] = {}

    def __len__(self) -> int:
        return len(self.sums)

    def add(self, span: Mapping[str, Any]) -> None:
        """Count one ended span (a mapping of at least :data:`READ_COLUMNS`)."""
        hour = hour_of(span["started_at"])
        kind = span["kind"]
        key = (
            hour,
            kind,
            span["status"],
            span.get("error_type") or "",
            span.get("model") or "",
            span.get("currency") or "",
        )
        sums = self.sums.get(key)
        if sums is None:
            sums = self.sums[key] = [0, 0, 0, 0, 0, Decimal(0), 0.0]
        sums[0] += 1
        for i, name in enumerate(_TOKENS, 1):
            sums[i] += span.get(name) or 0
        sums[5] += span.get("cost") or 0
        for metric, column in (("latency", "latency_ms"), ("ttft", "ttft_ms")):
            ms = span.get(column)
            if ms is not None:
                if metric == "latency":
                    sums[6] += ms
                at = (hour, kind, metric, bucket(ms))
                self.buckets[at] = self.buckets.get(at, 0) + 1

    def rows(self) -> list[dict[str, Any]]:
        """Rows of ``span_rollups`` to add."""
        return [
            {**dict(zip(_KEY, k, strict=True)), **dict(zip(_SUMS, v, strict=True))}
            for k, v in self.sums.items()
        ]

    def bucket_rows(self) -> list[dict[str, Any]]:
        """Rows of ``span_latency`` to add."""
        return [
            {"hour": h, "kind": k, "metric": m, "bucket": b, "spans": n}
            for (h, k, m, b), n in self.buckets.items()
        ]


class Upserts:
    """The two statements that add a :class:`Rollup` to the tables, built once per dialect
    (``insert`` is the dialect's, for ``ON CONFLICT``)."""

    def __init__(self, insert: Callable[[Any], Any]) -> None:
        up = insert(span_rollups)
        self.sums = up.on_conflict_do_update(
            index_elements=list(_KEY),
            set_={n: span_rollups.c[n] + up.excluded[n] for n in _SUMS},
        )
        hist = insert(span_latency)
        self.buckets = hist.on_conflict_do_update(
            index_elements=["hour", "kind", "metric", "bucket"],
            set_={"spans": span_latency.c.spans + hist.excluded.spans},
        )

    def statements(self, rollup: Rollup) -> Iterable[tuple[Any, list[dict[str, Any]]]]:
        """``(statement, rows)`` to execute for ``rollup`` (nothing for an empty one)."""
        if rollup.sums:
            yield self.sums, rollup.rows()
        if rollup.buckets:
            yield self.buckets, rollup.bucket_rows()


def _upserts(conn: Connection) -> Upserts:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    return Upserts(insert)


def rebuild(conn: Connection, since: datetime | None = None, until: datetime | None = None) -> int:
    """Recount the rollups of the hours from ``since``'s to before ``until``'s (``None``:
    unbounded) from the spans; returns the spans counted."""
    lo = hour_of(since) if since is not None else None
    hi = hour_of(until) if until is not None else None
    for table in (span_rollups, span_latency):
        conds: list[ColumnElement[bool]] = []
        if lo is not None:
            conds.append(table.c.hour >= lo)
        if hi is not None:
            conds.append(table.c.hour < hi)
        conn.execute(delete(table).where(*conds))
    s = spans.c
    base: list[ColumnElement[bool]] = [s.status.in_(sorted(ENDED))]
    if lo is not None:
        base.append(s.started_at >= lo)
    if hi is not None:
        base.append(s.started_at < hi)
    rollup = Rollup()
    counted = 0
    after: tuple[datetime, str] | None = None
    while True:
        conds = list(base)
        if after is not None:
            at, span_id = after
            conds.append(or_(s.started_at > at, and_(s.started_at == at, s.span_id > span_id)))
        page = conn.execute(
            select(*(s[c] for c in READ_COLUMNS))
            .where(*conds)
            .order_by(s.started_at, s.span_id)
            .limit(_REBUILD_PAGE)
        ).all()
        for row in page:
            rollup.add(dict(row._mapping))
        counted += len(page)
        if len(page) < _REBUILD_PAGE:
            break
        after = (page[-1].started_at, page[-1].span_id)
    for statement, rows in _upserts(conn).statements(rollup):
        conn.execute(statement, rows)
    return counted


def hours_between(lo: datetime, hi: datetime) -> tuple[datetime, datetime]:
    """The hours covering ``lo`` to ``hi`` inclusive, as ``(first hour, hour after the
    last)``."""
    return hour_of(lo), hour_of(hi) + timedelta(hours=1)

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
it is sync, for Alembic's connection and for ``AsyncConnection.run_sync`` alike, and groups
in the database (10,000,000 spans in minutes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    String,
    cast,
    delete,
    func,
    literal,
    select,
    type_coerce,
)
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
_LN2: Final = math.log(2.0)


def bucket(ms: float) -> int:
    """The histogram bucket of a duration in milliseconds (written as :func:`rebuild`'s SQL
    computes it on PostgreSQL, so that both give the same bucket at its bounds)."""
    return math.floor(BUCKETS_PER_DOUBLING * math.log(max(ms, _FLOOR_MS)) / _LN2)


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


def _hour(conn: Connection, at: Any) -> Any:
    """SQL of the UTC hour of the ``spans`` time ``at``, stored as the rollups store it."""
    if conn.dialect.name == "postgresql":
        return func.timezone("UTC", func.date_trunc("hour", func.timezone("UTC", at)))
    # fixed-width ISO text in UTC (``UTCDateTime``): the hour is its first 13 characters
    return func.substr(type_coerce(at, String), 1, 13).concat(":00:00.000000+00:00")


def _bucket(conn: Connection, ms: Any) -> Any:
    """SQL of :func:`bucket`: on PostgreSQL the same arithmetic (the same C ``log``), on
    SQLite the function itself, registered on the connection."""
    if conn.dialect.name == "postgresql":
        x = func.greatest(ms, literal(_FLOOR_MS, Float))
        per = literal(float(BUCKETS_PER_DOUBLING), Float)
        return cast(func.floor(per * func.ln(x) / func.ln(literal(2.0, Float))), Integer)
    conn.connection.dbapi_connection.create_function(  # type: ignore[union-attr]
        "hookwire_bucket", 1, bucket, deterministic=True
    )
    return func.hookwire_bucket(ms)


def rebuild(conn: Connection, since: datetime | None = None, until: datetime | None = None) -> int:
    """Recount the rollups of the hours from ``since``'s to before ``until``'s (``None``:
    unbounded) from the spans, in three ``INSERT ... SELECT`` (the database groups; no span
    comes to Python); returns the spans counted."""
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
    ended: list[ColumnElement[bool]] = [s.status.in_(sorted(ENDED))]
    if lo is not None:
        ended.append(s.started_at >= lo)
    if hi is not None:
        ended.append(s.started_at < hi)
    hour = _hour(conn, s.started_at).label("hour")
    keys = [
        hour,
        s.kind,
        s.status,
        func.coalesce(s.error_type, "").label("error_type"),
        func.coalesce(s.model, "").label("model"),
        func.coalesce(s.currency, "").label("currency"),
    ]
    sums = [func.count().label("spans")] + [
        func.coalesce(func.sum(s[name]), 0).label(name) for name in (*_TOKENS, "cost", "latency_ms")
    ]
    query = select(*keys, *sums).where(*ended).group_by(*keys)
    conn.execute(span_rollups.insert().from_select([*_KEY, *_SUMS], query))
    for metric, column in (("latency", s.latency_ms), ("ttft", s.ttft_ms)):
        b = _bucket(conn, column).label("bucket")
        query = (
            select(hour, s.kind, literal(metric, String).label("metric"), b, func.count())
            .where(*ended, column.is_not(None))
            .group_by(hour, s.kind, b)
        )
        conn.execute(
            span_latency.insert().from_select(["hour", "kind", "metric", "bucket", "spans"], query)
        )
    r = span_rollups.c
    mine = [
        c for c in ((r.hour >= lo) if lo else None, (r.hour < hi) if hi else None) if c is not None
    ]
    return int(conn.execute(select(func.coalesce(func.sum(r.spans), 0)).where(*mine)).scalar_one())


def hours_between(lo: datetime, hi: datetime) -> tuple[datetime, datetime]:
    """The hours covering ``lo`` to ``hi`` inclusive, as ``(first hour, hour after the
    last)``."""
    return hour_of(lo), hour_of(hi) + timedelta(hours=1)

"""Trace rollups: ``span_rollups`` (per hour, kind, status, error type, model and currency:
spans that ended, tokens by kind, cost, summed latency) and ``span_latency`` (per hour and
kind, a logarithmic histogram of latencies and times to first token), kept by the trace
writer in the transaction of the spans; the health and cost views read them instead of the
spans. Existing spans are counted here (``hookwire.stores.traces.rollups.rebuild``).

``ix_spans_parent_started`` (a span's children) becomes an index of child spans only: with
every root under ``parent_id IS NULL`` in it, SQLite's planner took it for the runs list and
its filters over their own indexes, reading every run.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hookwire.stores.schema import Money, UTCDateTime
from hookwire.stores.traces.rollups import rebuild

revision = "0007_trace_rollups"
down_revision = "0006_traces"

_CHILD = sa.text("parent_id IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "span_rollups",
        sa.Column("hour", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_type", sa.String(255), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("spans", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", Money(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour", "kind", "status", "error_type", "model", "currency", name="pk_span_rollups"
        ),
    )
    op.create_table(
        "span_latency",
        sa.Column("hour", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("metric", sa.String(8), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("spans", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "kind", "metric", "bucket", name="pk_span_latency"),
    )
    op.drop_index("ix_spans_parent_started", table_name="spans")
    op.create_index(
        "ix_spans_parent_started",
        "spans",
        ["parent_id", "started_at", "span_id"],
        sqlite_where=_CHILD,
        postgresql_where=_CHILD,
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # spans written meanwhile would be missed by the count, or counted twice
        op.execute("LOCK TABLE spans IN SHARE MODE")
    rebuild(bind)


def downgrade() -> None:
    op.drop_index("ix_spans_parent_started", table_name="spans")
    op.create_index("ix_spans_parent_started", "spans", ["parent_id", "started_at", "span_id"])
    op.drop_table("span_latency")
    op.drop_table("span_rollups")

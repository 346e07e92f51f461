"""``usage_totals``' period index holds the whole key: ``(scope, period, period_start, key,
currency)`` instead of ``(scope, period, period_start)``.

A budget check reads a key's row by all five columns. With the shorter index the planner may
take it (both indexes estimate one row) and then filters every key of the day: on PostgreSQL
with 40,000 users a day, a batch of 1,000 checks read 44 million rows (50 s). Whichever index
it takes now, the five columns are its index condition; summaries of a scope's period still
seek on its first three.
"""

from __future__ import annotations

from alembic import op

revision = "0008_totals_period_key"
down_revision = "0007_trace_rollups"


def upgrade() -> None:
    op.drop_index("ix_usage_totals_period", table_name="usage_totals")
    op.create_index(
        "ix_usage_totals_period",
        "usage_totals",
        ["scope", "period", "period_start", "key", "currency"],
    )


def downgrade() -> None:
    op.drop_index("ix_usage_totals_period", table_name="usage_totals")
    op.create_index("ix_usage_totals_period", "usage_totals", ["scope", "period", "period_start"])

"""Usage accounting: the ledger, its running totals, and budget reservations.

Revision ID: 0002_ledger
Revises: 0001_chat_history
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hookwire.stores.schema import Money, UTCDateTime

revision = "0002_ledger"
down_revision = "0001_chat_history"
branch_labels = None
depends_on = None


def _count() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "usage_ledger",
        sa.Column("seq", _count(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("org_id", sa.String(255), nullable=True),
        sa.Column("agent", sa.String(255), nullable=True),
        sa.Column("conversation_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("provider", sa.String(64), nullable=True),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=True),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=True),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", Money(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False, server_default="USD"),
        sa.Column("correlation_id", sa.String(255), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("trace_id", sa.String(64), nullable=True),
        sa.Column("source", sa.String(16), nullable=False, server_default="auto"),
        sa.PrimaryKeyConstraint("seq", name="pk_usage_ledger"),
        sa.UniqueConstraint("run_id", name="uq_usage_ledger_run_id"),
        sa.CheckConstraint(
            "prompt_tokens >= 0 AND completion_tokens >= 0 AND total_tokens >= 0",
            name="ck_usage_ledger_tokens",
        ),
    )
    op.create_index("ix_usage_ledger_created", "usage_ledger", ["created_at"])
    op.create_index("ix_usage_ledger_user_created", "usage_ledger", ["user_id", "created_at"])
    op.create_index("ix_usage_ledger_org_created", "usage_ledger", ["org_id", "created_at"])
    op.create_index("ix_usage_ledger_agent_created", "usage_ledger", ["agent", "created_at"])
    op.create_table(
        "usage_totals",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("period_start", sa.String(10), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", Money(), nullable=False),
        sa.PrimaryKeyConstraint(
            "scope", "key", "period", "period_start", "currency", name="pk_usage_totals"
        ),
    )
    op.create_table(
        "budget_reservations",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("period_start", sa.String(10), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "scope", "key", "period", name="pk_budget_reservations"),
    )
    op.create_index(
        "ix_budget_reservations_scope",
        "budget_reservations",
        ["scope", "key", "period", "period_start"],
    )


def downgrade() -> None:
    op.drop_index("ix_budget_reservations_scope", table_name="budget_reservations")
    op.drop_table("budget_reservations")
    op.drop_table("usage_totals")
    op.drop_index("ix_usage_ledger_agent_created", table_name="usage_ledger")
    op.drop_index("ix_usage_ledger_org_created", table_name="usage_ledger")
    op.drop_index("ix_usage_ledger_user_created", table_name="usage_ledger")
    op.drop_index("ix_usage_ledger_created", table_name="usage_ledger")
    op.drop_table("usage_ledger")

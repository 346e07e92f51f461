"""Usage accounting: the ledger, its running totals, and budget reservations."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hookwire.stores.schema import Money, UTCDateTime

revision = "0002_ledger"
down_revision = "0001_chat_history"


#: The budget check on PostgreSQL, as one server-side call (one round trip instead of five):
#: lock the budgets' keys, read spent plus reserved in a fresh snapshot, refuse or reserve.
RESERVE_FUNCTION = """
CREATE OR REPLACE FUNCTION hookwire_reserve(
    p_run_id text, p_locks bigint[], p_scopes text[], p_keys text[], p_periods text[],
    p_starts text[], p_currencies text[], p_limits numeric[], p_amounts numeric[],
    p_now timestamptz, p_expires timestamptz
) RETURNS TABLE (refused integer, committed numeric)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    used numeric;
BEGIN
    -- A reservation lost in a server crash only frees budget early: the commit need not
    -- wait for the WAL flush.
    PERFORM set_config('synchronous_commit', 'off', true);
    FOR i IN 1 .. cardinality(p_locks) LOOP
        PERFORM pg_advisory_xact_lock(p_locks[i]);
    END LOOP;
    -- Each statement of a plpgsql function sees what was committed before it began, so
    -- these reads see every reservation and cost committed before the locks were granted.
    FOR i IN 1 .. cardinality(p_scopes) LOOP
        SELECT COALESCE((SELECT sum(t.cost) FROM usage_totals t
                          WHERE t.scope = p_scopes[i] AND t.key = p_keys[i]
                            AND t.period = p_periods[i] AND t.period_start = p_starts[i]
                            AND t.currency = p_currencies[i]), 0)
             + COALESCE((SELECT sum(r.amount) FROM budget_reservations r
                          WHERE r.scope = p_scopes[i] AND r.key = p_keys[i]
                            AND r.period = p_periods[i] AND r.period_start = p_starts[i]
                            AND r.currency = p_currencies[i] AND r.expires_at > p_now), 0)
          INTO used;
        IF used >= p_limits[i] THEN
            refused := i;
            committed := used;
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;
    INSERT INTO budget_reservations
        (run_id, scope, key, period, period_start, currency, amount, expires_at)
    SELECT p_run_id, u.s, u.k, u.p, u.st, u.c, u.a, p_expires
      FROM unnest(p_scopes, p_keys, p_periods, p_starts, p_currencies, p_amounts)
           AS u(s, k, p, st, c, a)
    ON CONFLICT DO NOTHING;
    DELETE FROM budget_reservations r
     WHERE r.expires_at <= p_now AND r.scope = p_scopes[1] AND r.key = p_keys[1];
    refused := 0;
    committed := 0;
    RETURN NEXT;
END
$$;
"""


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
    if op.get_bind().dialect.name == "postgresql":
        op.execute(RESERVE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS hookwire_reserve(text, bigint[], text[], text[], text[], "
            "text[], text[], numeric[], numeric[], timestamptz, timestamptz)"
        )
    op.drop_index("ix_budget_reservations_scope", table_name="budget_reservations")
    op.drop_table("budget_reservations")
    op.drop_table("usage_totals")
    op.drop_index("ix_usage_ledger_agent_created", table_name="usage_ledger")
    op.drop_index("ix_usage_ledger_org_created", table_name="usage_ledger")
    op.drop_index("ix_usage_ledger_user_created", table_name="usage_ledger")
    op.drop_index("ix_usage_ledger_created", table_name="usage_ledger")
    op.drop_table("usage_ledger")

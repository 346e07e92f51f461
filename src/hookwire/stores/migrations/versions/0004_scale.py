"""Flat at scale: a message count on each conversation, an index for one user's
conversations, and usage totals that answer ``hookwire costs`` without the ledger.

``conversations.message_count`` is kept in the transaction that inserts a conversation's
messages (``hookwire history list`` no longer counts them per row); existing rows are
counted here. ``ix_conversations_user_updated`` serves ``--user`` (the owner index starts
with realm and org), ``ix_conversations_updated`` the list of everyone's conversations. On
PostgreSQL the table gets ``fillfactor = 80``, so the update of a conversation's count and
state finds room on its page and stays a HOT update (no index entry).

``usage_totals`` gains the sums it lacked to answer a summary alone (total, cached and
reasoning tokens, how many calls had cached and reasoning counts, how many had no price),
and rows per day and month of the scopes ``model``, ``provider`` and ``all`` (key ``""``:
every call, with or without a user, org or agent), and an index by scope and period. The
totals are rebuilt from the ledger under a lock that holds ledger writers back, so they
match it exactly.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hookwire.stores.schema import Money

revision = "0004_scale"
down_revision = "0003_budget_totals"

#: The columns 0004 adds to ``usage_totals``.
NEW_TOTALS = (
    "total_tokens",
    "cached_tokens",
    "cached_calls",
    "reasoning_tokens",
    "reasoning_calls",
    "unknown_cost_calls",
    "estimated_calls",
    "estimated_prompt_tokens",
    "estimated_completion_tokens",
    "estimated_tokens",
    "estimated_cost",
    "estimated_priced_calls",
)


def _period(dialect: str, period: str) -> str:
    """The SQL of a ledger row's period key, as ``period_start`` writes it."""
    if period == "all":
        return "''"
    if dialect == "postgresql":
        fmt = "YYYY-MM-DD" if period == "day" else "YYYY-MM"
        return f"to_char(created_at AT TIME ZONE 'UTC', '{fmt}')"
    # created_at is fixed-width ISO 8601 text in UTC on SQLite
    return f"substr(created_at, 1, {10 if period == 'day' else 7})"


def known(column: str) -> str:
    """``column`` of a call whose usage the provider reported (NULL for an estimated one)."""
    return f"CASE WHEN source = 'estimated' THEN NULL ELSE {column} END"


def estimated(column: str) -> str:
    """``column`` of a call whose usage hookwire estimated (NULL for the others)."""
    return f"CASE WHEN source = 'estimated' THEN {column} END"


def _rebuild_totals(dialect: str) -> None:
    op.execute("DELETE FROM usage_totals")
    scopes = {
        "user": "user_id",
        "org": "org_id",
        "agent": "agent",
        "model": "model",
        "provider": "provider",
        "all": "''",
    }
    for scope, column in scopes.items():
        all_time = scope in ("user", "org", "agent")
        periods = ("day", "month", "all") if all_time else ("day", "month")
        for period in periods:
            start = _period(dialect, period)
            where = "" if scope == "all" else f"WHERE {column} IS NOT NULL"
            # PostgreSQL refuses a constant in GROUP BY
            keys = ", ".join(k for k in (column, start) if not k.startswith("'"))
            op.execute(
                f"""
                INSERT INTO usage_totals (scope, key, period, period_start, currency, calls,
                    prompt_tokens, completion_tokens, cost, {", ".join(NEW_TOTALS)})
                SELECT '{scope}', {column}, '{period}', {start}, currency, count(*),
                    sum(prompt_tokens), sum(completion_tokens), coalesce(sum(cost), 0),
                    coalesce(sum({known("total_tokens")}), 0),
                    coalesce(sum({known("cached_tokens")}), 0), count({known("cached_tokens")}),
                    coalesce(sum({known("reasoning_tokens")}), 0),
                    count({known("reasoning_tokens")}), count(*) - count({known("cost")}),
                    count({estimated("1")}), coalesce(sum({estimated("prompt_tokens")}), 0),
                    coalesce(sum({estimated("completion_tokens")}), 0),
                    coalesce(sum({estimated("total_tokens")}), 0),
                    coalesce(sum({estimated("cost")}), 0), count({estimated("cost")})
                  FROM usage_ledger {where}
                 GROUP BY {keys + ", " if keys else ""}currency
                """
            )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.add_column(
        "conversations",
        sa.Column("message_count", sa.BigInteger(), nullable=False, server_default="0"),
    )
    if dialect == "postgresql":
        op.execute("LOCK TABLE messages IN SHARE MODE")
    op.execute(
        "UPDATE conversations SET message_count = "
        "(SELECT count(*) FROM messages m WHERE m.conversation_id = conversations.id)"
    )
    if dialect == "postgresql":
        # In the "C" collation, which an owner's list (user_id in the database's collation)
        # cannot use: the planner would take it over the owner index and filter the owner.
        op.execute(
            "CREATE INDEX ix_conversations_user_updated ON conversations "
            '(user_id COLLATE "C", updated_at, id)'
        )
    else:
        op.create_index(
            "ix_conversations_user_updated", "conversations", ["user_id", "updated_at", "id"]
        )
    op.create_index("ix_conversations_updated", "conversations", ["updated_at", "id"])
    for name in NEW_TOTALS:
        kind = Money() if name == "estimated_cost" else sa.BigInteger()
        op.add_column("usage_totals", sa.Column(name, kind, nullable=False, server_default="0"))
    op.create_index("ix_usage_totals_period", "usage_totals", ["scope", "period", "period_start"])
    if dialect == "postgresql":
        op.execute("ALTER TABLE conversations SET (fillfactor = 80)")
        # Ledger writers wait while the totals are rebuilt; budget checks still read them.
        op.execute("LOCK TABLE usage_ledger IN EXCLUSIVE MODE")
    _rebuild_totals(dialect)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute("DELETE FROM usage_totals WHERE scope IN ('all', 'model', 'provider')")
    op.drop_index("ix_usage_totals_period", table_name="usage_totals")
    # SQLite (3.35 on) drops a column in place: no copy of the table, whose rows messages
    # reference with ON DELETE CASCADE.
    for name in NEW_TOTALS:
        op.drop_column("usage_totals", name)
    if dialect == "postgresql":
        op.execute("ALTER TABLE conversations RESET (fillfactor)")
    op.drop_index("ix_conversations_updated", table_name="conversations")
    op.drop_index("ix_conversations_user_updated", table_name="conversations")
    op.drop_column("conversations", "message_count")

"""Budget checks in O(1): the cost reserved by calls in flight, kept per budget key.

``budget_totals`` holds, per scope, key, period and currency, the sum of the key's
``budget_reservations`` (on PostgreSQL; SQLite sums the reservations in its check and leaves
the table empty). The check becomes one row update under that row's lock plus one read of the
key's spent cost, instead of advisory locks and two sums.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

from hookwire.stores.schema import Money

revision = "0003_budget_totals"
down_revision = "0002_ledger"

#: The budget check on PostgreSQL, one call per check. For each claim, in the order given
#: (callers sort them, so two checks never wait for each other's rows in opposite orders):
#: insert the run's reservation, add it to the key's ``budget_totals`` row (which takes the
#: row's lock: checks and settlements of one key queue there), then read the key's spent cost
#: in a new statement, so in a snapshot taken after the lock was granted. A ledger write
#: commits its costs before it settles its reservations (see ``UsageLedger.record``), so a
#: call is counted at its reserved amount, its real cost, or both, never neither. The ledger
#: write's own transaction locks ``usage_totals`` rows, which the check only reads: a check
#: never waits for a ledger write's commit.
#:
#: The first check of a key in a period creates its row. A claim over the limit first drops
#: the key's expired reservations (of calls that never came back) and looks again; if it is
#: still over, the run's fresh reservations are undone (the function returns normally, so the
#: undo and the refusal commit together) and ``refused`` is the claim's position (1-based).
RESERVE_FUNCTION = """
CREATE OR REPLACE FUNCTION hookwire_reserve(
    p_run_id text, p_claims jsonb, p_now timestamptz, p_expires timestamptz,
    OUT refused integer, OUT committed numeric
)
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    u record;
    n integer := 0;
    j integer;
    fresh_amount numeric;
    kept integer[] := '{}';
    others numeric;
    spent numeric;
    swept numeric;
BEGIN
    -- A reservation lost in a server crash only frees budget early: the commit need not
    -- wait for the WAL flush.
    PERFORM set_config('synchronous_commit', 'off', true);
    refused := 0;
    committed := 0;
    FOR c IN SELECT * FROM jsonb_to_recordset(p_claims) AS x(
                 scope text, key text, period text, period_start text, currency text,
                 lim numeric, amount numeric)
    LOOP
        n := n + 1;
        INSERT INTO budget_reservations
            (run_id, scope, key, period, period_start, currency, amount, expires_at)
        VALUES (p_run_id, c.scope, c.key, c.period, c.period_start, c.currency, c.amount,
                p_expires)
        ON CONFLICT DO NOTHING;
        -- A run checked twice keeps its first reservation, counted once.
        fresh_amount := CASE WHEN FOUND THEN c.amount ELSE 0 END;
        IF NOT FOUND THEN
            kept := kept || n;
        END IF;
        UPDATE budget_totals b SET reserved = b.reserved + fresh_amount
         WHERE b.scope = c.scope AND b.key = c.key AND b.period = c.period
           AND b.period_start = c.period_start AND b.currency = c.currency
        RETURNING b.reserved - fresh_amount INTO others;
        IF NOT FOUND THEN
            INSERT INTO budget_totals (scope, key, period, period_start, currency, reserved)
            VALUES (c.scope, c.key, c.period, c.period_start, c.currency, 0)
            ON CONFLICT DO NOTHING;
            UPDATE budget_totals b SET reserved = b.reserved + fresh_amount
             WHERE b.scope = c.scope AND b.key = c.key AND b.period = c.period
               AND b.period_start = c.period_start AND b.currency = c.currency
            RETURNING b.reserved - fresh_amount INTO others;
        END IF;
        SELECT t.cost INTO spent FROM usage_totals t
         WHERE t.scope = c.scope AND t.key = c.key AND t.period = c.period
           AND t.period_start = c.period_start AND t.currency = c.currency;
        committed := COALESCE(spent, 0) + others;
        CONTINUE WHEN committed < c.lim;
        -- Over the limit: without the reservations that have expired, is it still?
        WITH gone AS (
            DELETE FROM budget_reservations r
             WHERE (r.run_id, r.scope, r.key, r.period) IN (
                   SELECT e.run_id, e.scope, e.key, e.period FROM budget_reservations e
                    WHERE e.scope = c.scope AND e.key = c.key AND e.period = c.period
                      AND e.period_start = c.period_start AND e.currency = c.currency
                      AND e.expires_at <= p_now AND e.run_id <> p_run_id
                      FOR UPDATE SKIP LOCKED)
            RETURNING r.amount)
        SELECT COALESCE(sum(gone.amount), 0) INTO swept FROM gone;
        IF swept > 0 THEN
            UPDATE budget_totals b SET reserved = b.reserved - swept
             WHERE b.scope = c.scope AND b.key = c.key AND b.period = c.period
               AND b.period_start = c.period_start AND b.currency = c.currency;
            committed := committed - swept;
            CONTINUE WHEN committed < c.lim;
        END IF;
        refused := n;
        -- Undo the run's fresh reservations: this claim's and those of the claims before it.
        j := 0;
        FOR u IN SELECT * FROM jsonb_to_recordset(p_claims) AS x(
                     scope text, key text, period text, period_start text, currency text,
                     lim numeric, amount numeric)
        LOOP
            j := j + 1;
            EXIT WHEN j > n;
            CONTINUE WHEN j = ANY(kept);
            DELETE FROM budget_reservations r
             WHERE r.run_id = p_run_id AND r.scope = u.scope AND r.key = u.key
               AND r.period = u.period;
            UPDATE budget_totals b SET reserved = b.reserved - u.amount
             WHERE b.scope = u.scope AND b.key = u.key AND b.period = u.period
               AND b.period_start = u.period_start AND b.currency = u.currency;
        END LOOP;
        RETURN;
    END LOOP;
    committed := 0;
END
$$;
"""

_SIGNATURE = "hookwire_reserve(text, jsonb, timestamptz, timestamptz)"
_OLD_SIGNATURE = (
    "hookwire_reserve(text, bigint[], text[], text[], text[], text[], text[], numeric[], "
    "numeric[], timestamptz, timestamptz)"
)


def _previous_function() -> str:
    """0002's function, for the downgrade (read from that revision, not copied here)."""
    path = Path(__file__).with_name("0002_ledger.py")
    spec = importlib.util.spec_from_file_location("_hookwire_0002_ledger", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.RESERVE_FUNCTION)


def upgrade() -> None:
    op.create_table(
        "budget_totals",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("period_start", sa.String(10), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reserved", Money(), nullable=False),
        sa.PrimaryKeyConstraint(
            "scope", "key", "period", "period_start", "currency", name="pk_budget_totals"
        ),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    # Processes still running the previous code reserve through the old function: drop it
    # (their checks fail, and fail open or closed as configured, until they are upgraded)
    # and hold their writes back while the reservations in flight are summed.
    op.execute("LOCK TABLE budget_reservations IN EXCLUSIVE MODE")
    op.execute(f"DROP FUNCTION IF EXISTS {_OLD_SIGNATURE}")
    op.execute(
        """
        INSERT INTO budget_totals (scope, key, period, period_start, currency, reserved)
        SELECT scope, key, period, period_start, currency, sum(amount)
          FROM budget_reservations
         GROUP BY scope, key, period, period_start, currency
        """
    )
    op.execute(RESERVE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {_SIGNATURE}")
        op.execute(_previous_function())
    op.drop_table("budget_totals")

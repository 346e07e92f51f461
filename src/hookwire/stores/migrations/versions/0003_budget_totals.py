"""Budget checks in O(1): the reserved cost kept per budget key next to the spent cost.

``usage_totals.reserved`` is the sum of the ``budget_reservations`` rows of the row's key (on
PostgreSQL; SQLite sums the reservations in its check and leaves the column at zero). The
check becomes one row update under that row's lock instead of advisory locks and two sums.

Revision ID: 0003_budget_totals
Revises: 0002_ledger
Create Date: 2026-12-02
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

from hookwire.stores.schema import Money

revision = "0003_budget_totals"
down_revision = "0002_ledger"
branch_labels = None
depends_on = None

#: The budget check on PostgreSQL, one call per check: for each claim (in the order given,
#: which callers sort, so two checks never wait for each other's rows in opposite orders),
#: insert the run's reservation and add it to the key's ``reserved`` if spent plus reserved
#: is under the limit. The row update takes the row's lock and re-reads the row after any
#: wait, so checks (and ledger writes) of one key are serialised by that lock alone.
#:
#: The first check of a key in a period creates its row. A refused claim first drops the
#: key's expired reservations (of calls that never came back) and tries again; if it is still
#: refused, the claims before it are undone (the function returns normally, so the undo and
#: the refusal commit together) and ``refused`` is the claim's position (1-based).
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
        UPDATE usage_totals t SET reserved = t.reserved + fresh_amount
         WHERE t.scope = c.scope AND t.key = c.key AND t.period = c.period
           AND t.period_start = c.period_start AND t.currency = c.currency
           AND t.cost + t.reserved < c.lim;
        CONTINUE WHEN FOUND;
        -- The slow path: no row yet, or at the limit.
        INSERT INTO usage_totals AS t
            (scope, key, period, period_start, currency, calls, prompt_tokens,
             completion_tokens, cost, reserved)
        VALUES (c.scope, c.key, c.period, c.period_start, c.currency, 0, 0, 0, 0, 0)
        ON CONFLICT DO NOTHING;
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
        UPDATE usage_totals t SET reserved = t.reserved - swept
         WHERE t.scope = c.scope AND t.key = c.key AND t.period = c.period
           AND t.period_start = c.period_start AND t.currency = c.currency
        RETURNING t.cost + t.reserved INTO committed;
        IF committed < c.lim THEN
            UPDATE usage_totals t SET reserved = t.reserved + fresh_amount
             WHERE t.scope = c.scope AND t.key = c.key AND t.period = c.period
               AND t.period_start = c.period_start AND t.currency = c.currency;
            CONTINUE;
        END IF;
        refused := n;
        -- Undo this run's fresh reservations: this claim's, and those of the claims before it.
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
            CONTINUE WHEN j = n;
            UPDATE usage_totals t SET reserved = t.reserved - u.amount
             WHERE t.scope = u.scope AND t.key = u.key AND t.period = u.period
               AND t.period_start = u.period_start AND t.currency = u.currency;
        END LOOP;
        RETURN;
    END LOOP;
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
    with op.batch_alter_table("usage_totals") as batch:
        batch.add_column(sa.Column("reserved", Money(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name != "postgresql":
        return
    # Processes still running the previous code reserve through the old function: drop it
    # (their checks fail, and fail open or closed as configured, until they are upgraded)
    # and hold their writes back while the sums of the reservations in flight are taken.
    op.execute("LOCK TABLE budget_reservations IN EXCLUSIVE MODE")
    op.execute(f"DROP FUNCTION IF EXISTS {_OLD_SIGNATURE}")
    op.execute(
        """
        INSERT INTO usage_totals AS t
            (scope, key, period, period_start, currency, calls, prompt_tokens,
             completion_tokens, cost, reserved)
        SELECT scope, key, period, period_start, currency, 0, 0, 0, 0, sum(amount)
          FROM budget_reservations
         GROUP BY scope, key, period, period_start, currency
        ON CONFLICT (scope, key, period, period_start, currency)
        DO UPDATE SET reserved = excluded.reserved
        """
    )
    op.execute(RESERVE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {_SIGNATURE}")
        op.execute(_previous_function())
    with op.batch_alter_table("usage_totals") as batch:
        batch.drop_column("reserved")

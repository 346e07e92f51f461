"""``hookwire.ui.spend``: budgets as ``hookwire ui --budget`` takes them, and the spend
against them read from the ledger."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookwire.errors import ConfigurationError
from hookwire.stores import runner
from hookwire.stores.ledger import UsageLedger, UsageRecord
from hookwire.ui.spend import BudgetLine, parse_budget, period_bounds, spend_against


def test_budgets_are_parsed() -> None:
    assert parse_budget("user=5/month") == BudgetLine("user", None, Decimal(5), "month")
    assert parse_budget(" org:acme=100.5/day ") == BudgetLine(
        "org", "acme", Decimal("100.5"), "day"
    )
    assert parse_budget("agent=20").period == "month"
    assert parse_budget("user:bob=1/all").period == "all"
    for bad in ("team=5", "user=", "user=0", "user=5/week", "user=1.2.3", "user"):
        with pytest.raises(ConfigurationError, match="SCOPE"):
            parse_budget(bad)


@given(st.text(max_size=30))
def test_anything_else_is_refused_with_the_form_to_write(text: str) -> None:
    try:
        line = parse_budget(text)
    except ConfigurationError as exc:
        message = str(exc)
    else:
        assert line.limit > 0 and line.scope in ("user", "org", "agent")
        return
    assert "SCOPE[:KEY]=LIMIT[/PERIOD]" in message


def test_periods() -> None:
    at = datetime(2026, 2, 10, 15, 30, tzinfo=timezone.utc)
    assert period_bounds("day", at) == (
        datetime(2026, 2, 10, tzinfo=timezone.utc),
        datetime(2026, 2, 11, tzinfo=timezone.utc),
    )
    assert period_bounds("month", at) == (
        datetime(2026, 2, 1, tzinfo=timezone.utc),
        datetime(2026, 3, 1, tzinfo=timezone.utc),
    )
    assert period_bounds("all", at) == (None, None)


def test_spend_against_a_budget_with_its_burn_rate(db_url: str) -> None:
    ledger = UsageLedger(db_url)
    user = f"u-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    rows = [
        UsageRecord(run_id=f"{user}-{i}", created_at=now, prompt_tokens=1, completion_tokens=1,
                    total_tokens=2, cost=Decimal("0.25"), user_id=user)
        for i in range(4)
    ]  # fmt: skip
    runner.run_sync(ledger.record(rows))
    every = runner.run_sync(spend_against(ledger, parse_budget("user=2/day"), now))
    mine = next(r for r in every if r["key"] == user)
    assert mine["spent"] == Decimal(1) and mine["remaining"] == Decimal(1)
    assert mine["used"] == 0.5 and mine["per_day"] >= Decimal(1)
    assert mine["projected"] == mine["per_day"]  # a one-day period
    one = runner.run_sync(spend_against(ledger, parse_budget(f"user:{user}=0.5/all"), now))
    assert [(r["spent"], r["remaining"], r["projected"]) for r in one] == [
        (Decimal(1), Decimal("-0.5"), None)
    ]

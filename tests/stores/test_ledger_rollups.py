"""Summaries from ``usage_totals`` (``hookwire.stores.ledger.rollups``): the same rows as
summing the ledger, for every grouping, filter and time range."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookwire.stores import runner
from hookwire.stores.ledger import UsageLedger, UsageRecord
from hookwire.stores.ledger.rollups import Piece, plan

UTC = timezone.utc
T0 = datetime(2026, 9, 20, tzinfo=UTC)
SPAN_DAYS = 75


def _dataset(tag: str, n: int = 400) -> list[UsageRecord]:
    """Calls over 75 days from 2026-09-20, some without user, org or agent, some without a
    price or cached/reasoning counts, some estimated, in two currencies."""
    rnd = random.Random(17)
    out = []
    for i in range(n):
        cost = None if rnd.random() < 0.2 else Decimal(rnd.randint(0, 10**6)).scaleb(-7)
        out.append(
            UsageRecord(
                run_id=f"{tag}-{i}",
                created_at=T0 + timedelta(seconds=rnd.randint(0, SPAN_DAYS * 86400)),
                prompt_tokens=rnd.randint(0, 500),
                completion_tokens=rnd.randint(0, 500),
                total_tokens=rnd.randint(0, 1000),
                cached_tokens=rnd.choice([None, rnd.randint(0, 50)]),
                reasoning_tokens=None if rnd.random() < 0.7 else rnd.randint(0, 50),
                cost=cost,
                currency=rnd.choice(["USD", "USD", "USD", "EUR"]),
                user_id=rnd.choice([None, f"{tag}-u1", f"{tag}-u2", f"{tag}-u3"]),
                org_id=rnd.choice([None, f"{tag}-o1", f"{tag}-o2"]),
                agent=rnd.choice([None, f"{tag}-a1", f"{tag}-a2"]),
                model=rnd.choice([None, "m1", "m2"]),
                provider=rnd.choice([None, "openai"]),
                source=rnd.choice(["auto", "auto", "manual", "estimated"]),
            )
        )
    return out


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[UsageLedger, str]:
    path = tmp_path_factory.mktemp("rollups") / "hookwire.db"
    ledger = UsageLedger(f"sqlite+aiosqlite:///{path}")
    tag = uuid.uuid4().hex[:8]
    runner.run_sync(ledger.record(_dataset(tag)))
    return ledger, tag


def _both(ledger: UsageLedger, **kw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The summary from the totals, and from the ledger's rows alone."""
    from_totals = runner.run_sync(ledger.summary(**kw))
    ledger.summaries_from_totals = False  # type: ignore[attr-defined]
    try:
        from_rows = runner.run_sync(ledger.summary(**kw))
    finally:
        del ledger.summaries_from_totals  # type: ignore[attr-defined]
    return from_totals, from_rows


_WHEN = st.one_of(
    st.none(),
    st.integers(-2 * 86400, (SPAN_DAYS + 2) * 86400).map(lambda s: T0 + timedelta(seconds=s)),
    st.integers(-2, SPAN_DAYS + 2).map(lambda d: T0 + timedelta(days=d)),
    st.sampled_from([datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)]),
)
_GROUPS = st.lists(
    st.sampled_from(["user", "org", "agent", "model", "provider", "day", "month"]),
    max_size=2,
    unique=True,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=_GROUPS,
    since=_WHEN,
    until=_WHEN,
    filter_on=st.sampled_from([None, "user", "org", "agent", "model", "provider"]),
    which=st.integers(1, 3),
)
def test_summary_from_totals_equals_summary_from_the_ledger(
    filled: tuple[UsageLedger, str],
    groups: list[str],
    since: datetime | None,
    until: datetime | None,
    filter_on: str | None,
    which: int,
) -> None:
    ledger, tag = filled
    where = {}
    if filter_on == "model":
        where["model"] = "m1"
    elif filter_on == "provider":
        where["provider"] = "openai"
    elif filter_on is not None:
        where[filter_on] = f"{tag}-{filter_on[0]}{min(which, 2 if filter_on != 'user' else 3)}"
    from_totals, from_rows = _both(ledger, by=groups, since=since, until=until, where=where)
    assert from_totals == from_rows


def test_summary_of_everything_counts_calls_without_a_user(
    filled: tuple[UsageLedger, str],
) -> None:
    ledger, _ = filled
    from_totals, from_rows = _both(ledger, by=["user"])
    assert from_totals == from_rows
    assert any(row["user"] is None for row in from_totals)
    assert sum(r["calls"] for r in from_totals) == 400


def test_a_summary_by_two_scopes_reads_the_ledger() -> None:
    assert plan(["user", "org"], None, None, {}) is None
    assert plan(["user"], None, None, {"org": "o"}) is None
    assert plan(["model"], None, None, {"provider": "openai"}) is None
    assert plan(["model"], None, None, {}) is not None


def test_partial_days_come_from_the_ledger_and_whole_months_from_the_totals() -> None:
    since = datetime(2026, 9, 20, 12, tzinfo=UTC)
    until = datetime(2026, 12, 3, 6, tzinfo=UTC)
    how = plan(["user"], since, until, {})
    assert how is not None and how.keyless and how.scope == "user"
    assert set(how.pieces) == {
        Piece(None, since, datetime(2026, 9, 21, tzinfo=UTC)),
        Piece(None, datetime(2026, 12, 3, tzinfo=UTC), until),
        Piece("day", "2026-09-21", "2026-10-01"),
        Piece("day", "2026-12-01", "2026-12-03"),
        Piece("month", "2026-10", "2026-12"),
    }


def test_a_summary_over_all_time_reads_one_total_per_key() -> None:
    how = plan(["agent"], None, None, {"agent": "a"})
    assert how is not None and not how.keyless
    assert how.pieces == (Piece("all", None, None),)


@pytest.mark.postgres
def test_summary_from_totals_equals_the_ledger_on_postgres(pg_database_url: str) -> None:
    ledger = UsageLedger(pg_database_url)
    tag = uuid.uuid4().hex[:8]
    runner.run_sync(ledger.record(_dataset(tag, 200)))
    since = T0 + timedelta(days=3, hours=5)
    until = T0 + timedelta(days=50, hours=1)
    for groups in ([], ["user"], ["org", "day"], ["month", "agent"], ["day"], ["model"]):
        from_totals, from_rows = _both(ledger, by=groups, since=since, until=until)
        assert from_totals == from_rows, groups
        from_totals, from_rows = _both(ledger, by=groups, where={"user": f"{tag}-u1"})
        assert from_totals == from_rows, groups

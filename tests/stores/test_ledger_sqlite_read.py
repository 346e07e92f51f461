"""``hookwire.stores.ledger.sqlite_read``: a summary of an SQLite file through ``sqlite3`` is
the store's summary, row for row, and is given up (``None``) whenever the store must decide."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ledger_rollups import _GROUPS, _WHEN, T0, _dataset

from hookwire.errors import ConfigurationError
from hookwire.stores import engine, runner
from hookwire.stores.ledger import UsageLedger
from hookwire.stores.ledger.sqlite_read import TOTALS, summary
from hookwire.stores.schema import usage_totals


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[UsageLedger, str, str]:
    path = tmp_path_factory.mktemp("sqlite_read") / "hookwire.db"
    ledger = UsageLedger(f"sqlite+aiosqlite:///{path}")
    tag = uuid.uuid4().hex[:8]
    runner.run_sync(ledger.record(_dataset(tag)))
    return ledger, str(path), tag


def _store(ledger: UsageLedger, **kw: Any) -> list[dict[str, Any]]:
    return runner.run_sync(ledger.summary(**kw))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=_GROUPS,
    since=_WHEN,
    until=_WHEN,
    filter_on=st.sampled_from([None, "user", "org", "agent", "model", "provider"]),
)
def test_the_summary_is_the_stores(
    filled: tuple[UsageLedger, str, str],
    groups: list[str],
    since: datetime | None,
    until: datetime | None,
    filter_on: str | None,
) -> None:
    ledger, path, tag = filled
    where = {}
    if filter_on == "model":
        where["model"] = "m1"
    elif filter_on == "provider":
        where["provider"] = "openai"
    elif filter_on is not None:
        where[filter_on] = f"{tag}-{filter_on[0]}1"
    kw: dict[str, Any] = {"by": groups, "since": since, "until": until, "where": where}
    assert summary(path, **kw) == _store(ledger, **kw)


def test_two_scopes_and_the_whole_ledger_are_the_stores(
    filled: tuple[UsageLedger, str, str],
) -> None:
    ledger, path, tag = filled
    for kw in (
        {},
        {"by": ["user", "model"]},
        {"by": "day", "where": {"org": f"{tag}-o1", "agent": f"{tag}-a2"}},
        {"by": ["month", "user"], "since": T0.date().isoformat()},
    ):
        rows = summary(path, **kw)  # type: ignore[arg-type]
        assert rows and rows == _store(ledger, **kw)


def test_bad_groups_and_filters_raise_as_the_store_does(
    filled: tuple[UsageLedger, str, str],
) -> None:
    _, path, _ = filled
    with pytest.raises(ConfigurationError, match="cannot group usage by 'team'"):
        summary(path, ["team"])
    with pytest.raises(ConfigurationError, match="names a group twice"):
        summary(path, ["user", "user"])
    with pytest.raises(ConfigurationError, match="cannot filter usage by 'team'"):
        summary(path, where={"team": "x"})


def test_a_file_that_is_not_there_stays_not_there(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    assert summary(str(path)) is None
    assert not path.exists()


def test_a_file_at_another_revision_is_left_to_the_store(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    runner.run_sync(engine.upgrade(f"sqlite+aiosqlite:///{path}", "0003_budget_totals"))
    assert summary(str(path)) is None
    conn = sqlite3.connect(path)  # nor a file without hookwire's schema
    try:
        conn.execute("DROP TABLE alembic_version")
        conn.commit()
    finally:
        conn.close()  # (a sqlite3 connection's ``with`` commits but does not close it)
    assert summary(str(path)) is None


def test_the_totals_columns_are_the_schemas() -> None:
    assert set(TOTALS) == {c.name for c in usage_totals.columns if not c.primary_key}

"""``hookwire costs``: the ledger as a table or JSON rows."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hookwire.cli import app
from hookwire.cli.costs import parse_when
from hookwire.stores import runner
from hookwire.stores.ledger import UsageLedger, UsageRecord

UTC = timezone.utc
NOW = datetime.now(UTC)


def _fill(url: str, org: str) -> None:
    def rec(user: str, model: str, cost: str | None, days_ago: int = 0) -> UsageRecord:
        return UsageRecord(
            run_id=uuid.uuid4().hex,
            created_at=NOW - timedelta(days=days_ago),
            prompt_tokens=1000,
            completion_tokens=100,
            total_tokens=1100,
            cost=None if cost is None else Decimal(cost),
            user_id=user,
            org_id=org,
            model=model,
        )

    runner.run_sync(
        UsageLedger(url).record(
            [
                rec("alice", "gpt-4o", "0.0035"),
                rec("alice", "gpt-4o-mini", "0.00021"),
                rec("bob", "gpt-4o", "0.0035", days_ago=10),
                rec("bob", "home-made", None),
            ]
        )
    )


def run(*args: str) -> typer.testing.Result:
    # A wide "terminal", so that rich does not shorten the table's cells.
    return CliRunner().invoke(app, ["costs", *args], env={"COLUMNS": "200"})


def test_json_rows(db_url: str) -> None:
    org = uuid.uuid4().hex
    _fill(db_url, org)
    result = run("--db", db_url, "--org", org, "--by", "user", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output, parse_float=Decimal)
    assert [r["user"] for r in rows] == ["alice", "bob"]
    alice, bob = rows
    assert alice["calls"] == 2
    assert alice["prompt_tokens"] == 2000
    assert alice["completion_tokens"] == 200
    assert alice["cost"] == Decimal("0.00371")  # exact, not a rounded float
    assert bob["cost"] == Decimal("0.0035")
    assert bob["unknown_cost_calls"] == 1
    assert alice["currency"] == "USD"


def test_json_cost_is_null_when_no_price_is_known(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    _fill(url, "o")
    result = run("--db", url, "--model", "home-made", "--json")
    rows = json.loads(result.output)
    assert rows[0]["cost"] is None


def test_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    _fill(url, "o")
    result = run("--db", url, "--by", "user,model")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "alice" in out
    assert "gpt-4o-mini" in out
    assert "0.00021 USD" in out
    assert "unpriced calls" in out
    assert "total" in out
    assert "0.00721 USD" in out  # the grand total of the priced calls


def test_time_range(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    _fill(url, "o")
    recent = json.loads(run("--db", url, "--since", "7d", "--json").output)
    assert recent[0]["calls"] == 3
    older = json.loads(run("--db", url, "--until", "7d", "--by", "day", "--json").output)
    assert len(older) == 1
    assert older[0]["calls"] == 1
    assert older[0]["day"] == (NOW - timedelta(days=10)).strftime("%Y-%m-%d")


def test_nothing_recorded(tmp_path: Path) -> None:
    created = CliRunner().invoke(app, ["db", "upgrade", "--db", f"sqlite:///{tmp_path}/empty.db"])
    assert created.exit_code == 0, created.output
    result = run("--db", f"sqlite:///{tmp_path}/empty.db")
    assert result.exit_code == 0
    assert "No LLM usage recorded" in result.output
    assert run("--db", f"sqlite:///{tmp_path}/empty.db", "--json").output.strip() == "[]"


def test_default_database_is_hookwire_db_in_cwd() -> None:
    _fill("sqlite:///hookwire.db", "o")  # the tests run in a fresh cwd
    rows = json.loads(run("--json").output, parse_float=Decimal)
    assert rows[0]["calls"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "weather"], "cannot group by 'weather'"),
        (["--since", "last tuesday"], "is not a time"),
        (["--since", "99999999d"], "outside the dates hookwire can use"),
        (["--until", "9999-12-31T23:00:00-05:00"], "outside the dates hookwire can use"),
    ],
)
def test_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    _fill(f"sqlite:///{tmp_path}/c.db", "o")
    result = run("--db", f"sqlite:///{tmp_path}/c.db", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"hookwire costs: error: Invalid value for '{args[0]}': ")
    assert message in result.stderr


def test_costs_since_a_span_beyond_the_calendar_is_a_usage_error(tmp_path: Path) -> None:
    result = run("--db", f"sqlite:///{tmp_path}/c.db", "--since", "99999999d")
    assert result.exit_code == 2
    assert result.stderr.startswith("hookwire costs: error: Invalid value for '--since': ")
    assert "Traceback" not in result.output


def test_costs_on_a_mistyped_sqlite_path_creates_nothing(tmp_path: Path) -> None:
    mistyped = tmp_path / "no-such-dir" / "hookwire.db"
    result = run("--db", f"sqlite:///{mistyped}")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"hookwire costs: error: there is no database at {mistyped}")
    assert not mistyped.parent.exists()
    result = run("--db", f"sqlite:///{tmp_path}/typo.db", "--json")
    assert result.exit_code == 1
    assert list(tmp_path.iterdir()) == []


def test_unreachable_database_is_a_clean_error() -> None:
    result = run("--db", "postgresql://postgres@127.0.0.1:1/none")
    assert result.exit_code == 1
    assert result.stderr.startswith("hookwire costs: error: ")
    assert "Traceback" not in result.output


def test_a_bad_url_is_a_clean_error() -> None:
    result = run("--db", "mysql://x/y")
    assert result.exit_code == 1
    assert result.stderr.startswith("hookwire costs: error: unsupported database 'mysql'")


def test_parse_when() -> None:
    now = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
    assert parse_when(None) is None
    assert parse_when("today", now=now) == datetime(2026, 11, 23, tzinfo=UTC)
    assert parse_when("24h", now=now) == now - timedelta(hours=24)
    assert parse_when("30m", now=now) == now - timedelta(minutes=30)
    assert parse_when("2w", now=now) == now - timedelta(weeks=2)
    assert parse_when("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_when("2026-11-01T08:00:00Z") == datetime(2026, 11, 1, 8, tzinfo=UTC)
    with pytest.raises(typer.BadParameter):
        parse_when("soon")

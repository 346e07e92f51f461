"""``hookwire db upgrade`` and ``hookwire db current``."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from hookwire.cli import app
from hookwire.stores import engine

runner = CliRunner()


def test_db_upgrade_and_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/up.db"
    result = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert result.exit_code == 0, result.output
    assert engine.head_revision() in result.output
    current = runner.invoke(app, ["db", "current", "--db", url])
    assert current.exit_code == 0
    assert current.output.count(engine.head_revision()) == 2


def test_db_upgrade_postgres_is_idempotent(pg_database_url: str) -> None:
    result = runner.invoke(app, ["db", "upgrade", "--db", pg_database_url])
    assert result.exit_code == 0, result.output
    assert engine.head_revision() in result.output


def test_current_of_a_missing_database_is_an_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["db", "current", "--db", f"sqlite:///{tmp_path}/none.db"])
    assert result.exit_code == 1
    assert result.stderr.startswith("hookwire db current: error: there is no database at ")
    assert not (tmp_path / "none.db").exists()


def test_a_bad_url_is_an_error() -> None:
    result = runner.invoke(app, ["db", "upgrade", "--db", "postgresql://host-without-db"])
    assert result.exit_code == 1
    assert result.stderr.startswith("hookwire db upgrade: error: ")
    assert "names no database" in result.stderr


def test_db_prune_dry_run_counts_and_prune_deletes(tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone
    from decimal import Decimal

    from hookwire.stores import runner as store_runner
    from hookwire.stores.ledger import UsageLedger, UsageRecord

    url = f"sqlite:///{tmp_path}/prune.db"
    old = datetime.now(timezone.utc) - timedelta(days=500)
    call = UsageRecord(
        run_id="r-old", created_at=old, prompt_tokens=1, completion_tokens=1, total_tokens=2,
        cost=Decimal("0.1"), user_id="u",
    )  # fmt: skip
    store_runner.run_sync(UsageLedger(url).record([call]), 60)
    dry = runner.invoke(app, ["db", "prune", "--dry-run", "--db", url])
    assert dry.exit_code == 0, dry.output
    assert "usage_ledger: would delete 1 rows" in dry.output
    done = runner.invoke(app, ["db", "prune", "--db", url])
    assert "usage_ledger: deleted 1 rows" in done.output
    again = runner.invoke(app, ["db", "prune", "--dry-run", "--db", url])
    assert "usage_ledger: would delete 0 rows" in again.output
    refused = runner.invoke(app, ["db", "prune", "--ledger-days", "-1", "--db", url])
    assert refused.exit_code == 2

"""``hookwire ui``: what it refuses before serving (the server itself: tests/ui)."""

from __future__ import annotations

from typer.testing import CliRunner

from hookwire.cli import app

runner = CliRunner()


def test_ui_refuses_a_bad_budget_and_a_missing_database(db_url: str, tmp_path: object) -> None:
    result = runner.invoke(app, ["ui", "--db", db_url, "--budget", "team=5"])
    assert result.exit_code == 2 and "SCOPE" in result.output
    missing = runner.invoke(app, ["ui", "--db", "sqlite:////nonexistent/dir/none.db"])
    assert missing.exit_code == 1 and "no database" in missing.output

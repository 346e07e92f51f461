"""The ``--db`` option: which database a command reads, and when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from hookwire.cli.command import CommandError
from hookwire.cli.database import database_url
from hookwire.errors import ConfigurationError


def test_the_default_is_hookwire_db_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOOKWIRE_DATABASE_URL", raising=False)
    assert database_url(None, must_exist=False) == f"sqlite+aiosqlite:///{tmp_path / 'hookwire.db'}"
    with pytest.raises(CommandError, match=r"there is no database at .*pass --db URL"):
        database_url(None, must_exist=True)


def test_the_environment_names_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKWIRE_DATABASE_URL", "postgresql://h/app")
    assert database_url(None, must_exist=True) == "postgresql+asyncpg://h/app"


def test_a_bad_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="accepted"):
        database_url("mysql://x/y", must_exist=False)


def test_a_blank_hookwire_database_url_is_an_error_that_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from hookwire.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOOKWIRE_DATABASE_URL", "   ")
    for args in (["costs"], ["history", "list"], ["db", "current"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1
        assert result.stderr.startswith(
            f"hookwire {' '.join(args)}: error: HOOKWIRE_DATABASE_URL is set but empty"
        )
    assert list(tmp_path.iterdir()) == []  # no ./hookwire.db made in its place

"""The ``--db`` option: which database a command reads, and when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from hookwire.cli.command import CommandError
from hookwire.cli.database import database_url, sqlite_file
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


@pytest.mark.parametrize(
    "db",
    [
        None,
        "sqlite:///x/hookwire.db",
        "sqlite+aiosqlite:///x/hookwire.db",
        " sqlite:///x/hookwire.db ",
        "sqlite+pysqlite:///~/x.db",
        "sqlite:////abs/x.db",
    ],
)
def test_the_sqlite_file_is_the_one_the_stores_open(
    db: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOOKWIRE_DATABASE_URL", raising=False)
    url = database_url(db, must_exist=False)
    assert f"sqlite+aiosqlite:///{sqlite_file(db)}" == url


@pytest.mark.parametrize(
    "db",
    [
        "postgresql://h/app",
        "sqlite:///:memory:",
        "sqlite:///file:x.db?mode=ro&uri=true",
        "sqlite:///x%20y.db",
        "sqlite:///x.db?timeout=3",
    ],
)
def test_other_databases_are_left_to_the_stores(db: str) -> None:
    assert sqlite_file(db) is None


def test_the_environment_names_the_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKWIRE_DATABASE_URL", f"sqlite:///{tmp_path}/h.db")
    assert sqlite_file(None) == str(tmp_path / "h.db")
    monkeypatch.setenv("HOOKWIRE_DATABASE_URL", "postgresql://h/app")
    assert sqlite_file(None) is None

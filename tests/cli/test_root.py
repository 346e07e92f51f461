"""The ``hookwire`` command itself: --version, its commands, the console script."""

from __future__ import annotations

from importlib.metadata import entry_points, version

import pytest
from typer.testing import CliRunner

import hookwire.cli
from hookwire.cli import app
from hookwire.cli.root import hookwire_version

runner = CliRunner()


def test_version_option() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"hookwire {version('hookwire')}\n"


def test_version_is_the_installed_one() -> None:
    assert hookwire_version() == version("hookwire")
    assert runner.invoke(app, ["version"]).stdout == f"{version('hookwire')}\n"


def test_every_command_is_there() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("demo", "report", "history", "costs", "db"):
        assert name in result.stdout


@pytest.mark.parametrize("args", [["nope"], ["--nope"]])
def test_unknown_commands_and_options_exit_2(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith("hookwire: error: No such ")
    assert "Try 'hookwire --help' for help." in result.stderr


def test_the_console_script_is_the_package_main() -> None:
    (script,) = entry_points(group="console_scripts", name="hookwire")
    assert script.value == "hookwire.cli:main"
    assert script.load() is hookwire.cli.main


def test_commands_lists_every_command_of_the_app() -> None:
    import typer.main

    from hookwire.cli.root import COMMANDS

    group = typer.main.get_command(app)
    assert set(group.commands) - {"version"} == set(COMMANDS)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "built"),
    [
        (["costs", "--by", "user"], ["costs"]),
        (["--version"], None),
        (["import", "x.jsonl"], ["import"]),
        (["--help"], None),
        ([], None),
        (["nope"], None),
        (["history", "list"], ["history"]),
    ],
)
def test_the_console_script_builds_the_command_it_runs(
    args: list[str], built: list[str] | None
) -> None:
    from hookwire.cli.root import COMMANDS, _asked

    assert _asked(args) == (built or list(COMMANDS))

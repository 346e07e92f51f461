"""One error style: ``hookwire <command>: error: ...`` on stderr, exit 1; usage errors exit 2."""

from __future__ import annotations

from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from hookwire.cli.command import Command, CommandError, new_app
from hookwire.errors import ConversationNotFound

app = new_app("hookwire", help="A test command.")
group = new_app(help="A group.")
app.add_typer(group, name="group")


@app.callback()
def _root() -> None:
    """A test command."""


@app.command("fail", cls=Command)
def fail(
    what: Annotated[str, typer.Argument()],
    count: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Fail in the way ``what`` says."""
    if what == "hookwire":
        raise ConversationNotFound("conversation 'c-1' not found; list them: hookwire history list")
    if what == "oserror":
        open("/no/such/dir/file")  # noqa: SIM115 - the error is the point
    if what == "command":
        raise CommandError("there is nothing to do; pass --what")
    if what == "exit":
        raise typer.Exit(3)
    if what == "bad-parameter":
        raise typer.BadParameter("is not a colour", param_hint="'--colour'")
    if what == "bug":
        raise RuntimeError("a bug is not a user error")
    typer.echo(f"fine {count}")


@group.command("deep", cls=Command)
def deep() -> None:
    """Fail, one level down."""
    raise CommandError("nothing is deep enough")


runner = CliRunner()


def test_success() -> None:
    result = runner.invoke(app, ["fail", "nothing", "--count", "2"])
    assert result.exit_code == 0
    assert result.stdout == "fine 2\n"


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("hookwire", "conversation 'c-1' not found; list them: hookwire history list"),
        ("oserror", "No such file or directory: /no/such/dir/file"),
        ("command", "there is nothing to do; pass --what"),
    ],
)
def test_a_failed_command_exits_1_with_one_line(what: str, message: str) -> None:
    result = runner.invoke(app, ["fail", what])
    assert result.exit_code == 1
    assert result.stderr == f"hookwire fail: error: {message}\n"
    assert result.stdout == ""


def test_the_error_names_the_whole_command_path() -> None:
    result = runner.invoke(app, ["group", "deep"])
    assert result.exit_code == 1
    assert result.stderr == "hookwire group deep: error: nothing is deep enough\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fail"], "Missing argument"),
        (["fail", "x", "--count", "0"], "Invalid value for '--count'"),
        (["fail", "x", "--colour", "red"], "No such option: --colour"),
        (["fail", "bad-parameter"], "Invalid value for '--colour': is not a colour"),
    ],
)
def test_a_usage_error_exits_2_with_usage_and_help(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    first, usage, hint = result.stderr.splitlines()
    assert first.startswith(f"hookwire fail: error: {message}")
    assert usage.startswith("Usage: hookwire fail [OPTIONS]")
    assert hint == "Try 'hookwire fail --help' for help."


def test_an_unknown_command_is_a_usage_error_of_the_root() -> None:
    result = runner.invoke(app, ["nope"])
    assert result.exit_code == 2
    assert result.stderr.startswith("hookwire: error: No such command 'nope'.")


def test_exit_keeps_its_status() -> None:
    assert runner.invoke(app, ["fail", "exit"]).exit_code == 3


def test_a_bug_is_not_disguised_as_a_user_error() -> None:
    result = runner.invoke(app, ["fail", "bug"])
    assert isinstance(result.exception, RuntimeError)


def test_not_standalone_raises_for_the_caller() -> None:
    command = typer.main.get_command(app)
    with pytest.raises(CommandError) as caught:
        command.main(["fail", "command"], standalone_mode=False)
    assert caught.value.ctx is not None
    assert caught.value.ctx.command_path == "hookwire fail"

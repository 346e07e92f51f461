"""The ``hookwire`` command: ``--version``, and its commands, one module each.

- ``hookwire demo``                          (``hookwire.cli.demo``)
- ``hookwire report LOG.jsonl ...``          (``hookwire.cli.report``)
- ``hookwire history list`` / ``show ID``    (``hookwire.cli.history``)
- ``hookwire costs ...``                     (``hookwire.cli.costs``)
- ``hookwire db upgrade`` / ``current`` / ``prune`` (``hookwire.cli.db``)
- ``hookwire traces prune ...``              (``hookwire.cli.traces``)
- ``hookwire import LOG.jsonl ...``          (``hookwire.cli.importing``)
- ``hookwire ui ...``                        (``hookwire.cli.ui``)
- ``hookwire events status`` / ``replay`` / ``tail`` (``hookwire.cli.events``)

Errors follow one style (``hookwire.cli.command``): ``hookwire <command>: error: ...`` on
stderr, exit status 1; usage errors exit 2.

The console script builds the ``hookwire`` command with only the command it is asked to run
(Typer reads the signature of every command it is given, and each module imports what its
command needs): ``hookwire costs`` never loads ``hookwire ui``'s module. ``app`` has them all.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .command import new_app

if TYPE_CHECKING:
    app: typer.Typer

__all__ = ["COMMANDS", "app", "build_app", "hookwire_version", "main"]

#: Each command of ``hookwire`` and the module of ``hookwire.cli`` that adds it (``register``),
#: in the order they are added.
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "report": "report",
    "history": "history",
    "costs": "costs",
    "db": "db",
    "events": "events",
    "traces": "traces",
    "import": "importing",
    "ui": "ui",
}


def hookwire_version() -> str:
    """The installed hookwire's version (its package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hookwire")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from .. import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"hookwire {hookwire_version()}")
        raise typer.Exit()


def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print hookwire's version and exit.",
        ),
    ] = False,
) -> None:
    """Event hooks for LLM applications."""


def version_command() -> None:
    """Print hookwire's version (``hookwire --version`` says it with the name)."""
    typer.echo(hookwire_version())


def build_app(commands: Iterable[str] = COMMANDS) -> typer.Typer:
    """The ``hookwire`` command with ``--version`` and the commands named (of
    :data:`COMMANDS`)."""
    built = new_app(
        "hookwire",
        help="Event hooks for LLM applications: run the demo, read logs, history and costs.",
    )
    built.callback()(_root)
    built.command("version", hidden=True)(version_command)
    for name in commands:
        importlib.import_module(f".{COMMANDS[name]}", __package__).register(built)
    return built


def _asked(args: Sequence[str]) -> list[str]:
    """The command ``args`` runs, as a list of at most one name of :data:`COMMANDS`: the first
    argument that is not an option (``hookwire``'s own options take no value); all of them
    when it names none (help, or an error that lists them)."""
    for arg in args:
        if not arg.startswith("-"):
            return [arg] if arg in COMMANDS else list(COMMANDS)
    return list(COMMANDS)


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()["app"] = value = build_app()
    return value


def main() -> None:
    """Entry point of the ``hookwire`` console script."""
    build_app(_asked(sys.argv[1:]))()

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
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import costs, db, demo, events, history, importing, report, traces, ui
from .command import new_app

__all__ = ["app", "hookwire_version", "main"]

app = new_app(
    "hookwire",
    help="Event hooks for LLM applications: run the demo, read logs, history and costs.",
)


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


@app.callback()
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


@app.command("version", hidden=True)
def version_command() -> None:
    """Print hookwire's version (``hookwire --version`` says it with the name)."""
    typer.echo(hookwire_version())


for _module in (demo, report, history, costs, db, events, traces, importing, ui):
    _module.register(app)


def main() -> None:
    """Entry point of the ``hookwire`` console script."""
    app()

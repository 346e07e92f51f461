"""The ``hookwire`` command.

Each command group lives beside the code it drives and registers itself here through a
``register(app)`` function, so this module only assembles them:

- ``hookwire demo``                        (``hookwire.demo``)
- ``hookwire report LOG.jsonl ...``        (``hookwire.report``)
- ``hookwire db upgrade`` / ``history ...``  (``hookwire.stores.cli``)
- ``hookwire costs ...``                   (``hookwire.costs``)
"""

from __future__ import annotations

import importlib
import sys

import typer

from . import __version__

__all__ = ["app", "main"]

app = typer.Typer(
    name="hookwire",
    help="Event hooks for LLM applications: run the demo, read logs, history and costs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COMMAND_MODULES = (
    "hookwire.demo",
    "hookwire.report",
    "hookwire.stores.cli",
    "hookwire.costs",
)


@app.callback()
def _root() -> None:
    """Event hooks for LLM applications."""


@app.command()
def version() -> None:
    """Print hookwire's version."""
    typer.echo(__version__)


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (name + ".").startswith(exc.name + "."):
                continue  # that command group is not part of this build
            raise
        module.register(app)


_register_all()


def main() -> None:
    """Entry point of the console script."""
    sys.exit(app())

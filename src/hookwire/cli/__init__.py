"""The ``hookwire`` command line: one module per command, assembled in ``root``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .root import main

if TYPE_CHECKING:
    import typer

    app: typer.Typer

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    # ``app`` (every command) is built when first named; the console script builds its own.
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import root

    globals()["app"] = value = root.app
    return value

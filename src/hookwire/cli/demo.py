"""``hookwire demo [--dir DIR] [--model M] [--base-url URL] [--api-key KEY]``: the support
conversation of ``hookwire.demo``, offline on ``LocalLLM`` unless a model or endpoint is given."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .command import Command

__all__ = ["demo", "register"]


def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo writes its log and databases.")
    ] = Path("hookwire-demo"),
    model: Annotated[
        str | None,
        typer.Option(help="Run against a real endpoint with this model (e.g. gpt-4o-mini)."),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible endpoint (default: OPENAI_BASE_URL)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="API key (default: OPENAI_API_KEY).", show_default=False),
    ] = None,
) -> None:
    """Run a short support conversation that shows every kind of event (offline by default)."""
    # Imported here: the demo brings in the LLM clients, which `hookwire --version` does not need.
    from ..demo import run_demo

    run_demo(directory, model=model, base_url=base_url, api_key=api_key)


def register(app: typer.Typer) -> None:
    """Add ``hookwire demo`` to ``app``."""
    app.command("demo", cls=Command)(demo)

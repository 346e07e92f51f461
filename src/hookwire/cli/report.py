"""``hookwire report LOG.jsonl ... [--by model|agent|user|day] [--json] [--rotated]``: what the
JSONL logs written by ``FileLogCallback`` say (``hookwire.report`` reads them)."""

from __future__ import annotations

from typing import Annotated

import typer

from .command import Command

__all__ = ["register", "report"]


#: What ``--by`` takes: ``hookwire.report.GROUPINGS``, spelled out here so that ``hookwire
#: --help`` does not import the reader (and its sketches).
GROUPINGS = ("model", "agent", "user", "day")


def _grouping(value: str) -> str:
    if value not in GROUPINGS:
        raise typer.BadParameter(f"cannot group by {value!r}; use one of: {', '.join(GROUPINGS)}")
    return value


def report(
    logs: Annotated[
        list[str],
        typer.Argument(
            metavar="LOG",
            help="JSONL log files written by FileLogCallback ('-' reads stdin).",
            show_default=False,
        ),
    ],
    by: Annotated[
        str,
        typer.Option("--by", parser=_grouping, help=f"Group by: {', '.join(GROUPINGS)}."),
    ] = "model",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    rotated: Annotated[
        bool,
        typer.Option("--rotated", "-r", help="Also read each log's rotated backups (LOG.1, ...)."),
    ] = False,
) -> None:
    """Summarise JSONL logs: calls, tokens, cost, errors, retries, latency per group."""
    from ..report import render, render_json, summarize

    summary = summarize(logs, by=by, rotated=rotated)  # type: ignore[arg-type]  # a GroupBy: --by's choices
    if as_json:
        render_json(summary)
    else:
        render(summary)


def register(app: typer.Typer) -> None:
    """Add ``hookwire report`` to ``app``."""
    app.command("report", cls=Command)(report)

"""``hookwire traces``: the spans ``TraceStoreCallback`` records (``hookwire ui`` shows them).

- ``hookwire traces prune --older-than 30d [--max-spans N] [--db URL]``: delete the traces that
  started before then, and with ``--max-spans`` the oldest traces until at most N spans are
  left (a size cap). A trace goes whole: its root and every span under it.
- ``hookwire traces rebuild-rollups [--db URL]``: recount the hourly rollups the health and
  cost views read from the spans (writing and pruning keep them; this is for spans loaded
  into the tables some other way).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import typer

from .command import Command, CommandError, new_app
from .costs import parse_when
from .database import DbOption, database_url, run

__all__ = ["prune", "rebuild_rollups", "register"]


def prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Delete traces that started longer ago than this (30d, 12h, 2w) or before "
            "this date (2026-11-01).",
            show_default=False,
        ),
    ] = None,
    max_spans: Annotated[
        int | None,
        typer.Option(
            "--max-spans",
            min=0,
            help="Then delete the oldest traces until at most this many spans are left.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Delete old traces (by age, and to a size cap)."""
    if older_than is None and max_spans is None:
        raise CommandError("say what to delete: --older-than 30d, --max-spans N, or both")
    before: datetime | None = None
    if older_than is not None:
        # a bare number of days is what people type most
        text = older_than.strip()
        before = parse_when(text + "d" if text.isdigit() else text)
        if before is not None and before > datetime.now(timezone.utc):
            raise CommandError(f"--older-than {older_than} is in the future; nothing is that old")
    from ..stores.traces import TraceStore

    store = TraceStore.for_url(database_url(db, must_exist=True))
    deleted = run(store.prune(before=before, max_spans=max_spans))
    left = run(store.count())
    typer.echo(f"deleted {deleted:,} span(s); {left:,} left")


def rebuild_rollups(db: DbOption = None) -> None:
    """Recount the hourly rollups of the health and cost views from the spans."""
    from ..stores.traces import TraceStore

    store = TraceStore.for_url(database_url(db, must_exist=True))
    counted = run(store.rebuild_rollups())
    typer.echo(f"counted {counted:,} ended span(s) into the hourly rollups")


def register(app: typer.Typer) -> None:
    """Add ``hookwire traces`` and its commands to ``app``."""
    group = new_app(help="Traces recorded by TraceStoreCallback: retention, rollups.")
    group.command("prune", cls=Command)(prune)
    group.command("rebuild-rollups", cls=Command)(rebuild_rollups)
    app.add_typer(group, name="traces")

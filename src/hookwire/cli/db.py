"""``hookwire db``: the schema of the hookwire database.

- ``hookwire db upgrade [--db URL]``: create or upgrade hookwire's tables (any database).
- ``hookwire db current [--db URL]``: the schema revision the database is at, and the one this
  hookwire needs.
- ``hookwire db prune [--db URL] [--dry-run] [--ledger-days N] [--day-totals-days N]
  [--month-totals N] [--conversation-days N]``: delete what the retention lets go, in small
  transactions, safe on a live database (``hookwire.stores.retention``); ``--dry-run`` counts.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .command import Command, new_app
from .database import DbOption, database_url, run

__all__ = ["current", "prune", "register", "upgrade"]


def upgrade(db: DbOption = None) -> None:
    """Create or upgrade hookwire's tables to this version's schema."""
    from ..stores import engine

    url = database_url(db, must_exist=False)
    revision = run(engine.upgrade(url))
    typer.echo(f"{engine.redact(url)} is at schema revision {revision}")


def current(db: DbOption = None) -> None:
    """Print the schema revision of the database, and the one this hookwire needs."""
    from ..stores import engine

    url = database_url(db, must_exist=True)
    revision = run(engine.schema_revision(url))
    typer.echo(f"{engine.redact(url)}: {revision or 'no hookwire schema'}")
    typer.echo(f"this hookwire needs: {engine.head_revision()}")


def prune(
    ledger_days: Annotated[
        int, typer.Option(min=0, help="Days of usage_ledger rows kept (0: all).")
    ] = 400,
    day_totals_days: Annotated[
        int, typer.Option(min=0, help="Days of per-day usage totals kept (0: all).")
    ] = 400,
    month_totals: Annotated[
        int, typer.Option(min=0, help="Months of per-month usage totals kept (0: all).")
    ] = 25,
    conversation_days: Annotated[
        int,
        typer.Option(
            min=0, help="Days a conversation is kept after its last message (0: all, default)."
        ),
    ] = 0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Delete old usage rows, totals, expired reservations and (if asked) conversations.

    Budgets in force are never affected: the current and previous day's and month's totals
    and the all-time totals are kept whatever the options say."""
    from ..stores.retention import Retention
    from ..stores.retention import prune as prune_rows

    retention = Retention(
        ledger_days=ledger_days,
        day_totals_days=day_totals_days,
        month_totals=month_totals,
        conversation_days=conversation_days,
    )
    url = database_url(db, must_exist=True)
    counts = run(prune_rows(url, retention, dry_run=dry_run))
    verb = "would delete" if dry_run else "deleted"
    for table, count in counts.items():
        typer.echo(f"{table}: {verb} {count:,} rows")


def register(app: typer.Typer) -> None:
    """Add ``hookwire db`` and its commands to ``app``."""
    group = new_app(help="The hookwire database: schema migrations and retention.")
    group.command("upgrade", cls=Command)(upgrade)
    group.command("current", cls=Command)(current)
    group.command("prune", cls=Command)(prune)
    app.add_typer(group, name="db")

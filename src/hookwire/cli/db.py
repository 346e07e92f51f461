"""``hookwire db``: the schema of the hookwire database.

- ``hookwire db upgrade [--db URL]``: create or upgrade hookwire's tables (any database).
- ``hookwire db current [--db URL]``: the schema revision the database is at, and the one this
  hookwire needs.
"""

from __future__ import annotations

import typer

from .command import Command, new_app
from .database import DbOption, database_url, run

__all__ = ["current", "register", "upgrade"]


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


def register(app: typer.Typer) -> None:
    """Add ``hookwire db`` and its commands to ``app``."""
    group = new_app(help="The hookwire database: schema migrations.")
    group.command("upgrade", cls=Command)(upgrade)
    group.command("current", cls=Command)(current)
    app.add_typer(group, name="db")

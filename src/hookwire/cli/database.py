"""The ``--db`` option and the database it names, for ``hookwire db``, ``history`` and ``costs``.

``--db`` takes any URL the stores accept and defaults to ``HOOKWIRE_DATABASE_URL``, else
``./hookwire.db``. Commands that read run store coroutines through :func:`run`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from .command import CommandError

__all__ = ["DbOption", "database_url", "run", "sqlite_file"]

T = TypeVar("T")

#: The ``--db URL`` option of a command.
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (default: HOOKWIRE_DATABASE_URL, else ./hookwire.db).",
        show_default=False,
    ),
]

# A store operation that takes longer than this from the command line is a database that does
# not answer; the command says so instead of waiting for ever.
_TIMEOUT_S = 120.0


def database_url(db: str | None, *, must_exist: bool) -> str:
    """The database URL ``--db`` names (resolved like the stores do). With ``must_exist``, an
    SQLite file that is not there is an error that says how to name another database, rather
    than an empty database made by reading it."""
    from ..stores import engine  # imported by the commands that use a database, only

    url = engine.resolve_url(db)
    if must_exist and engine.is_sqlite(url):
        from sqlalchemy.engine import make_url

        path = make_url(url).database or ""
        if path and path != ":memory:" and not Path(path).exists():
            raise CommandError(
                f"there is no database at {path} (nothing has been recorded there yet); "
                "pass --db URL or set HOOKWIRE_DATABASE_URL"
            )
    return url


# An SQLite URL whose file is a plain path (no query, no percent-encoding), as SQLAlchemy reads
# it: sqlite:///relative/path, sqlite:////absolute/path.
_PLAIN_SQLITE = re.compile(r"^sqlite(?:\+aiosqlite|\+pysqlite)?:///([^?#%@]+)$")


def sqlite_file(db: str | None) -> str | None:
    """The absolute path of the SQLite file ``--db`` names (or ``HOOKWIRE_DATABASE_URL``, else
    ``./hookwire.db``), found without SQLAlchemy, for the commands that read it through
    ``sqlite3``; ``None`` for any other database, or an URL only the stores resolve."""
    raw = os.environ.get("HOOKWIRE_DATABASE_URL") if db is None else db
    if raw is None:
        from ..stores.revisions import DEFAULT_SQLITE_FILE

        return str(Path(DEFAULT_SQLITE_FILE).resolve())
    plain = _PLAIN_SQLITE.match(raw.strip())
    if plain is None or plain.group(1) == ":memory:" or plain.group(1).startswith("file:"):
        return None
    return str(Path(plain.group(1)).expanduser().resolve())


def run(coro: Coroutine[Any, Any, T]) -> T:
    """The result of the store coroutine ``coro``, run on the stores' event loop."""
    from ..stores import runner

    return runner.run_sync(coro, timeout=_TIMEOUT_S)

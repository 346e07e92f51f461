"""The schema revision of hookwire's migrations and of an SQLite file, read without SQLAlchemy
or Alembic: what a process's first store operation and ``hookwire costs`` check before
trusting a database's tables.

Importing Alembic and loading its scripts takes 100 to 250 ms; the ``revision = "..."`` and
``down_revision = "..." | None`` lines of each migration file (as the template writes them)
are all the check needs (tests compare the result with Alembic's).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

__all__ = [
    "DEFAULT_SQLITE_FILE",
    "MIGRATIONS",
    "file_heads",
    "open_sqlite_at",
    "sqlite_revision",
]

#: The database used when neither an URL nor ``HOOKWIRE_DATABASE_URL`` is given.
DEFAULT_SQLITE_FILE = "hookwire.db"
#: The folder of hookwire's Alembic migrations (``versions/`` holds one file each).
MIGRATIONS = Path(__file__).with_name("migrations")

_REVISION_LINE = re.compile(
    r"""^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(?:"([^"\n]+)"|'([^'\n]+)'|(None))\s*$""",
    re.MULTILINE,
)


def file_heads(versions: Path) -> list[str] | None:
    """The heads of the migration files in ``versions`` read as text, or ``None`` if a file
    does not have exactly one plain ``revision`` and ``down_revision`` line (Alembic then
    decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        found: dict[str, list[str | None]] = {"revision": [], "down_revision": []}
        for name, double, single, none in _REVISION_LINE.findall(path.read_text("utf-8")):
            found[name].append(None if none else double or single)
        if len(found["revision"]) != 1 or len(found["down_revision"]) != 1:
            return None
        revision, parent = found["revision"][0], found["down_revision"][0]
        if revision is None:
            return None
        revisions.add(revision)
        if parent is not None:
            parents.add(parent)
    if not revisions or not parents <= revisions:
        return None
    return sorted(revisions - parents)


def sqlite_revision(conn: sqlite3.Connection) -> list[tuple[str]] | None:
    """The rows of ``alembic_version`` in the SQLite database of ``conn`` (``None``: no such
    table, or it cannot be read)."""
    try:
        return [(str(r[0]),) for r in conn.execute("SELECT version_num FROM alembic_version")]
    except sqlite3.Error:
        return None


def open_sqlite_at(path: str, head: str, *, timeout: float) -> sqlite3.Connection | None:
    """A read-only ``sqlite3`` connection to the file ``path`` if its schema is at revision
    ``head``; ``None`` if it is not there (``mode=ro`` creates nothing), cannot be opened, or
    is at another revision."""
    try:
        conn = sqlite3.connect(Path(path).as_uri() + "?mode=ro", uri=True, timeout=timeout)
    except (sqlite3.Error, ValueError):
        return None
    if sqlite_revision(conn) == [(head,)]:
        return conn
    conn.close()
    return None

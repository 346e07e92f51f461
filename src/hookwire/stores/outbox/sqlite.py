"""The outbox in an SQLite file: one writer at a time (``BEGIN IMMEDIATE``), so relays of
one file, in any process, take turns to claim."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .sql import SQLOutbox

__all__ = ["SQLiteOutbox"]


class SQLiteOutbox(SQLOutbox):
    """The outbox in an SQLite file (see the module)."""

    def insert(self, table: Table) -> Any:
        """SQLite's ``insert``, with ``ON CONFLICT``."""
        return sqlite_insert(table)

"""The outbox in an SQLite file: one writer at a time (``BEGIN IMMEDIATE``), so relays of
one file, in any process, take turns to claim."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .sql import SQLOutbox

__all__ = ["SQLiteOutbox"]


class SQLiteOutbox(SQLOutbox):
    """The outbox in an SQLite file (see the module)."""

    def stamp(self, when: datetime) -> Any:
        """``when`` as ``UTCDateTime`` keeps it on SQLite: fixed-width ISO 8601 text."""
        return when.astimezone(timezone.utc).isoformat(timespec="microseconds")

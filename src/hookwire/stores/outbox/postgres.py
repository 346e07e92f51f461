"""The outbox in PostgreSQL: app instances share it, and relays in any number of processes
claim rows with ``FOR UPDATE SKIP LOCKED``, each taking rows the others do not hold, without
a coordinator."""

from __future__ import annotations

from .sql import SQLOutbox

__all__ = ["PostgresOutbox"]


class PostgresOutbox(SQLOutbox):
    """The outbox in PostgreSQL (see the module)."""

    skip_locked = True

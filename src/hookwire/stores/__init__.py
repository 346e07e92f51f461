"""Durable storage behind hookwire's handlers: SQLite by default, PostgreSQL by URL.

- ``hookwire.stores.engine``: ``resolve_url``, ``get_engine``, ``ensure_schema``, ``upgrade``
  (the database, its engine, its Alembic-versioned schema).
- ``hookwire.stores.schema``: the one SQLAlchemy Core ``metadata`` of every table.
- ``hookwire.stores.runner``: ``run_sync`` / ``run``: store coroutines on one background loop.
- ``hookwire.stores.conversations``: ``ConversationStore``, chat history.
"""

from __future__ import annotations

from .engine import ensure_schema, get_engine, resolve_url, upgrade
from .runner import run, run_sync

__all__ = ["ensure_schema", "get_engine", "resolve_url", "run", "run_sync", "upgrade"]

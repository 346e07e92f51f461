"""Durable storage behind hookwire's handlers: SQLite by default, PostgreSQL by URL.

A kind of store is an interface with one implementation per backend, chosen from the URL's
scheme in one registry (``hookwire.stores.registry``); handlers and the CLI ask the interface
for "a store" (``ConversationStore(url)``, ``UsageLedger(url)``) and accept any
implementation as ``store=``.

- ``hookwire.stores.conversations``: :class:`ConversationStore`, chat history (with
  :class:`Owner` and :class:`Page`).
- ``hookwire.stores.ledger``: :class:`UsageLedger`, the usage ledger and budgets (with
  :class:`UsageRecord` and :class:`Claim`).
- ``hookwire.stores.traces``: :class:`TraceStore`, spans of runs and calls for ``hookwire ui``
  (with :class:`RunFilter`).
- ``hookwire.stores.outbox``: :class:`Outbox`, events on their way out to other systems.
- ``hookwire.stores.engine``: ``resolve_url``, ``get_engine``, ``ensure_schema``, ``upgrade``
  (the database, its engine, its Alembic-versioned schema).
- ``hookwire.stores.schema``: the one SQLAlchemy Core ``metadata`` of every table.
- ``hookwire.stores.sqlstore``: ``SQLStore``, what the SQL implementations share (URL, schema
  check, errors).
- ``hookwire.stores.runner``: ``run_sync`` / ``run``: store coroutines on one background loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conversations import ConversationStore, Owner, Page
    from .engine import ensure_schema, get_engine, resolve_url, upgrade
    from .ledger import Claim, UsageLedger, UsageRecord
    from .outbox import Outbox
    from .runner import run, run_sync
    from .traces import RunFilter, TraceStore

__all__ = [
    "Claim",
    "ConversationStore",
    "Outbox",
    "Owner",
    "Page",
    "RunFilter",
    "TraceStore",
    "UsageLedger",
    "UsageRecord",
    "ensure_schema",
    "get_engine",
    "resolve_url",
    "run",
    "run_sync",
    "upgrade",
]

_CONVERSATIONS = frozenset({"ConversationStore", "Owner", "Page"})
_LEDGER = frozenset({"Claim", "UsageLedger", "UsageRecord"})
_TRACES = frozenset({"RunFilter", "TraceStore"})
_ENGINE = frozenset({"ensure_schema", "get_engine", "resolve_url", "upgrade"})
_RUNNER = frozenset({"run", "run_sync"})


# Everything is imported when first named: ``import hookwire.stores.engine`` (the CLI's
# ``db upgrade``, a new process's first read) need not load both kinds of store, and
# ``hookwire costs`` on an SQLite file reads it without SQLAlchemy.
def __getattr__(name: str) -> Any:
    if name in _ENGINE:
        from . import engine as module
    elif name in _RUNNER:
        from . import runner as module  # type: ignore[no-redef]
    elif name in _CONVERSATIONS:
        from . import conversations as module  # type: ignore[no-redef]
    elif name in _LEDGER:
        from . import ledger as module  # type: ignore[no-redef]
    elif name in _TRACES:
        from . import traces as module  # type: ignore[no-redef]
    elif name == "Outbox":
        from . import outbox as module  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value = getattr(module, name)
    return value

"""The trace store: spans of runs, LLM calls, tool calls, memory operations, retries and
errors, for ``hookwire ui``; the store behind ``TraceStoreCallback`` and ``hookwire traces``.

:class:`TraceStore` (in :mod:`.api`) declares what a trace store does; ``TraceStore(url)``
gives the implementation registered below for the URL's backend, both on
:class:`SQLTraceStore` (:mod:`.sql`). :mod:`.spans` turns log records (``hookwire.logschema``)
into span patches, for the handler and for ``hookwire import`` alike.
"""

from __future__ import annotations

from .api import RunFilter, TraceStore, backends
from .spans import preview, span_from_record, spans_from_records
from .sql import PostgresTraceStore, SQLiteTraceStore, SQLTraceStore

__all__ = [
    "PostgresTraceStore",
    "RunFilter",
    "SQLTraceStore",
    "SQLiteTraceStore",
    "TraceStore",
    "preview",
    "span_from_record",
    "spans_from_records",
]


# The one place a URL's backend is matched with its implementation.
backends.register_class("sqlite", SQLiteTraceStore)
backends.register_class("postgresql", PostgresTraceStore)

"""The outbox: events on their way out to other systems, kept in the store until a relay has
delivered them (``hookwire.export``).

:class:`Outbox` (in :mod:`.api`) declares what an outbox does; ``Outbox(url)`` gives the
implementation registered below for the URL's backend: :class:`SQLiteOutbox` (:mod:`.sqlite`)
or :class:`PostgresOutbox` (:mod:`.postgres`), both built on :class:`SQLOutbox` (:mod:`.sql`).
:mod:`.records` holds the rows.
"""

from __future__ import annotations

from .api import Claim, Outbox, backends
from .postgres import PostgresOutbox
from .records import DEAD, DELIVERED, PENDING, Delivery, OutboxEvent
from .sql import SQLOutbox
from .sqlite import SQLiteOutbox

__all__ = [
    "DEAD",
    "DELIVERED",
    "PENDING",
    "Claim",
    "Delivery",
    "Outbox",
    "OutboxEvent",
    "PostgresOutbox",
    "SQLOutbox",
    "SQLiteOutbox",
]


# The one place a URL's backend is matched with its implementation.
backends.register_class("sqlite", SQLiteOutbox)
backends.register_class("postgresql", PostgresOutbox)

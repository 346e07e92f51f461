"""The records of the outbox: an event on its way in (:class:`OutboxEvent`) and on its way
out to one sink (:class:`Delivery`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["DEAD", "DELIVERED", "PENDING", "Delivery", "OutboxEvent"]

#: A row still to be delivered (new, or failing and waiting for its next attempt).
PENDING = "pending"
#: A row the sink took.
DELIVERED = "delivered"
#: A row given up on: refused by the receiver, or failing for longer than the relay allows.
DEAD = "dead"


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One event to deliver: ``event_id`` (a UUIDv7, the id receivers drop duplicates by),
    ``key`` (events of one key are delivered in order: the conversation, else the trace),
    ``event`` (its name in the log schema, ``llm_end``), ``created_at`` and ``body``, the
    event's JSON record (``hookwire.logschema``)."""

    event_id: str
    key: str
    event: str
    created_at: datetime
    body: bytes


@dataclass(frozen=True, slots=True)
class Delivery:
    """An outbox row handed to a sink: the event, and ``seq`` (its place in the outbox, the
    order of its key), ``sink`` and ``attempts`` made before this one."""

    seq: int
    event_id: str
    sink: str
    key: str
    event: str
    created_at: datetime
    body: bytes
    attempts: int

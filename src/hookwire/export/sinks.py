"""What a sink is: a small class with a ``name`` and one method, ``send(batch)``.

``send`` receives the rows a relay claimed for it (``hookwire.stores.outbox.Delivery``: the
event's ``event_id``, ``key``, ``event`` name, ``created_at`` and JSON ``body``), in order.
Returning means delivered. Raising ``hookwire.errors.DeliveryError`` (or any other exception)
means "not now": the rows are tried again after a backoff (``retry_after`` at least, when
set); raising ``DeliveryRefused`` means "never": they are marked dead at once. Delivery is at
least once: a receiver drops duplicates by ``event_id``.

A sink of your own (Kafka, NATS, a queue) is a few lines::

    class KafkaSink(Sink):
        def __init__(self, producer, topic, name="kafka"):
            self.producer, self.topic, self.name = producer, topic, name

        def send(self, batch):
            for d in batch:
                self.producer.send(self.topic, key=d.key.encode(), value=d.body)
            self.producer.flush()  # raises on failure: the relay retries
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from ..stores.outbox import Delivery

__all__ = ["Sink", "envelope", "envelopes"]


class Sink:
    """The base of a sink: set ``name`` (the outbox keeps each sink's rows under its name)
    and override :meth:`send`."""

    name: str = "sink"
    #: Events per ``send`` at most (``None``: a relay's whole claim); a relay sends a bigger
    #: claim in slices, in order.
    max_batch: int | None = None

    def send(self, batch: Sequence[Delivery]) -> None:
        """Deliver ``batch`` (see the module)."""
        raise NotImplementedError(f"{type(self).__name__} must define send(batch)")

    def close(self) -> None:
        """Release connections (the relay calls it when it stops)."""


def envelope(d: Delivery) -> bytes:
    """One event as sinks send it, JSON: ``{"id", "key", "event", "created_at", "record"}``,
    ``record`` being the event in hookwire's log schema (spliced in, not parsed again)."""
    head = orjson.dumps(
        {"id": d.event_id, "key": d.key, "event": d.event, "created_at": d.created_at}
    )
    return head[:-1] + b',"record":' + d.body + b"}"


def envelopes(batch: Sequence[Delivery]) -> bytes:
    """A batch as one JSON document: ``{"events": [envelope, ...]}``."""
    return b'{"events":[' + b",".join(envelope(d) for d in batch) + b"]}"

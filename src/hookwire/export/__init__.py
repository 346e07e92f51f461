"""Events out to other systems, at least once: an outbox in the store, a relay, and sinks.

- :class:`OutboxCallback`: a handler that writes every event to the outbox (the app thread
  only queues it; a background worker inserts batches).
- :class:`Relay`: claims the outbox's rows and delivers them to sinks, in order per
  conversation (or trace), retrying with backoff, then marking them dead.
- Sinks: :class:`WebhookSink` (signed JSON batches over HTTP; :func:`verify_signature` on
  the receiving side), :class:`RedisStreamSink` (``XADD``), or a :class:`Sink` of your own.

docs/export.md shows them together.
"""

from __future__ import annotations

from .outbox import OutboxCallback
from .redis_stream import RedisStreamSink
from .relay import Relay
from .sinks import Sink, envelope, envelopes
from .webhook import (
    EVENT_IDS_HEADER,
    SIGNATURE_HEADER,
    WebhookSink,
    parse_retry_after,
    sign,
    verify_signature,
)

__all__ = [
    "EVENT_IDS_HEADER",
    "SIGNATURE_HEADER",
    "OutboxCallback",
    "RedisStreamSink",
    "Relay",
    "Sink",
    "WebhookSink",
    "envelope",
    "envelopes",
    "parse_retry_after",
    "sign",
    "verify_signature",
]

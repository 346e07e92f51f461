"""``RedisStreamSink``: one ``XADD`` per event to a Redis stream, trimmed with ``MAXLEN ~``.

Each entry has the fields ``id`` (the event id, for consumers to drop duplicates), ``key``,
``event``, ``created_at`` and ``body`` (the event's JSON record). A batch goes in one
pipeline; if it fails the whole batch is retried (entries already added are added again: at
least once). Read it with a consumer group (``XREADGROUP`` / ``XACK``, docs/export.md) or
``hookwire events tail``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError, DeliveryError
from ..redaction import redact_url
from ..stores.outbox import Delivery
from .sinks import Sink

__all__ = ["RedisStreamSink"]


def _redis() -> Any:
    try:
        import redis
    except ImportError:
        raise ConfigurationError(
            "RedisStreamSink needs redis-py: pip install 'hookwire[redis]'"
        ) from None
    return redis


class RedisStreamSink(Sink):
    """Adds events to the Redis stream ``stream`` at ``url`` (``redis://host:6379/0``),
    keeping about ``maxlen`` entries (``MAXLEN ~``: Redis trims whole nodes, cheaply)."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        stream: str = "hookwire:events",
        *,
        maxlen: int = 1_000_000,
        name: str = "redis",
        timeout: float = 10.0,
    ) -> None:
        if not isinstance(maxlen, int) or maxlen <= 0:
            raise ConfigurationError(f"maxlen must be a positive number of entries, not {maxlen!r}")
        redis = _redis()
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.name = name
        try:
            self._client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"{redact_url(url)!r} is not a Redis URL; write redis://host:6379/0"
            ) from exc

    def __repr__(self) -> str:
        return f"RedisStreamSink({redact_url(self.url)!r}, {self.stream!r})"

    def send(self, batch: Sequence[Delivery]) -> None:
        """``XADD`` each event of ``batch``, in order, in one pipeline."""
        redis = _redis()
        pipe = self._client.pipeline(transaction=False)
        for d in batch:
            pipe.xadd(
                self.stream,
                {
                    "id": d.event_id,
                    "key": d.key,
                    "event": d.event,
                    "created_at": d.created_at.isoformat(),
                    "body": d.body,
                },
                maxlen=self.maxlen,
                approximate=True,
            )
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise DeliveryError(f"XADD to {self.stream!r} on {self!r} failed: {exc!r}") from exc

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

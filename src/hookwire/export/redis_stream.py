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


def _bulk(value: bytes) -> bytes:
    """A RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


_KEY, _EVENT, _CREATED, _BODY = (_bulk(f) for f in (b"key", b"event", b"created_at", b"body"))
_SLOT = b"$%d\r\n%s\r\n"


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
        # One XADD, its five values left as %-slots (``_SLOT``); a ``%`` in the name escaped.
        head = (b"XADD", stream.encode(), b"MAXLEN", b"~", b"%d" % maxlen, b"*", b"id")
        self._entry = b"*16\r\n" + b"".join(_bulk(p) for p in head).replace(b"%", b"%%")
        self._entry += _SLOT + _KEY + _SLOT + _EVENT + _SLOT + _CREATED + _SLOT + _BODY + _SLOT
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
        # The commands are written here and sent on one of redis-py's connections: its own
        # pipeline encodes each argument in Python, which cost about 10 times more than Redis
        # took to add the entries (bench/export.py, bench/README.md).
        # One %-format per entry: a third less than concatenating its ten parts.
        entry = self._entry
        parts = []
        for d in batch:
            i, k, e = d.event_id.encode(), d.key.encode(), d.event.encode()
            c, b = d.created_at.isoformat().encode(), d.body
            parts.append(entry % (len(i), i, len(k), k, len(e), e, len(c), c, len(b), b))
        data = b"".join(parts)
        pool = self._client.connection_pool
        errors = []
        try:
            conn = pool.get_connection()
        except redis.RedisError as exc:
            raise DeliveryError(f"XADD to {self.stream!r} on {self!r} failed: {exc!r}") from exc
        read = False
        try:
            conn.send_packed_command([data])
            for _ in batch:
                try:
                    conn.read_response()
                except redis.ResponseError as exc:  # the others were read: the link is fine
                    errors.append(exc)
            read = True
        except redis.RedisError as exc:
            raise DeliveryError(f"XADD to {self.stream!r} on {self!r} failed: {exc!r}") from exc
        finally:
            if not read:
                conn.disconnect()  # replies may be left unread: never reuse it
            pool.release(conn)
        if errors:
            raise DeliveryError(
                f"XADD to {self.stream!r} on {self!r} failed for {len(errors)} of "
                f"{len(batch)} event(s): {errors[0]!r}"
            )

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

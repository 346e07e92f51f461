"""``WebhookSink``: events POSTed as JSON batches, signed with HMAC-SHA256.

A request carries ``{"events": [{"id", "key", "event", "created_at", "record"}, ...]}``
(``hookwire.export.sinks.envelopes``) and the headers:

``X-Hookwire-Signature``  ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>``, keyed
                          with the shared secret (the scheme Stripe's webhooks use: the
                          time in the signed text stops a captured request being replayed
                          later)
``X-Hookwire-Event-Ids``  the events' ids, comma-separated, to drop duplicates before parsing

The answer decides: 2xx delivered; 408, 429, 5xx, a timeout or a connection error retried
(``Retry-After`` honoured, in seconds or as an HTTP date); any other status refused, dead at
once, with the start of the response kept. :func:`verify_signature` checks a request on the
receiving side.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import httpx

from ..errors import ConfigurationError, DeliveryError, DeliveryRefused, SignatureError
from ..redaction import redact_url
from ..stores.outbox import Delivery
from .sinks import Sink, envelopes

__all__ = [
    "EVENT_IDS_HEADER",
    "SIGNATURE_HEADER",
    "WebhookSink",
    "parse_retry_after",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER: Final = "X-Hookwire-Signature"
EVENT_IDS_HEADER: Final = "X-Hookwire-Event-Ids"
#: Characters of a refusing receiver's answer kept with the dead rows.
KEEP_RESPONSE: Final = 4096
_RETRIED = frozenset({408, 429})


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign(body: bytes, secret: str | bytes, timestamp: int | None = None) -> str:
    """The ``X-Hookwire-Signature`` value of ``body`` at ``timestamp`` (now)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(_key(secret), b"%d." % t + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(
    body: bytes,
    header: str | None,
    secret: str | bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> None:
    """Check a webhook request: ``body`` (the raw bytes received, before any parsing) and its
    ``X-Hookwire-Signature`` ``header`` against the shared ``secret``.

    Raises ``SignatureError`` if the header is missing or malformed, its time is more than
    ``tolerance`` seconds from ``now`` (0: no limit), or no ``v1`` signature matches (compared
    in constant time). Several ``v1`` values are accepted, for secrets being rotated."""
    if not header:
        raise SignatureError(f"the request has no {SIGNATURE_HEADER} header; it is not signed")
    t: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            t = int(value)
        elif name == "v1" and value:
            macs.append(value)
    if t is None or not macs:
        raise SignatureError(
            f"{SIGNATURE_HEADER} must look like t=<unix seconds>,v1=<hex>, not {header[:200]!r}"
        )
    current = time.time() if now is None else now
    if tolerance and abs(current - t) > tolerance:
        raise SignatureError(
            f"the signature is {abs(current - t):.0f} s from now (tolerance {tolerance:.0f} s): "
            "a replayed request, or the clocks disagree"
        )
    expected = sign(body, secret, t).partition(",v1=")[2]
    if not any(hmac.compare_digest(expected, m) for m in macs):
        raise SignatureError(
            "the signature does not match the body: a different secret, or the body was "
            "changed (verify the raw bytes, before parsing)"
        )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (a number, or an HTTP date); ``None``
    when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class WebhookSink(Sink):
    """POSTs batches of events to ``url``, signed with ``secret`` (see the module).

    ``timeout``: seconds for the whole request; ``headers``: sent with every request (an
    ``Authorization`` of your own, say); ``name``: the sink's name in the outbox;
    ``max_batch``: events per request at most (a relay sends a bigger claim as several
    requests, in order). The ids header grows 37 bytes an event: the default 200 keeps it
    under the 8 KB many servers (nginx) allow a header line."""

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        *,
        name: str = "webhook",
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        max_batch: int = 200,
    ) -> None:
        if not isinstance(max_batch, int) or max_batch <= 0:
            raise ConfigurationError(
                f"max_batch must be a positive number of events, not {max_batch!r}"
            )
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"url must be an http:// or https:// URL, not {url!r}")
        if not secret:
            raise ConfigurationError(
                "secret must be a non-empty string or bytes, shared with the receiver, which "
                "checks requests with hookwire.export.verify_signature"
            )
        self.url = url
        self.name = name
        self.max_batch = max_batch
        self._secret = _key(secret)
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:
        return f"WebhookSink({redact_url(self.url)!r}, name={self.name!r})"

    def send(self, batch: Sequence[Delivery]) -> None:
        """POST ``batch`` as one request; raise as the module says when it is not taken."""
        body = envelopes(batch)
        headers = {
            **self._headers,
            SIGNATURE_HEADER: sign(body, self._secret),
            EVENT_IDS_HEADER: ",".join(d.event_id for d in batch),
        }
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"POST {redact_url(self.url)} failed: {exc!r}") from exc
        _check(self.url, response)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()


def _check(url: str, response: Any) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    where = f"POST {redact_url(url)} answered HTTP {status}"
    if status in _RETRIED or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise DeliveryError(where, retry_after=retry_after)
    raise DeliveryRefused(
        f"{where}: the receiver refuses these events; fix it, then `hookwire events replay --dead`",
        response=f"HTTP {status}\n{response.text[:KEEP_RESPONSE]}",
    )

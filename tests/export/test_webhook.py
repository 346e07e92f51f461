"""WebhookSink's wire format: the signature and the JSON batch round-trip for any events
(hypothesis), the receiving side's checks refuse what they must, Retry-After is read in both
its forms."""

from __future__ import annotations

import email.utils
from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookwire.errors import ConfigurationError, SignatureError
from hookwire.export import WebhookSink, envelopes, parse_retry_after, sign, verify_signature
from hookwire.stores.outbox import Delivery

UTC = timezone.utc

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
records = st.dictionaries(st.text(min_size=1), json_values, max_size=5)
deliveries = st.lists(
    st.tuples(st.uuids(version=4), st.text(max_size=40), st.text(max_size=20), records),
    min_size=1,
    max_size=5,
)
secrets = st.binary(min_size=1, max_size=64) | st.text(min_size=1, max_size=64)


def _batch(items: list[tuple[object, str, str, dict[str, object]]]) -> list[Delivery]:
    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    return [
        Delivery(i, str(u), "s", key, name, at, orjson.dumps(rec), 0)
        for i, (u, key, name, rec) in enumerate(items)
    ]


@given(deliveries, secrets, st.integers(0, 2**40))
def test_signed_batches_round_trip(
    items: list[tuple[object, str, str, dict[str, object]]], secret: str | bytes, t: int
) -> None:
    batch = _batch(items)
    body = envelopes(batch)
    header = sign(body, secret, t)
    verify_signature(body, header, secret, now=t)
    parsed = orjson.loads(body)["events"]
    assert [e["id"] for e in parsed] == [d.event_id for d in batch]
    assert [e["key"] for e in parsed] == [d.key for d in batch]
    assert [e["event"] for e in parsed] == [d.event for d in batch]
    assert [e["record"] for e in parsed] == [orjson.loads(d.body) for d in batch]
    assert all(e["created_at"] == "2026-12-07T12:00:00+00:00" for e in parsed)


@given(st.binary(min_size=1), st.binary(min_size=1), secrets)
def test_a_changed_body_or_another_secret_is_refused(
    body: bytes, other: bytes, secret: str | bytes
) -> None:
    header = sign(body, secret, 1000)
    if other != body:
        with pytest.raises(SignatureError, match="does not match"):
            verify_signature(other, header, secret, now=1000)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(body, header, b"\x00another secret", now=1000)


def test_signature_header_checks() -> None:
    body = b'{"events":[]}'
    with pytest.raises(SignatureError, match="no X-Hookwire-Signature"):
        verify_signature(body, None, "k")
    with pytest.raises(SignatureError, match="must look like"):
        verify_signature(body, "sha256=abc", "k")
    with pytest.raises(SignatureError, match="from now"):
        verify_signature(body, sign(body, "k", 1000), "k", now=2000)
    verify_signature(body, sign(body, "k", 1000), "k", now=2000, tolerance=0)
    # a rotated secret: the old and the new signature side by side
    both = sign(body, "new", 1000) + "," + sign(body, "old", 1000).split(",")[1]
    verify_signature(body, both, "old", now=1000)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    date = email.utils.formatdate(1_000_060, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == 60.0


def test_a_sink_needs_a_url_and_a_secret() -> None:
    with pytest.raises(ConfigurationError, match="http"):
        WebhookSink("ftp://x", "k")
    with pytest.raises(ConfigurationError, match="secret"):
        WebhookSink("http://127.0.0.1/x", "")
    with pytest.raises(ConfigurationError, match="max_batch"):
        WebhookSink("http://127.0.0.1/x", "k", max_batch=0)

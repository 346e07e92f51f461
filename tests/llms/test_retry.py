"""RetryPolicy: backoff, jitter, Retry-After, validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookwire.errors import (
    AuthenticationError,
    ConfigurationError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
)
from hookwire.llms import RetryPolicy


def test_exponential_without_jitter() -> None:
    policy = RetryPolicy(initial=0.5, max_delay=3.0, jitter=0.0)
    assert [policy.delay(n, None) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_retry_after_wins_and_is_capped() -> None:
    policy = RetryPolicy(initial=10, jitter=0, max_retry_after=5)
    assert policy.delay(1, RateLimitError("x", retry_after=2)) == 2
    assert policy.delay(1, ServerError("x", retry_after=60)) == 5
    assert policy.delay(1, RateLimitError("x")) == 10


def test_only_transient_errors_are_retried() -> None:
    assert RetryPolicy.should_retry(StreamInterrupted("cut"))
    assert RetryPolicy.should_retry(RateLimitError("x"))
    assert not RetryPolicy.should_retry(AuthenticationError("x"))
    assert not RetryPolicy.should_retry(ValueError("x"))


def test_from_retries() -> None:
    assert RetryPolicy.from_retries(0).max_attempts == 1
    assert RetryPolicy.from_retries(4).max_attempts == 5
    with pytest.raises(ConfigurationError):
        RetryPolicy.from_retries(-1)


@pytest.mark.parametrize("field", ["initial", "max_delay", "jitter", "max_retry_after"])
def test_negative_durations_are_refused(field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        RetryPolicy(**{field: -1})  # type: ignore[arg-type]


def test_zero_attempts_refused() -> None:
    with pytest.raises(ConfigurationError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


@given(
    attempt=st.integers(min_value=1, max_value=60),
    initial=st.floats(min_value=0, max_value=10),
    max_delay=st.floats(min_value=0, max_value=100),
    jitter=st.floats(min_value=0, max_value=5),
)
def test_delay_is_bounded(attempt: int, initial: float, max_delay: float, jitter: float) -> None:
    policy = RetryPolicy(initial=initial, max_delay=max_delay, jitter=jitter)
    delay = policy.delay(attempt, None)
    assert 0 <= delay <= max_delay + jitter

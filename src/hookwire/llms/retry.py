"""``RetryPolicy``: how LLM calls are retried (exponential backoff, jitter, ``Retry-After``)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tenacity import RetryCallState

from ..errors import ConfigurationError, TransientLLMError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how long to wait before trying a failed LLM call again.

    Only ``TransientLLMError`` is retried (rate limits, timeouts, dropped connections, 5xx,
    streams cut halfway); authentication and bad-request errors are not. ``max_attempts``
    counts the first try (``max_attempts=1`` never retries). The wait before attempt ``n + 1``
    is ``min(max_delay, initial * 2 ** (n - 1)) + uniform(0, jitter)`` seconds, unless the
    server said how long to wait (``Retry-After``): then that, capped at ``max_retry_after``.
    """

    max_attempts: int = 3
    initial: float = 0.5
    max_delay: float = 20.0
    jitter: float = 0.25
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigurationError(
                f"max_attempts must be an int >= 1 (1 means no retries), not {self.max_attempts!r}"
            )
        for name in ("initial", "max_delay", "jitter", "max_retry_after"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigurationError(f"RetryPolicy.{name} must be >= 0 seconds, not {value!r}")

    @classmethod
    def from_retries(cls, max_retries: int, **kw: Any) -> RetryPolicy:
        """A policy that makes up to ``max_retries`` retries after the first attempt."""
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be an int >= 0, not {max_retries!r}")
        return cls(max_attempts=max_retries + 1, **kw)

    def delay(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) with ``error``."""
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, (int, float)) and retry_after >= 0:
            return min(float(retry_after), self.max_retry_after)
        base: float = min(self.max_delay, self.initial * 2.0 ** (attempt - 1))
        return base + (random.uniform(0, self.jitter) if self.jitter else 0.0)

    def wait(self, state: RetryCallState) -> float:
        """The tenacity ``wait`` callable for this policy."""
        error = state.outcome.exception() if state.outcome is not None else None
        return self.delay(state.attempt_number, error)

    @staticmethod
    def should_retry(error: BaseException | None) -> bool:
        """Whether ``error`` is worth another attempt."""
        return isinstance(error, TransientLLMError)

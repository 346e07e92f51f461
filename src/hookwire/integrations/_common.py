"""What the bridges share: pricing (``hookwire.llms.prices.price``), error mapping, and logging
their own failures."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import (
    AuthenticationError,
    BadRequestError,
    HookwireError,
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    RateLimitError,
    ServerError,
)
from ..llms.prices import price

__all__ = ["FailureLog", "price", "to_hookwire_error"]

logger = logging.getLogger("hookwire")


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if code is None:
        response = getattr(exc, "response", None)
        code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def to_hookwire_error(
    exc: BaseException, *, provider: str | None = None, model: str | None = None
) -> BaseException:
    """``exc`` (a provider SDK's or HTTP client's exception) as the matching
    ``hookwire.errors`` exception, with ``exc`` as its ``__cause__``.

    hookwire's own errors, and exceptions that are not about the call (``KeyboardInterrupt``,
    ``CancelledError``), are returned unchanged.
    """
    if isinstance(exc, HookwireError) or not isinstance(exc, Exception):
        return exc
    if type(exc).__module__.startswith("openai."):
        # The openai SDK's errors (also under LangChain's ChatOpenAI): the runtime's mapping.
        from ..llms.openai_wire import map_openai_error

        mapped = map_openai_error(exc, provider=provider or "openai", model=model)
        mapped.__cause__ = exc
        return mapped
    name = type(exc).__name__
    status = _status(exc)
    message = f"{name}: {exc}"
    kw: dict[str, Any] = {"status_code": status, "provider": provider, "model": model}
    err: LLMError
    if status == 429 or name == "RateLimitError":
        err = RateLimitError(message, retry_after=_retry_after(exc), **kw)
    elif "Timeout" in name or isinstance(exc, TimeoutError):
        err = LLMTimeoutError(message, **kw)
    elif "Connection" in name or isinstance(exc, ConnectionError):
        err = LLMConnectionError(message, **kw)
    elif status in (401, 403):
        err = AuthenticationError(message + " (check the API key)", **kw)
    elif status in (400, 404, 409, 422):
        err = BadRequestError(message, **kw)
    elif status is not None and status >= 500:
        err = ServerError(message, retry_after=_retry_after(exc), **kw)
    else:
        err = LLMError(message, **kw)
    err.__cause__ = exc
    return err


class FailureLog:
    """Logs failures of a bridge itself (never the app's): an error with the traceback the
    first time for each place, at debug level after that, so a bug in one place that every
    event hits does not flood the log.

    ``what`` names the bridge and ``consequence`` says what the failure costs the app, as in
    "hookwire: {what} failed in {where} ({consequence})".
    """

    __slots__ = ("consequence", "seen", "what")

    def __init__(self, what: str, consequence: str) -> None:
        self.what = what
        self.consequence = consequence
        #: The places that have failed (and were logged with a traceback) so far.
        self.seen: set[str] = set()

    def __call__(self, where: str, exc: BaseException) -> None:
        """Log that the bridge failed in ``where`` with ``exc``."""
        if where not in self.seen:
            self.seen.add(where)
            logger.error(
                "hookwire: %s failed in %s (%s)", self.what, where, self.consequence, exc_info=exc
            )
        else:
            logger.debug("hookwire: %s failed in %s: %r", self.what, where, exc)

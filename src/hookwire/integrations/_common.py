"""What the bridges share: pricing (``hookwire.llms.prices.price``), error mapping, and request
context."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    HookwireError,
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    RateLimitError,
    ServerError,
)
from ..events import REQUEST_CONTEXT_KEYS
from ..llms.prices import price

__all__ = ["check_context", "price", "to_hookwire_error"]


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


def check_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """The request context given to a bridge, checked against the known keys."""
    unknown = set(context) - set(REQUEST_CONTEXT_KEYS)
    if unknown:
        raise ConfigurationError(
            f"unknown request context key(s) {sorted(unknown)}; the keys are "
            f"{', '.join(REQUEST_CONTEXT_KEYS)}"
        )
    return {k: v for k, v in context.items() if v is not None}

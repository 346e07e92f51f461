"""What the bridges share: pricing when available, error mapping, and request context."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
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
from ..events import REQUEST_CONTEXT_KEYS, Usage

__all__ = ["check_context", "price", "to_hookwire_error"]

logger = logging.getLogger("hookwire")

_MISSING: Any = object()
_cost_fn: Any = _MISSING


def _load_cost() -> Callable[..., Any] | None:
    global _cost_fn
    if _cost_fn is _MISSING:
        try:
            _cost_fn = importlib.import_module("hookwire.pricing").cost
        except (ImportError, AttributeError):
            _cost_fn = None
    return _cost_fn  # type: ignore[no-any-return]


def price(model: str | None, usage: Usage, provider: str | None) -> Decimal | None:
    """The call's cost through ``hookwire.pricing.cost`` when that module is installed and
    knows the model; ``None`` otherwise (never 0 for an unknown price)."""
    if not model:
        return None
    fn = _load_cost()
    if fn is None:
        return None
    try:
        value = fn(model, usage, provider=provider)
    except Exception as exc:
        logger.debug("hookwire: no price for %s (%s): %r", model, provider, exc)
        return None
    if value is None or isinstance(value, Decimal):
        return value
    # A pricing result object rather than a bare amount: take its total.
    total = getattr(value, "total", getattr(value, "amount", None))
    return total if isinstance(total, Decimal) else None


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

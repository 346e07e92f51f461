"""What the bridges share: pricing (``hookwire.llms.prices.price``), error mapping, logging
their own failures, the ids of a framework's runs, and making the hook calls a translation
returns."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ..context import hook_context
from ..dispatch import CallbackManager
from ..errors import (
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    CallbackAbort,
    HookwireError,
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    RateLimitError,
    ServerError,
)
from ..llms.prices import price

__all__ = [
    "Emit",
    "FailureLog",
    "caused_by",
    "child_base",
    "end_keywords",
    "field",
    "price",
    "send",
    "to_hookwire_error",
]

#: One hook call: the hook's name, its positional arguments, its keywords.
Emit = tuple[str, tuple[Any, ...], dict[str, Any]]

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


def caused_by(error: BaseException, origin: BaseException) -> bool:
    """Whether ``error`` is ``origin`` or was raised from it (a framework may wrap it)."""
    seen = 0
    e: BaseException | None = error
    while e is not None and seen < 8:
        if e is origin:
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False


def child_base(
    run_id: str, parent: Mapping[str, Any] | None, context: Mapping[str, Any]
) -> dict[str, Any]:
    """The ids and request context every event of a framework's run (a run, an LLM call, a
    tool) carries: ``run_id``, then, under ``parent`` (the keywords of the run it is in), the
    parent's id, trace, context and depth + 1; outermost, the trace and depth of the enclosing
    ``hookwire.trace`` (the manager fills in its ``parent_run_id``). ``context`` (the bridge's
    own request context) is the default the parent's overrides."""
    if parent is not None:
        # A copy less its own keys (found by one set intersection), not a filtered
        # comprehension: the same dict, in the same order, at about half the cost.
        base = dict(parent)
        for key in _NOT_INHERITED.intersection(base):
            del base[key]
        base["run_id"] = run_id
        base["parent_run_id"] = parent["run_id"]
        base["depth"] = parent.get("depth", 0) + 1
        return base
    base = {**context, "run_id": run_id}
    ctx = hook_context()
    base["trace_id"] = ctx.get("trace_id") or run_id
    depth = ctx.get("depth", 0)
    if depth:
        base["depth"] = depth
    return base


#: Keywords of a run that are its own, not its children's.
_NOT_INHERITED = frozenset(
    {"run_id", "parent_run_id", "depth", "name", "kind", "model", "provider", "tool_call_id"}
)


def send(manager: CallbackManager, emits: Iterable[Emit], failed: FailureLog, where: str) -> None:
    """Make the hook calls ``emits`` for a framework that cannot be stopped from its event
    callbacks (it swallows what they raise): a ``CallbackAbort`` (a budget) is told as runners
    tell it (``on_budget_exceeded``, ``on_error(stage="budget")``) and the call goes on; any
    other failure is logged once with ``failed``."""
    for hook, args, kw in emits:
        try:
            getattr(manager, hook)(*args, **kw)
        except CallbackAbort as abort:
            try:
                if isinstance(abort, BudgetExceeded):
                    manager.on_budget_exceeded(abort, **kw)
                manager.on_error(abort, **{**kw, "stage": "budget"})
            except Exception as exc:  # a handler marked raise_error: nowhere to raise it to
                failed(where, exc)
        except Exception as exc:
            failed(where, exc)


def end_keywords(
    base: Mapping[str, Any], start: float, now: float, first_token: float | None
) -> dict[str, Any]:
    """The keywords of a framework's ``on_llm_end``: ``base`` (ids and context), the latency
    from ``start`` to ``now`` and, for a call that streamed (its ``first_token`` seen), its
    time to first token (``perf_counter`` seconds all). A framework retries inside the call, so
    it is one attempt."""
    kw = {
        **base,
        "latency_ms": (now - start) * 1000.0,
        "attempts": 1,
        "stream": first_token is not None,
    }
    if first_token is not None:
        kw["ttft_ms"] = (first_token - start) * 1000.0
    return kw


#: Whether the objects of a type are mappings, by type: an isinstance check against the
#: Mapping ABC costs more than the rest of a lookup in a framework's pydantic models and dicts.
_MAPPING: dict[type, bool] = {dict: True, type(None): False}


def field(obj: Any, key: str) -> Any:
    """``obj[key]`` of a mapping, ``obj.key`` of an object (``None`` when it has none): a
    framework's answers are either."""
    cls = type(obj)
    mapping = _MAPPING.get(cls)
    if mapping is None:
        mapping = isinstance(obj, Mapping)
        if len(_MAPPING) < 256:  # types made on the fly must not grow it without end
            _MAPPING[cls] = mapping
    return obj.get(key) if mapping else getattr(obj, key, None)

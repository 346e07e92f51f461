"""Calls recorded by hand (Arshai's ``call_accounting``): their arguments checked, and the
automatic call each pairs with.

Arguments: every bad value raises a named ``hookwire.errors`` exception that says what to
pass (``InvalidUsageError`` for token counts and costs, ``ConfigurationError`` for ids and
names), before anything is written, so a refused call leaves the ledger as it was.

Pairing: an app that attaches the handler to its client *and* calls ``call_accounting`` after
each call (as Arshai's code does) must count each call once, so ``call_accounting`` takes the
run id of the call the handler recorded automatically. That call is the last one this handler
recorded in the caller's context (the same asyncio task, or thread), so a handler shared by
concurrent requests never pairs one request's call with another's; if the call ran in a
context of its own (a task it was wrapped in), the last one recorded for the same user, org,
correlation and request ids. A run is paired once.
"""

from __future__ import annotations

import collections
import contextvars
import itertools
import operator
import threading
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any, Final

from ...errors import ConfigurationError, InvalidUsageError
from ...events import Usage
from ...stores.ledger import MAX_COST, MAX_TOKENS
from ...stores.schema import MONEY_SCALE, has_lone_surrogate

__all__ = ["RUN_ID_SIZE", "Identity", "RunPairing", "manual_cost", "manual_text", "manual_usage"]

#: The longest run id the ledger keeps.
RUN_ID_SIZE: Final = 64

#: Who a call was for: user, org, correlation and request ids (a pairing's fallback key).
Identity = tuple[Any, Any, Any, Any]

_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_ONE = Decimal(1)
# Not the application's decimal context, which may have been narrowed.
_CTX = Context(prec=60, rounding=ROUND_HALF_EVEN)

# The last run each handler recorded in this context: {handler's token: run id}, a few
# handlers at most (a context that outlives many per-request handlers keeps the newest).
_LAST_RUN: contextvars.ContextVar[dict[int, str]] = contextvars.ContextVar(
    "hookwire_accounting_last_run"
)
_EMPTY: Final[dict[int, str]] = {}
_KEPT_IN_CONTEXT = 8
_tokens = itertools.count(1)


def _count(name: str, value: Any, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        try:
            n = operator.index(value)
        except TypeError:
            pass
        else:
            if 0 <= n <= MAX_TOKENS:
                return n
    raise InvalidUsageError(
        f"{name} must be a whole number of tokens from 0 to {MAX_TOKENS:,}, not {value!r:.80}"
    )


def manual_usage(
    output_tokens: Any, prompt_tokens: Any, cached_tokens: Any, reasoning_tokens: Any
) -> Usage:
    """The ``Usage`` of ``call_accounting``'s token counts; ``InvalidUsageError`` if one is
    not a whole number from 0 to ``MAX_TOKENS``, or the cached (reasoning) tokens are more than
    the prompt (completion) tokens."""
    prompt = _count("prompt_tokens", prompt_tokens)
    completion = _count("output_tokens", output_tokens)
    cached = _count("cached_tokens", cached_tokens, optional=True)
    reasoning = _count("reasoning_tokens", reasoning_tokens, optional=True)
    assert prompt is not None and completion is not None
    if cached is not None and cached > prompt:
        raise InvalidUsageError(
            f"cached_tokens ({cached}) cannot exceed prompt_tokens ({prompt}): prompt_tokens "
            "counts every prompt token, cached or not"
        )
    if reasoning is not None and reasoning > completion:
        raise InvalidUsageError(
            f"reasoning_tokens ({reasoning}) cannot exceed output_tokens ({completion}): "
            "output_tokens counts every generated token, reasoning included"
        )
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
    )


def manual_cost(cost: Any) -> Decimal | None:
    """``call_accounting``'s ``cost`` as the ledger keeps it (a ``Decimal`` rounded to 12
    places, half-even); ``InvalidUsageError`` unless it is an amount from 0 to ``MAX_COST``
    (a negative cost would reopen a spent budget; NaN would make every total NaN)."""
    if cost is None:
        return None
    value: Decimal | None = None
    if not isinstance(cost, bool) and isinstance(cost, (Decimal, int, float, str)):
        try:
            value = Decimal(repr(cost)) if isinstance(cost, float) else Decimal(cost)
        except (InvalidOperation, ValueError):
            value = None
    if value is None or not value.is_finite() or not 0 <= value <= MAX_COST:
        raise InvalidUsageError(
            f"cost must be an amount of money from 0 to {MAX_COST:,} such as "
            f"Decimal('0.0125'), or None to price the call from its model; not {cost!r:.80}"
        )
    value = _CTX.quantize(value, _QUANTUM)
    # As the ledger gives it back: 0.0125, not 0.012500000000; 3, not 3.000000000000.
    integral = value == _CTX.to_integral_value(value)
    value = _CTX.quantize(value, _ONE) if integral else _CTX.normalize(value)
    return check_cost(value)


def check_cost(cost: Decimal | None) -> Decimal | None:
    """``cost`` if the ledger can take it; ``InvalidUsageError`` when it is over ``MAX_COST``
    (token counts that cannot be real)."""
    if cost is not None and cost > MAX_COST:
        raise InvalidUsageError(
            f"these token counts cost {cost:f}, more than the ledger takes for one call "
            f"({MAX_COST:,}); check the counts"
        )
    return cost


def manual_text(name: str, value: Any, *, run_id: bool = False) -> str | None:
    """A name or id of ``call_accounting``: ``None`` or a string (``ConfigurationError``
    otherwise). A ``run_id`` must also fit the ledger: 1 to ``RUN_ID_SIZE`` characters, no
    NUL or lone surrogate (other values too long for their column are cut to fit)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{name} must be a string or None, not {type(value).__name__}: {value!r:.80}"
        )
    if run_id and (
        not 0 < len(value) <= RUN_ID_SIZE or "\x00" in value or has_lone_surrogate(value)
    ):
        raise ConfigurationError(
            f"run_id must be the id of the LLM call (1 to {RUN_ID_SIZE} characters, no NUL "
            f"or lone surrogate), such as the run_id its on_llm_end received; not {value!r:.80}"
        )
    return str(value)


class RunPairing:
    """The automatic calls of one handler that ``call_accounting`` may pair with (see the
    module): by context first, then by who the call was for."""

    def __init__(self) -> None:
        self._token = next(_tokens)
        self._lock = threading.Lock()
        self._by_identity: collections.OrderedDict[Identity, str] = collections.OrderedDict()
        self._claimed: collections.OrderedDict[str, None] = collections.OrderedDict()

    def recorded(self, run_id: str, identity: Identity) -> None:
        """An automatic call was recorded (from ``on_llm_end``, in the caller's context)."""
        last = _LAST_RUN.get(_EMPTY)
        if last.get(self._token) != run_id:
            mine = {k: v for k, v in last.items() if k != self._token}
            if len(mine) >= _KEPT_IN_CONTEXT:
                mine = dict(list(mine.items())[1:])
            mine[self._token] = run_id
            _LAST_RUN.set(mine)
        with self._lock:
            by_identity = self._by_identity
            by_identity[identity] = run_id
            by_identity.move_to_end(identity)
            if len(by_identity) > 1024:
                by_identity.popitem(last=False)

    def pair(self, identity: Identity) -> str | None:
        """The run a call recorded by hand is, if it is one this handler recorded and no
        other ``call_accounting`` paired with yet."""
        run_id = _LAST_RUN.get(_EMPTY).get(self._token)
        with self._lock:
            if run_id is None:
                # No call of this handler in this context: the caller's LLM call ran in one
                # of its own (a task it was wrapped in).
                run_id = self._by_identity.get(identity)
            if run_id is None or run_id in self._claimed:
                return None
            self._claimed[run_id] = None
            while len(self._claimed) > 1024:
                self._claimed.popitem(last=False)
            return run_id

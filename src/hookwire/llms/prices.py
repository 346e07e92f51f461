"""``price``: a call's cost, through ``hookwire.pricing`` when it is installed.

Clients price the response where they build it (so the engine need not copy it to fill the
cost in), and the bridges price the calls they report, all through this one function.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from ..events import Usage

__all__ = ["price"]

#: ``hookwire.pricing.cost``, or ``None`` when that module is not installed: looked up on the
#: first call (the runtime does not need it). Tests put a fake cost function here.
_pricing: list[Callable[..., Decimal | None] | None] = []


def price(model: str | None, usage: Usage, provider: str | None) -> Decimal | None:
    """The call's cost through ``hookwire.pricing.cost``; ``None`` when it is unknown (never 0
    for an unknown price, and never an exception: an unpriceable call is still a call)."""
    if not _pricing:
        try:
            from ..pricing import cost  # type: ignore[import-not-found,unused-ignore]

            _pricing.append(cost)
        except ImportError:
            _pricing.append(None)
    fn = _pricing[0]
    if fn is None or not model:
        return None
    try:
        return fn(model, usage, provider)
    except Exception:
        return None

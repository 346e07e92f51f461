"""Run a driver to its end when its caller wants only the outcome, not what it yields.

The runtime's drivers are generators (``RLM``'s run driver, ``BaseLLM``'s call engine) so that
streaming callers can take each token as it comes; the non-streaming entry points (``run``,
``generate``, ...) drive the same generators with these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import Any, TypeVar

__all__ = ["adrain", "drain"]

T = TypeVar("T")


def drain(gen: Generator[Any, None, T]) -> T:
    """Run ``gen`` to its end, dropping what it yields; what it returns."""
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def adrain(agen: AsyncIterator[Any], last: type[T]) -> T:
    """Run ``agen`` to its end; the last item it yields, which must be a ``last``."""
    item: Any = None
    async for item in agen:  # noqa: B007 (the last item is the outcome)
        pass
    if not isinstance(item, last):
        raise TypeError(f"the driver ended with {item!r}, not a {last.__name__}")
    return item

"""Run a driver to its end when its caller wants only the outcome, not what it yields.

The runtime's drivers are generators (``RLM``'s run driver, ``BaseLLM``'s call engine) so that
streaming callers can take each token as it comes; the non-streaming entry points (``run``,
``generate``, ...) drive the same generators with these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

__all__ = ["adrain", "drain"]

T = TypeVar("T")


def drain(it: Iterator[Any], last: type[T]) -> T:
    """Run ``it`` to its end; the last item it yields, which must be a ``last``.

    The outcome comes as the last item, not as a generator's return value: a generator that
    returns ``None`` ends a ``for`` loop without raising ``StopIteration``, which is measurably
    cheaper on a path run once per call.
    """
    item: Any = None
    for item in it:  # noqa: B007 (the last item is the outcome)
        pass
    if not isinstance(item, last):
        raise TypeError(f"the driver ended with {item!r}, not a {last.__name__}")
    return item


async def adrain(agen: AsyncIterator[Any], last: type[T]) -> T:
    """``drain`` for an async iterator."""
    item: Any = None
    async for item in agen:  # noqa: B007 (the last item is the outcome)
        pass
    if not isinstance(item, last):
        raise TypeError(f"the driver ended with {item!r}, not a {last.__name__}")
    return item

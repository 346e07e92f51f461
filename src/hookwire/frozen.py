"""Read-only copies of the data handlers receive, so that no handler can change a request,
a run's metadata, or what the other handlers see.

:func:`freeze` copies JSON-like data once (at the emitter, per event and not per handler,
and only when some handler listens): dicts become :class:`FrozenDict`, lists
:class:`FrozenList`, all the way down; anything else is kept as it is. Both are subclasses of
``dict`` and ``list``, so reading them, ``isinstance`` checks, ``json`` and ``orjson`` work
as before; a change raises ``TypeError`` saying to copy first (``dict(d)``, ``list(xs)``).
``copy``, ``deepcopy`` and ``pickle`` give a frozen copy again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn, TypeVar

__all__ = ["FrozenDict", "FrozenList", "freeze"]

T = TypeVar("T")


def _refuse(self: object, *args: Any, **kwargs: Any) -> NoReturn:
    kind = "dict" if isinstance(self, dict) else "list"
    raise TypeError(
        f"this {kind} is read-only: handlers get a frozen copy of what hookwire sends, so "
        f"that no handler changes the request or later runs; change a copy: {kind}(value)"
    )


class FrozenDict(dict[str, Any]):
    """A ``dict`` that refuses changes (see the module)."""

    __slots__ = ()

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(self):
            _refuse(self)  # calling __init__ again would update it
        dict.__init__(self, *args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))


class FrozenList(list[Any]):
    """A ``list`` that refuses changes (see the module)."""

    __slots__ = ()

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))

    # Calling ``__init__`` again would refill it: only a new one is filled.
    def __init__(self, items: Iterable[Any] = ()) -> None:
        if len(self):
            _refuse(self)
        list.extend(self, items)


def freeze(value: T) -> T:
    """``value`` as a read-only copy: dicts and lists (tuples' items too) frozen all the
    way down; anything else as it is. Already frozen parts are not copied again."""
    cls = value.__class__
    if cls is FrozenDict or cls is FrozenList:
        return value
    if isinstance(value, dict):
        return FrozenDict({k: freeze(v) for k, v in value.items()})  # type: ignore[return-value]
    if isinstance(value, list):
        return FrozenList([freeze(v) for v in value])  # type: ignore[return-value]
    if isinstance(value, tuple) and cls is tuple:
        return tuple(freeze(v) for v in value)  # type: ignore[return-value]
    return value

"""Filling frozen, slotted records fast: what ``Usage``, ``LLMResponse`` and the clients' own
records use in their hand-written ``__init__`` instead of the one ``dataclass`` generates (for
a frozen class it looks ``object.__setattr__`` up for every field, about three times the cost
of setting the slots through their descriptors, on every LLM call)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["FACTORY", "slot_setters"]


def slot_setters(cls: type, *names: str) -> tuple[Callable[[Any, Any], None], ...]:
    """The ``__set__`` of ``cls``'s slot descriptors: what its hand-written ``__init__`` uses
    to fill a frozen record (checked against the fields by tests/test_events.py)."""
    return tuple(cls.__dict__[n].__set__ for n in names)


class _Factory:
    """The default of a field whose value is made per instance (shown as dataclasses do)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


#: The ``__init__`` default of a field made per instance (a ``default_factory`` field).
FACTORY: Any = _Factory()

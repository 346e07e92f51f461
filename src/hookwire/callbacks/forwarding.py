"""Hooks that only hand an event's parts on: the methods of a handler that queues events
(``FileLogCallback``, ``TraceStoreCallback``, ``OutboxCallback``).

Such a handler defines ``_hookwire_raw(hook, args, run_id, timestamp, ctx, kw, model,
provider)`` and gets one ``on_*`` method per hook from ``forward_hooks``. Each is marked
``__hookwire_raw__``: a ``CallbackManager`` then calls ``_hookwire_raw`` with the parts it has
at hand instead of building the hook's keywords (see ``hookwire.callpath``). A subclass that
overrides a hook loses the mark on it, and that hook is called as any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias, TypeVar

from ..events import HookSpec, hook_methods
from ..ids import new_id
from .base import hook_signature

__all__ = ["RawParts", "forward_hooks", "forwards"]

#: What a ``CallbackManager`` passes ``_hookwire_raw``, in order: ``hook, args, run_id,
#: timestamp, ctx, kw, model, provider``. ``ctx`` and ``kw`` may be shared with other handlers:
#: read them, never change them. Implementations take it as ``*parts: Unpack[RawParts]``.
RawParts: TypeAlias = tuple[
    str, tuple[Any, ...], Any, Any, Mapping[str, Any], dict[str, Any], Any, Any
]

_EMPTY: Final[dict[str, Any]] = {}

F = TypeVar("F", bound=Callable[..., Any])


def forwards(fn: F) -> F:
    """Mark a hook method as one that only hands the event to ``_hookwire_raw`` (what
    ``forward_hooks`` makes), so that a ``CallbackManager`` may call ``_hookwire_raw``
    instead."""
    fn.__hookwire_raw__ = True  # type: ignore[attr-defined]
    return fn


def forward_hooks(cls: type, describe: Callable[[HookSpec], str], stamp: bool = False) -> None:
    """Give ``cls`` (which defines ``_hookwire_raw``) a method per hook, now and for every hook
    declared later, that passes the event to ``_hookwire_raw``; ``describe(spec)`` is the
    method's docstring. ``stamp``: a hook called directly (not through a manager) without a
    ``run_id`` or ``timestamp`` gets a new id and the time, for a handler whose records need
    them."""

    def forwarder(spec: HookSpec) -> Callable[..., None]:
        hook, names = spec.name, spec.args
        n = len(names)

        def forward(self: Any, *args: Any, **kwargs: Any) -> None:
            if len(args) < n:  # payload given by name: the record has it all the same
                for name in names[len(args) :]:
                    if name not in kwargs:
                        break
                    args = (*args, kwargs.pop(name))
            if stamp:
                kwargs.setdefault("run_id", new_id())
                kwargs.setdefault("timestamp", time.time())
            self._hookwire_raw(hook, args, None, None, _EMPTY, kwargs, None, None)

        forwards(forward)
        forward.__doc__ = describe(spec)
        forward.__signature__ = hook_signature(spec)  # type: ignore[attr-defined]
        return forward

    hook_methods(cls, forwarder)

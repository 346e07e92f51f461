"""A handler that records what it receives, for assertions in tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..callbacks.base import BaseCallback
from ..dispatch import CallbackManager
from ..events import HookSpec, hook_methods

__all__ = ["Call", "RecordingCallback", "capture_events"]


@dataclass(frozen=True)
class Call:
    """One hook call: the hook's name, its positional arguments by name, and its keywords."""

    hook: str
    args: dict[str, Any]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        if key in self.args:
            return self.args[key]
        return self.kwargs[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


def _recorder(spec: HookSpec) -> Callable[..., None]:
    hook, names = spec.name, spec.args

    def record(self: RecordingCallback, *args: Any, **kwargs: Any) -> None:
        payload = dict(zip(names, args, strict=False))
        for n in names[len(args) :]:
            if n in kwargs:
                payload[n] = kwargs.pop(n)
        with self._lock:
            self.calls.append(Call(hook, payload, kwargs))

    record.__doc__ = f"Record a call of ``{hook}``."
    return record


class RecordingCallback(BaseCallback):
    """Records every hook call (thread-safe). ``calls`` is the list, in arrival order.

    Every hook of ``hookwire.events.HOOKS`` is recorded, hooks declared later included.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def hooks(self) -> list[str]:
        """The names of the hooks called, in order."""
        return [c.hook for c in self.calls]

    def of(self, hook: str) -> list[Call]:
        """The calls of one hook (``"on_llm_end"`` or just ``"llm_end"``)."""
        name = hook if hook.startswith("on_") else "on_" + hook
        return [c for c in self.calls if c.hook == name]

    def clear(self) -> None:
        """Forget the calls recorded so far."""
        with self._lock:
            self.calls.clear()


hook_methods(RecordingCallback, _recorder)


@contextmanager
def capture_events(manager: CallbackManager) -> Iterator[RecordingCallback]:
    """Record what ``manager`` dispatches inside the block."""
    recorder = RecordingCallback()
    manager.add(recorder)
    try:
        yield recorder
    finally:
        manager.remove(recorder)

"""``LRU``: a mapping that keeps at most ``limit`` entries, forgetting the least recently used.

For the caches of a long-running process (owners of conversations, the conversations a
handler has created): each entry only saves a lookup, so forgetting the coldest one costs a
lookup later, never a wrong answer, and memory stays bounded however many keys pass by."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["LRU"]

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``limit`` entries; reading or writing one makes it the most recent. Not
    thread-safe: callers hold their own lock (or use it from one thread)."""

    __slots__ = ("_data", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("an LRU needs a limit of at least 1")
        self.limit = limit
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value of ``key`` (now the most recent), or ``None``."""
        data = self._data
        if key not in data:
            return None
        data.move_to_end(key)
        return data[key]

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is kept (a membership test does not make it recent)."""
        return key in self._data

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` for ``key``, forgetting the least recent entry past the limit."""
        data = self._data
        data[key] = value
        data.move_to_end(key)
        if len(data) > self.limit:
            data.popitem(last=False)

    def pop(self, key: K) -> V | None:
        """Forget ``key``; its value, or ``None``."""
        return self._data.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

"""Memory for runs: what was said before, recalled by relevance.

A runner given ``memory=`` searches it with the prompt before calling the model (the results
go to the model in a system message starting ``"Relevant memory:"``) and stores the exchange
after the answer, emitting ``on_memory_recall(query, results, memory=...)`` and
``on_memory_store(content, memory=...)``. A memory that fails is reported with
``on_error(stage="memory")`` and the run goes on without it.

- ``InMemoryMemory``: a list in the process (lost at exit), bounded by ``max_items``.
- ``SQLiteMemory(path)``: a SQLite file (stdlib ``sqlite3``), kept across processes; each
  ``namespace`` (a user, a conversation) is separate.

Relevance is word overlap (lower-cased words of three letters or more, stop words left out),
newest first among equals; entries with no word in common are not returned. Write your own by
subclassing ``BaseMemory`` (``add`` and ``search``; the async forms default to a thread).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path

from .errors import ConfigurationError, StoreError

__all__ = ["BaseMemory", "InMemoryMemory", "SQLiteMemory", "relevance"]

_WORD = re.compile(r"[^\W_]{3,}", re.UNICODE)
_STOP_WORDS = (
    "the and for are but not you your with this that from have has had was were what when "
    "where which who whom why how can could would should will shall may might must does did "
    "doing done about into onto than then them they their there here its it's our ours out "
    "please tell me my mine"
)
_STOP = frozenset(_STOP_WORDS.split())


def _words(text: str) -> frozenset[str]:
    return frozenset(w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOP)


def relevance(query: str, content: str) -> int:
    """How many of the query's significant words ``content`` contains."""
    return len(_words(query) & _words(content))


def _rank(query: str, items: Iterable[tuple[int, str]], k: int) -> list[str]:
    q = _words(query)
    if not q or k <= 0:
        return []
    scored = []
    for order, content in items:
        score = len(q & _words(content))
        if score:
            scored.append((score, order, content))
    scored.sort(key=lambda t: (-t[0], -t[1]))
    return [c for _, _, c in scored[:k]]


class BaseMemory:
    """What a runner needs from a memory: ``add`` text, ``search`` by a query."""

    def add(self, content: str) -> None:
        """Store ``content``."""
        raise NotImplementedError

    def search(self, query: str, k: int = 3) -> list[str]:
        """Up to ``k`` stored texts relevant to ``query``, most relevant first."""
        raise NotImplementedError

    def clear(self) -> None:
        """Forget everything (in this memory's namespace)."""
        raise NotImplementedError

    async def aadd(self, content: str) -> None:
        """``add`` for asyncio (in a thread unless overridden)."""
        await asyncio.to_thread(self.add, content)

    async def asearch(self, query: str, k: int = 3) -> list[str]:
        """``search`` for asyncio (in a thread unless overridden)."""
        return await asyncio.to_thread(self.search, query, k)


def _check(content: object) -> str:
    if not isinstance(content, str):
        raise ConfigurationError(f"memory stores text, not {type(content).__name__}")
    return content


class InMemoryMemory(BaseMemory):
    """Memory in a list, in this process; the oldest entries go beyond ``max_items``."""

    def __init__(self, items: Sequence[str] = (), *, max_items: int = 10_000) -> None:
        if max_items < 1:
            raise ConfigurationError(f"max_items must be >= 1, not {max_items!r}")
        self._items: deque[tuple[int, str]] = deque(maxlen=max_items)
        self._n = 0
        self._lock = threading.Lock()
        for item in items:
            self.add(item)

    def add(self, content: str) -> None:
        """Store ``content``."""
        content = _check(content)
        with self._lock:
            self._n += 1
            self._items.append((self._n, content))

    def search(self, query: str, k: int = 3) -> list[str]:
        """Up to ``k`` stored texts sharing words with ``query``, most relevant first."""
        with self._lock:
            items = list(self._items)
        return _rank(query, items, k)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    async def aadd(self, content: str) -> None:
        """``add`` (no I/O, so no thread)."""
        self.add(content)

    async def asearch(self, query: str, k: int = 3) -> list[str]:
        """``search`` (no I/O, so no thread)."""
        return self.search(query, k)


class SQLiteMemory(BaseMemory):
    """Memory in a SQLite file. ``namespace`` keeps users or conversations apart; searches
    look at the newest ``scan_limit`` entries of the namespace."""

    def __init__(
        self,
        path: str | PathLike[str] = "hookwire-memory.db",
        *,
        namespace: str = "default",
        scan_limit: int = 5_000,
    ) -> None:
        if not namespace:
            raise ConfigurationError("namespace must be a non-empty string")
        self.path = str(path)
        self.namespace = namespace
        self.scan_limit = scan_limit
        self._lock = threading.Lock()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS hookwire_memory ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " namespace TEXT NOT NULL,"
                " content TEXT NOT NULL,"
                " created_at REAL NOT NULL)"
            )
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS hookwire_memory_ns ON hookwire_memory (namespace, id)"
            )
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the memory database {self.path!r}: {exc}; check the path is writable"
            ) from exc

    def add(self, content: str) -> None:
        """Store ``content`` (one transaction)."""
        content = _check(content)
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO hookwire_memory (namespace, content, created_at) VALUES (?, ?, ?)",
                    (self.namespace, content, time.time()),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"storing in memory {self.path!r} failed: {exc}") from exc

    def search(self, query: str, k: int = 3) -> list[str]:
        """Up to ``k`` stored texts sharing words with ``query``, most relevant first."""
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, content FROM hookwire_memory WHERE namespace = ? "
                    "ORDER BY id DESC LIMIT ?",
                    (self.namespace, self.scan_limit),
                ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"searching memory {self.path!r} failed: {exc}") from exc
        return _rank(query, [(int(i), str(c)) for i, c in rows], k)

    def clear(self) -> None:
        """Forget this namespace's entries."""
        with self._lock:
            self._db.execute("DELETE FROM hookwire_memory WHERE namespace = ?", (self.namespace,))

    def __len__(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM hookwire_memory WHERE namespace = ?", (self.namespace,)
            ).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

"""Run store coroutines on one background event loop, from sync code or any event loop.

Database connections (asyncpg's, aiosqlite's) belong to the event loop that opened them. So
that one engine and one connection pool per database serve the whole process (the app's own
loops, sync code, and the background workers of handlers), every store operation runs on a
single long-lived loop in a daemon thread: the shared loop of ``hookwire._workers``, which
also runs async handlers called from sync code and is drained and stopped at exit.

- :func:`run_sync` ``(coro, timeout)`` runs a coroutine there and waits for its result; for
  sync code and for handlers' background workers.
- :func:`run` is the same for async code: ``await run(coro)`` from any event loop (or directly
  when already on the store loop).
- :func:`get_loop` returns that loop (started on first use, restarted in a forked child).

At interpreter exit, once the threads cannot be restarted (Python 3.12+), the calling thread
drives the loop itself, so a store call made then still runs on the loop its connections
belong to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from .._workers import await_coroutine, background_loop, in_background_loop, run_coroutine
from ..errors import ConfigurationError, StoreError

__all__ = ["get_loop", "in_store_loop", "run", "run_sync"]

T = TypeVar("T")


def get_loop() -> asyncio.AbstractEventLoop:
    """The store loop (started on first use)."""
    return background_loop()


def in_store_loop() -> bool:
    """Whether the caller runs on the store loop's thread."""
    return in_background_loop()


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the store loop and return its result (or raise its exception).

    Raises ``StoreError`` if ``timeout`` seconds pass first (the operation is cancelled), and
    ``ConfigurationError`` when called from the store loop itself, where waiting would
    deadlock: use the async method (``await``) there.
    """
    if in_store_loop():
        coro.close()
        raise ConfigurationError(
            "a sync store method was called from hookwire's store event loop, where it would "
            "wait for itself; await the async method instead"
        )
    try:
        return run_coroutine(coro, timeout)
    except TimeoutError:
        raise StoreError(
            f"the store operation did not finish within {timeout} s; the database may be "
            "locked or unreachable (check the URL, and that no other process holds a lock)"
        ) from None


async def run(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the store loop, from any event loop."""
    return await await_coroutine(coro)

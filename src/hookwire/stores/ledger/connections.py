"""Connections for PostgreSQL budget checks, apart from the store loop's engine.

A budget check is one call of the server-side ``hookwire_reserve``, made where the caller
is: from sync code on a pooled psycopg connection (no event loop involved), from async code
on an asyncpg pool of the caller's own event loop (closed when that loop shuts down), or,
through another async driver, on a small autocommit SQLAlchemy engine of that loop.
"""

from __future__ import annotations

import asyncio
import atexit
import math
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .. import runner

__all__ = [
    "budget_engine",
    "budget_pool",
    "close_sync_budget_connections",
    "dispose_budget_pools",
    "dsn",
    "psycopg_available",
    "sync_give_back",
    "sync_take",
]

_budget_engines: dict[tuple[str, int], tuple[asyncio.AbstractEventLoop, AsyncEngine]] = {}
_budget_pools: dict[tuple[str, int], tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
_pool_closers: dict[tuple[str, int], AsyncIterator[None]] = {}


def dsn(url: str) -> str:
    """A libpq connection string of the SQLAlchemy URL ``url``."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _close_with_loop(key: tuple[str, int], pool: Any) -> AsyncIterator[None]:
    """Closes ``pool`` when its event loop shuts down: ``asyncio.run`` (and ``Runner.close``)
    finalise the loop's live async generators, which runs this one's ``finally``."""
    try:
        yield
    finally:
        found = _budget_pools.get(key)
        f = found[1] if found is not None else None
        if f is not None and f.done() and f.exception() is None and f.result() is pool:
            del _budget_pools[key]
        _pool_closers.pop(key, None)
        try:
            await asyncio.wait_for(pool.close(), 5.0)
        except Exception:  # a lost server or a stuck connection: drop the sockets instead
            pool.terminate()


def budget_engine(url: str) -> AsyncEngine:
    """A small pool for budget checks through a driver other than asyncpg: autocommit (the
    server-side function is the whole transaction), no ping or reset per checkout."""
    loop = asyncio.get_running_loop()
    key = (url, id(loop))
    found = _budget_engines.get(key)
    if found is not None and found[0] is loop:
        return found[1]
    engine = create_async_engine(
        url,
        isolation_level="AUTOCOMMIT",
        pool_size=4,
        max_overflow=16,
        pool_pre_ping=False,
        pool_reset_on_return=None,
    )
    _budget_engines[key] = (loop, engine)
    return engine


async def _keep_session(conn: Any) -> None:
    """The pool's reset on release: none. A check leaves nothing in its session (one
    autocommit statement; its locks and settings are transaction-scoped), and
    asyncpg's default reset is one more round trip per check."""


async def budget_pool(url: str) -> Any:
    """asyncpg's own pool for budget checks (one prepared call per check, no ORM layer), one
    per database and event loop."""
    import asyncpg  # type: ignore[import-untyped]

    loop = asyncio.get_running_loop()
    key = (url, id(loop))
    found = _budget_pools.get(key)
    if found is None or found[0] is not loop:
        future: asyncio.Future[Any] = loop.create_future()
        _budget_pools[key] = (loop, future)
        try:
            pool = await asyncpg.create_pool(dsn(url), min_size=0, max_size=8, reset=_keep_session)
        except BaseException as exc:
            del _budget_pools[key]
            future.set_exception(exc)
            future.exception()  # retrieved: the caller gets it below
            raise
        if not runner.in_store_loop():
            # An app's loop ends (asyncio.run returns) without telling us: tie the pool's
            # life to the loop's, so that it is closed there, on its own loop.
            closer = _close_with_loop(key, pool)
            await closer.__anext__()
            _pool_closers[key] = closer
        future.set_result(pool)
        return pool
    return await asyncio.shield(found[1])


async def dispose_budget_pools() -> None:
    """Close the budget-check pools opened on the running loop (for tests and shutdown)."""
    loop = asyncio.get_running_loop()
    for key in [k for k, (lp, _) in _budget_pools.items() if lp is loop]:
        closer = _pool_closers.pop(key, None)
        if closer is not None:
            await closer.aclose()  # type: ignore[attr-defined]
            continue
        _, future = _budget_pools.pop(key)
        if future.done() and future.exception() is None:
            await future.result().close()
    for key in [k for k, (lp, _) in _budget_engines.items() if lp is loop]:
        await _budget_engines.pop(key)[1].dispose()


# Sync budget checks: idle psycopg connections per database, shared by all threads (a check
# takes one for its single statement and gives it back). Each is kept as a cursor on it, reused
# by every check (a cursor per statement is a fifth of the check's client time).
_MAX_IDLE = 8
_sync_lock = threading.Lock()
_sync_idle: dict[str, list[Any]] = {}
_sync_open: list[Any] = []
_sync_pid = os.getpid()
_sync_inherited: list[Any] = []


def sync_take(url: str, timeout: float | None = None) -> Any:
    """A cursor on an idle psycopg connection to ``url`` (a new one if none is idle); give
    it back with :func:`sync_give_back`. ``timeout`` (seconds) bounds a new connection's
    connecting (libpq counts whole seconds, 2 at least) and each statement on it."""
    global _sync_pid
    with _sync_lock:
        if os.getpid() != _sync_pid:
            # A forked child shares its parent's sockets: it must neither use nor close them
            # (closing would end the parent's sessions). Keep them referenced, never touched.
            _sync_inherited.extend(_sync_open)
            _sync_open.clear()
            _sync_idle.clear()
            _sync_pid = os.getpid()
        idle = _sync_idle.get(url)
        if idle:
            return idle.pop()
    import psycopg

    # autocommit: the server-side function is the whole transaction; prepare_threshold=0:
    # the one statement is prepared on first use and reused by every later check.
    limit = 10.0 if timeout is None else timeout
    factory: Any = _bounded_connection_class() or psycopg.Connection
    conn = factory.connect(
        dsn(url),
        autocommit=True,
        prepare_threshold=0,
        connect_timeout=max(2, math.ceil(limit)),
        # A check stuck on the server (a lock another session holds) ends as an error too.
        options=f"-c statement_timeout={math.ceil(limit * 1000)}",
    )
    if factory is not psycopg.Connection:
        conn.hookwire_timeout = limit  # each wait for the server ends after it
    cursor = conn.cursor()
    with _sync_lock:
        _sync_open.append(cursor)
    return cursor


_bounded: list[type[Any] | None] = []


def _bounded_connection_class() -> type[Any] | None:
    """A psycopg ``Connection`` whose every wait for the server ends after its
    ``hookwire_timeout`` seconds, or None where psycopg's ``wait`` takes no timeout (before
    3.2). ``statement_timeout`` cannot end a check whose connection went silent after it
    was opened (a network that drops packets, a frozen server): the server never gets it,
    or never answers; without this the check waited for TCP to give up (about 15 minutes).
    A check cut short leaves its connection mid-statement: it is closed, not kept."""
    if _bounded:
        return _bounded[0]
    import inspect

    import psycopg

    params = inspect.signature(psycopg.Connection.wait).parameters
    if "interval" not in params or "timeout" not in params:
        _bounded.append(None)
        return None

    class BoundedConnection(psycopg.Connection):
        hookwire_timeout: float | None = None

        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            if timeout is None:
                timeout = self.hookwire_timeout
            return super().wait(gen, interval, timeout)

    _bounded.append(BoundedConnection)
    return BoundedConnection


_IDLE_IN_SESSION = 0  # psycopg.pq.TransactionStatus.IDLE: no transaction left open


def sync_give_back(url: str, cursor: Any) -> None:
    """Keep ``cursor`` for the next check, or close its connection if it is not reusable."""
    conn = cursor.connection
    ok = not conn.closed and conn.pgconn.transaction_status == _IDLE_IN_SESSION
    with _sync_lock:
        idle = _sync_idle.setdefault(url, [])
        if ok and len(idle) < _MAX_IDLE and os.getpid() == _sync_pid:
            idle.append(cursor)
            return
        if cursor in _sync_open:
            _sync_open.remove(cursor)
    conn.close()


def close_sync_budget_connections() -> None:
    """Close the idle connections of sync budget checks (also done at interpreter exit)."""
    with _sync_lock:
        if os.getpid() != _sync_pid:
            return
        cursors = [c for idle in _sync_idle.values() for c in idle]
        _sync_idle.clear()
        for c in cursors:
            if c in _sync_open:
                _sync_open.remove(c)
    for c in cursors:
        c.connection.close()


# A plain atexit hook, not hookwire._workers.at_loop_exit: these are sync connections of the
# callers' threads, closed without the loop, and nothing the exit drain writes uses them.
atexit.register(close_sync_budget_connections)


def psycopg_available() -> bool:
    """Whether psycopg can be imported (sync checks on PostgreSQL need it)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True

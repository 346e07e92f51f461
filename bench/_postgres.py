"""The PostgreSQL server the benchmarks use (not a benchmark itself), and databases of their
own on it: the server is shared, so each run makes a fresh one and drops it at the end."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

#: The server's URL, without a database: ``HOOKWIRE_BENCH_PG``, by default the local server.
SERVER = os.environ.get("HOOKWIRE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def server_up() -> bool:
    """Whether the server takes connections (within a second)."""
    url = urlsplit(SERVER)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 5432), timeout=1):
            return True
    except OSError:
        return False


def _admin(sql: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(f"{SERVER}/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


def create_database() -> str:
    """Make a new empty database on the server; its URL (``postgresql://``, no driver)."""
    name = f"hookwire_bench_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    return f"{SERVER}/{name}"


def drop_database(url: str) -> None:
    """Drop a database ``create_database`` made (its sessions are ended first)."""
    _admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@contextmanager
def fresh_database() -> Iterator[str]:
    """``create_database`` for the ``with`` block, dropped after it."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)

"""The fault tests' TCP proxy (``tests/tcp_proxy.py``): cut, stall and restore, in front of
the real PostgreSQL server."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest


async def _select_one(proxy: Any, timeout: float) -> int:
    conn = await asyncpg.connect(
        host="127.0.0.1", port=proxy.port, user="postgres", database="test", timeout=timeout
    )
    try:
        return int(await conn.fetchval("SELECT 1", timeout=timeout))
    finally:
        conn.terminate()


async def test_the_proxy_passes_on_refuses_when_cut_and_holds_when_stalled(
    pg_proxy: Any,
) -> None:
    assert await _select_one(pg_proxy, 10) == 1
    pg_proxy.cut()
    with pytest.raises(OSError):
        await _select_one(pg_proxy, 10)
    pg_proxy.restore()
    assert await _select_one(pg_proxy, 10) == 1
    conn = await asyncpg.connect(
        host="127.0.0.1", port=pg_proxy.port, user="postgres", database="test", timeout=10
    )
    try:
        pg_proxy.stall()
        query = asyncio.ensure_future(conn.fetchval("SELECT 2"))
        done, _ = await asyncio.wait({query}, timeout=0.3)
        assert not done  # held
        pg_proxy.restore()
        assert await asyncio.wait_for(query, 10) == 2  # and passed on
    finally:
        conn.terminate()
    assert pg_proxy.url("postgresql+asyncpg://postgres@127.0.0.1:5432/x").endswith(
        f"@127.0.0.1:{pg_proxy.port}/x"
    )

"""hookwire.stores.runner: store coroutines on the shared background loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from hookwire.errors import ConfigurationError, StoreError
from hookwire.stores import runner


async def _loop_of_caller() -> asyncio.AbstractEventLoop:
    assert runner.in_store_loop()
    return asyncio.get_running_loop()


def test_run_sync_runs_on_the_store_loop() -> None:
    assert runner.run_sync(_loop_of_caller()) is runner.get_loop()
    assert not runner.in_store_loop()


async def test_run_from_another_loop_runs_on_the_store_loop() -> None:
    assert await runner.run(_loop_of_caller()) is runner.get_loop()


def test_run_sync_timeout_is_a_store_error() -> None:
    # Also on 3.10, where the future's TimeoutError is not the builtin one.
    start = time.monotonic()
    with pytest.raises(StoreError, match=r"did not finish within 0\.2 s"):
        runner.run_sync(asyncio.sleep(10), timeout=0.2)
    assert time.monotonic() - start < 2


def test_run_sync_on_the_store_loop_names_the_mistake() -> None:
    async def nested() -> str:
        with pytest.raises(ConfigurationError, match="await the async method"):
            runner.run_sync(asyncio.sleep(0))
        return await runner.run(asyncio.sleep(0, "awaited directly"))

    assert runner.run_sync(nested()) == "awaited directly"


def test_a_store_coroutine_raising_system_exit_leaves_the_loop_serving() -> None:
    async def leave() -> None:
        raise SystemExit(1)

    with pytest.raises(SystemExit):
        runner.run_sync(leave(), timeout=5)
    assert runner.run_sync(_loop_of_caller(), timeout=5) is runner.get_loop()

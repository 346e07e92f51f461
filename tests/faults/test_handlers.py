"""Handlers that raise and handlers that hang, of every kind: the app's call returns, the
failure is counted (never raised into the app), and the handlers after it still run.

Kinds: a sync handler inline, an async handler awaited from asyncio and run from sync code,
and both in the background (``run_in_background``). Failures: an ``Exception``,
``SystemExit``, ``KeyboardInterrupt``.

One exception, by design: ``SystemExit`` and ``KeyboardInterrupt`` raised by a handler that
runs inline, on the app's own thread, reach the app as they are. There they may be real (the
user pressed Ctrl-C while the handler ran, the app called ``sys.exit()``), and swallowing
them would make the app impossible to stop. Everywhere else (a worker thread, the background
loop) no signal can be meant for them: they are the handler's failure, counted.

A hanging handler is only survivable in the background: an inline one runs on the app's own
call, by design (see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from hookwire import AsyncBaseCallback, BaseCallback, CallbackManager

FAILURES = [RuntimeError, SystemExit, KeyboardInterrupt]
KINDS = ["sync", "async", "background sync", "background async"]


class After(BaseCallback):
    """Runs after the failing handler: sees every event."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_memory_store(self, content: Any, **kwargs: Any) -> None:
        self.seen.append(content)


def failing(kind: str, failure: type[BaseException]) -> Any:
    if kind in ("sync", "background sync"):

        class Raises(BaseCallback):
            run_in_background = kind.startswith("background")

            def on_memory_store(self, content: Any, **kwargs: Any) -> None:
                raise failure(f"from a {kind} handler")

        return Raises()

    class ARaises(AsyncBaseCallback):
        run_in_background = kind.startswith("background")

        async def on_memory_store(self, content: Any, **kwargs: Any) -> None:
            await asyncio.sleep(0)
            raise failure(f"from a {kind} handler")

    return ARaises()


def _on_the_apps_thread(kind: str, failure: type[BaseException], from_asyncio: bool) -> bool:
    """Whether the failure reaches the app: an exit or an interrupt raised on its thread."""
    inline = kind == "sync" or (kind == "async" and from_asyncio)
    return inline and not issubclass(failure, Exception)


@pytest.mark.parametrize("via", ["sync code", "asyncio"])
@pytest.mark.parametrize("failure", FAILURES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("kind", KINDS)
async def test_a_raising_handler_never_reaches_the_app(
    kind: str, failure: type[BaseException], via: str
) -> None:
    after = After()
    manager = CallbackManager([failing(kind, failure), after])

    async def emit(i: int) -> None:
        if via == "asyncio":
            await manager.aon_memory_store(i)
        else:
            manager.on_memory_store(i)

    if _on_the_apps_thread(kind, failure, from_asyncio=via == "asyncio"):
        with pytest.raises(failure):
            await emit(0)
        return
    for i in range(3):
        await emit(i)  # returns: nothing is raised here
    assert await asyncio.to_thread(manager.flush, 10)
    assert after.seen == [0, 1, 2]
    assert manager.stats()["errors_total"] == 3


def hanging(kind: str, release: threading.Event, queue_size: int, drop: bool) -> Any:
    if kind == "background sync":

        class Hangs(BaseCallback):
            run_in_background = True
            drop_when_full = drop

            def on_memory_store(self, content: Any, **kwargs: Any) -> None:
                release.wait()

        handler: Any = Hangs()
    else:

        class AHangs(AsyncBaseCallback):
            run_in_background = True
            drop_when_full = drop

            async def on_memory_store(self, content: Any, **kwargs: Any) -> None:
                # A threading.Event (set by the test's thread), awaited without blocking the
                # background loop.
                await asyncio.get_running_loop().run_in_executor(None, release.wait)

        handler = AHangs()
    handler.queue_size = queue_size
    return handler


@pytest.mark.parametrize("kind", ["background sync", "background async"])
def test_a_hanging_background_handler_never_holds_up_the_app_within_its_queue(
    kind: str,
) -> None:
    release = threading.Event()
    after = After()
    manager = CallbackManager([hanging(kind, release, 100, drop=False), after])
    try:
        slowest = 0.0
        for i in range(50):  # within its queue: every call returns at once
            started = time.monotonic()
            manager.on_memory_store(i)
            slowest = max(slowest, time.monotonic() - started)
        assert after.seen == list(range(50))  # the inline handler after it ran each time
        assert not manager.flush(0.2)  # the hanging one has not finished
        print(f"\nFIGURES hanging {kind} handler: slowest app call {slowest * 1000:.2f} ms")
        assert slowest < 2.0
    finally:
        release.set()
    assert manager.flush(10)


@pytest.mark.parametrize("kind", ["background sync", "background async"])
def test_a_hanging_background_handler_that_drops_when_full_never_holds_up_the_app(
    kind: str,
) -> None:
    release = threading.Event()
    manager = CallbackManager([hanging(kind, release, 20, drop=True)])
    name = type(manager.handlers[0]).__name__
    try:
        started = time.monotonic()
        for i in range(500):  # far beyond its queue: dropped and counted, never waited for
            manager.on_memory_store(i)
        took = time.monotonic() - started
        dropped = manager.stats()["dropped"][name]
        print(
            f"\nFIGURES hanging {kind} handler, drop_when_full: 500 calls in "
            f"{took * 1000:.1f} ms, {dropped} events dropped and counted"
        )
        assert dropped >= 500 - 20 - 1  # the queue's bound, and the event in hand
        assert took < 5.0
    finally:
        release.set()
    assert manager.flush(10)

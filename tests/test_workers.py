"""hookwire._workers: background queues on shared workers, and the shared event loop.

Tests that need a process of their own (exit, fork) are in tests/faults/.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from hookwire import _workers
from hookwire._workers import BackgroundQueue

_names = itertools.count()


def worker_name() -> str:
    """A worker of the test's own, so that a handler a test blocks stalls no other test."""
    return f"test-worker-{next(_names)}"


class Gate:
    """A handler that records batches and blocks while the gate is shut."""

    def __init__(self, *, shut: bool = False) -> None:
        self.batches: list[list[Any]] = []
        self.open = threading.Event()
        self.entered = threading.Event()
        if not shut:
            self.open.set()

    def __call__(self, batch: list[Any]) -> None:
        self.entered.set()
        self.open.wait()
        self.batches.append(batch)

    @property
    def items(self) -> list[Any]:
        return [item for batch in self.batches for item in batch]


@pytest.fixture
def gates() -> Iterator[list[Gate]]:
    made: list[Gate] = []
    yield made
    for gate in made:  # never leave a worker blocked for the next test
        gate.open.set()


def shut_gate(gates: list[Gate]) -> Gate:
    gate = Gate(shut=True)
    gates.append(gate)
    return gate


def test_items_are_handled_in_order_in_batches_of_at_most_max_batch() -> None:
    gate = Gate()
    queue = BackgroundQueue("order", gate, max_batch=7, linger=0)
    for i in range(100):
        queue.put(i)
    assert queue.flush(5)
    assert gate.items == list(range(100))
    assert max(len(b) for b in gate.batches) <= 7
    assert queue.pending == 0


def test_queues_share_one_worker_thread() -> None:
    name = worker_name()
    gates = [Gate() for _ in range(3)]
    queues = [BackgroundQueue(f"q{i}", g, worker=name) for i, g in enumerate(gates)]
    for i in range(10):
        for queue in queues:
            queue.put(i)
    assert _workers.flush_all(5)
    assert all(g.items == list(range(10)) for g in gates)
    assert [t.name for t in threading.enumerate()].count(name) == 1


@pytest.mark.parametrize(("maxsize", "max_batch", "linger"), [(5, 1, 0.0), (100, 7, 0.001)])
def test_concurrent_producers_and_flushes_lose_nothing_and_keep_order(
    maxsize: int, max_batch: int, linger: float
) -> None:
    got: list[tuple[int, int]] = []
    name = worker_name()
    queues = [
        BackgroundQueue(
            f"c{i}", got.extend, maxsize=maxsize, max_batch=max_batch, linger=linger, worker=name
        )
        for i in range(3)
    ]
    n = 3_000

    def produce(p: int) -> None:
        for i in range(n):
            queues[i % 3].put((p, i))
            if i % 1000 == 0:
                assert queues[i % 3].flush(30)

    async def aproduce(p: int) -> None:
        for i in range(n):
            await queues[i % 3].aput((p, i))

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(3)]
    threads.append(threading.Thread(target=lambda: asyncio.run(aproduce(3))))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert _workers.flush_all(30)
    assert sorted(got) == [(p, i) for p in range(4) for i in range(n)]
    for p in range(4):  # each producer's items, in its order, within each queue
        for k in range(3):
            assert [i for q, i in got if q == p and i % 3 == k] == list(range(k, n, 3))


def test_a_steady_stream_wakes_the_worker_about_once_per_linger() -> None:
    gate = Gate()
    queue = BackgroundQueue("linger", gate, linger=0.05, worker=worker_name())
    end = time.monotonic() + 0.3
    sent = 0
    while time.monotonic() < end:
        queue.put(sent)
        sent += 1
        time.sleep(0.001)
    assert queue.flush(5)
    assert gate.items == list(range(sent))
    assert sent > 50
    assert len(gate.batches) <= 10  # about 0.3 / 0.05, not one per item


def test_flush_with_nothing_pending_returns_at_once_and_starts_no_thread() -> None:
    name = worker_name()
    queue = BackgroundQueue("idle", Gate(), worker=name)
    assert queue.flush(0)
    assert name not in [t.name for t in threading.enumerate()]


def test_drop_when_full_drops_and_counts(gates: list[Gate]) -> None:
    gate = shut_gate(gates)
    queue = BackgroundQueue("drop", gate, maxsize=3, drop_when_full=True, worker=worker_name())
    queue.put(0)
    assert gate.entered.wait(5)  # the worker holds item 0
    for i in range(1, 10):
        queue.put(i)
    assert queue.dropped == 6
    assert _workers.stats()["drop"]["dropped"] >= 6
    gate.open.set()
    assert queue.flush(5)
    assert gate.items == [0, 1, 2, 3]


def test_a_full_queue_blocks_put_until_there_is_room(gates: list[Gate]) -> None:
    gate = shut_gate(gates)
    queue = BackgroundQueue("block", gate, maxsize=2, worker=worker_name())
    queue.put(0)
    assert gate.entered.wait(5)
    queue.put(1)
    queue.put(2)
    done = threading.Event()

    def producer() -> None:
        queue.put(3)
        done.set()

    threading.Thread(target=producer).start()
    assert not done.wait(0.2)  # full: the producer waits
    gate.open.set()
    assert done.wait(5)
    assert queue.flush(5)
    assert gate.items == [0, 1, 2, 3]
    assert queue.dropped == 0


def test_offer_waits_for_room_at_most_its_timeout_then_drops_and_counts(
    gates: list[Gate],
) -> None:
    gate = shut_gate(gates)
    queue = BackgroundQueue("offer", gate, maxsize=2, worker=worker_name())
    queue.put(0)
    assert gate.entered.wait(5)
    assert queue.offer(1, 0.0)
    assert queue.offer(2, 0.0)
    assert not queue.offer(3, 0.0)  # full: dropped at once
    assert not queue.offer(4, 0.05)  # full for longer than it waits
    assert queue.dropped == 2
    gate.open.set()
    assert queue.flush(5)
    assert queue.offer(5, 1.0)
    assert queue.flush(5)
    assert gate.items == [0, 1, 2, 5]


def test_pending_counts_the_items_in_hand_while_a_flush_waits_behind_them(
    gates: list[Gate],
) -> None:
    gate = shut_gate(gates)
    queue = BackgroundQueue("in hand", gate, worker=worker_name())
    queue.put(0)
    assert gate.entered.wait(5)
    queue.put(1)
    assert not queue.flush(0.05)  # a marker now sits behind item 1
    assert queue.pending == 2
    gate.open.set()
    assert queue.flush(5)
    assert queue.pending == 0


def test_put_and_flush_from_the_worker_itself_never_wait_for_themselves() -> None:
    seen: list[Any] = []
    flushed: list[bool] = []

    def handle(batch: list[int]) -> None:
        seen.extend(batch)
        if batch[0] == 0:
            for i in range(1, 6):
                queue.put(i)  # over maxsize: it must not block
            flushed.append(queue.flush())

    queue: BackgroundQueue[int] = BackgroundQueue(
        "self", handle, maxsize=2, max_batch=1, worker=worker_name()
    )
    queue.put(0)
    assert queue.flush(5)
    assert seen == [0, 1, 2, 3, 4, 5]
    assert flushed == [False]


@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt, ValueError])
def test_a_handler_raising_anything_leaves_the_worker_going(
    exc: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[int] = []

    def handle(batch: list[int]) -> None:
        if 1 in batch:
            raise exc("boom")
        handled.extend(batch)

    queue = BackgroundQueue("raises", handle, max_batch=1, linger=0, worker=worker_name())
    with caplog.at_level(logging.DEBUG, logger="hookwire"):
        for i in range(4):
            queue.put(i)
        assert queue.flush(5)  # returns: the worker did not die
        queue.put(1)
        queue.put(5)
        assert queue.flush(5)
    assert handled == [0, 2, 3, 5]
    assert queue.failed == 2
    assert _workers.stats()["raises"]["failed"] >= 2
    failures = [r for r in caplog.records if "raises" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.ERROR, logging.DEBUG]
    assert failures[0].exc_info and not failures[1].exc_info


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # on purpose
def test_a_worker_that_died_is_restarted_by_the_next_flush() -> None:
    class Exploding(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise SystemExit("a logging handler that exits")

        def handle(self, record: logging.LogRecord) -> bool:
            self.emit(record)  # no handleError(): the exit escapes the worker's own except
            return True

    handled: list[int] = []

    def handle(batch: list[int]) -> None:
        if 0 in batch:
            raise ValueError("logged, and the logging kills the worker")
        handled.extend(batch)

    name = worker_name()
    queue = BackgroundQueue("dies", handle, max_batch=1, linger=0, worker=name)
    exploding = Exploding()
    logging.getLogger("hookwire").addHandler(exploding)
    try:
        queue.put(0)
        queue.put(1)
        deadline = time.monotonic() + 5
        while name in [t.name for t in threading.enumerate()] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert name not in [t.name for t in threading.enumerate()]  # the worker is dead
    finally:
        logging.getLogger("hookwire").removeHandler(exploding)
    assert queue.flush(5)
    assert handled == [1]
    assert queue.failed == 1


def test_flush_honours_its_timeout_when_the_handler_is_stuck(gates: list[Gate]) -> None:
    gate = shut_gate(gates)  # a handler blocked on a dead database
    queue = BackgroundQueue("stuck", gate, worker=worker_name())
    queue.put(1)
    assert gate.entered.wait(5)
    start = time.monotonic()
    assert not queue.flush(timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 1.0
    assert queue.pending == 1


def test_flush_all_has_one_deadline_for_every_queue(gates: list[Gate]) -> None:
    queues = []
    for i in range(3):
        gate = shut_gate(gates)
        queue = BackgroundQueue(f"stuck{i}", gate, worker=worker_name())
        queue.put(i)
        assert gate.entered.wait(5)
        queues.append(queue)
    start = time.monotonic()
    assert not _workers.flush_all(0.5)
    assert 0.5 <= time.monotonic() - start < 1.2  # not 1.5: one deadline, not one per queue
    for gate in gates:
        gate.open.set()
    assert _workers.flush_all(5)


async def test_aput_on_a_full_queue_leaves_the_event_loop_running(gates: list[Gate]) -> None:
    gate = shut_gate(gates)
    queue = BackgroundQueue("aput", gate, maxsize=1, worker=worker_name())
    await queue.aput(0)
    assert gate.entered.wait(5)
    await queue.aput(1)  # the queue is now full
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    put = asyncio.create_task(queue.aput(2))
    await asyncio.sleep(0.3)
    assert not put.done()  # waiting for room...
    assert ticks >= 5  # ...while the loop kept running (about 30 ticks in 0.3 s; 0 if frozen)
    gate.open.set()
    await asyncio.wait_for(put, 5)
    task.cancel()
    assert queue.flush(5)
    assert gate.items == [0, 1, 2]


def test_close_flushes_and_a_later_put_brings_the_queue_back() -> None:
    gate = Gate()
    queue = BackgroundQueue("closing", gate)
    queue.put(1)
    assert queue.close(5)
    assert gate.items == [1]
    assert "closing" not in _workers.stats()
    queue.put(2)
    assert "closing" in _workers.stats()
    assert queue.flush(5)
    assert gate.items == [1, 2]


def test_dropped_queues_cost_no_thread_and_no_memory() -> None:
    def make_and_drop(n: int) -> None:
        for i in range(n):
            queue = BackgroundQueue("per-request", lambda batch: None, linger=0)
            queue.put(i)
            queue.flush(5)

    make_and_drop(200)  # warm up: the worker thread and caches exist
    threads = threading.active_count()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        make_and_drop(10_000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Threads of earlier tests may end meanwhile: none may start.
    assert threading.active_count() <= threads
    assert grown < 100_000  # a queue is about 1 KiB: 10,000 kept would be 10 MB


# The shared event loop.


def test_run_coroutine_returns_the_result_and_raises_the_error() -> None:
    async def double(x: int) -> int:
        assert _workers.in_background_loop()
        return 2 * x

    async def fail() -> None:
        raise ValueError("no")

    assert _workers.run_coroutine(double(21)) == 42
    with pytest.raises(ValueError, match="no"):
        _workers.run_coroutine(fail())
    assert not _workers.in_background_loop()


@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt])
def test_a_coroutine_raising_an_exit_reaches_the_caller_and_the_loop_goes_on(
    exc: type[BaseException],
) -> None:
    async def leave() -> None:
        raise exc(3)

    async def fine() -> str:
        return "ok"

    loop = _workers.background_loop()
    with pytest.raises(exc):
        _workers.run_coroutine(leave(), timeout=5)
    assert _workers.run_coroutine(fine(), timeout=5) == "ok"
    assert _workers.background_loop() is loop  # the same loop, its connections still valid


def test_run_coroutine_timeout_cancels_the_coroutine() -> None:
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    start = time.monotonic()
    with pytest.raises(TimeoutError):
        _workers.run_coroutine(slow(), timeout=0.2)
    assert time.monotonic() - start < 1
    assert cancelled.wait(5)


def test_run_coroutine_from_the_loop_itself_is_refused() -> None:
    async def inner() -> None:
        pass

    async def outer() -> str:
        coro = inner()
        with pytest.raises(RuntimeError, match="wait for itself"):
            _workers.run_coroutine(coro)
        return await _workers.await_coroutine(inner()) or "awaited directly"

    assert _workers.run_coroutine(outer()) == "awaited directly"


async def test_await_coroutine_from_another_loop_runs_on_the_shared_loop() -> None:
    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    assert await _workers.await_coroutine(where()) is _workers.background_loop()
    assert _workers.background_loop() is not asyncio.get_running_loop()

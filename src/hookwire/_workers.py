"""Background work: bounded queues handled in batches on shared worker threads, and one
shared event loop for coroutines.

Everything hookwire does off the app's thread goes through here, so that fork, exit and
failure are handled once:

- :class:`BackgroundQueue` ``(name, handle)``: ``put(item)`` appends to a deque; a worker
  thread calls ``handle(batch)`` with up to ``max_batch`` items at a time, in order.
  Queues with the same ``worker`` name share one daemon thread, so a queue costs no thread
  and a dropped queue is garbage.
- :func:`background_loop` / :func:`run_coroutine` / :func:`await_coroutine`: one asyncio loop
  in a daemon thread, for async handlers called from sync code and for the stores' database
  connections (which belong to the loop that opened them).

How a queue and its worker meet, without a lock per item: a queue is in its worker's
``active`` deque exactly while ``scheduled`` is true. ``put`` appends and, only when the flag
is false, takes the worker's lock to schedule the queue (and wakes the worker if it sleeps).
The worker takes a batch from the queue at the head of ``active``, handles it, then either
rotates the queue to the back or, when it is empty, clears the flag and looks once more (an
item appended before the flag cleared would otherwise stay behind). ``flush`` appends a
marker (a :class:`threading.Event`) behind the items it must wait for; the worker sets it once
the items before it are handled. A put on a full queue waits on an event the worker sets
when it takes a batch (``aput`` polls with ``asyncio.sleep`` instead, to leave the loop free).

Exit: an ``atexit`` hook drains every queue, then lets the loop finish its tasks and run the
closers of :func:`at_loop_exit`, and stops its thread, within :data:`EXIT_TIMEOUT` in total.
Since Python 3.12, atexit runs after the interpreter refuses new threads, and from 3.10 on a
thread started after the hook would be killed unfinished: so once the hook has begun, no
thread is started. Workers already running go on (the first put started them); otherwise
the thread that needs one (a put, a flush, the hook itself) handles the batches itself, and
:func:`run_coroutine` drives the loop in the calling thread. No private API of CPython is
used (``threading._register_atexit`` would run earlier, but only for code that imports us
first, and it is private).

Fork: the child starts clean (fresh locks, no items of the parent, no threads). A
``multiprocessing`` child started by fork ends with ``os._exit``, which skips atexit; the
child registers the same drain with ``multiprocessing.util.Finalize``, which that child runs
before ``os._exit``.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import functools
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

__all__ = [
    "EXIT_TIMEOUT",
    "BackgroundQueue",
    "at_loop_exit",
    "await_coroutine",
    "background_loop",
    "close_all",
    "flush_all",
    "in_background_loop",
    "past_exit_deadline",
    "run_coroutine",
    "stats",
]

T = TypeVar("T")

logger = logging.getLogger("hookwire")

#: Seconds the exit hook may spend in total: draining every queue, then the loop's tasks and
#: closers.
EXIT_TIMEOUT = 10.0

# While a flush waits, it looks this often whether the worker is still alive.
_POLL = 0.1


class _Flush(threading.Event):
    """A flush marker: set by whoever handles the queue when it reaches it."""


class _Worker:
    """One daemon thread serving the queues scheduled on it, round-robin, a batch each."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._reset()

    def _reset(self) -> None:
        # Also the whole of fork handling: the child gets new locks and no thread.
        self.lock = threading.Lock()
        self.inline = threading.Lock()  # one thread at a time drains without the worker
        self.inline_owner: int | None = None
        self.wake = threading.Event()
        self.active: collections.deque[BackgroundQueue[Any]] = collections.deque()
        self.sleeping = False
        self.thread: threading.Thread | None = None

    def schedule(self, queue: BackgroundQueue[Any]) -> None:
        with self.lock:
            if queue.scheduled:
                return
            queue.scheduled = True
            self.active.append(queue)
            if self.sleeping:
                self.wake.set()
        _remember(queue)  # back after close()
        if not self.ensure_running():
            self.drain_inline(None)

    def ensure_running(self) -> bool:
        """Start the thread if it is not alive; False when the interpreter refuses threads."""
        thread = self.thread
        if thread is not None and thread.is_alive():
            return True
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = _start_thread(self._run, self.name)
                if self.thread is None:
                    return False
                _register_child_drain()
        return True

    def on_thread(self) -> bool:
        """Whether the caller is the one handling this worker's queues (waiting would hang)."""
        return (
            threading.current_thread() is self.thread or self.inline_owner == threading.get_ident()
        )

    def step(self) -> None:
        """Handle one batch of the queue at the head of ``active`` (the caller owns it)."""
        queue = self.active[0]
        queue._serve()
        with self.lock:
            self.active.popleft()
            if queue.items:
                self.active.append(queue)
            else:
                queue.scheduled = False
                if queue.items:  # appended by a put that still saw the flag set
                    queue.scheduled = True
                    self.active.append(queue)

    def drain_inline(self, deadline: float | None) -> None:
        """Handle the scheduled queues in the calling thread (the worker cannot run)."""
        if self.on_thread():
            return  # a handle() called from a drain: the drain gets to it
        wait = -1.0 if deadline is None else max(deadline - time.monotonic(), 0.0)
        if not self.inline.acquire(timeout=wait):
            return
        self.inline_owner = threading.get_ident()
        try:
            while self.active and not _expired(deadline):
                self.step()
        finally:
            self.inline_owner = None
            self.inline.release()

    def _run(self) -> None:
        active = self.active
        while True:
            try:
                if active:
                    self.step()
                else:
                    self._sleep()
            except BaseException:  # pragma: no cover - _serve catches handle()'s errors
                logger.exception("hookwire: worker %s failed; it goes on", self.name)

    def _sleep(self) -> None:
        self.sleeping = True
        if not self.active:  # schedule() appended before it could see the flag
            self.wake.wait()
        self.wake.clear()
        self.sleeping = False
        # Woken by the first item: let more arrive, so a steady stream costs about one
        # wake-up per linger; not when a queue has a batch ready, a flush waits or a producer
        # waits for room (they set ``wake`` too, but they may have set it before the clear).
        queues = list(self.active)
        if queues and not any(q._items_ready() for q in queues):
            linger = min(q._linger for q in queues)
            if linger > 0 and self.wake.wait(linger):
                self.wake.clear()


def _start_thread(target: Callable[[], None], name: str) -> threading.Thread | None:
    """A started daemon thread, or None once the exit hook has run or threads are refused.

    After the exit hook, a new thread would be killed before it finished its work (or, from
    3.12, could not start at all): the caller does the work itself instead.
    """
    if _exiting:
        return None
    thread = threading.Thread(target=target, name=name, daemon=True)
    try:
        thread.start()
    except RuntimeError:  # "can't create new thread at interpreter shutdown" (3.12+)
        return None
    return thread


_exiting = False  # set by the exit hook
_exit_deadline: float | None = None  # when the exit hook gives up (time.monotonic())


def past_exit_deadline() -> bool:
    """Whether the exit hook has run out of time: a ``handle()`` that retries (a database
    that is down) stops then, rather than hold up an exit that drains in the exiting thread
    itself."""
    deadline = _exit_deadline
    return deadline is not None and time.monotonic() >= deadline


_WORKERS: dict[str, _Worker] = {}
_WORKERS_LOCK = threading.Lock()
# Every queue not closed, by id, weakly. Not a WeakSet: iterating one while another thread
# adds to it raises, and list(dict.values()) is one step under the GIL.
_LIVE: dict[int, weakref.ref[BackgroundQueue[Any]]] = {}


def _remember(queue: BackgroundQueue[Any]) -> None:
    key = id(queue)
    if key not in _LIVE:
        _LIVE[key] = weakref.ref(queue, functools.partial(_forget, key))


def _forget(key: int, _: object) -> None:
    # The queue is being freed: its id cannot be reused before this runs.
    _LIVE.pop(key, None)


def _live() -> list[BackgroundQueue[Any]]:
    return [q for q in (ref() for ref in list(_LIVE.values())) if q is not None]


def _worker(name: str) -> _Worker:
    worker = _WORKERS.get(name)  # no lock for a worker that exists: queues are made per request
    if worker is None:
        with _WORKERS_LOCK:
            worker = _WORKERS.setdefault(name, _Worker(name))
    return worker


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(timeout, 0.0)


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


class BackgroundQueue(Generic[T]):
    """A bounded FIFO of items handled in batches on a shared worker thread.

    ``handle(batch)`` is called on the worker named ``worker`` with up to ``max_batch`` items,
    in the order they were put. When it raises (anything, ``SystemExit`` included) the
    batch's items are counted in :attr:`failed`, the error is logged through the
    ``hookwire`` logger (with its traceback the first time), and the worker goes on.

    A full queue (``maxsize`` items waiting) makes ``put`` wait for room, or drop the item
    and count it in :attr:`dropped` when ``drop_when_full`` (the first drop is logged);
    ``offer(item, timeout)`` waits at most ``timeout`` seconds, then drops and counts it.
    After a first item wakes the sleeping worker, it waits ``linger`` seconds for more before
    handling them.
    """

    __slots__ = (
        "__weakref__",
        "_blocked",
        "_full_logged",
        "_handle",
        "_in_hand",
        "_linger",
        "_logged",
        "_markers",
        "_room",
        "_serving",
        "_worker",
        "drop_when_full",
        "dropped",
        "failed",
        "items",
        "max_batch",
        "maxsize",
        "name",
        "scheduled",
    )

    def __init__(
        self,
        name: str,
        handle: Callable[[list[T]], None],
        *,
        maxsize: int = 10_000,
        drop_when_full: bool = False,
        linger: float = 0.02,
        max_batch: int = 512,
        worker: str = "hookwire-worker",
    ) -> None:
        self.name = name
        self.drop_when_full = drop_when_full
        self.max_batch = max(1, max_batch)
        #: Items dropped because the queue was full (``drop_when_full``).
        self.dropped = 0
        #: Items whose ``handle()`` raised.
        self.failed = 0
        self._handle = handle
        self.items: collections.deque[Any] = collections.deque()
        self.maxsize = max(1, maxsize)
        self._linger = linger
        self._worker = _worker(worker)
        self.scheduled = False
        self._serving = False
        self._in_hand = 0  # items taken from items and not handled yet
        self._blocked = False
        self._room: threading.Event | None = None
        self._logged = False
        self._full_logged = False
        self._markers = 0  # flush markers in items, not counted as pending
        _remember(self)

    @property
    def pending(self) -> int:
        """Items queued and not yet handled."""
        return len(self.items) + self._in_hand - self._markers

    def put(self, item: T) -> None:
        """Queue ``item``; when the queue is full, wait for room (or drop it).

        A hot path may write this body out, reading ``items``, ``maxsize`` and ``scheduled``
        and calling ``schedule()`` as it does, append first (``hookwire.callpath.Sink``)."""
        # The hot path: no lock, no wake-up; the worker is involved only when the queue is
        # not scheduled yet (about once per linger under steady traffic).
        items = self.items
        if len(items) < self.maxsize:
            items.append(item)
            if not self.scheduled:
                self._worker.schedule(self)
        else:
            self._put_full(item)

    def schedule(self) -> None:
        """Have the worker take this queue's items (what ``put`` does after an append that
        found ``scheduled`` false)."""
        self._worker.schedule(self)

    async def aput(self, item: T) -> None:
        """:meth:`put` for asyncio: waits for room without blocking the event loop."""
        if self.drop_when_full:
            return self.put(item)
        items, worker = self.items, self._worker
        delay = 0.0005
        while len(items) >= self.maxsize:
            if worker.on_thread() or not worker.ensure_running():
                break  # nothing would make room while we wait: go over the bound
            worker.wake.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
        items.append(item)
        if not self.scheduled:
            worker.schedule(self)

    def offer(self, item: T, timeout: float) -> bool:
        """Queue ``item`` if there is room within ``timeout`` seconds; else drop it, count it
        in :attr:`dropped` and return False (whatever ``drop_when_full`` says).

        For producers that must not wait long on a consumer that cannot keep up (a database
        that is down): the bound holds, and what it cost is counted."""
        if len(self.items) < self.maxsize:
            self.put(item)
            return True
        return self._put_full(item, _deadline(timeout))

    def _put_full(self, item: T, deadline: float | None = None) -> bool:
        worker = self._worker
        if self.drop_when_full and deadline is None:
            with worker.lock:
                self.dropped += 1
                first, self._full_logged = not self._full_logged, True
            if first:
                logger.warning(
                    "hookwire: background queue %s is full (%d items): items are dropped and "
                    "counted until it has room (CallbackManager.stats())",
                    self.name,
                    self.maxsize,
                )
            return False
        items = self.items
        while len(items) >= self.maxsize:
            if worker.on_thread() or not worker.ensure_running():
                break  # waiting would wait for ourselves: go over the bound
            if deadline is not None and time.monotonic() >= deadline:
                with worker.lock:
                    self.dropped += 1
                return False
            if self._room is None:
                self._room = threading.Event()
            self._room.clear()
            self._blocked = True
            worker.wake.set()
            if len(items) >= self.maxsize:
                wait = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
                self._room.wait(max(wait, 0.0))
        items.append(item)
        if not self.scheduled:
            worker.schedule(self)
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item put before this call is handled.

        Returns False if ``timeout`` seconds pass first, or at once when called from the
        worker's own thread with items pending (it would wait for itself).
        """
        deadline = _deadline(timeout)
        marker = self._mark()
        return marker is None or self._wait(marker, deadline)

    async def aflush(self, timeout: float | None = None) -> bool:
        """:meth:`flush` for asyncio: waits without blocking the event loop (it looks at the
        marker with a short, growing sleep, as :meth:`aput` waits for room)."""
        marker = self._mark()
        if marker is None:
            return True
        deadline = _deadline(timeout)
        worker = self._worker
        delay = 0.0005
        while not marker.is_set():
            if worker.on_thread() or _expired(deadline):
                return marker.is_set()
            if not worker.ensure_running():
                return self._wait(marker, deadline)  # no thread (exit): drained right here
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.01)
        return True

    def close(self, timeout: float | None = 10.0) -> bool:
        """:meth:`flush`, then leave the exit hook and :func:`stats` until the next put."""
        done = self.flush(timeout)
        _LIVE.pop(id(self), None)
        return done

    def _items_ready(self) -> bool:
        return self._blocked or bool(self._markers) or len(self.items) >= self.max_batch

    def _mark(self) -> _Flush | None:
        # Items first, then the serving flag: a batch taken after the first read shows in
        # the second.
        if not self.items and not self._serving:
            return None
        marker = _Flush()
        with self._worker.lock:
            self._markers += 1
            self.items.append(marker)
        if not self.scheduled:
            self._worker.schedule(self)
        self._worker.wake.set()  # cut the linger short
        return marker

    def _wait(self, marker: _Flush, deadline: float | None) -> bool:
        worker = self._worker
        if worker.on_thread():
            return marker.is_set()
        while not marker.is_set():
            if not worker.ensure_running():
                worker.drain_inline(deadline)
            if _expired(deadline):
                return marker.is_set()
            remaining = _POLL if deadline is None else deadline - time.monotonic()
            marker.wait(min(max(remaining, 0.0), _POLL))
        return True

    def _serve(self) -> None:
        """Take one batch and handle it; a flush marker in it is set once the items before
        it are handled."""
        self._serving = True
        popleft = self.items.popleft
        try:
            taken = [popleft() for _ in range(min(len(self.items), self.max_batch))]
            if self._blocked:
                self._blocked = False
                if self._room is not None:
                    self._room.set()
            # Read after the pops: a marker taken was counted before.
            marks = sum(1 for i in taken if i.__class__ is _Flush) if self._markers else 0
            if not marks:
                self._in_hand = len(taken)
                self._call(taken)
                return
            with self._worker.lock:
                self._markers -= marks  # out of items: pending counts them no more
            self._in_hand = len(taken) - marks
            segment: list[T] = []
            for item in taken:
                if item.__class__ is _Flush:
                    self._call(segment)
                    self._in_hand -= len(segment)
                    segment = []
                    item.set()
                else:
                    segment.append(item)
            self._call(segment)
        finally:
            self._in_hand = 0
            self._serving = False

    def _call(self, batch: list[T]) -> None:
        if not batch:
            return
        try:
            self._handle(batch)
        except BaseException as error:  # SystemExit, KeyboardInterrupt too: the worker goes on
            self.failed += len(batch)
            first, self._logged = not self._logged, True
            logger.log(
                logging.ERROR if first else logging.DEBUG,
                "hookwire: background queue %s: handling %d item(s) failed: %r",
                self.name,
                len(batch),
                error,
                exc_info=first,
            )

    def _reset_in_child(self) -> None:
        self.items.clear()
        self._in_hand = 0
        self._markers = 0
        self.scheduled = self._serving = self._blocked = False
        self._room = None


def stats() -> dict[str, dict[str, int]]:
    """``{queue name: {"pending", "dropped", "failed"}}``, summed over queues of one name."""
    out: dict[str, dict[str, int]] = {}
    for queue in _live():
        row = out.setdefault(queue.name, {"pending": 0, "dropped": 0, "failed": 0})
        row["pending"] += queue.pending
        row["dropped"] += queue.dropped
        row["failed"] += queue.failed
    return out


def flush_all(timeout: float | None = None) -> bool:
    """Flush every live queue within one overall ``timeout``; False if it ran out."""
    deadline = _deadline(timeout)
    marked = [(q, q._mark()) for q in _live()]
    done = True
    for queue, marker in marked:
        if marker is not None and not queue._wait(marker, deadline):
            done = False
    return done


def close_all(timeout: float | None = None) -> bool:
    """:func:`flush_all`, then forget every queue (a later put brings it back)."""
    done = flush_all(timeout)
    _LIVE.clear()
    return done


# The shared event loop.


class _Loop:
    lock = threading.Lock()
    drive = threading.Lock()  # one thread at a time drives the loop inline
    loop: asyncio.AbstractEventLoop | None = None
    thread: threading.Thread | None = None
    driver: int | None = None  # ident of the thread running the loop


_CLOSERS: list[Callable[[], Awaitable[None]]] = []
# Loops inherited through fork: kept referenced, since closing one is refused (it looks
# running) and collecting it would warn about an unclosed loop.
_ORPHANS: list[asyncio.AbstractEventLoop] = []


def _serve_loop(loop: asyncio.AbstractEventLoop) -> None:
    _Loop.driver = threading.get_ident()
    try:
        while True:
            try:
                loop.run_forever()
                return  # stopped on purpose
            except BaseException:
                # A task or callback raised SystemExit/KeyboardInterrupt, which asyncio lets
                # out of run_forever. The task's future is already set, so its waiter gets the
                # exception; the loop goes on with everything else it had scheduled.
                logger.debug("hookwire: the background loop caught an exit", exc_info=True)
    finally:
        _Loop.driver = None


def background_loop() -> asyncio.AbstractEventLoop:
    """The shared event loop, running in a daemon thread (started on first use).

    When the interpreter refuses new threads (at exit), the loop is returned without a
    thread: :func:`run_coroutine` then drives it in the calling thread.
    """
    loop, thread = _Loop.loop, _Loop.thread
    if loop is not None and thread is not None and thread.is_alive():
        return loop
    with _Loop.lock:
        if _Loop.loop is None or _Loop.loop.is_closed():
            _Loop.loop = asyncio.new_event_loop()
        if _Loop.thread is None or not _Loop.thread.is_alive():
            loop = _Loop.loop
            _Loop.thread = _start_thread(lambda: _serve_loop(loop), "hookwire-async-handlers")
        return _Loop.loop


def in_background_loop() -> bool:
    """Whether the caller runs on the shared loop (in its thread, or driving it inline)."""
    return _Loop.driver == threading.get_ident()


def run_coroutine(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the shared loop, wait, and return its result or raise its exception.

    Exceptions reach the caller as they are, ``SystemExit`` and ``KeyboardInterrupt`` too
    (the loop itself goes on). Raises ``TimeoutError`` after ``timeout`` seconds (the
    coroutine is cancelled), and ``RuntimeError`` when called from the loop itself, where
    it would wait for itself: await the coroutine there.
    """
    if in_background_loop():
        coro.close()
        raise RuntimeError(
            "run_coroutine() was called from hookwire's background loop, where it would wait "
            "for itself; await the coroutine instead"
        )
    loop = background_loop()
    if _Loop.thread is None:
        return _drive_inline(loop, coro, timeout)
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:  # not the builtin TimeoutError before 3.11
        future.cancel()
        raise TimeoutError(f"the coroutine did not finish within {timeout} s") from None


def _drive_inline(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], timeout: float | None
) -> T:
    with _Loop.drive:
        _Loop.driver = threading.get_ident()
        # One task and a timer, not wait_for: at exit, wait_for's outer task would be one of
        # the tasks _finish_loop_work waits for, waiting for itself until the deadline.
        task = loop.create_task(coro)
        expired: list[bool] = []
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, lambda: expired.append(task.cancel()))
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError:
            if expired:
                raise TimeoutError(f"the coroutine did not finish within {timeout} s") from None
            raise
        finally:
            if timer is not None:
                timer.cancel()
            _Loop.driver = None


async def await_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the shared loop from any event loop (directly when already on it)."""
    if in_background_loop():
        return await coro
    loop = background_loop()
    if _Loop.thread is None:
        coro.close()
        raise RuntimeError("hookwire's background loop cannot start: the interpreter is exiting")
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


def at_loop_exit(closer: Callable[[], Awaitable[None]]) -> None:
    """Have ``await closer()`` run on the shared loop at exit, before the loop stops (to
    close database connections that belong to it)."""
    _CLOSERS.append(closer)


async def _finish_loop_work(deadline: float | None) -> None:
    # Tasks first (a store's group of rows being written), then the closers.
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(
            others, timeout=None if deadline is None else deadline - time.monotonic()
        )
    for closer in list(_CLOSERS):
        try:
            await asyncio.wait_for(
                closer(), None if deadline is None else deadline - time.monotonic()
            )
        except (asyncio.CancelledError, asyncio.TimeoutError, TimeoutError):
            # The exit bound ran out (asyncio's TimeoutError is the builtin from 3.11 on):
            # the closers left would have no time either.
            logger.warning("hookwire: closing the background loop's connections was cut short")
            return
        except BaseException:
            logger.exception("hookwire: a background loop closer failed at exit")


def _stop_loop(deadline: float | None) -> None:
    """Let the loop finish its tasks, run the closers, and stop its thread.

    The loop is not closed: an atexit function that runs after this one (registered before
    hookwire was imported) may still need it, and then drives it in its own thread, on the
    loop its connections belong to.
    """
    loop, thread = _Loop.loop, _Loop.thread
    if loop is None or loop.is_closed():
        return
    remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
    try:
        run_coroutine(_finish_loop_work(deadline), remaining)
    except TimeoutError:
        # Expected when a database never took the queue: a traceback would only say where
        # hookwire waited.
        logger.warning(
            "hookwire: the background loop did not finish its work within the exit bound "
            "(%s s); what it still held is lost",
            EXIT_TIMEOUT,
        )
    except BaseException:
        logger.warning("hookwire: the background loop failed at exit", exc_info=True)
    if thread is not None and thread.is_alive():
        loop.call_soon_threadsafe(loop.stop)
        thread.join(None if deadline is None else max(deadline - time.monotonic(), 0.1))


# Exit and fork.


def _drain_at_exit() -> None:
    global _exiting, _exit_deadline
    deadline = _deadline(EXIT_TIMEOUT)
    _exit_deadline = deadline
    _exiting = True
    try:
        if not flush_all(EXIT_TIMEOUT):
            logger.warning(
                "hookwire: background queues were not drained within %s s at exit: %s",
                EXIT_TIMEOUT,
                {name: row["pending"] for name, row in stats().items() if row["pending"]},
            )
        _stop_loop(deadline)
    except BaseException:  # pragma: no cover - never spoil interpreter exit
        logger.exception("hookwire: draining background work at exit failed")


atexit.register(_drain_at_exit)

_child_drain_registered = True  # only a forked child needs it (see _register_child_drain)


def _register_child_drain() -> None:
    # A multiprocessing child started by fork leaves through os._exit after running the
    # finalizers of multiprocessing.util, not atexit: register the drain there. Done when the
    # child first starts a worker, because the child's bootstrap empties that registry after
    # the fork hooks have run.
    global _child_drain_registered
    if _child_drain_registered or "multiprocessing" not in sys.modules:
        return
    _child_drain_registered = True
    from multiprocessing import util

    util.Finalize(None, _drain_at_exit, exitpriority=100)


def _after_fork_in_child() -> None:
    global _WORKERS_LOCK, _child_drain_registered
    _WORKERS_LOCK = threading.Lock()
    for worker in _WORKERS.values():
        worker._reset()
    for queue in _live():
        queue._reset_in_child()
    _child_drain_registered = False
    # The parent's loop stays the parent's.
    if _Loop.loop is not None:
        _ORPHANS.append(_Loop.loop)
    _Loop.lock = threading.Lock()
    _Loop.drive = threading.Lock()
    _Loop.loop = _Loop.thread = _Loop.driver = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

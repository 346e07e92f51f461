"""Queue 100 items and exit: every item must be handled once, in order.

Usage: exit_drain.py WHEN HANDLER OUT. WHEN is when the items are put: ``main`` (by the script),
``atexit`` (by an atexit function that runs before hookwire's drain, with no worker started
yet: from 3.12 it cannot start) or ``late`` (by one that runs after it). HANDLER is ``sync``
(writes to OUT) or ``coroutine`` (writes through run_coroutine on the background loop, whose
exit closer writes ``closed``).
"""

from __future__ import annotations

import asyncio
import atexit
import sys

when, kind, out = sys.argv[1:4]


def put_all() -> None:
    for i in range(100):
        queue.put(i)


if when == "late":
    atexit.register(put_all)  # registered first, so it runs last

from hookwire import _workers  # noqa: E402 - after the atexit function above, on purpose


def write(lines: str) -> None:
    with open(out, "a") as f:
        f.write(lines)


async def awrite(lines: str) -> None:
    await asyncio.sleep(0.001)
    write(lines)


def handle(batch: list[int]) -> None:
    lines = "".join(f"{i}\n" for i in batch)
    if kind == "coroutine":
        _workers.run_coroutine(awrite(lines), timeout=5)
    else:
        write(lines)


async def closer() -> None:
    write("closed\n")


_workers.at_loop_exit(closer)
queue = _workers.BackgroundQueue("exit", handle, max_batch=10)
if when == "main":
    put_all()
elif when == "atexit":
    atexit.register(put_all)

"""A multiprocessing child (fork start method) queues items and ends: it must handle them
all before its os._exit. Usage: fork_mp.py OUT."""

from __future__ import annotations

import multiprocessing
import sys
import time

from hookwire import _workers

out = sys.argv[1]


def handle(batch: list[str]) -> None:
    time.sleep(0.01)  # slow enough that items are still queued when the child returns
    with open(out, "a") as f:
        f.write("".join(f"{item}\n" for item in batch))


queue = _workers.BackgroundQueue("mp", handle, max_batch=5)


def child() -> None:
    for i in range(50):
        queue.put(f"child {i}")


if __name__ == "__main__":
    queue.put("parent")  # the parent's worker runs when the child forks
    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(30)
    assert queue.flush(5)
    sys.exit(process.exitcode)

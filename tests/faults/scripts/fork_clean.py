"""os.fork() while the parent's worker is busy: the child starts with no items of the
parent, no threads, and a working queue and loop; the parent goes on with its own items.
Prints one JSON line from the child and one from the parent."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import warnings

from hookwire import _workers

warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads running
gate = threading.Event()
handled: list[str] = []


def handle(batch: list[str]) -> None:
    if batch[0].startswith("parent"):
        gate.wait()  # the parent's worker is busy at fork time
    handled.extend(batch)


async def where() -> int:
    return id(asyncio.get_running_loop())


queue = _workers.BackgroundQueue("forked", handle, max_batch=1)
for i in range(5):
    queue.put(f"parent {i}")
parent_loop = _workers.run_coroutine(where())
pid = os.fork()
if pid == 0:
    report = {
        "pending_at_start": queue.pending,
        "threads_at_start": threading.active_count(),
    }
    queue.put("child 0")
    other = _workers.BackgroundQueue("other", handle)
    other.put("child 1")
    report["flushed"] = _workers.flush_all(5)
    report["handled"] = handled
    report["new_loop"] = _workers.run_coroutine(where(), timeout=5) != parent_loop
    print(json.dumps(report), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
gate.set()
print(json.dumps({"flushed": queue.flush(5), "handled": handled}), flush=True)

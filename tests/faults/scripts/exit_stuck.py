"""Three queues, each with a handler stuck for good, and EXIT_TIMEOUT = 1 s: the exit must
take about 1 s in total, not 3. Prints ``ready <monotonic time>`` just before exiting."""

from __future__ import annotations

import threading
import time

from hookwire import _workers

_workers.EXIT_TIMEOUT = 1.0
dead_database = threading.Event()
queues = []
for i in range(3):
    entered = threading.Event()

    def handle(batch: list[int], entered: threading.Event = entered) -> None:
        entered.set()
        dead_database.wait()

    queue = _workers.BackgroundQueue(f"stuck{i}", handle, worker=f"worker{i}")
    queue.put(i)
    queue.put(i)
    entered.wait(5)
    queues.append(queue)
print("ready", time.monotonic(), flush=True)

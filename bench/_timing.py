"""Timing helpers shared by the benchmarks (not a benchmark itself)."""

from __future__ import annotations

import gc
import time
import timeit
from collections.abc import Callable
from typing import Any


def best_of(cases: dict[str, Callable[[], Any]], number: int, repeat: int) -> dict[str, float]:
    """Per-call µs of each case: the cases take turns, ``repeat`` rounds of ``number`` calls,
    and each keeps its best round, so a burst of load on a shared machine hits them alike."""
    for fn in cases.values():
        for _ in range(number):
            fn()  # warm up
    gc.collect()
    out = {name: float("inf") for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            t = timeit.Timer(fn, timer=time.thread_time).timeit(number) / number * 1e6
            out[name] = min(out[name], t)
    return out

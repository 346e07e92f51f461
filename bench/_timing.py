"""Timing helpers shared by the benchmarks (not a benchmark itself): their one option and the
measuring loop."""

from __future__ import annotations

import argparse
import gc
import time
import timeit
from collections.abc import Callable
from typing import Any


def quick_flag(doc: str | None) -> bool:
    """Whether the benchmark was run with ``--quick`` (fewer iterations), its one option;
    ``--help`` shows the first paragraph of ``doc``."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    return bool(parser.parse_args().quick)


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

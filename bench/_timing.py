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


def options(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's option parser, whose ``--help`` shows the first line of ``doc``."""
    return argparse.ArgumentParser(description=(doc or "").splitlines()[0])


def print_ratios(
    title: str, headers: tuple[str, str, str], rows: list[tuple[str, float, float]], target: str
) -> None:
    """A table of (case, the peer's µs, hookwire's µs) rows with the ratio hookwire / peer."""
    case, peer, ours = headers
    width = max(len(case), *(len(row[0]) for row in rows))
    print(title)
    print(f"{case:<{width}} {peer:>16} {ours:>16} {'ratio':>7}  target")
    for label, theirs, mine in rows:
        print(f"{label:<{width}} {theirs:>16.2f} {mine:>16.2f} {mine / theirs:>6.2f}x  {target}")


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

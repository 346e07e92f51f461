"""The dashboard's reads on a large trace store: how long each view's query takes.

Loads ``--runs`` runs of 10 spans each over 30 days, and one trace of 10,000 spans, in bulk
inside the database (``_ui_bulk``: the rows the write path makes, indexes made afterwards),
then counts the hourly rollups (``TraceStore.rebuild_rollups``, timed); PostgreSQL's tables
are left unanalysed, as just loaded. Then times, wall clock, best of 5 rounds, through
``hookwire.ui.api.DashboardApi`` (what the pages call, without the HTTP hop): the runs page
(first, and 20 pages down by keyset), filtered pages, a search, a 10,000-span trace's first
level, the cost view over 30 days and the health view over 24 hours. Target: each under
200 ms at 1,000,000 runs. ``--via-store`` writes 5-span runs through ``TraceStore.record``
(the write path ``TraceStoreCallback`` uses) instead, and prints its rate.

    python bench/ui.py --runs 1000000            # SQLite, in a temporary directory
    python bench/ui.py --runs 1000000 --pg       # PostgreSQL too (HOOKWIRE_BENCH_PG)
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _postgres import fresh_database, server_up
from _timing import options
from _ui_bulk import SPANS_PER_RUN, load_postgres, load_sqlite
from hookwire.stores import engine, runner
from hookwire.stores.traces import TraceStore, spans_from_records
from hookwire.ui.api import DashboardApi

BATCH = 1000  # runs per write


def records_of(i: int, at: float) -> list[dict[str, Any]]:
    run = f"r{i:09d}"
    ctx = {"trace_id": run, "user_id": f"user-{i % 1000}", "agent": "support"}
    kid = {**ctx, "parent_run_id": run, "depth": 1}
    words = "needle" if i % 10_000 == 0 else "hay"
    return [
        {"v": 1, "event": "run_start", "run_id": run, "timestamp": at, "name": "Support Agent",
         "data": {"input": f"question {i} about {words} and the order"}, **ctx},
        {"v": 1, "event": "memory_recall", "run_id": f"{run}-m", "timestamp": at + 0.001,
         "data": {"query": "order", "results": ["a", "b"]}, **kid},
        {"v": 1, "event": "llm_start", "run_id": f"{run}-l", "timestamp": at + 0.002,
         "model": f"model-{i % 5}", "data": {"prompt": "p" * 200}, **kid},
        {"v": 1, "event": "retry", "run_id": f"{run}-l", "timestamp": at + 0.003,
         "data": {"attempt": 1, "max_attempts": 3, "error": {"type": "RateLimitError"}}, **kid},
        {"v": 1, "event": "llm_end", "run_id": f"{run}-l", "timestamp": at + 0.3,
         "model": f"model-{i % 5}", "latency_ms": 290.0 + i % 50, "ttft_ms": 40.0, **kid,
         "data": {"response": {"content": "answer " * 20, "cost": "0.0021",
                  "usage": {"prompt_tokens": 120, "completion_tokens": 40}}}},
        {"v": 1, "event": "tool_start", "run_id": f"{run}-t", "timestamp": at + 0.31,
         "data": {"tool_name": "order_status", "tool_input": {"id": i}}, **kid},
        {"v": 1, "event": "tool_end", "run_id": f"{run}-t", "timestamp": at + 0.4,
         "latency_ms": 90.0, "data": {"tool_name": "order_status", "tool_output": "ok"}, **kid},
        {"v": 1, "event": "run_end", "run_id": run, "timestamp": at + 0.5, "cost": "0.0021",
         "model": f"model-{i % 5}", "data": {"output": "answer " * 20}, **ctx},
    ]  # fmt: skip


def seed(store: TraceStore, runs: int) -> float:
    """Write the runs, and the wide trace; returns spans written per second."""
    now = time.time()
    spans = 0
    start = time.perf_counter()
    for first in range(0, runs, BATCH):
        records = []
        for i in range(first, min(first + BATCH, runs)):
            records += records_of(i, now - (runs - i) * 0.05)  # one run every 50 ms
        patches = spans_from_records(records)
        runner.run_sync(store.record(patches), 600)
        spans += len(patches)
    rate = spans / (time.perf_counter() - start)
    wide = [{"v": 1, "event": "run_start", "run_id": "wide", "timestamp": now, "data": {}}]
    wide += [
        {"v": 1, "event": "memory_store", "run_id": f"wide-{k}", "trace_id": "wide",
         "parent_run_id": "wide", "timestamp": now + k / 1e4, "data": {"content": "x"}}
        for k in range(10_000)
    ]  # fmt: skip
    runner.run_sync(store.record(spans_from_records(wide)), 600)
    return rate


def best(fn: Callable[[], Any], rounds: int = 5) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1000


def load(url: str, runs: int, via_store: bool) -> str:
    """Fill the database; returns what was loaded and how fast."""
    runner.run_sync(engine.upgrade(url), 600)
    store = TraceStore(url)
    if via_store:
        rate = seed(store, runs)
        return f"{runs * 5 + 10_001:,} spans; written at {rate:,.0f} spans/s"
    now = time.time()
    if url.startswith("sqlite"):
        took = load_sqlite(url.split("///", 1)[1], runs, now)
    else:
        took = load_postgres(url.replace("+asyncpg", ""), runs, now)
    started = time.perf_counter()
    counted = runner.run_sync(store.rebuild_rollups(), 7200)
    rollup = time.perf_counter() - started
    return (
        f"{runs * SPANS_PER_RUN + 10_001:,} spans loaded in {took:,.0f} s; rollups of "
        f"{counted:,} spans rebuilt in {rollup:,.0f} s"
    )


def measure(url: str, runs: int, via_store: bool) -> None:
    loaded = load(url, runs, via_store)
    api = DashboardApi(url)
    deep = api.get("/api/runs", {"limit": ["50"]})
    for _ in range(20):  # 20 pages down by keyset
        deep = api.get("/api/runs", {"limit": ["50"], "cursor": [deep["next_cursor"]]})
    cursor = deep["next_cursor"]
    cases: dict[str, Callable[[], Any]] = {
        "runs, first page": lambda: api.get("/api/runs", {"limit": ["50"]}),
        "runs, page 21 (keyset)": lambda: api.get("/api/runs", {"cursor": [cursor]}),
        "runs of one user": lambda: api.get("/api/runs", {"user": ["user-7"]}),
        "runs of one model, errors": lambda: api.get(
            "/api/runs", {"model": ["model-3"], "status": ["error"]}
        ),
        "search 'needle'": lambda: api.get("/api/runs", {"q": ["needle"]}),
        "10,000-span trace, first level": lambda: api.get(
            "/api/trace/wide/children", {"parent": ["wide"]}
        ),
        "costs, 30 days": lambda: api.get("/api/costs", {"days": ["30"]}),
        "health, 24 hours": lambda: api.get("/api/health", {"hours": ["24"]}),
    }
    print(f"\n{engine.redact(url).split('://')[0]}: {runs:,} runs, {loaded}")
    for name, fn in cases.items():
        print(f"  {name:34} {best(fn):8.1f} ms")


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL too")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument(
        "--via-store", action="store_true", help="write 5-span runs through TraceStore.record"
    )
    parser.add_argument("--dir", default=None, help="where the SQLite file goes (a temp dir)")
    args = parser.parse_args()
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            measure(f"sqlite+aiosqlite:///{tmp}/ui.db", args.runs, args.via_store)
            runner.run_sync(engine.dispose_engines(), 60)
    if args.pg and server_up():
        with fresh_database() as url:
            measure(url, args.runs, args.via_store)
            runner.run_sync(engine.dispose_engines(), 60)


if __name__ == "__main__":
    main()

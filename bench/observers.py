"""Observers benchmark: FileLogCallback vs langchain-core's FileCallbackHandler, MetricsCallback's
memory over 1,000,000 LLM calls, and `hookwire report`'s reading speed. One process, one run.

    PYTHONPATH=src python bench/observers.py [--quick]

Every file-logging figure is the best of REPS interleaved rounds (as ``timeit`` does), because
other jobs on a shared machine only ever make a run slower.

Targets (issue 4): FileLogCallback >= 250,000 events/s to disk, <= 3 us per event on the app
thread, >= 2x FileCallbackHandler's events/s; MetricsCallback grows < 1 MB over 1,000,000
calls; `hookwire report` >= 300,000 lines/s.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from hookwire import CallbackManager, LLMResponse, Usage
from hookwire.callbacks import FileLogCallback, MetricsCallback
from hookwire.context import Run, enter_run, exit_run
from hookwire.report import summarize

QUICK = "--quick" in sys.argv
N_EVENTS = 100_000 if QUICK else 500_000
N_BURST = 50_000
N_CALLS = 100_000 if QUICK else 1_000_000

PROMPT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France, and why is it famous?"},
]
RESPONSE = LLMResponse(
    "Paris is the capital of France; it is famous for art, food and the Eiffel Tower.",
    Usage(24, 19),
    model="gpt-4o-2024-08-06",
    cost=Decimal("0.000250"),
    finish_reason="stop",
    provider="openai",
)
RUN_ID = "01936f1e-0000-7000-8000-000000000001"
TRACE_ID = "01936f1e-0000-7000-8000-000000000000"


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


CTX = {"parent_run_id": TRACE_ID, "trace_id": TRACE_ID, "depth": 1, "user_id": "u1"}
QUESTION = "What is the capital of France?"
TOOL_OUTPUT = "Paris: 2.1 million people"
# Each event's keywords, made once, outside the timed loops (as LangChain's prompt text is):
# both sides are charged for logging the events, not for making them.
RUN_START_KW = {"run_id": TRACE_ID, "name": "rlm"}
LLM_START_KW = {"run_id": RUN_ID, "model": "gpt-4o", "provider": "openai"}
LLM_END_KW = {**LLM_START_KW, "latency_ms": 812.5}
TOOL_END_KW = {"run_id": RUN_ID, "latency_ms": 3.2}
RUN_END_KW = {"run_id": TRACE_ID, "name": "rlm", "usage": RESPONSE.usage}


def manager_events(cb: Any, n: int) -> None:
    """n events as an LLM application emits them through ``CallbackManager``: a run with an
    LLM call and a tool inside it. The manager stamps the time; the events inside the run get
    its context (parent, trace, depth, user) from ``hookwire.trace``'s context variable,
    which is set per run, as ``trace`` does (a new dict each run)."""
    run = Run("rlm", TRACE_ID, TRACE_ID, None, 0)
    for _i in range(n // 5):
        cb.on_run_start(QUESTION, **RUN_START_KW)
        scope = enter_run(run, dict(CTX))
        cb.on_llm_start(PROMPT, **LLM_START_KW)
        cb.on_llm_end(RESPONSE, **LLM_END_KW)
        cb.on_tool_end("search", TOOL_OUTPUT, **TOOL_END_KW)
        exit_run(scope)
        cb.on_run_end(RESPONSE.content, **RUN_END_KW)


def hookwire_events(cb: Any, n: int) -> None:
    """The same n events, calling the handler's hooks directly: then the caller passes what
    the manager would add, the time and the run context."""
    now = time.time
    llm_start_kw = {**LLM_START_KW, **CTX}
    llm_end_kw = {**LLM_END_KW, **CTX}
    tool_end_kw = {**TOOL_END_KW, **CTX}
    for _i in range(n // 5):
        cb.on_run_start(QUESTION, timestamp=now(), **RUN_START_KW)
        cb.on_llm_start(PROMPT, timestamp=now(), **llm_start_kw)
        cb.on_llm_end(RESPONSE, timestamp=now(), **llm_end_kw)
        cb.on_tool_end("search", TOOL_OUTPUT, timestamp=now(), **tool_end_kw)
        cb.on_run_end(RESPONSE.content, timestamp=now(), **RUN_END_KW)


def langchain_events(cb: Any, n: int) -> None:
    """The same five events, through the hooks FileCallbackHandler implements.

    FileCallbackHandler has no LLM hooks that write anything, so the prompt and the answer go
    through ``on_text``; the prompt's text is made once, outside the loop, so LangChain is not
    charged for serialising it (hookwire's handler serialises the prompt itself).
    """
    from uuid import UUID

    run_id = UUID(RUN_ID)
    prompt_text = json.dumps(PROMPT)
    serialized = {"name": "rlm"}
    inputs = {"input": QUESTION}
    outputs = {"output": RESPONSE.content}
    for _ in range(n // 5):
        cb.on_chain_start(serialized, inputs, run_id=run_id)
        cb.on_text(prompt_text, run_id=run_id)
        cb.on_text(RESPONSE.content, run_id=run_id)
        cb.on_tool_end(TOOL_OUTPUT, run_id=run_id)
        cb.on_chain_end(outputs, run_id=run_id)


class _Null:
    """A handler that does nothing: the cost of the benchmark's own loop."""

    def on_run_start(self, *a: Any, **k: Any) -> None:
        pass

    on_llm_start = on_llm_end = on_tool_end = on_run_end = on_run_start

    def on_chain_start(self, *a: Any, **k: Any) -> None:
        pass

    on_text = on_chain_end = on_chain_start


def _timed(fn: Any) -> tuple[float, float, float]:
    """(wall s, process CPU s, this thread's CPU s) of fn()."""
    gc.collect()
    w, p, t = time.perf_counter(), time.process_time(), time.thread_time()
    fn()
    return time.perf_counter() - w, time.process_time() - p, time.thread_time() - t


Row = tuple[str, float, float, float]


REPS = 3  # each measurement is repeated, interleaved with the others; the best run counts


def _best(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """The least wall, process-CPU and thread-CPU time over repeated runs (as ``timeit``)."""
    return min(r[0] for r in runs), min(r[1] for r in runs), min(r[2] for r in runs)


def bench_filelog(tmp: Path) -> list[Row]:
    """Rows: name, events/s (wall), events/s per CPU (process CPU), app-thread CPU us/event.

    The three handlers are measured in turn, ``REPS`` rounds, so that a busy moment on the
    machine hits all of them alike; each figure is the best of its rounds.
    """
    import warnings

    from langchain_core.callbacks import FileCallbackHandler

    null_hw = _best([_timed(lambda: hookwire_events(_Null(), N_EVENTS)) for _ in range(REPS)])
    null_mgr = _best([_timed(lambda: manager_events(_Null(), N_EVENTS)) for _ in range(REPS)])
    null_lc = _best([_timed(lambda: langchain_events(_Null(), N_EVENTS)) for _ in range(REPS)])
    loop_hw, loop_mgr = null_hw[2] / N_EVENTS, null_mgr[2] / N_EVENTS
    loop_lc = null_lc[2] / N_EVENTS

    def hw_direct() -> None:
        path = tmp / "hw.jsonl"
        path.unlink(missing_ok=True)  # the last round's log is read by bench_report
        cb = FileLogCallback(path)
        hookwire_events(cb, N_EVENTS)
        cb.close()
        assert cb.written == N_EVENTS, cb.written

    def hw_manager() -> None:
        path = tmp / "hw2.jsonl"
        path.unlink(missing_ok=True)
        cb = FileLogCallback(path)
        manager = CallbackManager([cb])
        manager_events(manager, N_EVENTS)
        manager.close()
        assert cb.written == N_EVENTS, cb.written

    def lc_direct() -> None:
        path = tmp / "lc.log"
        path.unlink(missing_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with FileCallbackHandler(str(path)) as lc:
                langchain_events(lc, N_EVENTS)

    def burst(manager: bool) -> float:
        """App-thread CPU per event: a burst the queue absorbs, this thread's CPU only."""
        path = tmp / "burst.jsonl"
        path.unlink(missing_ok=True)
        cb = FileLogCallback(path, queue_size=N_BURST * 2)
        target: Any = CallbackManager([cb]) if manager else cb
        events = manager_events if manager else hookwire_events
        app = _timed(lambda: events(target, N_BURST))[2]
        target.close()
        return app / N_BURST

    runs: dict[str, list[tuple[float, float, float]]] = {"hw": [], "mgr": [], "lc": []}
    app_hw: list[float] = []
    app_mgr: list[float] = []
    for _ in range(REPS):
        runs["hw"].append(_timed(hw_direct))
        app_hw.append(burst(False))
        runs["mgr"].append(_timed(hw_manager))
        app_mgr.append(burst(True))
        runs["lc"].append(_timed(lc_direct))
    hw, mgr, lc = _best(runs["hw"]), _best(runs["mgr"]), _best(runs["lc"])
    return [
        (
            "hookwire FileLogCallback",
            N_EVENTS / hw[0],
            N_EVENTS / hw[1],
            (min(app_hw) - loop_hw) * 1e6,
        ),
        (
            "hookwire FileLogCallback via CallbackManager",
            N_EVENTS / mgr[0],
            N_EVENTS / mgr[1],
            (min(app_mgr) - loop_mgr) * 1e6,
        ),
        ("(benchmark loop alone, hookwire's events)", 1 / loop_hw, 1 / loop_hw, 0.0),
        ("(benchmark loop alone, via CallbackManager)", 1 / loop_mgr, 1 / loop_mgr, 0.0),
        ("(benchmark loop alone, langchain's events)", 1 / loop_lc, 1 / loop_lc, 0.0),
        (
            "langchain-core FileCallbackHandler",
            N_EVENTS / lc[0],
            N_EVENTS / lc[1],
            (lc[2] / N_EVENTS - loop_lc) * 1e6,
        ),
    ]


def bench_metrics() -> list[tuple[str, float, float]]:
    """Rows: name, RSS growth in KB, CPU us per call."""
    rows = []
    cb = MetricsCallback()
    manager = CallbackManager([cb])
    kw = {"model": "gpt-4o", "agent": "support", "run_id": RUN_ID, "timestamp": 1.0}
    for i in range(10_000):  # warm up: every sketch bin the latencies will need exists
        cb.on_llm_end(RESPONSE, latency_ms=1.0 + (i * 7919) % 30_000, ttft_ms=50.0 + i % 400, **kw)
    gc.collect()
    before = _rss_kb()
    t0 = time.thread_time()
    for i in range(N_CALLS):
        cb.on_llm_end(RESPONSE, latency_ms=1.0 + (i * 7919) % 30_000, ttft_ms=50.0 + i % 400, **kw)
    t1 = time.thread_time()
    gc.collect()
    growth = _rss_kb() - before
    assert cb.get_metrics()["total_calls"] == N_CALLS + 10_000
    rows.append(("hookwire MetricsCallback", growth, (t1 - t0) / N_CALLS * 1e6))

    # The same through the dispatcher, as an app would call it.
    t0 = time.thread_time()
    for i in range(N_CALLS // 10):
        manager.on_llm_end(RESPONSE, latency_ms=1.0 + i % 3000, **kw)
    t1 = time.thread_time()
    rows.append(
        (
            "hookwire MetricsCallback (CallbackManager)",
            float("nan"),
            (t1 - t0) / (N_CALLS // 10) * 1e6,
        )
    )

    # What keeping every latency in a list (the naive way) costs.
    gc.collect()
    before = _rss_kb()
    latencies: list[float] = []
    t0 = time.thread_time()
    for i in range(N_CALLS):
        latencies.append(1.0 + (i * 7919) % 30_000 + 0.5)
    t1 = time.thread_time()
    growth = _rss_kb() - before
    rows.append(("naive list of latencies", growth, (t1 - t0) / N_CALLS * 1e6))
    del latencies
    return rows


def bench_report(tmp: Path) -> list[tuple[str, float, float]]:
    """Rows: name, lines/s (wall), lines/s per CPU."""
    path = tmp / "hw.jsonl"  # written by bench_filelog
    lines = sum(1 for _ in path.open("rb"))
    holder: list[Any] = []
    wall, cpu, _ = _timed(lambda: holder.append(summarize([path])))
    assert holder[0].events == lines
    assert holder[0].broken == 0
    rows = [("hookwire report (summarize)", lines / wall, lines / cpu)]

    def stdlib() -> None:  # reference: only parsing each line with the standard library
        with path.open("rb") as f:
            for line in f:
                json.loads(line)

    wall, cpu, _ = _timed(stdlib)
    rows.append(("stdlib json.loads per line (parse only)", lines / wall, lines / cpu))
    return rows


def main() -> None:
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} (other work on the machine slows wall-clock figures)"
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        fl = bench_filelog(tmp)
        print(
            f"\nFile logging, {N_EVENTS:,} events (run start, LLM start, LLM end, tool end, run end)"
        )
        print(f"{'':46} {'events/s wall':>14} {'events/CPU-s':>13} {'app-thread us/event':>20}")
        for name, wall, cpu, app in fl:
            print(f"{name:46} {wall:>14,.0f} {cpu:>13,.0f} {app:>20.2f}")
        lc = fl[-1]
        for name, row in (("FileLogCallback", fl[0]), ("via CallbackManager", fl[1])):
            print(
                f"ratio {name} / FileCallbackHandler: {row[1] / lc[1]:.2f}x wall, "
                f"{row[2] / lc[2]:.2f}x per CPU-second"
            )
        rp = bench_report(tmp)
        print(f"\nReading the {N_EVENTS:,}-line log")
        print(f"{'':46} {'lines/s wall':>14} {'lines/CPU-s':>13}")
        for name, wall, cpu in rp:
            print(f"{name:46} {wall:>14,.0f} {cpu:>13,.0f}")

    mt = bench_metrics()
    print(f"\nMetricsCallback, {N_CALLS:,} LLM calls")
    print(f"{'':46} {'RSS growth KB':>14} {'CPU us/call':>13}")
    for name, growth, us in mt:
        g = "-" if growth != growth else f"{growth:,.0f}"
        print(f"{name:46} {g:>14} {us:>13.2f}")


if __name__ == "__main__":
    main()

"""Observers benchmark: FileLogCallback against langchain-core's FileCallbackHandler, each
behind its library's manager; MetricsCallback's memory over 1,000,000 LLM calls; and
`hookwire report`'s reading speed. One process, one run.

    PYTHONPATH=src python bench/observers.py [--quick] [--rounds N]

File logging: both sides emit the same requests (a run, an LLM call, a tool call: 6 events)
the way an app of their library does, and take turns round after round. Per side and round:
the app thread's CPU time per event (``time.thread_time``), and events per second end to end
(the file written). Each figure is printed as best / median / worst over the rounds.

Targets (issue 15): the app thread's time per event with FileLogCallback attached is at most
half of FileCallbackHandler's, and FileLogCallback handles >= 250,000 events/s end to end;
(issue 4) MetricsCallback grows < 1 MB over 1,000,000 calls; `hookwire report` >= 300,000
lines/s.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from hookwire import CallbackManager, LLMResponse, Usage, trace
from hookwire.callbacks import FileLogCallback, MetricsCallback
from hookwire.report import summarize

QUICK = "--quick" in sys.argv
ROUNDS = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 7
REQUESTS = 2_000 if QUICK else 10_000  # per round and side: 6 events each
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


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


# What the app's LLM call and tool call carry, made once outside the timed loops on both
# sides: both are charged for emitting and logging the events, not for making their payloads.
QUESTION = "What is the capital of France?"
TOOL_INPUT = {"query": QUESTION}
TOOL_OUTPUT = "Paris: 2.1 million people"
EVENTS_PER_REQUEST = 6  # run start, LLM start, LLM end, tool start, tool end, run end


def hookwire_requests(manager_for: Callable[[], Any], n: int) -> None:
    """n requests as a hookwire app emits them: ``trace`` opens the run (its context reaches
    every event inside), an LLM call and a tool call through ``CallbackManager``, which
    makes their run ids and stamps the time. ``manager_for()`` gives each request's manager."""
    for _ in range(n):
        manager = manager_for()
        with trace("agent", callbacks=manager, input=QUESTION) as run:
            rid = manager.on_llm_start(PROMPT, model="gpt-4o", provider="openai")
            manager.on_llm_end(
                RESPONSE, run_id=rid, model="gpt-4o", provider="openai", latency_ms=812.5
            )
            tid = manager.on_tool_start("search", TOOL_INPUT)
            manager.on_tool_end("search", TOOL_OUTPUT, run_id=tid, latency_ms=3.2)
            run.output = RESPONSE.content


def langchain_requests(
    manager_for: Callable[[], Any], n: int, prompts: list[str], result: Any
) -> None:
    """The same n requests as a LangChain app emits them: a chain run from the manager, its
    child manager, an LLM run and a tool run from it (``get_child`` and the run managers make
    the run ids), then the chain's end."""
    serialized = {"name": "agent"}
    llm = {"name": "gpt-4o"}
    tool = {"name": "search"}
    inputs = {"input": QUESTION}
    outputs = {"output": RESPONSE.content}
    for _ in range(n):
        chain = manager_for().on_chain_start(serialized, inputs)
        child = chain.get_child()
        (rm,) = child.on_llm_start(llm, prompts)
        rm.on_llm_end(result)
        tm = child.on_tool_start(tool, QUESTION)
        tm.on_tool_end(TOOL_OUTPUT)
        chain.on_chain_end(outputs)


def _timed(fn: Any) -> tuple[float, float, float]:
    """(wall s, process CPU s, this thread's CPU s) of fn()."""
    gc.collect()
    w, p, t = time.perf_counter(), time.process_time(), time.thread_time()
    fn()
    return time.perf_counter() - w, time.process_time() - p, time.thread_time() - t


class FileLogRow(NamedTuple):
    """One side of the like-for-like comparison, per event, over the rounds."""

    name: str
    app_us: list[float]  # app-thread CPU µs/event, handler attached (one per round)
    bare_us: list[float]  # the same manager(s) without the handler
    events_s: list[float]  # end to end, file written: events / wall s
    events_cpu_s: list[float]  # events / process CPU s (both threads)


#: How each side gets its manager: built once (``prebuilt``), or per request, as each LangChain
#: ``Runnable.invoke`` calls ``CallbackManager.configure`` (``per request``).
MODES = ("prebuilt", "per request")


def bench_filelog(tmp: Path, rounds: int, requests: int) -> list[tuple[FileLogRow, FileLogRow]]:
    """hookwire's ``FileLogCallback`` and langchain-core's ``FileCallbackHandler``, each behind
    its library's manager, ``requests`` requests of 6 events per round; per mode of
    ``MODES``, (hookwire's row, langchain-core's row). The four cases take turns for
    ``rounds`` rounds, the order reversed every other round, so a busy moment on the shared
    machine hits them alike.

    Per round and case: the app thread's CPU time (``time.thread_time``: this thread only,
    so the writer thread's work and time spent waiting for the CPU are not counted) for the
    events, with the handler attached and with the same manager(s) bare; and the end-to-end
    rate: wall time from the first event until the file is written (``flush()``; LangChain's
    handler flushes inline), and the process's CPU (app and writer threads) over it.
    """
    from langchain_core.callbacks import CallbackManager as LCManager
    from langchain_core.callbacks import FileCallbackHandler
    from langchain_core.outputs import Generation, LLMResult

    result = LLMResult(
        generations=[[Generation(text=RESPONSE.content)]],
        llm_output={"token_usage": RESPONSE.usage.to_dict(), "model_name": "gpt-4o"},
    )
    prompts = [json.dumps(PROMPT)]
    events = requests * EVENTS_PER_REQUEST
    hw_path, lc_path = tmp / "hw.jsonl", tmp / "lc.log"
    hw_cb = FileLogCallback(hw_path)  # defaults: its queue (100,000) holds a round
    hw_mgr, hw_bare = CallbackManager([hw_cb]), CallbackManager([])
    lc_cb = FileCallbackHandler(str(lc_path), mode="w").__enter__()  # as in ``with``
    lc_mgr, lc_bare = LCManager(handlers=[lc_cb]), LCManager(handlers=[])
    factories = {
        ("hw", "prebuilt"): (lambda: hw_mgr, lambda: hw_bare),
        ("hw", "per request"): (lambda: CallbackManager([hw_cb]), lambda: CallbackManager([])),
        ("lc", "prebuilt"): (lambda: lc_mgr, lambda: lc_bare),
        ("lc", "per request"): (
            lambda: LCManager.configure(inheritable_callbacks=[lc_cb]),
            LCManager.configure,
        ),
    }

    def emitter(side: str, manager_for: Callable[[], Any]) -> Callable[[], None]:
        if side == "hw":
            return lambda: hookwire_requests(manager_for, requests)
        return lambda: langchain_requests(manager_for, requests, prompts, result)

    flushes = {"hw": hw_cb.flush, "lc": lc_cb.file.flush}
    cases = {
        key: (emitter(key[0], attached), flushes[key[0]], emitter(key[0], bare))
        for key, (attached, bare) in factories.items()
    }
    names = {"hw": "hookwire FileLogCallback", "lc": "langchain-core FileCallbackHandler"}
    out = {key: FileLogRow(f"{names[key[0]]}, manager {key[1]}", [], [], [], []) for key in cases}
    for emit, flush, bare in cases.values():  # warm up: imports, caches, the files
        emit()
        flush()
        bare()
    for r in range(rounds):
        order = list(cases.items()) if r % 2 == 0 else list(cases.items())[::-1]
        for key, (emit, flush, bare) in order:
            row = out[key]
            gc.collect()
            w, p, t = time.perf_counter(), time.process_time(), time.thread_time()
            emit()
            app = time.thread_time() - t
            flush()
            wall, cpu = time.perf_counter() - w, time.process_time() - p
            row.app_us.append(app / events * 1e6)
            row.events_s.append(events / wall)
            row.events_cpu_s.append(events / cpu)
            row.bare_us.append(_timed(bare)[2] / events * 1e6)
    hw_cb.close()
    lc_cb.__exit__(None, None, None)
    assert hw_cb.written == len(MODES) * (rounds + 1) * events, hw_cb.written
    return [(out["hw", mode], out["lc", mode]) for mode in MODES]


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


def _spread(values: list[float], fmt: str, best: Any = min) -> str:
    """best / median / worst of a figure over the rounds."""
    ordered = sorted(values, reverse=best is max)
    return " / ".join(format(v, fmt) for v in (ordered[0], statistics.median(values), ordered[-1]))


def main() -> None:
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} (other work on the machine slows wall-clock figures)"
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pairs = bench_filelog(tmp, ROUNDS, REQUESTS)
        print(
            f"\nFile logging through each library's manager: {REQUESTS:,} requests of "
            f"{EVENTS_PER_REQUEST} events per round and case, {ROUNDS} interleaved rounds; "
            "best / median / worst"
        )
        print(
            f"{'':58} {'app thread us/event':>20} {'of which the manager':>20} "
            f"{'events/s, file written':>26} {'events/CPU-s':>26}"
        )
        for pair in pairs:
            for row in pair[::-1]:
                print(
                    f"{row.name:58} {_spread(row.app_us, '.2f'):>20} "
                    f"{_spread(row.bare_us, '.2f'):>20} "
                    f"{_spread(row.events_s, ',.0f', max):>26} "
                    f"{_spread(row.events_cpu_s, ',.0f', max):>26}"
                )
        for mode, (hw, lc) in zip(MODES, pairs, strict=True):
            ratios = [h / c for h, c in zip(hw.app_us, lc.app_us, strict=True)]
            own = [
                (h - hb) / (c - cb)
                for h, hb, c, cb in zip(hw.app_us, hw.bare_us, lc.app_us, lc.bare_us, strict=True)
            ]
            print(
                f"manager {mode}: hookwire / langchain-core, app thread per event, round by "
                f"round: {_spread(ratios, '.2f')} (target <= 0.50); the handlers' own share "
                f"(minus the bare manager): {_spread(own, '.2f')}"
            )
        print(
            "hookwire end to end, manager prebuilt: "
            f"{_spread(pairs[0][0].events_s, ',.0f', max)} events/s (target >= 250,000)"
        )
        rp = bench_report(tmp)
        lines = sum(1 for _ in (tmp / "hw.jsonl").open("rb"))
        print(f"\nReading the {lines:,}-line log")
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

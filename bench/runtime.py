"""What an RLM call through hookwire costs over the bare ``openai`` SDK call.

Both talk to the same local OpenAI-compatible server (``hookwire.testing.OpenAIServer``) in
the same process, interleaved call by call, so network and server time are the same for both
and the difference is hookwire: the run, the events to three handlers, retries bookkeeping,
the response records.

    PYTHONPATH=src python bench/runtime.py [--calls 400]

Target: hookwire adds at most max(5 %, 100 µs) per call.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import openai

from hookwire import RLM
from hookwire.callbacks import BaseCallback
from hookwire.events import Event
from hookwire.llms import OpenAIClient

PROMPT = "What is the capital of France?"


class Latency(BaseCallback):
    """Inline: keeps the latency of every call."""

    def __init__(self) -> None:
        self.latencies: list[float] = []

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.latencies.append(kwargs["latency_ms"])


class Usage(BaseCallback):
    """Inline: sums tokens per run."""

    def __init__(self) -> None:
        self.tokens = 0

    def on_run_end(self, output: Any, **kwargs: Any) -> None:
        usage = kwargs.get("usage")
        if usage is not None:
            self.tokens += usage.total_tokens


class Log(BaseCallback):
    """In the background: every event as a typed record (what a log or store handler does)."""

    run_in_background = True

    def __init__(self) -> None:
        self.events = 0

    def on_event(self, event: Event) -> None:
        self.events += 1


class Tokens(BaseCallback):
    """Inline: counts streamed tokens (makes the run stream)."""

    def __init__(self) -> None:
        self.count = 0

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.count += 1


def _time(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall-clock and CPU (this process, all threads) microseconds of one call."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e6, (time.process_time() - c0) * 1e6


class Figures:
    """Per-call figures of one side: wall-clock (p10, median) and CPU (median)."""

    def __init__(self, samples: list[tuple[float, float]]) -> None:
        wall = sorted(w for w, _ in samples)
        self.wall_p10 = wall[len(wall) // 10]
        self.wall_p50 = statistics.median(wall)
        self.cpu = statistics.median(c for _, c in samples)


def measure(
    calls: int, bare: Callable[[], Any], hooked: Callable[[], Any]
) -> tuple[Figures, Figures]:
    for _ in range(max(20, calls // 10)):  # warm up connections, caches, the server
        bare()
        hooked()
    a: list[tuple[float, float]] = []
    b: list[tuple[float, float]] = []
    gc.collect()
    for i in range(calls):
        # Alternate which goes first, so neither always follows the other's GC or I/O.
        if i % 2:
            a.append(_time(bare))
            b.append(_time(hooked))
        else:
            b.append(_time(hooked))
            a.append(_time(bare))
    return Figures(a), Figures(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()

    # The server runs in its own process, so its threads do not compete with the calls being
    # measured for this process's GIL.
    server = subprocess.Popen(
        [sys.executable, "-m", "hookwire.testing.openai_server"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        rows = run(args.calls, base_url)
    finally:
        server.terminate()
        server.wait(timeout=10)

    print(
        f"{args.calls} calls each, interleaved; server in its own process; 2-core machine\n"
        "wall = wall-clock per call (p10 / median); cpu = CPU time this process spent per call\n"
        "(median). The verdict uses the added CPU time, which is what hookwire adds to a call;\n"
        "wall-clock differences on a loaded machine are mostly scheduling noise.\n"
    )
    print(
        f"{'case':<40} {'SDK wall p10/p50':>17} {'hookwire wall':>15} {'SDK cpu':>8} "
        f"{'hw cpu':>8} {'added':>7} {'added %':>8} {'budget':>7}  ok"
    )
    for label, base, hook in rows:
        added = hook.cpu - base.cpu
        budget = max(0.05 * base.wall_p50, 100.0)
        ok = "yes" if added <= budget else "NO"
        print(
            f"{label:<40} {base.wall_p10:>7.0f} /{base.wall_p50:>7.0f} "
            f"{hook.wall_p10:>6.0f} /{hook.wall_p50:>6.0f} {base.cpu:>8.0f} {hook.cpu:>8.0f} "
            f"{added:>7.0f} {added / base.wall_p50 * 100:>7.1f}% {budget:>7.0f}  {ok}"
        )
    print("\n(all times in µs; added % is of the SDK call's median wall-clock time)")


def run(calls: int, base_url: str) -> list[tuple[str, Figures, Figures]]:
    """Measure both cases against the server at ``base_url``."""
    sdk = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    messages: Any = [{"role": "user", "content": PROMPT}]

    def bare_json() -> Any:
        return sdk.chat.completions.create(model="gpt-4o", messages=messages)

    def bare_stream() -> Any:
        stream = sdk.chat.completions.create(
            model="gpt-4o",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    client = OpenAIClient(api_key="sk-bench", base_url=base_url, model="gpt-4o")
    rlm_inline = RLM(client, callbacks=[Latency(), Usage(), Latency()])
    rlm = RLM(client, callbacks=[Latency(), Usage(), Log()])
    rlm_stream = RLM(client, callbacks=[Latency(), Usage(), Tokens()])

    rows: list[tuple[str, Figures, Figures]] = []
    for label, bare, hooked in (
        ("JSON call, 3 inline handlers", bare_json, lambda: rlm_inline.run(PROMPT)),
        ("JSON call, 3 handlers (1 in background)", bare_json, lambda: rlm.run(PROMPT)),
        ("streamed call, 3 handlers (1 per token)", bare_stream, lambda: rlm_stream.run(PROMPT)),
    ):
        base, hook = measure(calls, bare, hooked)
        rows.append((label, base, hook))
    rlm_inline.callbacks.close()
    rlm.callbacks.close()
    rlm_stream.callbacks.close()
    client.close()
    sdk.close()
    return rows


if __name__ == "__main__":
    main()

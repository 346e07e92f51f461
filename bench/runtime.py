"""What an RLM call through hookwire costs over the bare ``openai`` SDK call.

Both talk to the same local OpenAI-compatible server (``hookwire.testing.OpenAIServer``) in
the same process, interleaved call by call, so network and server time are the same for both
and the difference is hookwire: the run, the events to three handlers, retries bookkeeping,
the response records. Two more rows record every call in the trace store (SQLite, written
in the background), as the demo does.

    PYTHONPATH=src python bench/runtime.py [--calls 400]

Target: hookwire adds at most max(5 %, 100 µs) per call.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import orjson

from hookwire import RLM
from hookwire.callbacks import BaseCallback, TraceStoreCallback
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


class Store(BaseCallback):
    """In the background: what a history or accounting handler does (runs and LLM results).

    (A catch-all ``on_event`` handler also listens for tokens, which makes runs stream; the
    streamed row measures that case.)
    """

    run_in_background = True

    def __init__(self) -> None:
        self.records: list[Any] = []

    def on_run_start(self, input: Any, **kwargs: Any) -> None:
        self.records.append(input)

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.records.append(response.usage)

    def on_run_end(self, output: Any, **kwargs: Any) -> None:
        self.records.append(output)


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


def measure(calls: int, *fns: Callable[[], Any]) -> list[Figures]:
    """Figures of each function, called in turn ``calls`` times, the order rotated each round
    so that none always follows another's GC or I/O."""
    for _ in range(max(20, calls // 10)):  # warm up connections, caches, the server
        for fn in fns:
            fn()
    samples: list[list[tuple[float, float]]] = [[] for _ in fns]
    gc.collect()
    k = len(fns)
    for i in range(calls):
        for j in range(k):
            n = (i + j) % k
            samples[n].append(_time(fns[n]))
    return [Figures(s) for s in samples]


def overhead_alone(calls: int) -> dict[str, float]:
    """hookwire's own cost per call, without network noise: the SDK's HTTP call is replaced by
    a stub returning the answer's bytes, so what remains is hookwire (best of 5 batches)."""
    import json
    from types import SimpleNamespace

    body = json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Paris."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
        }
    ).encode()
    # What the SDK's with_raw_response.create returns, as much of it as OpenAIClient reads.
    raw = SimpleNamespace(http_response=SimpleNamespace(content=body))
    client = OpenAIClient(api_key="sk-bench", base_url="http://127.0.0.1:9/v1", model="gpt-4o")
    sdk_create = client.client.chat.completions.with_raw_response

    def stub(**kwargs: Any) -> Any:
        return raw

    sdk_create.create = stub  # type: ignore[method-assign]
    bare_rlm = RLM(client)
    rlm3 = RLM(client, callbacks=[Latency(), Usage(), Latency()])
    cases = {
        "stub SDK call alone": lambda: sdk_create.create(model="gpt-4o", messages=[]),
        "OpenAIClient.generate, no handlers": lambda: client.generate(PROMPT),
        "RLM.run, no handlers": lambda: bare_rlm.run(PROMPT),
        "RLM.run, 3 inline handlers": lambda: rlm3.run(PROMPT),
    }
    out: dict[str, float] = {}
    n = max(calls * 10, 2000)
    for name, fn in cases.items():
        for _ in range(200):
            fn()
        best = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best.append((time.perf_counter() - t0) / n * 1e6)
        out[name] = min(best)
    return out


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """The local OpenAI-compatible server, in its own process so its threads do not compete
    with the calls being measured for this process's GIL: its base URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "hookwire.testing.openai_server"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()

    with local_server() as base_url:
        rows = run(args.calls, base_url)

    print(
        f"{args.calls} calls each, interleaved; server in its own process; 2-core machine\n"
        "wall = wall-clock per call (p10 / median); cpu = CPU time this process spent per call\n"
        "(median). The verdict uses the added CPU time, which is what hookwire adds to a call;\n"
        "wall-clock differences on a loaded machine are mostly scheduling noise.\n"
    )
    print(
        f"{'case':<40} {'SDK wall p10/p50':>17} {'hookwire wall':>15} {'SDK cpu':>8} "
        f"{'hw cpu':>8} {'added':>7} {'added %':>8} {'budget':>7}  ok {'raw cpu':>8} {'hw-raw':>7}"
    )
    for label, base, hook, raw in rows:
        added = hook.cpu - base.cpu
        budget = max(0.05 * base.wall_p50, 100.0)
        ok = "yes" if added <= budget else "NO"
        print(
            f"{label:<40} {base.wall_p10:>7.0f} /{base.wall_p50:>7.0f} "
            f"{hook.wall_p10:>6.0f} /{hook.wall_p50:>6.0f} {base.cpu:>8.0f} {hook.cpu:>8.0f} "
            f"{added:>7.0f} {added / base.wall_p50 * 100:>7.1f}% {budget:>7.0f}  {ok:<3}"
            f"{raw.cpu:>8.0f} {hook.cpu - raw.cpu:>7.0f}"
        )
    print(
        "\n(all times in µs; added % is of the SDK call's median wall-clock time. raw cpu: the\n"
        "SDK's call read as hookwire reads it, its raw response decoded with orjson and a stream\n"
        "read to its end; hw-raw: what hookwire adds to that, the events, run and records.)"
    )

    alone = overhead_alone(args.calls)
    base = rows[0][1].wall_p50
    budget = max(0.05 * base, 100.0)
    print(
        "\nhookwire alone (the HTTP call replaced by a stub; best of 5 batches, µs per call; "
        f"budget max(5% of the SDK call's {base:.0f} µs, 100 µs) = {budget:.0f} µs):"
    )
    stub = alone.pop("stub SDK call alone")
    for name, value in alone.items():
        added = value - stub
        ok = "yes" if added <= budget else "NO"
        print(f"  {name:<38} {added:>7.1f} µs  {added / base * 100:>5.1f}%  {ok}")


def bare_calls(sdk: openai.OpenAI) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """The bare SDK's calls with the benchmark's prompt: JSON, and streamed (its text)."""
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

    return bare_json, bare_stream


def run(calls: int, base_url: str) -> list[tuple[str, Figures, Figures, Figures]]:
    """Measure both cases against the server at ``base_url``."""
    sdk = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    messages: Any = [{"role": "user", "content": PROMPT}]
    bare_json, bare_stream = bare_calls(sdk)

    def raw_json() -> Any:
        # The same call, its raw response decoded as OpenAIClient decodes it.
        r = sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)
        return orjson.loads(r.http_response.content)["choices"][0]["message"]["content"]

    def raw_stream() -> Any:
        r = sdk.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        http = r.http_response
        out = []
        done = False
        try:
            for line in http.iter_lines():  # read to its end: the connection is kept
                if done or not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    continue
                choices = orjson.loads(line[6:])["choices"]
                if choices:
                    out.append(choices[0]["delta"].get("content") or "")
        finally:
            http.close()
        return "".join(out)

    client = OpenAIClient(api_key="sk-bench", base_url=base_url, model="gpt-4o")
    rlm_inline = RLM(client, callbacks=[Latency(), Usage(), Latency()])
    rlm = RLM(client, callbacks=[Latency(), Usage(), Store()])
    rlm_stream = RLM(client, callbacks=[Latency(), Usage(), Tokens()])
    traces_dir = tempfile.TemporaryDirectory(prefix="hookwire-bench-")
    traces = TraceStoreCallback(f"sqlite:///{Path(traces_dir.name) / 'traces.db'}")
    rlm_traced = RLM(client, callbacks=[traces])

    rows: list[tuple[str, Figures, Figures, Figures]] = []
    for label, bare, hooked, raw in (
        ("JSON call, 3 inline handlers", bare_json, lambda: rlm_inline.run(PROMPT), raw_json),
        ("JSON call, 3 handlers (1 in background)", bare_json, lambda: rlm.run(PROMPT), raw_json),
        (
            "streamed call, 3 handlers (1 per token)",
            bare_stream,
            lambda: rlm_stream.run(PROMPT),
            raw_stream,
        ),
        ("JSON call, trace store", bare_json, lambda: rlm_traced.run(PROMPT), raw_json),
        (
            "streamed call, trace store",
            bare_stream,
            lambda: "".join(rlm_traced.stream(PROMPT)),
            raw_stream,
        ),
    ):
        base, hook, plain = measure(calls, bare, hooked, raw)
        rows.append((label, base, hook, plain))
    rlm_inline.callbacks.close()
    rlm.callbacks.close()
    rlm_stream.callbacks.close()
    rlm_traced.callbacks.close()
    traces_dir.cleanup()
    client.close()
    sdk.close()
    return rows


if __name__ == "__main__":
    main()

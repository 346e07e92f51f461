"""Instructions and bytecodes per call of bench/runtime.py's cases (repeatable, unlike time).

Two measurements of the same cases (the bare ``openai`` SDK call, the same call on a client
``instrument()``-ed with three inline handlers, and ``RLM.run`` with three inline handlers,
JSON and streamed), each against the local OpenAI-compatible server, started in its own
process so its work is not counted:

- ``--ops``: Python bytecodes executed per call (``sys.settrace`` with opcode events), per
  function, so the SDK's own functions can be compared between the bare call and the call
  made inside ``RLM.run``, and hookwire's functions ranked (inclusive counts).
- under callgrind: CPU instructions per call, counted only around the measured calls::

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.%p \\
        python bench/runtime_instr.py --cg [--calls 200]

  Callgrind's start/stop requests come from a five-line C helper compiled on the fly
  (needs ``gcc`` and ``valgrind/callgrind.h``); each case is dumped as its own part, read
  them with ``callgrind_annotate /tmp/cg.<pid>.<n>``; the per-call figure is printed too.

    PYTHONPATH=src python bench/runtime_instr.py --ops [--calls 50]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from types import FrameType
from typing import Any

import openai

from hookwire import RLM
from hookwire.integrations.openai import instrument
from hookwire.llms import OpenAIClient
from runtime import (  # bench/runtime.py's
    PROMPT,
    Latency,
    Tokens,
    Usage,
    bare_calls,
    local_server,
)

_C_HELPER = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void cg_stop(const char *label) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT(label); }
"""


def cases(base_url: str) -> tuple[dict[str, Callable[[], Any]], Callable[[], None]]:
    """The measured calls, by name, and a function that closes their clients."""
    sdk = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    bare_json, bare_stream = bare_calls(sdk)
    client = OpenAIClient(api_key="sk-bench", base_url=base_url, model="gpt-4o")
    rlm_json = RLM(client, callbacks=[Latency(), Usage(), Latency()])
    rlm_stream = RLM(client, callbacks=[Latency(), Usage(), Tokens()])
    watched = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    instrument(watched, callbacks=[Latency(), Latency(), Tokens()])
    instrumented_json, instrumented_stream = bare_calls(watched)

    def close() -> None:
        client.close()
        sdk.close()
        watched.close()

    return {
        "bare JSON": bare_json,
        "instrument()ed JSON, 3 inline handlers": instrumented_json,
        "instrument()ed streamed, 3 inline handlers": instrumented_stream,
        "RLM.run JSON, 3 inline handlers": lambda: rlm_json.run(PROMPT),
        "bare streamed": bare_stream,
        "RLM.run streamed, 3 inline handlers": lambda: rlm_stream.run(PROMPT),
    }, close


def _helper() -> Any:
    tmp = tempfile.mkdtemp()
    src = os.path.join(tmp, "cgctl.c")
    lib = os.path.join(tmp, "libcgctl.so")
    with open(src, "w") as f:
        f.write(_C_HELPER)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", lib, src], check=True)
    helper = ctypes.CDLL(lib)
    helper.cg_stop.argtypes = [ctypes.c_char_p]
    return helper


def run_cg(fns: dict[str, Callable[[], Any]], calls: int) -> None:
    helper = _helper()
    for name, fn in fns.items():
        for _ in range(30):
            fn()
        helper.cg_start()
        for _ in range(calls):
            fn()
        helper.cg_stop(f"{name} x{calls}".encode())
        print(f"dumped: {name} x{calls}", flush=True)


class OpCounter:
    """Bytecodes executed, per function: self and inclusive (each frame's own and its callees')."""

    def __init__(self) -> None:
        self.own: Counter[str] = Counter()
        self.incl: Counter[str] = Counter()
        self.total = 0
        self._stack: list[tuple[str, int]] = []

    @staticmethod
    def _name(frame: FrameType) -> str:
        code = frame.f_code
        path = code.co_filename
        for marker in ("site-packages/", "src/", "lib/python3"):
            i = path.rfind(marker)
            if i >= 0:
                path = path[i + len(marker) :]
                break
        return f"{path}:{code.co_firstlineno}:{code.co_qualname}"

    def _trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            self.total += 1
            self.own[self._stack[-1][0] if self._stack else "?"] += 1
            return self._trace
        if event == "call":
            frame.f_trace_opcodes = True
            self._stack.append((self._name(frame), self.total))
            return self._trace
        if event == "return" and self._stack:
            name, start = self._stack.pop()
            # A recursive function counts once, in its outermost frame.
            if all(n != name for n, _ in self._stack):
                self.incl[name] += self.total - start
        return self._trace

    def measure(self, fn: Callable[[], Any], calls: int) -> None:
        sys.settrace(self._trace)
        try:
            for _ in range(calls):
                fn()
        finally:
            sys.settrace(None)


def run_ops(fns: dict[str, Callable[[], Any]], calls: int, top: int) -> None:
    counted: dict[str, OpCounter] = {}
    for name, fn in fns.items():
        for _ in range(30):
            fn()
        c = OpCounter()
        c.measure(fn, calls)
        counted[name] = c
        print(f"{name}: {c.total / calls:,.0f} bytecodes per call")

    def sdk_part(c: OpCounter) -> Counter[str]:
        return Counter(
            {
                k: v
                for k, v in c.own.items()
                if k.startswith(("openai/", "httpx", "httpcore/", "pydantic", "anyio/", "h11/"))
            }
        )

    for bare, hooked in (
        ("bare JSON", "instrument()ed JSON, 3 inline handlers"),
        ("bare streamed", "instrument()ed streamed, 3 inline handlers"),
        ("bare JSON", "RLM.run JSON, 3 inline handlers"),
        ("bare streamed", "RLM.run streamed, 3 inline handlers"),
    ):
        if bare not in counted or hooked not in counted:  # left out by --only
            continue
        a, b = sdk_part(counted[bare]), sdk_part(counted[hooked])
        print(
            f"\nSDK/httpx/pydantic bytecodes per call, {bare}: {sum(a.values()) / calls:,.0f}; "
            f"inside {hooked}: {sum(b.values()) / calls:,.0f}"
        )
        diff = Counter({k: b[k] - a[k] for k in set(a) | set(b) if b[k] != a[k]})
        for k, v in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]:
            print(f"  {v / calls:+8.1f}  {k}")
        c = counted[hooked]
        print(f"\nhookwire functions in {hooked}, inclusive bytecodes per call:")
        hw = [(k, v) for k, v in c.incl.items() if k.startswith("hookwire/")]
        for k, v in sorted(hw, key=lambda kv: -kv[1])[:top]:
            print(f"  {v / calls:8.1f}  {k}")
        own_hw = sum(v for k, v in c.own.items() if k.startswith("hookwire/"))
        print(f"  hookwire's own bytecodes (self, all functions): {own_hw / calls:,.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--cg", action="store_true", help="count instructions under callgrind")
    mode.add_argument("--ops", action="store_true", help="count bytecodes per function")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--only", default=None, help="run only the cases containing this text")
    args = parser.parse_args()
    with local_server() as base_url:
        fns, close = cases(base_url)
        if args.only:
            fns = {k: v for k, v in fns.items() if args.only in k}
        if args.cg:
            run_cg(fns, args.calls)
        else:
            run_ops(fns, args.calls, args.top)
        close()


if __name__ == "__main__":
    main()

"""Dispatch cost: hookwire's CallbackManager next to langchain-core's and llama-index-core's.

Run from the repository root::

    .venv/bin/python bench/dispatch.py            # full run (about a minute)
    .venv/bin/python bench/dispatch.py --quick    # fewer iterations

Every case uses one no-op handler (or none) and the same work: an LLM call is its start and
end events, a token is one new-token event. Each figure is the best of several repeats, in
microseconds per operation; the ratio is peer / hookwire (higher is better for hookwire).
The targets: 5x (LLM call, sync), 5x (token, sync), 100x (token from asyncio to a sync
handler), 8x (token from asyncio to an async handler), 3x (a whole request with its handlers
built per request), and no handler at all costing no more than three plain function calls.
Last, the memory left by 100,000 managers built and dropped (flat: no growth, no cycles).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import timeit
import tracemalloc
from typing import Any

from hookwire import CallbackManager, LLMResponse, Usage, trace

try:
    from langchain_core.callbacks import AsyncCallbackManager
    from langchain_core.callbacks import CallbackManager as LCCallbackManager
    from langchain_core.outputs import Generation, LLMResult
except ImportError:  # pragma: no cover - the bench extra installs it
    sys.exit("bench/dispatch.py needs langchain-core: pip install -e '.[bench]'")

from _handlers import (
    HWAsyncTokenNoop,
    HWLLMNoop,
    HWRequestLog,
    HWRequestStream,
    HWRequestUsage,
    LCAsyncTokenNoop,
    LCLLMNoop,
    LCRequestLog,
    LCRequestStream,
    LCRequestUsage,
)
from _timing import quick_flag

try:
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.events.llm import (
        LLMChatEndEvent,
        LLMChatInProgressEvent,
        LLMChatStartEvent,
    )

    HAVE_LLAMA = True
except ImportError:  # pragma: no cover - optional peer
    HAVE_LLAMA = False


# -- handlers -----------------------------------------------------------------------------------


TOKENS = [f"t{i} " for i in range(20)]


def hw_request(response: Any) -> None:
    """One request: handlers built for its user, a run, one LLM call with 20 streamed tokens."""
    m = CallbackManager([HWRequestLog("u"), HWRequestUsage("u"), HWRequestStream("u")])
    with trace("request", callbacks=m):
        rid = m.on_llm_start("prompt", model="m", provider="openai")
        for t in TOKENS:
            m.on_llm_new_token(t, run_id=rid)
        m.on_llm_end(response, run_id=rid, model="m", provider="openai")


def lc_request(result: Any) -> None:
    """The same request through langchain-core: configure, a chain run, its LLM run."""
    cm = LCCallbackManager.configure(
        inheritable_callbacks=[LCRequestLog("u"), LCRequestUsage("u"), LCRequestStream("u")]
    )
    chain = cm.on_chain_start({"name": "request"}, {"input": "prompt"})
    (rm,) = chain.get_child().on_llm_start({"name": "m"}, ["prompt"])
    for t in TOKENS:
        rm.on_llm_new_token(t)
    rm.on_llm_end(result)
    chain.on_chain_end({"output": "ok"})


def manager_memory(builds: int) -> tuple[int, int]:
    """Bytes still allocated, and objects the cyclic GC had to free, after ``builds`` managers
    are built per request and dropped (a warm-up first, so caches are filled)."""
    for _ in range(1_000):
        hw_request(RESPONSE)
    gc.collect()
    gc.disable()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(builds):
        CallbackManager([HWRequestLog("u"), HWRequestUsage("u"), HWRequestStream("u")])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    freed = gc.collect()
    gc.enable()
    return after - before, freed


RESPONSE = LLMResponse("ok", usage=Usage(10, 5), model="m")


# -- timing -------------------------------------------------------------------------------------


def best_us(stmt: str, ns: dict[str, Any], n: int, repeats: int, setup: str = "pass") -> float:
    """Best-of-``repeats`` microseconds per execution of ``stmt`` (timeit, no wrapper call)."""
    timer = timeit.Timer(stmt, setup=setup, globals=ns)
    return min(timer.repeat(repeat=repeats, number=n)) / n * 1e6


def pair_us(
    peer: str, ours: str, ns: dict[str, Any], n_peer: int, n_ours: int, repeats: int
) -> tuple[float, float]:
    """Time both statements in alternation, so that load on the machine hits both alike."""
    best_peer = best_ours = float("inf")
    for _ in range(repeats):
        gc.collect()
        best_peer = min(best_peer, best_us(peer, ns, n_peer, 1))
        best_ours = min(best_ours, best_us(ours, ns, n_ours, 1))
    return best_peer, best_ours


def best_us_async(stmt: str, ns: dict[str, Any], n: int, repeats: int) -> float:
    """The same for an awaited statement, timed inside one running event loop."""
    src = (
        "async def _loop(_n):\n"
        "    _t0 = _perf()\n"
        "    for _ in range(_n):\n"
        f"        {stmt}\n"
        "    return _perf() - _t0\n"
    )
    scope = {**ns, "_perf": time.perf_counter}
    exec(src, scope)
    loop_fn = scope["_loop"]

    async def runs() -> float:
        best = float("inf")
        for _ in range(repeats):
            gc.collect()
            best = min(best, await loop_fn(n))
        return best

    return asyncio.run(runs()) / n * 1e6


# -- cases --------------------------------------------------------------------------------------


def run(quick: bool) -> list[tuple[str, str, float, float]]:
    n = 5_000 if quick else 50_000
    r = 3 if quick else 7
    rows: list[tuple[str, str, float, float]] = []
    ns: dict[str, Any] = {
        "response": RESPONSE,
        "lc_result": LLMResult(generations=[[Generation(text="ok")]]),
        "hw": CallbackManager([HWLLMNoop()]),
        "lc": LCCallbackManager(handlers=[LCLLMNoop()]),
    }

    # 1. one LLM call (start + end), sync, as a client emits it (with the model named)
    hw_call = (
        "rid = hw.on_llm_start('prompt', model='m', provider='openai')\n"
        "hw.on_llm_end(response, run_id=rid, model='m', provider='openai')"
    )
    lc_call = "(rm,) = lc.on_llm_start({'name': 'm'}, ['prompt'])\nrm.on_llm_end(lc_result)"
    lc_t, hw_t = pair_us(lc_call, hw_call, ns, n, n, r)
    rows.append(("LLM call (start+end), sync", "langchain-core", lc_t, hw_t))
    if HAVE_LLAMA:
        disp = get_dispatcher("hookwire-bench")

        class LINoop(BaseEventHandler):
            def handle(self, event: Any, **kwargs: Any) -> None:
                pass

        disp.add_event_handler(LINoop())
        ns.update(
            disp=disp,
            msgs=[ChatMessage(role="user", content="prompt")],
            chat_response=ChatResponse(message=ChatMessage(role="assistant", content="ok")),
            token_response=ChatResponse(
                message=ChatMessage(role="assistant", content="t"), delta="t"
            ),
            Start=LLMChatStartEvent,
            End=LLMChatEndEvent,
            Progress=LLMChatInProgressEvent,
        )
        li_call = (
            "disp.event(Start(messages=msgs, additional_kwargs={}, model_dict={}))\n"
            "disp.event(End(messages=msgs, response=chat_response))"
        )
        rows.append(
            (
                "LLM call (start+end), sync",
                "llama-index-core",
                best_us(li_call, ns, n // 5, r),
                hw_t,
            )
        )

    # 2. one streamed token, sync
    ns["rid"] = ns["hw"].on_llm_start("prompt")
    (ns["lc_rm"],) = ns["lc"].on_llm_start({"name": "m"}, ["prompt"])
    lc_t, hw_t = pair_us(
        "lc_rm.on_llm_new_token('tok')", "hw.on_llm_new_token('tok', run_id=rid)", ns, n, n * 5, r
    )
    rows.append(("token, sync", "langchain-core", lc_t, hw_t))
    if HAVE_LLAMA:
        li_t = best_us(
            "disp.event(Progress(messages=msgs, response=token_response))", ns, n // 5, r
        )
        rows.append(("token, sync", "llama-index-core", li_t, hw_t))

    # 3. one streamed token from asyncio to a sync handler
    alc = AsyncCallbackManager(handlers=[LCLLMNoop()])

    async def lc_async_setup(manager: Any) -> Any:
        (rm,) = await manager.on_llm_start({"name": "m"}, ["prompt"])
        return rm

    ns["alc_rm"] = asyncio.run(lc_async_setup(alc))
    hw_t = best_us_async("await hw.aon_llm_new_token('tok', run_id=rid)", ns, n * 5, r)
    lc_t = best_us_async("await alc_rm.on_llm_new_token('tok')", ns, max(200, n // 20), r)
    rows.append(("token, asyncio -> sync handler", "langchain-core", lc_t, hw_t))

    # 4. one streamed token from asyncio to an async handler
    ns["hwa"] = CallbackManager([HWAsyncTokenNoop()])
    ns["alca_rm"] = asyncio.run(lc_async_setup(AsyncCallbackManager(handlers=[LCAsyncTokenNoop()])))
    hw_t = best_us_async("await hwa.aon_llm_new_token('tok', run_id=rid)", ns, n * 5, r)
    lc_t = best_us_async("await alca_rm.on_llm_new_token('tok')", ns, n, r)
    rows.append(("token, asyncio -> async handler", "langchain-core", lc_t, hw_t))

    # 5. a whole request as web apps make one: three handler classes instantiated for the
    # request's user, a manager, a run, one LLM call with 20 streamed tokens
    ns.update(hw_request=hw_request, lc_request=lc_request)
    lc_t, hw_t = pair_us(
        "lc_request(lc_result)", "hw_request(response)", ns, max(200, n // 50), n // 10, r
    )
    rows.append(("request: 3 handlers built, run, call, 20 tokens", "langchain-core", lc_t, hw_t))

    # 6. no handler at all vs three plain Python function calls: strictly, calls without
    # arguments; like for like, calls that take the event's own arguments.
    ns["empty"] = CallbackManager()
    ns["f"] = lambda: None

    def g(token: str, run_id: str | None = None) -> None:
        return None

    ns["g"] = g
    empty_stmt = "empty.on_llm_new_token('tok', run_id=rid)"
    base_t, hw_t = pair_us("f(); f(); f()", empty_stmt, ns, n * 10, n * 10, r * 3)
    rows.append(("token, no handler", "3 calls f()", base_t, hw_t))
    like = "g('tok', run_id=rid); g('tok', run_id=rid); g('tok', run_id=rid)"
    base_t, hw_t = pair_us(like, empty_stmt, ns, n * 10, n * 10, r * 3)
    rows.append(("token, no handler", "3 calls g('tok', run_id=rid)", base_t, hw_t))
    return rows


def main() -> None:
    quick = quick_flag(__doc__)
    rows = run(quick)
    print(f"{'case':48s} {'peer':30s} {'peer µs':>9s} {'hookwire µs':>12s} {'ratio':>8s}")
    for case, peer, peer_t, hw_t in rows:
        print(f"{case:48s} {peer:30s} {peer_t:9.3f} {hw_t:12.3f} {peer_t / hw_t:7.1f}x")
    builds = 10_000 if quick else 100_000
    grown, freed = manager_memory(builds)
    print(
        f"\n{builds:,} managers (3 handlers each) built and dropped: {grown:+,} bytes still "
        f"allocated, {freed} objects left for the cyclic GC"
    )


if __name__ == "__main__":
    main()

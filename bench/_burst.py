"""1,000 concurrent runs, with and without a budget (a part of ``scale.py``, not a script).

``RLM.arun`` 1,000 times at once in one event loop, on a local model that answers after 50 ms
(an ``asyncio.sleep``, as a network call waits), with: no handler; four handlers and no budget
(``AccountingCallbackHandler`` without a budget, ``MetricsCallback``, a sync and an async
no-op); the same four with a daily budget per user that none of the runs reaches, the 1,000
runs for one user (one budget key: the checks race for its row) and for 1,000 users (one run
each); and the same 1,000 users with ``budget_lease=0``. Each round takes every case in turn
(the order rotated); the figure is a case's best round, in seconds from the first ``arun`` to
the last answer (the ledger's rows are written after, untimed).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from hookwire import AsyncBaseCallback, BaseCallback
from hookwire.callbacks import MetricsCallback
from hookwire.callbacks.accounting import AccountingCallbackHandler, Budget
from hookwire.events import LLMResponse
from hookwire.llms import LocalLLM
from hookwire.llms.protocol import LLMRequest, StreamEnd
from hookwire.rlm import RLM

RUNS = 1000
LATENCY = 0.05


class _SlowLocal(LocalLLM):
    """``LocalLLM`` answering after ``LATENCY`` seconds, as a model behind a network does."""

    async def _acomplete(self, request: LLMRequest) -> LLMResponse:
        await asyncio.sleep(LATENCY)
        return self._complete(request)

    async def _astream(self, request: LLMRequest) -> AsyncIterator[str | StreamEnd]:
        await asyncio.sleep(LATENCY)
        async for item in super()._astream(request):
            yield item


class _Noop(BaseCallback):
    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        return None


class _AsyncNoop(AsyncBaseCallback):
    async def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        return None


def _cases(url: str) -> dict[str, tuple[list[Any], Callable[[int], dict[str, str]]]]:
    tag = uuid.uuid4().hex[:6]

    def four(**accounting: Any) -> list[Any]:
        return [
            AccountingCallbackHandler(database_url=url, **accounting),
            MetricsCallback(),
            _Noop(),
            _AsyncNoop(),
        ]

    def one_user(i: int) -> dict[str, str]:
        return {"user_id": f"burst-{tag}"}

    def many_users(i: int) -> dict[str, str]:
        return {"user_id": f"burst-{tag}-{i}"}

    budget = Budget(1_000_000, period="day")
    return {
        "no handler": ([], one_user),
        "4 handlers, no budget": (four(), one_user),
        "4 handlers, budget, 1 user": (four(budgets=budget), one_user),
        "4 handlers, budget, 1,000 users": (four(budgets=budget), many_users),
        "4 handlers, budget, 1,000 users, budget_lease=0": (
            four(budgets=budget, budget_lease=0),
            many_users,
        ),
    }


async def _round(rlm: RLM, context: Callable[[int], dict[str, str]]) -> float:
    t = time.perf_counter()
    results = await asyncio.gather(*(rlm.arun("hello there", **context(i)) for i in range(RUNS)))
    elapsed = time.perf_counter() - t
    assert len(results) == RUNS
    return elapsed


async def _flush(handlers: list[Any]) -> None:
    for h in handlers:
        if isinstance(h, AccountingCallbackHandler):
            assert await asyncio.to_thread(h.flush, 120)


async def measure(url: str, rounds: int) -> dict[str, str]:
    """Seconds (best round) of each case on the database at ``url`` (at the schema head)."""
    cases = _cases(url)
    rlms = {
        name: (RLM(_SlowLocal(model="gpt-4o", max_tokens=64), callbacks=handlers), context)
        for name, (handlers, context) in cases.items()
    }
    # A first small burst per case: connections, pools, the schema check.
    for name, (rlm, context) in rlms.items():
        await asyncio.gather(*(rlm.arun("warm up", **context(i)) for i in range(20)))
        await _flush(cases[name][0])
    best = dict.fromkeys(rlms, float("inf"))
    order = list(rlms)
    for r in range(rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            rlm, context = rlms[name]
            best[name] = min(best[name], await _round(rlm, context))
            await _flush(cases[name][0])
    for handlers, _ in cases.values():
        for h in handlers:
            if isinstance(h, AccountingCallbackHandler):
                await asyncio.to_thread(h.close)
    return {f"1,000 concurrent runs (s): {name}": f"{s:.3f}" for name, s in best.items()}

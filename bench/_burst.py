"""1,000 concurrent runs, with and without a budget (a part of ``scale.py``, not a script).

``RLM.arun`` 1,000 times at once in one event loop, on a local model that answers after 50 ms
(an ``asyncio.sleep``, as a network call waits), with: no handler; four handlers and no budget
(``AccountingCallbackHandler`` without a budget, ``MetricsCallback``, a sync and an async
no-op); the same four with a daily budget per user that none of the runs reaches, the 1,000
runs for one user (one budget key: the checks race for its row) and for 1,000 users (one run
each); and the same 1,000 users with ``budget_lease=0``. Each round takes every case in turn
(the order rotated); the figure is a case's best round, in seconds from the first ``arun`` to
the last answer (the ledger's rows are written after, untimed). Budget checks are made with
``fail_open=False`` and a 120 s ``check_timeout``: on a loaded machine the defaults would let
slow checks through unchecked, and a budget would look cheaper than it is.

And budget leases with many users: 2,000 ``arun`` one after another (no model latency),
cycling over 1,000 users (so each user calls every 1,000 calls), with leases (the default)
and without (``budget_lease=0``): milliseconds per call, the best of the rounds.
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
        # A check that cannot answer in time must not pass as a cheap one: with the default
        # fail_open=True and a 2 s check_timeout a loaded machine lets calls through unchecked.
        # Here it waits, and a check that still cannot answer fails the run.
        return [
            AccountingCallbackHandler(
                database_url=url, fail_open=False, check_timeout=120.0, **accounting
            ),
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
    out = {f"1,000 concurrent runs (s): {name}": f"{s:.3f}" for name, s in best.items()}
    out.update(await _users_in_turn(url, min(rounds, 2)))
    return out


async def _users_in_turn(url: str, rounds: int) -> dict[str, str]:
    tag = uuid.uuid4().hex[:6]
    budget = Budget(1_000_000, period="day")
    handlers = {
        "leases": AccountingCallbackHandler(
            database_url=url, budgets=budget, fail_open=False, check_timeout=120.0
        ),
        "budget_lease=0": AccountingCallbackHandler(
            database_url=url, budgets=budget, budget_lease=0, fail_open=False, check_timeout=120.0
        ),
    }
    rlms = {
        name: RLM(LocalLLM(model="gpt-4o", max_tokens=64), callbacks=[h])
        for name, h in handlers.items()
    }
    best = dict.fromkeys(handlers, float("inf"))
    calls = 2 * RUNS
    order = list(rlms)
    for r in range(rounds):
        for name in order[r % 2 :] + order[: r % 2]:  # the order swapped every round
            rlm = rlms[name]
            t = time.perf_counter()
            for i in range(calls):
                await rlm.arun("hello there", user_id=f"turn-{tag}-{name}-{i % RUNS}")
            best[name] = min(best[name], (time.perf_counter() - t) / calls)
            await _flush([handlers[name]])
    for h in handlers.values():
        await asyncio.to_thread(h.close)
    return {
        f"a call, 1,000 users in turn (ms): {name}": f"{s * 1000:.2f}" for name, s in best.items()
    }

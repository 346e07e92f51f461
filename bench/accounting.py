"""Usage accounting: pricing a call, writing the ledger, checking a budget.

Run from the repository root (PostgreSQL on 127.0.0.1:5432 for the budget figures):

    PYTHONPATH=src python bench/accounting.py

Side by side in one process:

- the cost of one call: ``hookwire.pricing.cost`` (cached lookups, exact Decimal) against
  ``genai_prices.calc_price`` (the database hookwire prices from) and LangChain's
  ``get_openai_token_cost_for_model`` (a float table, OpenAI models only);
- the ledger on SQLite: rows per second through ``AccountingCallbackHandler`` (the app thread
  enqueues, rows are written in batches) against one SQLAlchemy transaction per row;
- the budget check on PostgreSQL, from sync and from async code: the check alone (what
  ``on_llm_start`` / ``aon_llm_start`` cost the caller when it goes to the database), and
  what a budget adds to an LLM call's bookkeeping (check and reserve before it, settle after
  it), with budget leases (the default) and without (``budget_lease=0``, every call checked
  against the database).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from _postgres import fresh_database, server_up
from hookwire import CallbackManager, LLMResponse, Usage, pricing
from hookwire.callbacks.accounting import AccountingCallbackHandler, Budget
from hookwire.stores import runner
from hookwire.stores.ledger import UsageLedger, UsageRecord

ROWS: list[tuple[str, str, str, str]] = []


def row(name: str, ours: str, peer: str = "-", ratio: str = "-") -> None:
    ROWS.append((name, ours, peer, ratio))


def per_op(fn: Callable[[], Any], n: int, repeat: int = 5) -> float:
    """Best-of-``repeat`` seconds per call."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} µs"


def bench_cost() -> None:
    import genai_prices

    usage = Usage(prompt_tokens=1200, completion_tokens=350, cached_tokens=400)
    gusage = genai_prices.Usage(input_tokens=1200, output_tokens=350, cache_read_tokens=400)
    assert pricing.cost("gpt-4o", usage, "openai") == (
        genai_prices.calc_price(gusage, "gpt-4o", provider_id="openai").total_price
    )
    ours = per_op(lambda: pricing.cost("gpt-4o", usage, "openai"), 50_000)
    peer = per_op(lambda: genai_prices.calc_price(gusage, "gpt-4o", provider_id="openai"), 2_000, 3)
    row(
        "cost of a call (gpt-4o, cached tokens)",
        us(ours),
        f"{us(peer)} genai-prices",
        f"{peer / ours:.0f}x",
    )
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "langchain-community is sunset"
            from langchain_community.callbacks.openai_info import (  # type: ignore[import-untyped]
                TokenType,
                get_openai_token_cost_for_model,
            )
    except ImportError:
        return

    def lc() -> float:
        return get_openai_token_cost_for_model("gpt-4o", 1200) + get_openai_token_cost_for_model(
            "gpt-4o", 350, token_type=TokenType.COMPLETION
        )

    plain = Usage(prompt_tokens=1200, completion_tokens=350)
    ours_plain = per_op(lambda: pricing.cost("gpt-4o", plain, "openai"), 50_000)
    peer_lc = per_op(lc, 20_000)
    row(
        "cost of a call (gpt-4o, no cache)",
        us(ours_plain),
        f"{us(peer_lc)} LangChain (float)",
        f"{peer_lc / ours_plain:.1f}x",
    )


def bench_ledger_sqlite() -> None:
    from sqlalchemy import insert

    from hookwire.stores import engine
    from hookwire.stores.schema import usage_ledger

    tmp = tempfile.mkdtemp()
    url = f"sqlite:///{tmp}/bench.db"
    n = 20_000
    handler = AccountingCallbackHandler(user_id="bench", database_url=url)
    manager = CallbackManager([handler])
    resp = LLMResponse("ok", usage=Usage(1000, 200), model="gpt-4o-mini", provider="openai")
    manager.on_llm_end(resp)
    handler.flush()
    t = time.perf_counter()
    for _ in range(n):
        manager.on_llm_end(resp)
    enqueued = time.perf_counter() - t
    handler.flush()
    total = time.perf_counter() - t

    # The peer: the obvious way, one transaction per row.
    peer_url = f"sqlite:///{tmp}/peer.db"
    runner.run_sync(engine.ensure_schema(peer_url))
    m = 1_000

    async def one_by_one() -> float:
        eng = engine.get_write_engine(peer_url)
        start = time.perf_counter()
        for _ in range(m):
            async with eng.begin() as conn:
                await conn.execute(
                    insert(usage_ledger),
                    {
                        "run_id": uuid.uuid4().hex,
                        "created_at": datetime.now(timezone.utc),
                        "prompt_tokens": 1000,
                        "completion_tokens": 200,
                        "total_tokens": 1200,
                        "cost": Decimal("0.00027"),
                        "user_id": "bench",
                    },
                )
        return time.perf_counter() - start

    peer = runner.run_sync(one_by_one())
    ours_rate = n / total
    peer_rate = m / peer
    row(
        "ledger rows/s, SQLite (handler, incl. totals)",
        f"{ours_rate:,.0f} rows/s",
        f"{peer_rate:,.0f} rows/s (1 tx per row)",
        f"{ours_rate / peer_rate:.0f}x",
    )
    row("  app thread per on_llm_end (enqueue only)", us(enqueued / n))

    ledger = UsageLedger(url)
    now = datetime.now(timezone.utc)
    batch = [
        UsageRecord(
            run_id=uuid.uuid4().hex,
            created_at=now,
            prompt_tokens=1000,
            completion_tokens=200,
            total_tokens=1200,
            cost=Decimal("0.00027"),
            user_id=f"u{i % 50}",
        )
        for i in range(n)
    ]
    t = time.perf_counter()
    for i in range(0, n, 1000):
        runner.run_sync(ledger.record(batch[i : i + 1000]))
    row(
        "ledger rows/s, SQLite (UsageLedger.record, 1000/batch)",
        f"{n / (time.perf_counter() - t):,.0f} rows/s",
    )


def bench_budget_pg() -> None:
    if not server_up():
        row("budget check, PostgreSQL", "skipped: PostgreSQL is not up (HOOKWIRE_BENCH_PG)")
        return
    from hookwire.stores import engine

    with fresh_database() as url:
        try:
            _bench_budget_pg(url.replace("postgresql://", "postgresql+asyncpg://"))
        finally:
            from hookwire.stores.ledger import close_sync_budget_connections, dispose_budget_pools

            close_sync_budget_connections()
            runner.run_sync(dispose_budget_pools())
            runner.run_sync(engine.dispose_engines())


def _bench_budget_pg(pg_url: str) -> None:
    from hookwire.stores import engine

    runner.run_sync(engine.upgrade(pg_url))
    user = f"bench-{uuid.uuid4().hex[:8]}"
    prompt = [{"role": "user", "content": "What is the capital of France?"}]
    params = {"model": "gpt-4o", "max_tokens": 200}
    resp = LLMResponse("Paris", usage=Usage(20, 5), model="gpt-4o", provider="openai")
    plain = CallbackManager([AccountingCallbackHandler(user_id=user, database_url=pg_url)])
    budgeted_handler = AccountingCallbackHandler(
        user_id=user, database_url=pg_url, budgets=[Budget(1_000_000, period="day")]
    )
    budgeted = CallbackManager([budgeted_handler])
    one_by_one_handler = AccountingCallbackHandler(
        user_id=user + "-1by1",
        database_url=pg_url,
        budgets=[Budget(1_000_000, period="day")],
        budget_lease=0,
    )
    one_by_one = CallbackManager([one_by_one_handler])

    def call(m: CallbackManager) -> None:
        rid = m.on_llm_start(prompt, invocation_params=params, model="gpt-4o")
        m.on_llm_end(resp, run_id=rid)

    def ms(samples: list[float]) -> str:
        p99 = sorted(samples)[int(len(samples) * 0.99)]
        return f"{statistics.median(samples) * 1e3:.3f} / {p99 * 1e3:.3f} ms"

    for _ in range(200):
        call(budgeted)
        call(one_by_one)
    budgeted_handler.flush()
    one_by_one_handler.flush()

    # 1. The check alone, as the caller's on_llm_start / aon_llm_start pays it when it goes to
    # the database (budget_lease=0: every call). Each call is then ended and its row written
    # (untimed), so every check sees a settled ledger.
    n = 500

    def sync_checks() -> list[float]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            rid = one_by_one.on_llm_start(prompt, invocation_params=params, model="gpt-4o")
            out.append(time.perf_counter() - t)
            one_by_one.on_llm_end(resp, run_id=rid)
            one_by_one_handler.flush()
        return out

    row("budget check, PostgreSQL, sync on_llm_start (median / p99)", ms(sync_checks()))

    async def async_checks() -> list[float]:
        for _ in range(50):  # opens this loop's pool
            await one_by_one.aon_llm_start(prompt, invocation_params=params, model="gpt-4o")
        one_by_one_handler.flush()
        out = []
        for _ in range(n):
            t = time.perf_counter()
            rid = await one_by_one.aon_llm_start(prompt, invocation_params=params, model="gpt-4o")
            out.append(time.perf_counter() - t)
            await one_by_one.aon_llm_end(resp, run_id=rid)
            one_by_one_handler.flush()
        return out

    row(
        "budget check, PostgreSQL, async aon_llm_start (median / p99)",
        ms(asyncio.run(async_checks())),
    )

    # The server's share: a bare round trip on the same kind of connection.
    import psycopg

    dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as conn:
        trips = []
        for _ in range(n):
            t = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            trips.append(time.perf_counter() - t)
    row("  a bare SELECT 1 round trip, psycopg (median / p99)", ms(trips))

    # 2. What a budget adds to an LLM call: start, the model's answer (a 50 ms sleep, in which
    # the previous call's row is written, as in real use), end; timed without the sleep.
    llm = 0.05
    k = 25

    def paced(m: CallbackManager) -> list[float]:
        out = []
        for _ in range(k):
            t0 = time.perf_counter()
            rid = m.on_llm_start(prompt, invocation_params=params, model="gpt-4o")
            t1 = time.perf_counter()
            time.sleep(llm)
            t2 = time.perf_counter()
            m.on_llm_end(resp, run_id=rid)
            out.append(t1 - t0 + time.perf_counter() - t2)
        return out

    async def apaced(m: CallbackManager) -> list[float]:
        for _ in range(20):
            rid = await m.aon_llm_start(prompt, invocation_params=params, model="gpt-4o")
            await m.aon_llm_end(resp, run_id=rid)
        out = []
        for _ in range(k):
            t0 = time.perf_counter()
            rid = await m.aon_llm_start(prompt, invocation_params=params, model="gpt-4o")
            t1 = time.perf_counter()
            await asyncio.sleep(llm)
            t2 = time.perf_counter()
            await m.aon_llm_end(resp, run_id=rid)
            out.append(t1 - t0 + time.perf_counter() - t2)
        return out

    # Interleaved in blocks, so that the machine's swings fall on all three alike.
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(4):
        for label, run in (("sync", paced), ("async", lambda m: asyncio.run(apaced(m)))):
            for name, m in (("lease", budgeted), ("1by1", one_by_one), ("plain", plain)):
                samples.setdefault((label, name), []).extend(run(m))
    budgeted_handler.flush()
    one_by_one_handler.flush()
    for label in ("sync", "async"):
        wo = statistics.median(samples[(label, "plain")])
        for name, what in (("lease", "with a budget (leases)"), ("1by1", "call by call")):
            w = statistics.median(samples[(label, name)])
            row(
                f"  {label} call bookkeeping {what} / without a budget (median)",
                f"{w * 1e3:.3f} ms",
                f"{wo * 1e3:.3f} ms",
                f"+{(w - wo) * 1e3:.3f} ms",
            )

    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as conn:
        trips = []
        for _ in range(4 * k):
            time.sleep(llm)
            t = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            trips.append(time.perf_counter() - t)
    row("  a bare SELECT 1 round trip after the same 50 ms idle (median / p99)", ms(trips))

    # 3. Back to back (no time between calls): the next check meets the previous call's
    # ledger write on the server, so this is the worst case, not the usual one.
    with_budget = per_op(lambda: call(budgeted), 500, 3)
    without_budget = per_op(lambda: call(plain), 500, 3)
    row(
        "  sync, back to back (no LLM time): with / without a budget",
        f"{with_budget * 1e3:.3f} ms",
        f"{without_budget * 1e3:.3f} ms",
        f"+{(with_budget - without_budget) * 1e3:.3f} ms",
    )
    budgeted_handler.flush()

    async def raw_calls() -> list[float]:
        # The check's one round trip on the store loop (no handler, no dispatch).
        from hookwire.stores.ledger import Claim

        ledger = budgeted_handler.store
        claims = [Claim("user", user + "-raw", "day", Decimal(10**6), Decimal("0.001"))]
        out = []
        for i in range(1000):
            t = time.perf_counter()
            await ledger.reserve(f"raw-{i}", claims)
            out.append(time.perf_counter() - t)
            await ledger.release([f"raw-{i}"])
        return out

    row("  UsageLedger.reserve on the store loop (median / p99)", ms(runner.run_sync(raw_calls())))
    budgeted_handler.flush()


def main() -> None:
    print(f"hookwire accounting benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    bench_cost()
    bench_ledger_sqlite()
    bench_budget_pg()
    widths = [
        max(len(r[i]) for r in [("what", "hookwire", "peer", "ratio"), *ROWS]) for i in range(4)
    ]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format("what", "hookwire", "peer", "ratio"))
    print(line.format(*("-" * w for w in widths)))
    for r in ROWS:
        print(line.format(*r))


if __name__ == "__main__":
    main()

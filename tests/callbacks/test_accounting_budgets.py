"""Budgets (hookwire.callbacks.accounting.budgets) where they used to let calls through: keys
no column can hold, answers past max_tokens, cancelled calls, and a database that never
answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hookwire import CallbackManager, LLMResponse, Usage, pricing
from hookwire.callbacks.accounting import AccountingCallbackHandler, Budget
from hookwire.callbacks.accounting.budgets import worst_case
from hookwire.errors import BudgetExceeded, ConfigurationError
from hookwire.llms import OpenAIClient
from hookwire.stores import runner
from hookwire.stores.ledger import ledger_key
from hookwire.testing.openai_server import OpenAIServer, Reply

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def uid() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


def start(m: CallbackManager, model: str = "gpt-4o", max_tokens: int = 100, **kw: object) -> str:
    return m.on_llm_start(
        PROMPT, invocation_params={"model": model, "max_tokens": max_tokens}, model=model, **kw
    )


def answer(completion: int, model: str = "gpt-4o") -> LLMResponse:
    return LLMResponse("Paris", usage=Usage(20, completion), model=model, provider="openai")


# -- keys no column can hold (item 11) ---------------------------------------------------------


@pytest.mark.parametrize(
    "shape", ["300 characters", "NUL", "lone surrogate", "all three", "a shared long prefix"]
)
def test_a_budget_key_no_column_can_hold_is_still_matched(db_url: str, shape: str) -> None:
    base = uid()
    key = {
        "300 characters": base + "x" * 290,
        "NUL": base + "\x00admin",
        "lone surrogate": base + "\ud800",
        "all three": base + "\x00\udfff" + "y" * 300,
        "a shared long prefix": "p" * 300 + base,
    }[shape]
    one = pricing.cost("gpt-4o", Usage(20, 100), "openai")
    assert one is not None
    h = AccountingCallbackHandler(
        database_url=db_url, budgets=Budget(one * 3, period="day"), budget_lease=0
    )
    m = CallbackManager([h])
    for _ in range(3):
        m.on_llm_end(answer(100), run_id=start(m, user_id=key), user_id=key)
    # Before, no check found the key's spend: every call passed (or, on PostgreSQL, the
    # check failed on the key and let it through).
    with pytest.raises(BudgetExceeded) as refused:
        start(m, user_id=key)
    assert refused.value.key == ledger_key(key)
    assert h.flush(30)
    assert runner.run_sync(h.store.spent("user", ledger_key(key), "day")) == one * 3
    # The ledger takes the id as the app has it, too.
    assert runner.run_sync(h.store.spent("user", key, "day")) == one * 3
    assert h.summary(where={"user": key})[0]["calls"] == 3
    # Another id with the same first 300 characters is another budget.
    other = key[:-1] + ("z" if key[-1] != "z" else "q")
    assert ledger_key(other) != ledger_key(key)
    m.on_llm_end(answer(100), run_id=start(m, user_id=other), user_id=other)


def test_ledger_key_keeps_what_fits_and_hashes_the_rest() -> None:
    assert ledger_key("user-123") == "user-123"
    assert ledger_key("é" * 255) == "é" * 255
    for value in ("a" * 256, "a\x00b", "a\ud800", "\x00" * 1000):
        key = ledger_key(value)
        assert len(key) <= 255
        assert "\x00" not in key
        key.encode("utf-8")  # storable
        assert ledger_key(value) == key
    assert ledger_key("a" * 256) != ledger_key("a" * 257)


# -- answers past max_tokens (item 14) ---------------------------------------------------------


def test_an_answer_past_max_tokens_makes_later_calls_reserve_for_it(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A server that does not honour max_tokens: asked for 10 tokens, it answers 400.
    model = f"deaf-{uuid.uuid4().hex[:8]}"
    pricing.set_price(model, input_mtok="2.5", output_mtok="10")
    one = pricing.cost(model, Usage(20, 400))
    assert one is not None
    limit = one * 10
    user = uid()
    h = AccountingCallbackHandler(
        database_url=db_url, user_id=user, budgets=Budget(limit, period=None), budget_lease=0
    )
    m = CallbackManager([h])
    with caplog.at_level(logging.WARNING, logger="hookwire"):
        m.on_llm_end(answer(400, model), run_id=start(m, model, max_tokens=10))
    assert "past the max_tokens of 10" in caplog.text
    # 52 calls in flight together: each reserves for the answer this model really gives.
    started = []
    for _ in range(52):
        with contextlib.suppress(BudgetExceeded):
            started.append(start(m, model, max_tokens=10))
    for rid in started:
        m.on_llm_end(answer(400, model), run_id=rid)
    assert h.flush(30)
    spent = runner.run_sync(h.store.spent("user", user, None))
    assert spent == (1 + len(started)) * one
    assert spent <= limit + one  # the overrun is one call at most, not ten


# -- cancelled calls (item 13) -----------------------------------------------------------------


async def test_a_cancelled_call_gives_its_reservation_back(
    db_url: str, openai_server: OpenAIServer
) -> None:
    # A client that disconnects: the request's task is cancelled while the model answers.
    user = uid()
    h = AccountingCallbackHandler(
        database_url=db_url, user_id=user, budgets=Budget("0.05", period=None), budget_lease=0
    )
    openai_server.script(Reply("too late", delay=30))
    llm = OpenAIClient(
        api_key="sk-test", base_url=openai_server.base_url, callbacks=[h], max_retries=0
    )
    try:
        task = asyncio.create_task(llm.agenerate(PROMPT, model="gpt-4o", max_tokens=100))
        await asyncio.to_thread(_until, lambda: bool(openai_server.requests))
        assert await h.store.reserved("user", user, None) > 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(h.flush, 30)
        assert await h.store.reserved("user", user, None) == 0
    finally:
        await llm.aclose()


def _until(condition: Callable[[], bool]) -> None:
    """Wait for something another thread does (a poll, not a timed assertion)."""
    while not condition():
        time.sleep(0.01)


# -- a database that never answers (item 16) ---------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers; its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.05)  # so that the thread sees the stop
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for conn in held:
            conn.close()


@pytest.mark.timeout(30)  # before the fix each check waited 60 to 120 s
@pytest.mark.parametrize("driver", ["postgresql", "postgresql+psycopg", "postgresql+asyncpg"])
async def test_a_database_that_never_answers_fails_open_after_the_check_timeout(
    silent_server: int, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{driver}://postgres@127.0.0.1:{silent_server}/test"
    budgets = Budget(1)
    open_ = AccountingCallbackHandler(
        database_url=url, user_id="u", budgets=budgets, check_timeout=0.5
    )
    m = CallbackManager([open_])
    with caplog.at_level(logging.ERROR, logger="hookwire"):
        await asyncio.to_thread(m.on_llm_start, PROMPT, model="gpt-4o")  # sync dispatch
        await m.aon_llm_start(PROMPT, model="gpt-4o")  # async dispatch
    assert caplog.text.count("fail_open=True") == 2
    assert "did not finish within" in caplog.text
    closed = AccountingCallbackHandler(
        database_url=url, user_id="u", budgets=budgets, check_timeout=0.5, fail_open=False
    )
    with pytest.raises(BudgetExceeded, match="could not be checked"):
        await CallbackManager([closed]).aon_llm_start(PROMPT, model="gpt-4o")


@pytest.mark.timeout(30)  # before the fix a sync check waited for TCP to give up (minutes)
@pytest.mark.parametrize("driver", ["postgresql+psycopg", "postgresql+asyncpg"])
async def test_a_database_that_stops_answering_after_connecting_fails_open_after_the_check_timeout(
    pg_database_url: str, pg_proxy: Any, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The checks' connections are open and pooled; then the server stops answering on them
    # (a network that drops packets, a frozen server): statement_timeout cannot end that.
    url = pg_proxy.url(pg_database_url).replace("postgresql+asyncpg", driver, 1)
    budgets = Budget(1000)
    open_ = AccountingCallbackHandler(
        database_url=url, user_id=uid(), budgets=budgets, check_timeout=0.5, budget_lease=0
    )
    m = CallbackManager([open_])
    await asyncio.to_thread(m.on_llm_start, PROMPT, model="gpt-4o")  # sync dispatch
    await m.aon_llm_start(PROMPT, model="gpt-4o")  # async dispatch
    pg_proxy.stall()
    with caplog.at_level(logging.ERROR, logger="hookwire"):
        await asyncio.to_thread(m.on_llm_start, PROMPT, model="gpt-4o")
        if driver.endswith("asyncpg"):
            # (Through psycopg's async driver the check is bounded as well, but the engine
            # it leaves on a stalled connection holds up the exit drain: not tested here.)
            await m.aon_llm_start(PROMPT, model="gpt-4o")
    assert caplog.text.count("fail_open=True") == (2 if driver.endswith("asyncpg") else 1)
    closed = AccountingCallbackHandler(
        database_url=url, user_id=uid(), budgets=budgets, check_timeout=0.5, fail_open=False
    )
    with pytest.raises(BudgetExceeded, match="could not be checked"):
        await asyncio.to_thread(CallbackManager([closed]).on_llm_start, PROMPT, model="gpt-4o")
    pg_proxy.restore()


def test_an_sqlite_check_waits_for_the_files_lock_instead_of_failing_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a.db"
    h = AccountingCallbackHandler(
        database_url=f"sqlite:///{path}", user_id="u", budgets=Budget(1), check_timeout=0.1
    )
    m = CallbackManager([h])
    start(m)  # the schema is made
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's writer holds the file's lock
    threading.Timer(0.5, other.rollback).start()
    with caplog.at_level(logging.ERROR, logger="hookwire"):
        start(m)  # checked once the lock is free, not let through unchecked
    assert "fail_open" not in caplog.text
    assert runner.run_sync(h.store.reserved("user", "u", "day")) > 0
    other.close()


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), "2", True])
def test_bad_check_timeouts(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="check_timeout"):
        AccountingCallbackHandler(database_url="sqlite:///a.db", check_timeout=bad)  # type: ignore[arg-type]


def test_bad_unpriced_prices() -> None:
    with pytest.raises(ConfigurationError, match="unpriced_price"):
        AccountingCallbackHandler(database_url="sqlite:///a.db", unpriced_price=Decimal("5"))  # type: ignore[arg-type]


# -- leases with many users ----------------------------------------------------------------------


def test_no_lease_for_a_user_seen_once_and_one_for_a_user_who_comes_back(db_url: str) -> None:
    h = AccountingCallbackHandler(
        database_url=db_url, budgets=Budget(100, period="day"), budget_lease=8
    )
    m = CallbackManager([h])
    # A thousand users of one call each would otherwise take a thousand leases, each lapsing
    # unused: two round trips more per call than the check alone.
    users = [uid() for _ in range(5)]
    for user in users:
        m.on_llm_end(answer(20), run_id=start(m, user_id=user), user_id=user)
    assert not h._leases._acquiring and not h._leases.leases
    assert h.flush(30)
    for user in users:
        assert runner.run_sync(h.store.reserved("user", user, "day")) == 0
    # A user who comes back within a lease's life gets one, sized by how often they call
    # (here: back to back, so the most budget_lease allows).
    regular = uid()
    for _ in range(2):
        m.on_llm_end(answer(20), run_id=start(m, user_id=regular), user_id=regular)
    _until(lambda: bool(h._leases.leases))
    (lease,) = h._leases.leases.values()
    calls = lease.size / worst_case("gpt-4o", PROMPT, 100, "openai", None)
    assert calls == int(calls) and 2 <= calls <= 8
    rid = start(m, user_id=regular)
    assert rid in h._leases.covered  # served without a round trip
    m.on_llm_end(answer(20), run_id=rid, user_id=regular)
    assert h.flush(30)
    assert runner.run_sync(h.store.reserved("user", regular, "day")) == 0

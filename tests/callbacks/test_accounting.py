"""AccountingCallbackHandler: the seed's API, automatic recording, idempotency, budgets
(in-process and across processes), and durability (exit, SIGKILL)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hookwire import CallbackManager, LLMResponse, Usage, pricing, request_context
from hookwire.callbacks.accounting import (
    AccountingCallbackHandler,
    Budget,
    estimate_prompt_tokens,
)
from hookwire.callbacks.accounting import budgets as lease_budgets
from hookwire.errors import BudgetExceeded, ConfigurationError, InvalidUsageError
from hookwire.stores import runner
from hookwire.stores.ledger import UsageLedger, ledger_key

SRC = str(Path(__file__).resolve().parents[2] / "src")
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def uid() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


def response(prompt: int = 100, completion: int = 50, model: str = "gpt-4o") -> LLMResponse:
    return LLMResponse("Paris", usage=Usage(prompt, completion), model=model, provider="openai")


def cost_of(prompt: int, completion: int, model: str = "gpt-4o") -> Decimal:
    value = pricing.cost(model, Usage(prompt, completion), "openai")
    assert value is not None
    return value


# -- the seed (arshai-callbacks.md), imports changed to hookwire -----------------------------


async def test_seed_using_the_accounting_handler() -> None:
    from hookwire.callbacks.accounting import AccountingCallbackHandler

    # Initialize the accounting handler
    accounting = AccountingCallbackHandler(
        correlation_id="correlation-id", request_id="request-id", user_id="user-123"
    )

    # Set the model name (typically done by the LLM client)
    accounting.model_name = "gpt-4"

    # Log usage after a request completes
    await accounting.call_accounting(
        output_tokens=150, prompt_tokens=100, agent_slug="customer-support"
    )

    # What the seed's call left in the default ledger (./hookwire.db):
    (row,) = await accounting.asummary(by=("user", "agent", "model"))
    assert row["user"] == "user-123"
    assert row["agent"] == "customer-support"
    assert row["model"] == "gpt-4"
    assert row["calls"] == 1
    assert row["prompt_tokens"] == 100
    assert row["completion_tokens"] == 150
    assert row["cost"] == pricing.cost("gpt-4", Usage(100, 150)) == Decimal("0.012")
    (record,) = await runner.run(accounting.store.records())
    assert record.correlation_id == "correlation-id"
    assert record.request_id == "request-id"
    assert record.source == "manual"


async def test_seed_integration_with_an_llm_response() -> None:
    # "With LLMs": the response's usage is recorded by hand after the call.
    accounting = AccountingCallbackHandler(
        correlation_id="correlation-id", request_id="request-id", user_id="user-123"
    )
    accounting.model_name = "gpt-4"
    response = LLMResponse("Paris.", usage=Usage(prompt_tokens=14, completion_tokens=3))
    record = await accounting.call_accounting(
        output_tokens=response.usage.completion_tokens,
        prompt_tokens=response.usage.prompt_tokens,
        agent_slug="qa-agent",
    )
    assert record.cost == pricing.cost("gpt-4", Usage(14, 3))
    assert record.agent == "qa-agent"


async def test_seed_with_llms_against_an_openai_compatible_server(
    openai_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hookwire import OpenAIClient
    from hookwire.callbacks.accounting import AccountingCallbackHandler

    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    # Create callback handlers
    accounting = AccountingCallbackHandler(
        correlation_id="correlation-id", request_id="request-id", user_id="user-123"
    )
    # Create LLM client (here it also reports to the handler by itself)
    llm = OpenAIClient(api_key="your-api-key", organization="your-org-id", callbacks=[accounting])
    # Execute LLM request and update accounting
    response = await asyncio.to_thread(
        llm.generate,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        model="gpt-4",
    )
    # Record usage in accounting
    await accounting.call_accounting(
        output_tokens=response.usage.completion_tokens,
        prompt_tokens=response.usage.prompt_tokens,
        agent_slug="qa-agent",
    )
    await asyncio.to_thread(accounting.flush, 30)
    await asyncio.to_thread(llm.close)
    # Recorded automatically and by hand: counted once.
    (row,) = await accounting.asummary(by="user")
    assert row["calls"] == 1
    assert row["prompt_tokens"] == response.usage.prompt_tokens
    assert row["completion_tokens"] == response.usage.completion_tokens
    assert row["cost"] == pricing.cost(response.model or "gpt-4", response.usage, "openai")


def test_the_handler_is_exported_lazily() -> None:
    import hookwire.callbacks as cb

    assert cb.AccountingCallbackHandler is AccountingCallbackHandler
    assert cb.Budget is Budget


# -- automatic recording ----------------------------------------------------------------------


def test_records_from_on_llm_end_with_the_request_context(db_url: str) -> None:
    h = AccountingCallbackHandler(database_url=db_url, correlation_id="c-default")
    m = CallbackManager([h])
    user = uid()
    with request_context(user_id=user, org_id="acme", agent="support", request_id="r1"):
        rid = m.on_llm_start(PROMPT, invocation_params={"model": "gpt-4o"}, model="gpt-4o")
        m.on_llm_end(
            LLMResponse(
                "Paris",
                usage=Usage(1000, 200, cached_tokens=400, reasoning_tokens=50),
                model="gpt-4o-2024-08-06",
                provider="openai",
            ),
            run_id=rid,
            model="gpt-4o",
            provider="openai",
        )
    assert h.flush(timeout=30)
    (row,) = runner.run_sync(h.store.records(user_id=user))
    assert row.run_id == rid
    assert row.org_id == "acme"
    assert row.agent == "support"
    assert row.model == "gpt-4o-2024-08-06"  # the model that answered
    assert row.provider == "openai"
    assert row.request_id == "r1"
    assert row.correlation_id == "c-default"  # the handler's own, as the context had none
    assert row.cached_tokens == 400
    assert row.reasoning_tokens == 50
    assert row.cost == pricing.cost(
        "gpt-4o-2024-08-06", Usage(1000, 200, cached_tokens=400, reasoning_tokens=50), "openai"
    )
    assert h.model_name == "gpt-4o-2024-08-06"


def test_the_responses_own_cost_is_kept(tmp_path: Path) -> None:
    h = AccountingCallbackHandler(database_url=f"sqlite:///{tmp_path}/a.db", user_id="u")
    h.on_llm_end(
        LLMResponse("x", usage=Usage(1, 1), model="mine", cost=Decimal("0.5"), currency="EUR"),
        run_id="r",
    )
    h.flush()
    (row,) = runner.run_sync(h.store.records())
    assert row.cost == Decimal("0.5")
    assert row.currency == "EUR"


@pytest.mark.parametrize("cost", [Decimal("-1"), Decimal("NaN"), float("nan"), "0.1"])
def test_a_responses_own_cost_that_would_break_a_budget_is_priced_instead(
    tmp_path: Path, cost: Any
) -> None:
    h = AccountingCallbackHandler(database_url=f"sqlite:///{tmp_path}/a.db", user_id="u")
    response = LLMResponse("x", usage=Usage(100, 50), model="gpt-4o", cost=cost)
    h.on_llm_end(response, run_id="r1")
    (row,) = h.summary()
    assert row["cost"] == pricing.cost("gpt-4o", Usage(100, 50))


def test_unknown_model_is_recorded_with_unknown_cost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pricing.clear_prices()
    h = AccountingCallbackHandler(database_url=f"sqlite:///{tmp_path}/a.db", user_id="u")
    with caplog.at_level(logging.WARNING, logger="hookwire.pricing"):
        for _ in range(3):
            h.on_llm_end(LLMResponse("x", usage=Usage(5, 5), model="home-made-llm"))
    (row,) = h.summary(by="model")
    assert row["calls"] == 3
    assert row["cost"] is None
    assert row["unknown_cost_calls"] == 3
    assert len([r for r in caplog.records if "home-made-llm" in r.getMessage()]) == 1


def test_bad_usage_from_a_client_is_logged_not_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = AccountingCallbackHandler(database_url=f"sqlite:///{tmp_path}/a.db", user_id="u")
    m = CallbackManager([h])
    with caplog.at_level(logging.ERROR, logger="hookwire"):
        m.on_llm_end(LLMResponse("x", usage=Usage(-5, 1, total_tokens=0), model="gpt-4o"))
    assert "InvalidUsageError" in caplog.text or "non-negative" in caplog.text
    assert m.stats()["errors_total"] == 1
    assert h.summary() == []


def test_long_values_are_cut_to_fit_and_refused_rows_do_not_block_others(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    user = uid()
    h = AccountingCallbackHandler(database_url=db_url, user_id=user)
    h.on_llm_end(response(model="m" * 1000), run_id=user + "-long", agent="a" * 1000)
    # A row the database itself refuses (a run id longer than its column) is dropped and
    # logged; the rows queued with it are still written.
    with caplog.at_level(logging.ERROR, logger="hookwire"):
        h.on_llm_end(response(), run_id="r" * 500)
        h.on_llm_end(response(), run_id=user + "-after")
        assert h.flush(timeout=30)
    rows = runner.run_sync(h.store.records(user_id=user))
    # An agent (user, org) id keeps a form budgets can find it by: a prefix and its hash.
    assert rows[0].agent == ledger_key("a" * 1000)
    assert len(rows[0].agent) == 255
    assert rows[0].model == "m" * 255
    if "sqlite" in db_url:  # SQLite does not enforce VARCHAR lengths: all three are kept
        assert [r.run_id for r in rows] == [user + "-long", "r" * 500, user + "-after"]
    else:
        assert [r.run_id for r in rows] == [user + "-long", user + "-after"]
        assert "refuses" in caplog.text
        assert h._queue.dropped == 1


def test_values_no_column_can_store_are_escaped_not_lost(db_url: str) -> None:
    # NUL (PostgreSQL refuses it) and lone surrogates (not UTF-8) in the context's strings:
    # the row is kept, with those characters written as escapes (and ids given their hash, so
    # that two of them never merge).
    user = uid()
    h = AccountingCallbackHandler(database_url=db_url, user_id=user, org_id="org\x00")
    h.on_llm_end(response(), run_id=user + "-1", agent="agent \ud800")
    record = h.call_accounting_sync(5, 7, "slug \udfff", run_id=user + "-2")
    assert h.flush(timeout=30)
    rows = runner.run_sync(h.store.records(user_id=user))
    org = ledger_key("org\x00")
    assert org.startswith("org\\x00#")
    assert sorted((r.run_id, r.agent, r.org_id) for r in rows) == [
        (user + "-1", ledger_key("agent \ud800"), org),
        (user + "-2", ledger_key("slug \udfff"), org),
    ]
    assert record.prompt_tokens == 7


# -- never counted twice ----------------------------------------------------------------------


async def test_automatic_and_manual_recording_of_one_call_count_once(db_url: str) -> None:
    user = uid()
    h = AccountingCallbackHandler(database_url=db_url, user_id=user)
    m = CallbackManager([h])
    rid = await m.aon_llm_start(PROMPT, model="gpt-4o")
    await m.aon_llm_end(response(100, 50), run_id=rid)
    # The app also records the same call by hand, as the seed does.
    record = await h.call_accounting(output_tokens=50, prompt_tokens=100, agent_slug="qa")
    assert record.run_id == rid
    await h.call_accounting(output_tokens=50, prompt_tokens=100, run_id=rid)
    await asyncio.to_thread(h.flush, 30)
    (row,) = await h.asummary(where={"user": user})
    assert row["calls"] == 1
    assert row["cost"] == cost_of(100, 50)
    # A second manual call with no new LLM call is a different call.
    other = await h.call_accounting(output_tokens=1, prompt_tokens=1)
    assert other.run_id != rid
    (row,) = await h.asummary(where={"user": user})
    assert row["calls"] == 2


@pytest.mark.parametrize(
    ("output_tokens", "prompt_tokens"),
    [(-1, 10), (10, -1), (1.5, 10), (10, "100"), (True, 1)],
)
async def test_call_accounting_rejects_bad_tokens(
    tmp_path: Path, output_tokens: Any, prompt_tokens: Any
) -> None:
    h = AccountingCallbackHandler(database_url=f"sqlite:///{tmp_path}/a.db", user_id="u")
    h.model_name = "gpt-4"
    with pytest.raises(InvalidUsageError):
        await h.call_accounting(output_tokens=output_tokens, prompt_tokens=prompt_tokens)
    assert await h.asummary() == []


def test_call_accounting_sync_reads_the_callers_context(tmp_path: Path) -> None:
    h = AccountingCallbackHandler(database_url=f"sqlite:///{tmp_path}/a.db", model_name="gpt-4")
    with request_context(user_id="ctx-user", org_id="ctx-org", request_id="req-9"):
        record = h.call_accounting_sync(output_tokens=10, prompt_tokens=20, agent_slug="bot")
    assert record.user_id == "ctx-user"
    assert record.org_id == "ctx-org"
    assert record.request_id == "req-9"
    (row,) = h.summary(by=("user", "agent"))
    assert row["user"] == "ctx-user"
    assert row["agent"] == "bot"
    assert row["cost"] == pricing.cost("gpt-4", Usage(20, 10))
    with pytest.raises(InvalidUsageError):
        h.call_accounting_sync(output_tokens=-1, prompt_tokens=0)


# -- budgets in one process -------------------------------------------------------------------


def test_budget_stops_sync_calls_at_the_limit(db_url: str) -> None:
    user = uid()
    limit = Decimal("0.01")
    h = AccountingCallbackHandler(
        database_url=db_url, user_id=user, budgets=Budget(limit, period="day")
    )
    m = CallbackManager([h])
    made = 0
    stopped: BudgetExceeded | None = None
    for _ in range(100):
        try:
            rid = m.on_llm_start(
                PROMPT, invocation_params={"model": "gpt-4o", "max_tokens": 100}, model="gpt-4o"
            )
        except BudgetExceeded as exc:
            stopped = exc
            break
        # A real answer: its prompt is no longer than the estimate (the UTF-8 bytes).
        m.on_llm_end(response(20, 100), run_id=rid)
        made += 1
    assert stopped is not None
    info = pytest.ExceptionInfo.from_exception(stopped)
    assert info.value.scope == "user"
    assert info.value.key == user
    assert info.value.period == "day"
    assert 0 < made < 100
    h.flush()
    spent = runner.run_sync(h.store.spent("user", user, "day"))
    assert spent == made * cost_of(20, 100)
    assert limit <= spent < limit + cost_of(20, 100)


async def test_budget_stops_async_calls_and_releases_failed_ones(db_url: str) -> None:
    user = uid()
    h = AccountingCallbackHandler(
        database_url=db_url,
        budgets=[Budget("1", period="month", scope="org")],
        default_max_tokens=1000,
        budget_lease=0,  # the call's own reservation, not a lease's
    )
    m = CallbackManager([h])
    with request_context(user_id=user, org_id=user + "-org"):
        rid = await m.aon_llm_start(PROMPT, model="gpt-4o")
        reserved = await h.store.reserved("org", user + "-org", "month")
        # Without max_tokens, the handler's default_max_tokens is the worst case.
        assert reserved == pricing.estimate("gpt-4o", estimate_prompt_tokens(PROMPT), 1000)
        await m.aon_llm_error(RuntimeError("boom"), run_id=rid)
        await asyncio.to_thread(h.flush, 30)
        assert await h.store.reserved("org", user + "-org", "month") == 0
        # Spend the budget, then the next call is refused before it is made.
        await h.call_accounting(output_tokens=100_000, prompt_tokens=0, model="gpt-4o")
        with pytest.raises(BudgetExceeded, match="monthly budget of org"):
            await m.aon_llm_start(PROMPT, model="gpt-4o")


async def test_a_client_stops_at_the_budget_and_tells_the_other_handlers(
    tmp_path: Path,
) -> None:
    from hookwire import LocalLLM
    from hookwire.testing import RecordingCallback

    pricing.set_price("local-echo", input_mtok=1000, output_mtok=1000)  # make it cost
    try:
        accounting = AccountingCallbackHandler(
            database_url=f"sqlite:///{tmp_path}/a.db",
            user_id="u",
            budgets=Budget("0.05", period="day"),
        )
        seen = RecordingCallback()
        llm = LocalLLM(callbacks=[accounting, seen], max_tokens=10)
        answers = 0
        stopped = False
        for _ in range(50):
            try:
                await llm.agenerate([{"role": "user", "content": "hi there"}])
            except BudgetExceeded:
                stopped = True
                break
            answers += 1
        assert stopped
        assert answers >= 1
        assert "on_budget_exceeded" in seen.hooks()
        await asyncio.to_thread(accounting.flush, 30)
        (row,) = await accounting.asummary()
        assert row["calls"] == answers
        one_call = pricing.estimate("local-echo", 40, 10, "local")
        assert one_call is not None
        assert Decimal("0.05") <= row["cost"] < Decimal("0.05") + one_call
    finally:
        pricing.clear_prices()


def test_budget_applies_per_key_from_the_context(tmp_path: Path) -> None:
    h = AccountingCallbackHandler(
        database_url=f"sqlite:///{tmp_path}/a.db", budgets=Budget(0, period=None, scope="agent")
    )
    m = CallbackManager([h])
    # No agent in the context and none on the handler: the agent budget does not apply.
    m.on_llm_start(PROMPT, model="gpt-4o")
    with request_context(agent="bot"), pytest.raises(BudgetExceeded):
        m.on_llm_start(PROMPT, model="gpt-4o")


def test_a_pinned_budget_key(tmp_path: Path) -> None:
    h = AccountingCallbackHandler(
        database_url=f"sqlite:///{tmp_path}/a.db",
        budgets=Budget("0.000001", period=None, scope="user", key="vip"),
    )
    m = CallbackManager([h])
    rid = m.on_llm_start(PROMPT, model="gpt-4o", user_id="someone")
    m.on_llm_end(response(), run_id=rid, user_id="vip")
    h.flush()
    with pytest.raises(BudgetExceeded):
        m.on_llm_start(PROMPT, model="gpt-4o", user_id="anyone")


@pytest.mark.parametrize("unpriced", ["dearest", "configured"])
def test_an_unpriced_model_billed_under_a_priced_name_holds_the_budget(
    db_url: str, unpriced: str
) -> None:
    # An Azure deployment (or a router alias) hookwire has no price for, whose answers come
    # back as gpt-4o: every call reserves an estimate, so 52 calls in flight together cannot
    # all pass a budget of ten calls.
    user = uid()
    one = cost_of(20, 100)
    limit = one * 10
    prices = pricing.ModelPrices(input_mtok=Decimal("2.5"), output_mtok=Decimal("10"))
    h = AccountingCallbackHandler(
        database_url=db_url,
        user_id=user,
        budgets=Budget(limit, period=None),
        budget_lease=0,
        unpriced_price=None if unpriced == "dearest" else prices,
    )
    m = CallbackManager([h])
    started: list[str] = []
    for _ in range(52):
        with contextlib.suppress(BudgetExceeded):
            started.append(
                m.on_llm_start(
                    PROMPT,
                    invocation_params={"model": "my-deployment", "max_tokens": 100},
                    model="my-deployment",
                    provider="azure",
                )
            )
    assert 1 <= len(started) <= 11
    for rid in started:
        m.on_llm_end(response(20, 100, model="gpt-4o"), run_id=rid)
    assert h.flush(30)
    spent = runner.run_sync(h.store.spent("user", user, None))
    assert spent == len(started) * one
    assert spent <= limit + one
    # Once the budget is spent, the unpriced model is refused like any other.
    if spent >= limit:
        with pytest.raises(BudgetExceeded):
            m.on_llm_start(PROMPT, model="my-deployment", provider="azure")


def test_the_dearest_known_price_covers_every_known_model() -> None:
    dearest = pricing.dearest_prices()
    for model in ("gpt-4o", "o1-pro", "claude-3-5-sonnet-latest"):
        known = pricing.estimate(model, 1000, 1000)
        if known is not None:
            assert dearest.cost(Usage(1000, 1000)) >= known
    pricing.set_price("gold-plated", input_mtok="100000", output_mtok="100000")
    assert pricing.dearest_prices().output_mtok == Decimal("100000")


def _start(m: CallbackManager, **kwargs: Any) -> str:
    return m.on_llm_start(
        PROMPT, invocation_params={"model": "gpt-4o", "max_tokens": 100}, model="gpt-4o", **kwargs
    )


def _until(condition: Any, timeout: float = 10.0) -> None:
    """Wait for something done in the background (a poll, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


ONE_CALL = pricing.estimate("gpt-4o", estimate_prompt_tokens(PROMPT), 100)


def test_a_lease_serves_calls_and_is_given_back(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lease is sized by the call rate (the calls that come in its life): a longer life keeps
    # it at budget_lease's 4 calls however slowly a loaded machine makes these checks.
    monkeypatch.setattr(lease_budgets, "LEASE_LIFE", 4.0)
    user = uid()
    h = AccountingCallbackHandler(
        database_url=db_url, user_id=user, budgets=Budget("10", period="day"), budget_lease=4
    )
    m = CallbackManager([h])
    assert ONE_CALL is not None

    def reserved() -> Decimal:
        return runner.run_sync(h.store.reserved("user", user, "day"))

    # Checked against the database; after the second (a user who comes back within a
    # lease's life), a lease is taken in the background.
    first = [_start(m), _start(m)]
    _until(lambda: reserved() == ONE_CALL * 6)
    served = [_start(m) for _ in range(3)]
    # Served from the lease: nothing reserved call by call (a second lease may have been taken
    # once the first was half used).
    assert reserved() in (ONE_CALL * 6, ONE_CALL * 10)
    for rid in [*first, *served]:
        m.on_llm_end(response(20, 100), run_id=rid)
    assert h.flush(30)
    # The lease is given back at flush, and every call is spent once.
    assert reserved() == 0
    assert runner.run_sync(h.store.spent("user", user, "day")) == 5 * cost_of(20, 100)
    # Left alone, a lease is given back after its life.
    for _ in range(2):
        rid = _start(m)
        m.on_llm_end(response(20, 100), run_id=rid)
    _until(lambda: reserved() == ONE_CALL * 4)
    _until(lambda: reserved() == 0)


def test_no_lease_near_the_limit_or_for_unpriced_calls(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    assert ONE_CALL is not None
    # Room for three calls, but not for the smallest lease (2 calls, with LEASE_HEADROOM
    # leases' worth left over): every call is checked one by one, whatever the call rate
    # (which sizes a lease).
    near = AccountingCallbackHandler(
        database_url=url, user_id="near", budgets=Budget(ONE_CALL * Decimal("9.5"), period=None),
        budget_lease=4,
    )  # fmt: skip
    m = CallbackManager([near])
    for _ in range(3):
        _start(m)
        time.sleep(0.05)
    assert runner.run_sync(near.store.reserved("user", "near", None)) == ONE_CALL * 3
    free = AccountingCallbackHandler(
        database_url=url, user_id="free", budgets=Budget("10", period=None), budget_lease=4
    )
    m = CallbackManager([free])
    for _ in range(3):
        m.on_llm_start(PROMPT, model="home-made-llm", provider="vllm")
        time.sleep(0.05)
    assert not free._leases.leases


def test_a_processs_own_lease_does_not_refuse_its_calls(db_url: str) -> None:
    user = uid()
    assert ONE_CALL is not None
    limit = ONE_CALL * 100
    h = AccountingCallbackHandler(
        database_url=db_url, user_id=user, budgets=Budget(limit, period=None), budget_lease=10
    )
    m = CallbackManager([h])
    for _ in range(2):
        rid = _start(m)
        m.on_llm_end(response(20, 100), run_id=rid)
    _until(lambda: bool(h._leases.leases))
    # Spent elsewhere: what is left fits the lease's ten calls and two more, but the eleventh
    # is refused while the lease is still counted.
    h.call_accounting_sync(
        output_tokens=0, prompt_tokens=0, cost=limit - 2 * cost_of(20, 100) - ONE_CALL * 12,
        run_id="elsewhere",
    )  # fmt: skip
    made = 0
    for _ in range(30):
        try:
            rid = _start(m)
        except BudgetExceeded:
            break
        m.on_llm_end(response(20, 100), run_id=rid)
        made += 1
    assert made > 10
    assert h.flush(30)
    spent = runner.run_sync(h.store.spent("user", user, None))
    assert limit <= spent < limit + ONE_CALL
    assert runner.run_sync(h.store.reserved("user", user, None)) == 0


_FORK_WORKER = """
import os, sys, time
from hookwire import CallbackManager, LLMResponse, Usage
from hookwire.callbacks.accounting import budgets
from hookwire.callbacks.accounting import AccountingCallbackHandler, Budget

budgets.LEASE_LIFE = 60.0  # no lease runs out during the test
h = AccountingCallbackHandler(
    user_id="f", database_url=sys.argv[1], budgets=Budget("10", period=None), budget_lease=4
)
m = CallbackManager([h])
prompt = [{"role": "user", "content": "What is the capital of France?"}]
end = LLMResponse("x", usage=Usage(20, 100), model="gpt-4o", provider="openai")

def call():
    rid = m.on_llm_start(prompt, invocation_params={"max_tokens": 100}, model="gpt-4o")
    leased = rid in h._leases.covered
    m.on_llm_end(end, run_id=rid)
    return leased

call()
call()  # a second call within a lease's life: a lease is taken
# A lease, and the ledger writer idle (a fork in the middle of a write is another matter).
while not h._leases.leases or h.pending:
    time.sleep(0.01)
time.sleep(0.2)
pid = os.fork()
if pid == 0:
    # The parent's lease is the parent's: not used here, not given back from here.
    try:
        leased = call()
        code = 0 if h.flush(20) and not leased else 3
    finally:
        os._exit(locals().get("code", 4))
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert call()  # still the parent's to use
print("ok", flush=True)
"""


@pytest.mark.timeout(60)
def test_a_forked_child_leaves_its_parents_lease_alone(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    url = f"sqlite:///{tmp_path}/fork.db"
    p = _python(_FORK_WORKER, url)
    out, err = p.communicate(timeout=50)
    assert p.returncode == 0, err
    assert out.strip() == "ok"


_FORK_MID_WRITE = """
import asyncio, os, sys, time
from hookwire import CallbackManager, LLMResponse, Usage
from hookwire.callbacks.accounting import AccountingCallbackHandler

h = AccountingCallbackHandler(user_id="f", database_url=sys.argv[1])
m = CallbackManager([h])
end = LLMResponse("x", usage=Usage(20, 100), model="gpt-4o", provider="openai")
record = h.store.record

async def slow_record(*a, **k):
    await asyncio.sleep(1.0)
    return await record(*a, **k)

h.store.record = slow_record
m.on_llm_end(end, run_id=m.on_llm_start("p", model="gpt-4o"))
time.sleep(0.3)  # the writer has taken the parent's row and is in the middle of writing it
assert h.pending == 1
pid = os.fork()
if pid == 0:
    code = 4
    try:
        h.store.record = record
        rid = m.on_llm_start("p", model="gpt-4o")
        m.on_llm_end(end, run_id=rid)
        # The child's own row is written, by the child: not stuck behind the parent's write.
        code = 0 if h.flush(10) and h.pending == 0 else 3
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert h.flush(10)
h.store.record = record
print("ok", flush=True)
"""


@pytest.mark.timeout(60)
def test_a_child_forked_in_the_middle_of_a_write_writes_its_own_rows(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    p = _python(_FORK_MID_WRITE, f"sqlite:///{tmp_path}/fork.db")
    out, err = p.communicate(timeout=50)
    assert p.returncode == 0, err
    assert out.strip() == "ok"
    h = AccountingCallbackHandler(database_url=f"sqlite:///{tmp_path}/fork.db")
    assert h.summary(by="user")[0]["calls"] == 2  # the parent's row and the child's


def test_bad_budget_lease(tmp_path: Path) -> None:
    for bad in (-1, 1.5, True, "4"):
        with pytest.raises(ConfigurationError, match="budget_lease"):
            AccountingCallbackHandler(database_url=f"sqlite:///{tmp_path}/a.db", budget_lease=bad)  # type: ignore[arg-type]


def test_no_budgets_means_no_work_before_calls(tmp_path: Path) -> None:
    h = AccountingCallbackHandler(database_url=f"sqlite:///{tmp_path}/a.db")
    assert not CallbackManager([h]).listens("on_llm_start")
    with_budget = AccountingCallbackHandler(
        database_url=f"sqlite:///{tmp_path}/a.db", budgets=[Budget(1)]
    )
    assert CallbackManager([with_budget]).listens("on_llm_start")


def test_unreachable_database_fails_open_or_closed(caplog: pytest.LogCaptureFixture) -> None:
    url = "postgresql://postgres@127.0.0.1:1/none"
    open_ = AccountingCallbackHandler(database_url=url, user_id="u", budgets=Budget(1))
    with caplog.at_level(logging.ERROR, logger="hookwire"):
        CallbackManager([open_]).on_llm_start(PROMPT, model="gpt-4o")
    assert "fail_open=True" in caplog.text
    closed = AccountingCallbackHandler(
        database_url=url, user_id="u", budgets=Budget(1), fail_open=False
    )
    with pytest.raises(BudgetExceeded, match="could not be checked"):
        CallbackManager([closed]).on_llm_start(PROMPT, model="gpt-4o")


async def test_unreachable_database_fails_open_or_closed_from_async_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "postgresql+asyncpg://postgres@127.0.0.1:1/none"
    open_ = AccountingCallbackHandler(database_url=url, user_id="u", budgets=Budget(1))
    with caplog.at_level(logging.ERROR, logger="hookwire"):
        await CallbackManager([open_]).aon_llm_start(PROMPT, model="gpt-4o")
    assert "fail_open=True" in caplog.text
    closed = AccountingCallbackHandler(
        database_url=url, user_id="u", budgets=Budget(1), fail_open=False
    )
    with pytest.raises(BudgetExceeded, match="could not be checked"):
        await CallbackManager([closed]).aon_llm_start(PROMPT, model="gpt-4o")


def test_the_budget_check_runs_where_the_caller_is(tmp_path: Path) -> None:
    # Sync dispatch calls the sync check in the caller's thread (no wait on hookwire's
    # background loop); async dispatch awaits the async one on the caller's loop.
    h = AccountingCallbackHandler(
        database_url=f"sqlite:///{tmp_path}/a.db", user_id="u", budgets=Budget(1)
    )
    m = CallbackManager([h])
    assert "bg(" not in m.on_llm_start.__hookwire_source__
    assert "await fn0(" in m.aon_llm_start.__hookwire_source__
    assert asyncio.iscoroutinefunction(h.aon_llm_start)
    assert not asyncio.iscoroutinefunction(h.on_llm_start)


@pytest.mark.timeout(20)
def test_a_database_that_refuses_writes_does_not_slow_budget_checks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = AccountingCallbackHandler(
        database_url="postgresql://postgres@127.0.0.1:1/none",
        user_id="u",
        budgets=Budget(1),
        settle_wait=60,  # were it waited for, the test's timeout would stop it
    )
    m = CallbackManager([h])
    with caplog.at_level(logging.ERROR, logger="hookwire"):
        m.on_llm_end(response(), run_id="queued")
        while not h._queue.failing:
            assert h.flush(timeout=0.05) is False
        m.on_llm_start(PROMPT, model="gpt-4o")  # fails open at once
        h.close(timeout=0.1)
    assert h.pending == 0
    assert "lost" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": -1}, "zero or more"),
        ({"limit": "ten"}, "amount of money"),
        ({"limit": None}, "amount of money"),
        ({"limit": True}, "amount of money"),
        ({"limit": float("inf")}, "zero or more"),
        ({"limit": 1, "period": "week"}, "period"),
        ({"limit": 1, "scope": "team"}, "scope"),
        ({"limit": 1, "currency": "dollars"}, "currency"),
    ],
)
def test_bad_budgets(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Budget(**kwargs)


def test_budget_limits_are_decimal() -> None:
    assert Budget(0.1).limit == Decimal("0.1")
    assert Budget("12.50", currency="eur").currency == "EUR"


def test_bad_handler_arguments(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    with pytest.raises(ConfigurationError, match="not both"):
        AccountingCallbackHandler(store=UsageLedger(url), database_url=url)
    with pytest.raises(ConfigurationError, match="UsageLedger"):
        AccountingCallbackHandler(store="db")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Budget objects"):
        AccountingCallbackHandler(database_url=url, budgets=[10])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="default_max_tokens"):
        AccountingCallbackHandler(database_url=url, default_max_tokens=0)


def test_prompt_estimate_is_an_upper_bound() -> None:
    assert estimate_prompt_tokens(None) == 0
    assert estimate_prompt_tokens("héllo") >= len("héllo".encode())
    many = [{"role": "user", "content": "x" * 100}] * 3
    assert estimate_prompt_tokens(many) >= 300
    assert estimate_prompt_tokens(object()) > 0
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}
    with_image = [{"role": "user", "content": [{"type": "text", "text": "what is it?"}, image]}]
    assert 1600 < estimate_prompt_tokens(with_image) < 1700


# -- across processes -------------------------------------------------------------------------

_BUDGET_WORKER = """
import asyncio, json, random, sys
from hookwire import CallbackManager, LLMResponse, Usage
from hookwire.callbacks.accounting import AccountingCallbackHandler, Budget
from hookwire.errors import BudgetExceeded

url, user, limit, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lease, stagger = int(sys.argv[5]), float(sys.argv[6])
rng = random.Random(sys.argv[7])  # the same starts and costs on every run
h = AccountingCallbackHandler(
    user_id=user,
    database_url=url,
    budgets=[Budget(limit, period=None, scope="user")],
    budget_lease=lease,
)
m = CallbackManager([h])
prompt = [{"role": "user", "content": "hello there"}]

async def call(stagger):
    await asyncio.sleep(rng.uniform(0, stagger))
    try:
        rid = await m.aon_llm_start(
            prompt, invocation_params={"model": "gpt-4o", "max_tokens": 200},
            model="gpt-4o", provider="openai",
        )
    except BudgetExceeded:
        return "refused"
    leased = rid in h._leases.covered
    await asyncio.sleep(rng.uniform(0, 0.05))
    usage = Usage(20, rng.randint(100, 200))
    await m.aon_llm_end(
        LLMResponse("x", usage=usage, model="gpt-4o", provider="openai"), run_id=rid
    )
    return "made (leased)" if leased else "made"

async def main():
    await h.asummary()  # the database opened before the start
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # all processes start together
    # First two calls, checked against the database, and once the lease taken after the
    # second is granted or refused, one more: while the budget has room for every process's
    # lease, that call is served by it (leases are used when they can be), however slow the
    # machine.
    results = [await call(0.0), await call(0.0)]
    while h._leases._acquiring:
        await asyncio.sleep(0.005)
    results.append(await call(0.0))
    print("warm", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # then the rest, all processes together
    return results + await asyncio.gather(*(call(stagger) for _ in range(n - 3)))

results = asyncio.run(main())
assert h.flush(60)
print(json.dumps(results), flush=True)
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("limit", "lease", "stagger"),
    [
        # All at once, and too close to the limit for leases: every call checked one by one.
        (Decimal("0.03"), 16, 0.0),
        # Spread over two seconds, with leases of two calls while there is room for them.
        (Decimal("0.07"), 2, 2.0),
    ],
)
def test_fifty_concurrent_calls_from_four_processes_hold_the_budget(
    db_url: str, limit: Decimal, lease: int, stagger: float
) -> None:
    user = uid()
    per_process = 13  # 52 calls in all
    procs = [
        _python(
            _BUDGET_WORKER,
            *(db_url, user, str(limit), str(per_process), str(lease), str(stagger), str(i)),
        )
        for i in range(4)
    ]
    try:
        for step in ("ready", "warm"):
            for p in procs:
                assert p.stdout is not None
                line = p.stdout.readline()
                assert line.strip() == step, p.stderr.read() if p.stderr else ""
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
        outcomes: list[str] = []
        for p in procs:
            out, err = p.communicate(timeout=90)
            assert p.returncode == 0, err
            outcomes += json.loads(out.strip().splitlines()[-1])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate(timeout=30)
    assert len(outcomes) == 52
    assert "refused" in outcomes
    assert "made" in outcomes
    if stagger:
        # Every process's third call, at least: the four leases fit in the budget then.
        assert outcomes.count("made (leased)") >= 4
    else:
        assert "made (leased)" not in outcomes
    made = len(outcomes) - outcomes.count("refused")
    ledger = UsageLedger(db_url)
    (row,) = runner.run_sync(ledger.summary(where={"user": user}))
    one_call = pricing.estimate(
        "gpt-4o",
        estimate_prompt_tokens([{"role": "user", "content": "hello there"}]),
        200,
        "openai",
    )
    assert one_call is not None
    assert row["calls"] == made
    assert row["cost"] <= limit + one_call
    # Nothing stays reserved once every call has ended.
    assert runner.run_sync(ledger.reserved("user", user, None)) == 0


_KILL_WORKER = """
import sys
from hookwire import CallbackManager, LLMResponse, Usage
from hookwire.callbacks.accounting import AccountingCallbackHandler

url, user = sys.argv[1], sys.argv[2]
h = AccountingCallbackHandler(user_id=user, database_url=url)
m = CallbackManager([h])
i = 0
while True:
    for _ in range(25):
        m.on_llm_end(
            LLMResponse("x", usage=Usage(10, 5), model="gpt-4o"), run_id=f"{user}-{i:06d}"
        )
        i += 1
    assert h.flush(30)
    print(i, flush=True)  # every row before i is acknowledged: committed
"""


@pytest.mark.timeout(120)
def test_a_writer_killed_mid_way_loses_no_acknowledged_row(db_url: str) -> None:
    user = uid()
    p = _python(_KILL_WORKER, db_url, user)
    acked = 0
    try:
        assert p.stdout is not None
        while acked < 300:
            line = p.stdout.readline()
            assert line, p.stderr.read() if p.stderr else ""
            acked = int(line)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=30)  # reaps it and closes the pipes
    assert p.returncode == -signal.SIGKILL
    ledger = UsageLedger(db_url)
    rows = runner.run_sync(ledger.records(user_id=user, limit=100_000))
    run_ids = {r.run_id for r in rows}
    assert {f"{user}-{i:06d}" for i in range(acked)} <= run_ids
    # The totals were written in the same transactions as the rows.
    assert runner.run_sync(ledger.spent("user", user, None)) == sum(
        (r.cost for r in rows if r.cost is not None), Decimal(0)
    )


_EXIT_WORKER = """
import sys
from hookwire import LLMResponse, Usage
from hookwire.callbacks.accounting import AccountingCallbackHandler

h = AccountingCallbackHandler(user_id="exit-user", database_url=sys.argv[1])
for i in range(500):
    h.on_llm_end(LLMResponse("x", usage=Usage(3, 4), model="gpt-4o"), run_id=f"exit-{i}")
# no flush: the rows still queued are written at exit
"""


_FORK_EXIT_WORKER = """
import os, sys
from hookwire import LLMResponse, Usage
from hookwire.callbacks.accounting import AccountingCallbackHandler

h = AccountingCallbackHandler(user_id="fork-exit", database_url=sys.argv[1])
h.on_llm_end(LLMResponse("x", usage=Usage(3, 4), model="gpt-4o"), run_id="parent")
assert h.flush(20)
pid = os.fork()
if pid == 0:
    for i in range(50):
        h.on_llm_end(LLMResponse("x", usage=Usage(3, 4), model="gpt-4o"), run_id=f"child-{i}")
    sys.exit(0)  # through atexit, where Python 3.12+ starts no thread
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("script", "user", "calls"),
    [(_EXIT_WORKER, "exit-user", 500), (_FORK_EXIT_WORKER, "fork-exit", 51)],
    ids=["script", "forked child"],
)
def test_queued_rows_are_written_at_exit(
    tmp_path: Path, script: str, user: str, calls: int
) -> None:
    if "fork" in script and not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    url = f"sqlite:///{tmp_path}/exit.db"
    p = _python(textwrap.dedent(script), url)
    _, err = p.communicate(timeout=50)
    assert p.returncode == 0, err
    (row,) = runner.run_sync(UsageLedger(url).summary(where={"user": user}))
    assert row["calls"] == calls


def test_the_handlers_of_one_ledger_share_its_queue(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    a = AccountingCallbackHandler(database_url=url, user_id="a")
    b = AccountingCallbackHandler(database_url=url, user_id="b")
    assert a._queue is b._queue  # their rows are written together, many per transaction
    a.on_llm_end(response(), run_id="a-1")
    b.on_llm_end(response(), run_id="b-1")
    assert a.flush(timeout=30)
    assert a.pending == b.pending == 0
    assert sorted((r["user"], r["calls"]) for r in b.summary(by="user")) == [("a", 1), ("b", 1)]


async def test_asummary_counts_the_call_that_just_ended(db_url: str) -> None:
    user = uid()
    h = AccountingCallbackHandler(user_id=user, database_url=db_url)
    manager = CallbackManager([h])
    for n in range(1, 4):
        run_id = await manager.aon_llm_start(PROMPT, model="gpt-4o", provider="openai")
        await manager.aon_llm_end(response(), run_id=run_id, model="gpt-4o", provider="openai")
        # no flush(): asummary waits for the handler's queued rows, as summary does
        (row,) = await h.asummary(where={"user": user})
        assert row["calls"] == n


async def test_a_duplicate_call_accounting_returns_what_the_ledger_holds(db_url: str) -> None:
    h = AccountingCallbackHandler(user_id=uid(), database_url=db_url, model_name="gpt-4o")
    run_id = f"run-{uuid.uuid4()}"
    first = await h.call_accounting(50, 100, "support", run_id=run_id)
    again = await h.call_accounting(999, 999, "other", run_id=run_id)
    (stored,) = await runner.run(h.store.records(run_id=run_id))
    assert again == stored
    assert (again.prompt_tokens, again.completion_tokens, again.agent) == (100, 50, "support")
    assert again.cost == first.cost == cost_of(100, 50)
    same = h.call_accounting_sync(1, 1, run_id=run_id)
    assert same == stored

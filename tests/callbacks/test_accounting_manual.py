"""Calls recorded by hand (hookwire.callbacks.accounting.manual): ``call_accounting``'s
arguments, and the automatic call it pairs with."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookwire import CallbackManager, LLMResponse, Usage, pricing, request_context
from hookwire.callbacks.accounting import AccountingCallbackHandler, Budget
from hookwire.errors import BudgetExceeded, ConfigurationError, InvalidUsageError
from hookwire.stores import runner

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def uid() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


def calls(h: AccountingCallbackHandler, user: str | None = None) -> int:
    """The calls in the ledger (of ``user``): other tests write to the same database."""
    where = {"user": user} if user is not None else None
    return sum(row["calls"] for row in h.summary(where=where))


# -- costs that would break a budget (item 12) -------------------------------------------------


@pytest.mark.parametrize(
    "cost",
    [
        Decimal("-0.5"),
        -1,
        "-0.01",
        Decimal("NaN"),
        Decimal("sNaN"),
        float("nan"),
        "NaN",
        Decimal("Infinity"),
        float("-inf"),
        Decimal("1e30"),
        True,
        "ten",
        [1],
    ],
)
def test_call_accounting_refuses_a_cost_that_would_break_a_spent_budget(
    db_url: str, cost: Any
) -> None:
    user = uid()
    h = AccountingCallbackHandler(
        database_url=db_url, user_id=user, budgets=Budget("1", period=None), budget_lease=0
    )
    m = CallbackManager([h])
    h.call_accounting_sync(1, 1, model="gpt-4o", cost=Decimal("1"))
    with pytest.raises(BudgetExceeded):
        m.on_llm_start(PROMPT, model="gpt-4o")
    before = h.summary()
    with pytest.raises(InvalidUsageError, match="cost must be an amount of money"):
        h.call_accounting_sync(1, 1, model="gpt-4o", cost=cost)
    # Nothing changed: the budget stays spent (a negative cost would have reopened it) and
    # the totals are still numbers (NaN would have made every later check refuse).
    assert h.summary() == before
    assert runner.run_sync(h.store.spent("user", user, None)) == Decimal("1")
    with pytest.raises(BudgetExceeded, match="budget of user"):
        m.on_llm_start(PROMPT, model="gpt-4o")


async def test_call_accounting_refuses_a_negative_cost_from_async_code(db_url: str) -> None:
    user = uid()
    h = AccountingCallbackHandler(database_url=db_url, user_id=user)
    with pytest.raises(InvalidUsageError, match="from 0 to"):
        await h.call_accounting(1, 1, model="gpt-4o", cost=Decimal("-3"))
    assert await asyncio.to_thread(calls, h, user) == 0


def test_call_accounting_keeps_the_cost_as_the_ledger_stores_it(db_url: str) -> None:
    h = AccountingCallbackHandler(database_url=db_url, user_id=uid())
    record = h.call_accounting_sync(1, 1, cost=Decimal("0.12345678901234567"))
    assert record.cost == Decimal("0.123456789012")  # 12 places, half-even
    assert h.call_accounting_sync(1, 1, cost=0.1).cost == Decimal("0.1")
    (stored,) = runner.run_sync(h.store.records(run_id=record.run_id))
    assert stored == record


# -- arguments that raised Python's own errors (item 22) ---------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"prompt_tokens": 2**64}, InvalidUsageError, "whole number of tokens"),  # OverflowError
        ({"output_tokens": 10**13}, InvalidUsageError, "whole number of tokens"),
        ({"prompt_tokens": None}, InvalidUsageError, "prompt_tokens"),  # TypeError
        ({"output_tokens": 1.0}, InvalidUsageError, "output_tokens"),
        ({"cached_tokens": "3"}, InvalidUsageError, "cached_tokens"),
        ({"reasoning_tokens": 99}, InvalidUsageError, "cannot exceed output_tokens"),
        ({"model": 4}, ConfigurationError, "model must be a string"),  # AttributeError
        ({"model": object()}, ConfigurationError, "model must be a string"),
        ({"provider": b"openai"}, ConfigurationError, "provider must be a string"),
        ({"agent_slug": ["bot"]}, ConfigurationError, "agent_slug must be a string"),
        ({"user_id": 7}, ConfigurationError, "user_id must be a string"),
        ({"run_id": "\ud800"}, ConfigurationError, "run_id must be"),  # UnicodeEncodeError
        ({"run_id": "r\x00"}, ConfigurationError, "run_id must be"),
        ({"run_id": "r" * 65}, ConfigurationError, "1 to 64 characters"),
        ({"run_id": ""}, ConfigurationError, "run_id must be"),
        # A price times impossible token counts: more than one call can cost.
        ({"prompt_tokens": 10**12, "model": "o1-pro"}, InvalidUsageError, "check the counts"),
    ],
)
def test_call_accounting_names_what_is_wrong_and_stores_nothing(
    db_url: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    user = uid()
    h = AccountingCallbackHandler(database_url=db_url, user_id=user, model_name="gpt-4o")
    arguments: dict[str, Any] = {"output_tokens": 10, "prompt_tokens": 20, **kwargs}
    with pytest.raises(error, match=message):
        h.call_accounting_sync(**arguments)
    assert calls(h, user) == 0


_runs = itertools.count()


def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` 19 times in 20: most examples get past every check and are stored."""
    return st.integers(0, 19).flatmap(lambda n: bad if n == 0 else good)


_BAD_COUNTS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=3),
)
_counts = _mostly(st.integers(min_value=0, max_value=10**9), _BAD_COUNTS)
_parts = _mostly(st.one_of(st.none(), st.integers(min_value=0, max_value=100)), _BAD_COUNTS)
_texts = _mostly(
    st.one_of(
        st.none(),
        st.text(max_size=300),
        st.text(alphabet=st.characters(codec=None), max_size=20),  # NUL, lone surrogates
        st.sampled_from(["gpt-4o", "gpt-4o-mini", "o1-pro", "openai", "azure", ""]),
    ),
    st.one_of(st.integers(), st.binary(max_size=5), st.floats()),
)
_costs = _mostly(
    st.one_of(st.none(), st.decimals(min_value=0, max_value=10**6, places=20)),
    st.one_of(
        st.decimals(allow_nan=True, allow_infinity=True),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.text(max_size=8),
        st.booleans(),
    ),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    output_tokens=_counts,
    prompt_tokens=_counts,
    cached_tokens=_parts,
    reasoning_tokens=_parts,
    agent_slug=_texts,
    model=_texts,
    provider=_texts,
    user_id=_texts,
    org_id=_texts,
    cost=_costs,
    run_suffix=st.one_of(st.none(), st.text(max_size=70)),
)
def test_call_accounting_stores_exactly_what_it_returns_or_nothing(
    db_url: str,
    output_tokens: Any,
    prompt_tokens: Any,
    cached_tokens: Any,
    reasoning_tokens: Any,
    agent_slug: Any,
    model: Any,
    provider: Any,
    user_id: Any,
    org_id: Any,
    cost: Any,
    run_suffix: str | None,
) -> None:
    h = AccountingCallbackHandler(database_url=db_url, user_id="property")
    run_id = None if run_suffix is None else f"p{next(_runs)}-{uuid.uuid4().hex[:8]}{run_suffix}"
    before = calls(h)
    try:
        record = h.call_accounting_sync(
            output_tokens,
            prompt_tokens,
            agent_slug,
            run_id=run_id,
            cached_tokens=cached_tokens,
            reasoning_tokens=reasoning_tokens,
            model=model,
            provider=provider,
            user_id=user_id,
            org_id=org_id,
            cost=cost,
        )
    except (InvalidUsageError, ConfigurationError):
        assert calls(h) == before
        return
    (stored,) = runner.run_sync(h.store.records(run_id=record.run_id))
    assert stored == record
    assert calls(h) == before + 1


# -- pairing with the automatic call (item 15) -------------------------------------------------


async def test_a_shared_handler_pairs_each_request_with_its_own_call(db_url: str) -> None:
    # One handler for the whole app, as a web service attaches it; two requests at once,
    # each recording its call automatically and then by hand (as Arshai's code does).
    h = AccountingCallbackHandler(database_url=db_url, model_name="gpt-4o")
    m = CallbackManager([h])
    users = [uid(), uid()]
    both_ended = asyncio.Event()
    runs: dict[str, str] = {}

    async def request(user: str, tokens: int) -> str:
        with request_context(user_id=user):
            rid = await m.aon_llm_start(PROMPT, model="gpt-4o")
            usage = Usage(100, tokens)
            await m.aon_llm_end(LLMResponse("Paris", usage=usage, model="gpt-4o"), run_id=rid)
            runs[user] = rid
            if len(runs) == 2:
                both_ended.set()
            await both_ended.wait()  # both calls ended before either is recorded by hand
            record = await h.call_accounting(output_tokens=tokens, prompt_tokens=100)
            return record.run_id

    paired = await asyncio.gather(request(users[0], 10), request(users[1], 20))
    assert paired == [runs[users[0]], runs[users[1]]]
    await asyncio.to_thread(h.flush, 30)
    rows = {row["user"]: row for row in await h.asummary(by="user")}
    for user, tokens in zip(users, (10, 20), strict=True):
        assert rows[user]["calls"] == 1  # billed once, for its own call
        assert rows[user]["cost"] == pricing.cost("gpt-4o", Usage(100, tokens))


async def test_a_call_made_in_a_task_of_its_own_is_paired_by_who_it_was_for(
    db_url: str,
) -> None:
    h = AccountingCallbackHandler(database_url=db_url, model_name="gpt-4o")
    m = CallbackManager([h])
    user = uid()

    async def llm_call() -> str:
        rid = await m.aon_llm_start(PROMPT, model="gpt-4o")
        await m.aon_llm_end(LLMResponse("Paris", usage=Usage(10, 5), model="gpt-4o"), run_id=rid)
        return rid

    with request_context(user_id=user, request_id="req-1"):
        # The LLM call runs in a task of its own (as asyncio.wait_for did before 3.12).
        rid = await asyncio.create_task(llm_call())
        assert (await h.call_accounting(5, 10)).run_id == rid
        # Paired once: the next manual record is a call of its own.
        assert (await h.call_accounting(5, 10)).run_id != rid
    with request_context(user_id=uid(), request_id="req-2"):
        # Another request never takes it.
        other = await asyncio.create_task(llm_call())
    with request_context(user_id=user, request_id="req-1"):
        assert (await h.call_accounting(5, 10)).run_id != other

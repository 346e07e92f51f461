"""Budget overrun under 50 concurrent calls from 4 processes, on SQLite and PostgreSQL.

What the design guarantees: a check admits a call only while the key's spent plus reserved
cost is under the limit, and every call in flight reserves its worst case (so does a lease,
for the calls it serves, within a lowered limit). So the spend can pass the limit by one
call's worst case at most, however many processes and calls race, and whichever of them are
cancelled (a cancelled call gives its reservation back). The test prints the overrun, in
calls (``pytest -rP`` shows it).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest

from hookwire import Usage, pricing
from hookwire.callbacks.accounting import estimate_prompt_tokens
from hookwire.stores import runner
from hookwire.stores.ledger import UsageLedger
from hookwire.testing.openai_server import OpenAIServer

PROMPT = [{"role": "user", "content": " ".join(["word"] * 20)}]
PROCESSES = 4
CALLS = (13, 13, 12, 12)  # 50 in all


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stagger", [0.0, 1.0], ids=["all at once", "over a second"])
def test_fifty_concurrent_calls_from_four_processes_overrun_by_one_call_at_most(
    db_url: str,
    openai_server: OpenAIServer,
    stagger: float,
    run_together: Callable[[str, list[tuple[str, ...]]], list[str]],
) -> None:
    one_call = pricing.cost("gpt-4o", Usage(20, 22), "openai")  # what each answer costs
    worst = pricing.estimate("gpt-4o", estimate_prompt_tokens(PROMPT), 64, "openai")
    assert one_call is not None and worst is not None
    limit = one_call * 25  # about half the calls fit
    user = f"overrun-{uuid.uuid4().hex[:10]}"
    runs = [
        (db_url, openai_server.base_url, user, str(limit), str(n), str(stagger), str(i))
        for i, n in enumerate(CALLS)
    ]
    # The database exists before the processes start, as `hookwire db upgrade` makes it before
    # an app's workers start: what is measured is the budget, not four first starts racing.
    ledger = UsageLedger(db_url)
    runner.run_sync(ledger.summary(where={"user": user}))
    outcomes: list[str] = []
    for last in run_together("budget_calls.py", runs):
        outcomes += json.loads(last)
    assert len(outcomes) == sum(CALLS)
    assert "unchecked" not in outcomes, "a budget check took over a minute"
    assert "refused" in outcomes
    (row,) = runner.run_sync(ledger.summary(where={"user": user}))
    assert row["calls"] == outcomes.count("made")
    assert row["cost"] == row["calls"] * one_call
    overrun = max(Decimal(0), row["cost"] - limit)
    figures = (
        f"made {outcomes.count('made')}, refused {outcomes.count('refused')}, cancelled "
        f"{outcomes.count('cancelled')}; overrun {overrun / one_call:.2f} calls (bound: one "
        f"call's worst case, {worst / one_call:.2f} calls)"
    )
    print(figures)  # the figures: pytest -rP shows them
    assert overrun <= worst, figures
    # Cancelled calls and the processes' leases gave their reservations back.
    assert runner.run_sync(ledger.reserved("user", user, None)) == 0

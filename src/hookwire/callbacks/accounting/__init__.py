"""``AccountingCallbackHandler``: a durable ledger of LLM usage and cost, and budgets.

Attached to a runner or a client (``callbacks=[accounting]``), the handler records every LLM
call from ``on_llm_end``: who it was for (user, org, agent), the model and provider, the token
counts, the cost (``hookwire.pricing``), and the request's ids. Rows are written in the
background, in batches, to the ledger of ``hookwire.stores`` (SQLite ``./hookwire.db`` by
default, PostgreSQL by URL); ``flush()`` waits for them, and they are flushed at exit.

It also works by hand, as in Arshai's documentation::

    accounting = AccountingCallbackHandler(
        correlation_id="correlation-id", request_id="request-id", user_id="user-123"
    )
    accounting.model_name = "gpt-4"
    await accounting.call_accounting(output_tokens=150, prompt_tokens=100, agent_slug="support")

A call is never counted twice: the ledger is idempotent by run id, and ``call_accounting``
pairs itself with the LLM call the handler saw last (or takes ``run_id=``), so a call recorded
both automatically and by hand counts once.

Budgets (``Budget(limit, period="day" | "month" | None, scope="user" | "org" | "agent")``) are
checked before each LLM call, inline (not in the background), and reserve the call's
worst-case cost until its real cost is recorded. A scope at or over its limit stops the call
with ``hookwire.errors.BudgetExceeded``: the one kind of handler error meant to reach the
caller.

The package: ``handler`` (``AccountingCallbackHandler``), ``budgets`` (``Budget``, the worst
case of a call, budget leases) and ``writer`` (the background ledger writer).
"""

from __future__ import annotations

from ...stores.ledger import UsageRecord
from .budgets import IMAGE_TOKENS, LEASE_HEADROOM, LEASE_LIFE, Budget, estimate_prompt_tokens
from .handler import AccountingCallbackHandler

__all__ = [
    "IMAGE_TOKENS",
    "LEASE_HEADROOM",
    "LEASE_LIFE",
    "AccountingCallbackHandler",
    "Budget",
    "UsageRecord",
    "estimate_prompt_tokens",
]

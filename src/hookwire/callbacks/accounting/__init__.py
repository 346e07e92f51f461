"""Usage accounting: a durable ledger of LLM usage and cost, and budgets.

``AccountingCallbackHandler`` (``handler``) records every LLM call in the ledger and enforces
``Budget`` limits (``budgets``, which also holds a call's worst case and budget leases); calls
recorded by hand are checked and paired in ``manual``; its rows are written in the background
through the ledger's queue (``ledger_queue``). See
``hookwire.callbacks.accounting.handler``.
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
